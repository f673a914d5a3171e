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


def test_parents_of_bind_targets_are_made_traversable(tmp_path: Path) -> None:
    """bwrap (as root) would make missing mount points 0700: the session user could not pass."""
    argv = bwrap_argv(ctx(tmp_path), ["python3"], agent_path="/a/agent.py",
                      prefixes=["/tmp/x/.venv", "/root/.pyenv/versions/3.11"])
    text = " ".join(argv)
    for parent in ("/tmp/x", "/root", "/root/.pyenv", "/root/.pyenv/versions", "/opt", "/opt/bai"):
        assert f"--perms 0755 --dir {parent} " in text, parent
    # Existing trees and fresh tmpfs mounts are left alone (/tmp stays 1777).
    for kept in ("/tmp", "/run", "/home/work", "/usr"):
        assert f"--dir {kept} " not in text
    assert "--perms 1777 --tmpfs /tmp" in text
    # /home is made once, before /home/work is bound.
    assert text.index("--dir /home ") < text.index(" /home/work ")


def test_privilege_drop_and_seccomp_come_last(tmp_path: Path) -> None:
    argv = bwrap_argv(ctx(tmp_path), ["python3"], drop=["setpriv", "--reuid=1000", "--"],
                      seccomp_fd=5)
    assert argv[-5:] == ["--", "setpriv", "--reuid=1000", "--", "python3"]
    assert argv[argv.index("--seccomp") + 1] == "5"
    assert "--disable-userns" not in argv
    argv = bwrap_argv(ctx(tmp_path), ["python3"], user_namespace=True)
    assert "--unshare-user" in argv and "--disable-userns" in argv
