"""``jupyter bai kernelspec install|ls|rm``, ``%bai kernelspec ...`` and the functions behind
them: real kernelspec directories in a private JUPYTER_DATA_DIR."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from jupyter_client.kernelspec import KernelSpecManager

from jupyter_bai.cli import run
from jupyter_bai.kernels import install_kernelspec, list_kernelspecs, remove_kernelspec
from jupyter_bai.kernels import specs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    return tmp_path / "data"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        code = run(list(argv), stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_install_ls_rm_from_the_cli(data_dir: Path) -> None:
    code, out, err = cli("kernelspec", "install", "gpu-half", "-r", "cpu=2", "-r", "mem=4g",
                         "-r", "cuda.shares=0.5", "-v", "data:ro", "--image", "python:3.11",
                         "--display-name", "Half a GPU", "--user")
    assert code == 0, err
    spec_dir = data_dir / "kernels" / "gpu-half"
    kernel = json.loads((spec_dir / "kernel.json").read_text())
    assert kernel["display_name"] == "Half a GPU" and kernel["interrupt_mode"] == "message"
    config = kernel["metadata"]["kernel_provisioner"]
    assert config == {"provisioner_name": "bai-session-provisioner", "config": {
        "image": "python:3.11", "resources": ["cpu=2", "mem=4g", "cuda.shares=0.5"],
        "mounts": ["data:ro"]}}
    for size in (32, 64):
        assert (spec_dir / f"logo-{size}x{size}.png").read_bytes().startswith(PNG)
    # Jupyter itself sees it, with its logo (the launcher's icon)
    spec = KernelSpecManager().get_all_specs()["gpu-half"]
    assert spec["resource_dir"] == str(spec_dir)

    code, out, _ = cli("kernelspec", "ls")
    row = [ln for ln in out.splitlines() if ln.startswith("gpu-half")]
    assert row and "cpu=2 mem=4g cuda.shares=0.5" in row[0] and "data:ro" in row[0]
    code, out, _ = cli("kernelspec", "ls", "--json")
    assert [s["name"] for s in json.loads(out) if s["name"] == "gpu-half"] == ["gpu-half"]

    code, out, err = cli("kernelspec", "rm", "gpu-half")
    assert code == 0 and "removed" in out, err
    assert not spec_dir.exists()


@pytest.mark.parametrize("argv, message", [
    (["kernelspec", "install", "x", "-r", "cpu=lots", "--user"], "invalid resource 'cpu=lots'"),
    (["kernelspec", "install", "x", "-v", "/etc:/x", "--user"], "vfolder"),
    (["kernelspec", "install", "x", "--image", "bad image", "--user"], "invalid image"),
    (["kernelspec", "install", "Bad Name", "--user"], "invalid kernelspec name"),
    (["kernelspec", "install", "x", "--user", "--sys-prefix"], "choose one of --user and --sys-prefix"),
    (["kernelspec", "rm", "nothere"], "kernelspec 'nothere' not found"),
])
def test_user_errors_are_one_line_and_write_nothing(data_dir: Path, argv: list[str],
                                                    message: str) -> None:
    code, _, err = cli(*argv)
    assert code == 1 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (data_dir / "kernels" / "x").exists()


def test_rm_refuses_a_kernelspec_that_is_not_a_session_one(data_dir: Path) -> None:
    plain = data_dir / "kernels" / "plain"
    plain.mkdir(parents=True)
    (plain / "kernel.json").write_text(json.dumps({"argv": ["python3"], "display_name": "p",
                                                   "language": "python"}))
    code, _, err = cli("kernelspec", "rm", "plain")
    assert code == 1 and "not a bai session kernelspec" in err
    assert plain.exists()


def test_the_magic_and_the_functions_do_the_same(data_dir: Path) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_bai")
    with capture_output() as cap:
        shell.run_line_magic("bai", "kernelspec install small -r cpu=1 --user")
    shown = " ".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert "kernelspec 'small'" in shown and "installed" in shown, cap.stderr
    with capture_output():
        listed = shell.run_line_magic("bai", "kernelspec ls --json")
    assert {s["name"]: s["resources"] for s in listed}["small"] == ["cpu=1"]
    assert [s["resources"] for s in list_kernelspecs() if s["name"] == "small"] == [["cpu=1"]]
    made = install_kernelspec("other", ["mem=1g"], user=True)
    assert made["resources"] == ["mem=1g"]
    remove_kernelspec("other")
    with capture_output() as cap:
        shell.run_line_magic("bai", "kernelspec rm nothere")
    assert cap.stderr.strip() == "error: kernelspec 'nothere' not found"


@pytest.mark.parametrize("gpus", [0, 2])
def test_shipped_gpu_kernelspecs_only_on_a_gpu_node(data_dir: Path, gpus: int) -> None:
    names = specs.install_shipped(gpus, user=True)
    assert "bai-python" in names
    assert ("bai-python-gpu-half" in names) == (gpus > 0)
    assert (data_dir / "kernels" / "bai-python-gpu-half").exists() == (gpus > 0)
