"""The bubblewrap command line: layout order matters (later mounts cover earlier ones)."""
from __future__ import annotations

from pathlib import Path

from jupyter_bai.engine.runtimes.base import LaunchContext, ResolvedMount
from jupyter_bai.engine.runtimes.sandbox import AGENT_TARGET, bwrap_argv


def ctx(tmp_path: Path) -> LaunchContext:
    return LaunchContext(
        session_id="s1", session_name="exp1", image="local", session_dir=tmp_path / "s1",
        interactive=True, command=None, env={"A": "1"},
        mounts=[ResolvedMount("data", tmp_path / "vf", "/home/work/data", True),
                ResolvedMount("out", tmp_path / "out", "/models", False)],
    )


def test_python_under_tmp_is_bound_after_the_private_tmp(tmp_path: Path) -> None:
    argv = bwrap_argv(ctx(tmp_path), ["python3"], prefixes=["/tmp/x/.venv"])
    tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
    prefix = argv.index("/tmp/x/.venv")
    assert tmpfs < prefix


def test_mounts_permissions_env_and_command(tmp_path: Path) -> None:
    c = ctx(tmp_path)
    argv = bwrap_argv(c, ["python3", "x.py"], agent_path="/a/agent.py")
    text = " ".join(argv)
    assert f"--ro-bind {tmp_path / 'vf'} /home/work/data" in text
    assert f"--bind {tmp_path / 'out'} /models" in text
    assert f"--ro-bind /a/agent.py {AGENT_TARGET}" in text
    assert f"--bind {c.session_dir / 'work'} /home/work" in text
    # /home/work is bound before the folders mounted inside it.
    assert text.index(" /home/work ") < text.index("/home/work/data")
    assert "--clearenv --setenv A 1" in text and "--unshare-pid" in text
    assert argv[-3:] == ["--", "python3", "x.py"]
