"""``jupyter bai``: argument parsing, one-line errors, output formatting, and a real engine."""
from __future__ import annotations

import json
import os
import re
import time
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_bai import render
from jupyter_bai.cli import BaiContext, run
from jupyter_bai.spec.errors import NotFound

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))
    monkeypatch.delenv("JUPYTER_BAI_URL", raising=False)
    monkeypatch.delenv("JUPYTER_BAI_TOKEN", raising=False)


@pytest.fixture()
def dead_engine(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("JUPYTER_BAI_URL", url)
    monkeypatch.setenv("JUPYTER_BAI_TOKEN", "t")
    return url


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- parsing and errors


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sesion", "ls"], "No such command 'sesion'"),
        (["session", "crate", "x"], "Did you mean 'create'?"),
        (["session", "create"], "Missing argument 'IMAGE'. (see 'jupyter bai session create --help')"),
        (["session", "create", "local", "--type", "weird"], "Invalid value for '--type'"),
        (["session", "create", "local", "--bogus"], "No such option '--bogus'"),
        (["session", "logs", "s", "--tail", "-3"], "Invalid value for '--tail'"),
        (["session", "exec", "s"], "Missing argument 'COMMAND...'"),
        (["vfolder", "create", "d", "-m", "weird"], "Invalid value for '-m'"),
        (["vfolder", "upload", "d"], "Missing argument 'FILES...'"),
    ],
)
def test_usage_errors_are_one_line_exit_1(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], no_engine: None) -> None:
    assert run(argv) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert expected in line
    assert "--help')" in line
    assert captured.out == ""


def test_no_engine_is_one_line(capsys: pytest.CaptureFixture[str], no_engine: None) -> None:
    assert run(["session", "ls"]) == 1
    assert _one_error_line(capsys.readouterr().err) == (
        "error: no jupyter-bai engine is running: start JupyterLab with `make lab` or run `jupyter bai serve`"
    )


def test_unreachable_engine_names_its_url(capsys: pytest.CaptureFixture[str], dead_engine: str) -> None:
    assert run(["--json", "resources"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert dead_engine in line and "connection refused" in line


def test_bad_resource_fails_before_any_request(capsys: pytest.CaptureFixture[str], dead_engine: str) -> None:
    assert run(["session", "create", "local", "-r", "gpu=1"]) == 1
    assert "unknown resource slot 'gpu'" in _one_error_line(capsys.readouterr().err)
    assert run(["session", "create", "local", "-e", "BACKENDAI_X=1"]) == 1
    assert "reserved" in _one_error_line(capsys.readouterr().err)


def test_missing_local_upload_file(capsys: pytest.CaptureFixture[str], dead_engine: str, tmp_path: Path) -> None:
    assert run(["vfolder", "upload", "d", str(tmp_path / "nope.csv")]) == 1
    assert "no such local file" in _one_error_line(capsys.readouterr().err)


def test_help_needs_no_engine(capsys: pytest.CaptureFixture[str], no_engine: None) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "session" in out and "vfolder" in out and "resources" in out and "serve" in out
    assert run(["session", "create", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("-t, --name", "--type", "-c, --startup-command", "-r, --resources", "-v, --mount", "-e, --env",
                "--idle-timeout", "--max-lifetime", "--wait", "--json"):
        assert opt in out
    assert run([]) == 0  # bare command shows help
    assert "Usage: jupyter bai" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--json", "session", "ls"], ["session", "ls", "--json"],
                                  ["--json", "vfolder", "info", "x"], ["vfolder", "info", "x", "--json"]])
def test_json_flag_before_or_after(argv: list[str]) -> None:
    def failing() -> Any:
        raise NotFound("stop here")

    bai = BaiContext(client_factory=failing)
    assert run(argv, bai=bai) == 1
    assert bai.json is True


def test_not_json_by_default() -> None:
    def failing() -> Any:
        raise NotFound("stop here")

    bai = BaiContext(client_factory=failing)
    run(["session", "ls"], bai=bai)
    assert bai.json is False


def test_entry_point_module_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", "--version"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "jupyter-bai" in proc.stdout


# --------------------------------------------------------------------------- formatting

SESSION: dict[str, Any] = {
    "id": "b827ccf2-ae73-4ba8-ab51-72bdcfdc7109", "name": "exp1", "status": "RUNNING", "status_info": None,
    "result": "undefined", "exit_code": None, "image": "local", "type": "interactive", "command": None,
    "resources": {"cpu": "1", "mem": "1073741824", "cuda.device": "0", "cuda.shares": "0.5"},
    "mounts": [{"source": "data", "target": "/home/work/data", "perm": "ro"}], "env": {"A": "1"},
    "runtime": "local", "sandbox": "bwrap",
    "allocation": {"devices": [0], "whole": [], "shares": {"0": "0.5"}},
    "created_at": "2026-01-02T03:04:05.000Z", "started_at": None, "terminated_at": None,
    "status_history": [{"status": "PENDING", "at": "2026-01-02T03:04:05.000Z", "info": None},
                       {"status": "RUNNING", "at": "2026-01-02T03:04:06.000Z", "info": "started"}],
    "idle_timeout": None, "max_lifetime": 3600,
}


def test_sessions_table_is_aligned_text_and_html() -> None:
    batch = {**SESSION, "name": "job-with-long-name", "id": "ffff0000", "status": "TERMINATED",
             "result": "failure", "exit_code": 2, "type": "batch",
             "resources": {"cpu": "2", "mem": "536870912", "cuda.device": "0", "cuda.shares": "0"}}
    r = render.sessions_table([SESSION, batch])
    lines = str(r).splitlines()
    assert lines[0].split() == ["NAME", "ID", "STATUS", "TYPE", "IMAGE", "RESOURCES", "RESULT", "CREATED"]
    assert lines[1].split()[:5] == ["exp1", "b827ccf2", "RUNNING", "interactive", "local"]
    assert "cpu=1 mem=1g cuda.shares=0.5" in lines[1]
    assert "cpu=2 mem=512m" in lines[2] and "failure (2)" in lines[2]
    assert lines[1].index("b827ccf2") == lines[2].index("ffff0000")  # columns line up
    html = r._repr_html_()
    assert "<table" in html and "bai-status-running" in html and "background:#2e7d32" in html
    assert render.sessions_table([]).text == "no sessions"


def test_session_detail_has_history_mounts_and_gpu() -> None:
    text = str(render.session_detail(SESSION))
    assert "mounts          data:/home/work/data:ro" in text
    assert "gpu allocation  GPU 0 x 0.5" in text
    assert "max lifetime    3600 s" in text
    assert text.splitlines()[-1].split()[0] == "RUNNING" and "started" in text.splitlines()[-1]
    assert "<script" not in render.session_detail({**SESSION, "name": "<script>"})._repr_html_()


def test_resources_view_bars_and_sizes() -> None:
    res = {
        "node": {"hostname": "vm", "cpu_count": 4, "mem_total": 8 << 30, "gpus": [{}, {}], "mps_available": False},
        "capacity": {"cpu": "4", "mem": str(8 << 30), "cuda.device": "2", "cuda.shares": "2"},
        "used": {"cpu": "1", "mem": str(2 << 30), "cuda.device": "0", "cuda.shares": "0.5"},
        "free": {"cpu": "3", "mem": str(6 << 30), "cuda.device": "2", "cuda.shares": "1.5"},
        "gpus": [{"index": 0, "name": "Fake GPU A", "memory": 16 << 30, "source": "fake",
                  "shares_used": "0.5", "shares_free": "0.5", "sessions": ["exp1"]}],
        "runtimes": [{"name": "local", "available": True, "sandbox": "bwrap", "notes": ["n1"]}],
        "pending": 1,
    }
    text = str(render.resources_view(res))
    assert "node vm: 4 CPUs, 8g memory, 2 GPUs" in text and "pending sessions: 1" in text
    cpu = next(line for line in text.splitlines() if line.startswith("cpu "))
    assert cpu.split()[:4] == ["cpu", "1", "3", "4"] and "25%" in cpu
    mem = next(line for line in text.splitlines() if line.startswith("mem "))
    assert mem.split()[:4] == ["mem", "2g", "6g", "8g"]
    gpu = next(line for line in text.splitlines() if line.startswith("0 "))
    assert "Fake GPU A" in gpu and "16g" in gpu and "50%" in gpu and "exp1" in gpu
    html = render.resources_view(res)._repr_html_()
    assert "width:25.0%" in html and "width:50.0%" in html


def test_vfolder_and_file_tables() -> None:
    v = {"id": "1", "name": "data", "usage_mode": "data", "permission": "ro", "quota": 10 << 20,
         "usage_bytes": 1536, "file_count": 2, "created_at": 0.0, "host": "local"}
    line = str(render.vfolders_table([v])).splitlines()[1].split()
    assert line[:6] == ["data", "data", "ro", "1.5k", "10m", "2"]
    files = [{"name": "sub", "path": "sub", "type": "dir", "size": 4096, "mtime": 0.0, "mode": "drwxr-xr-x"},
             {"name": "a.csv", "path": "sub2/a.csv", "type": "file", "size": 2048, "mtime": 0.0, "mode": "-rw-r--r--"}]
    rows = str(render.file_table(files)).splitlines()
    assert rows[1].split()[0:3] == ["drwxr-xr-x", "dir", "-"] and rows[1].endswith("sub/")
    assert rows[2].split()[2] == "2k" and rows[2].endswith("sub2/a.csv")
    assert str(render.file_table([])) == "no files"


# --------------------------------------------------------------------------- real engine


def _cli_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-bai")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_bai.cli"]


@pytest.fixture()
def bai(engine: Any, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI in a subprocess against the test engine; returns CompletedProcess."""
    env = {**os.environ, **engine.env, "PYTHONPATH": str(REPO)}

    def call(*args: str, input: str | None = None, check: bool = True,
             remote_traceback: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*_cli_cmd(), *args], env=env, cwd=tmp_path, input=input,
                              capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert "jupyter_bai/" not in proc.stderr, proc.stderr  # never a local traceback
        if not remote_traceback:
            assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return call


def test_cli_quickstart_flow(bai: Any, tmp_path: Path) -> None:
    tag = f"{os.getpid()}"
    folder, sess = f"cli{tag}", f"clis{tag}"
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")

    created = json.loads(bai("--json", "vfolder", "create", folder, "-m", "data").stdout)
    assert created["name"] == folder and created["usage_mode"] == "data"
    up = bai("vfolder", "upload", folder, "train.csv")
    assert "train.csv" in up.stdout and up.stdout.splitlines()[0].split()[0] == "MODE"
    assert "train.csv" in bai("vfolder", "files", folder).stdout
    assert any(v["name"] == folder for v in json.loads(bai("vfolder", "ls", "--json").stdout))

    out = bai("session", "create", "local", "-t", sess, "-r", "cpu=1", "-r", "mem=512m",
              "-v", f"{folder}:ro", "-e", "WHO=cli", "--wait").stdout
    assert "RUNNING" in out and f"{folder}:/home/work/{folder}:ro" in out
    info = json.loads(bai("session", "info", sess, "--json").stdout)
    for key in ("id", "name", "status", "result", "exit_code", "image", "resources", "mounts"):
        assert key in info
    assert info["status"] == "RUNNING" and info["resources"]["mem"] == str(512 << 20)

    ls = json.loads(bai("--json", "session", "ls", "--status", "RUNNING").stdout)
    assert sess in [s["name"] for s in ls]
    assert sess in bai("session", "ls").stdout

    listing = bai("session", "exec", sess, "--", "ls", f"/home/work/{folder}")
    assert listing.stdout.split() == ["train.csv"]
    assert bai("session", "exec", sess, "--", "sh", "-c", "echo $WHO; exit 7", check=False).returncode == 7
    ro = bai("session", "exec", sess, "--", "touch", f"/home/work/{folder}/x", check=False)
    assert ro.returncode != 0  # read-only mount
    ex = json.loads(bai("--json", "session", "exec", sess, "--", "sh", "-c", "echo out; echo err >&2").stdout)
    assert ex == {"exit_code": 0, "stdout": "out\n", "stderr": "err\n"}

    run1 = bai("session", "run", sess, "-", input=f"import os\nn = len(os.listdir('/home/work/{folder}'))\nprint('n =', n)\n")
    assert run1.stdout == "n = 1\n"
    (tmp_path / "step2.py").write_text("n + 41\n")
    assert bai("session", "run", sess, "step2.py").stdout == "42\n"
    err = bai("session", "run", sess, input="undefined_name\n", check=False, remote_traceback=True)
    assert err.returncode == 1 and "NameError" in err.stderr and err.stdout == ""

    assert bai("session", "logs", sess).stdout  # the agent's start line at least
    assert json.loads(bai("session", "logs", sess, "--tail", "5", "--json").stdout).keys() == {"logs"}

    dest = tmp_path / "back"
    got = bai("vfolder", "download", folder, "train.csv", "--dest", str(dest)).stdout
    assert (dest / "train.csv").read_text() == "a,b\n1,2\n" and "train.csv" in got
    assert bai("vfolder", "mkdir", folder, "x/y", "-p").returncode == 0
    assert bai("vfolder", "mv", folder, "train.csv", "x/y/t.csv").returncode == 0
    assert "x/y/t.csv" in bai("vfolder", "files", folder, "x/y").stdout

    # deleting a mounted folder is refused, in one line
    busy = bai("vfolder", "delete", folder, check=False)
    assert busy.returncode == 1 and "mounted" in _one_error_line(busy.stderr)

    gone = bai("session", "destroy", sess).stdout
    assert gone.startswith(f"session {sess}: TERMINAT")
    assert bai("vfolder", "rm", folder, "x", "-r").returncode == 0
    assert bai("vfolder", "delete", folder).stdout.strip() == f"vfolder {folder} deleted"


def test_cli_batch_wait(bai: Any) -> None:
    name = f"clib{os.getpid()}"
    proc = bai("session", "create", "local", "-t", name, "--type", "batch",
               "-c", "echo done; exit 3", "--wait", "--json", check=False)
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "TERMINATED" and out["result"] == "failure" and out["exit_code"] == 3
    assert "done" in bai("session", "logs", name).stdout
    ok = bai("session", "create", "local", "--type", "batch", "-c", "echo fine", "--wait")
    assert ok.returncode == 0 and ok.stdout == "fine\n"
    assert re.fullmatch(r"session \S+: TERMINATED \(exit code 0\)\n", ok.stderr)


def _wait_for_go(folder: str) -> str:
    """A batch job that prints, then waits (bounded) for a file the test uploads on seeing it."""
    return (f"echo first; for i in $(seq 1200); do [ -e /home/work/{folder}/go ] && break; sleep 0.05; done; "
            f"[ -e /home/work/{folder}/go ] && echo second || echo never; exit 5")


def test_cli_batch_wait_streams_output_live_and_exits_with_its_code(
    bai: Any, engine: Any, client: Any, tmp_path: Path
) -> None:
    folder, name = f"live{os.getpid()}", f"livej{os.getpid()}"
    client.create_vfolder(folder)
    (tmp_path / "go").write_text("")
    env = {**os.environ, **engine.env, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [*_cli_cmd(), "session", "create", "local", "-t", name, "--type", "batch", "-v", folder,
         "-c", _wait_for_go(folder), "--wait"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"  # printed while the job still runs
        client.upload(folder, [tmp_path / "go"])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    assert out == "second\n"
    assert err.strip().splitlines()[-1] == f"session {name}: TERMINATED (exit code 5)"
    client.delete_vfolder(folder)


def test_cli_wait_exits_1_when_the_session_is_cancelled(engine: Any, client: Any, tmp_path: Path) -> None:
    cpus = client.resources()["capacity"]["cpu"]
    hog, name = f"hog{os.getpid()}", f"cancelled{os.getpid()}"
    client.create_session("local", name=hog, resources={"cpu": cpus, "mem": "64m"}, wait=True, timeout=60)
    env = {**os.environ, **engine.env, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.Popen(
            [*_cli_cmd(), "session", "create", "local", "-t", name, "-r", "cpu=1", "-r", "mem=64m", "--wait"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60  # a bound on a broken run, not a speed check
        while name not in [x["name"] for x in client.list_sessions()] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get_session(name)["status"] == "PENDING"
        client.destroy_session(name)
        out, err = proc.communicate(timeout=120)
    finally:
        client.destroy_session(hog, forced=True)
    assert client.get_session(name)["status"] == "CANCELLED"
    assert proc.returncode == 1, (out, err)
    assert _one_error_line(err).startswith(f"error: session {name} ended CANCELLED")


def test_upload_to_a_missing_folder_fails_before_any_progress(engine: Any, tmp_path: Path) -> None:
    """stderr is a terminal here, so a progress bar would be drawn if the upload started."""
    import pty

    (tmp_path / "big.bin").write_bytes(os.urandom(1 << 20))
    master, slave = pty.openpty()
    env = {**os.environ, **engine.env, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([*_cli_cmd(), "vfolder", "upload", "no-such-folder-u", "big.bin"], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert proc.returncode == 1 and proc.stdout == ""
    raw = err.decode()
    assert raw.startswith("error: ") and raw.count("\n") == 1, raw  # nothing before it: no bar
    assert "no-such-folder-u" in _one_error_line(raw.replace("\r\n", "\n"))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("session", "info", "no-such-session-q"), "no-such-session-q"),
        (("session", "create", "local", "-v", "a:b:c:d"), "mount"),
        (("session", "create", "local", "-v", "missing-folder-q"), "missing-folder-q"),
        (("session", "create", "local", "-r", "cpu=100000"), "larger than this whole node"),
        (("session", "create", "local", "-r", "mem=lots"), "mem"),
        (("session", "create", "local", "-t", "bad name!"), "name"),
        (("vfolder", "create", "../x"), "invalid vfolder name"),
        (("vfolder", "files", "no-such-folder-q"), "no-such-folder-q"),
        (("vfolder", "delete", "no-such-folder-q"), "no-such-folder-q"),
        (("vfolder", "create", "q", "--quota", "-5"), "quota"),
    ],
)
def test_cli_user_errors_are_one_line(bai: Any, args: tuple[str, ...], fragment: str) -> None:
    proc = bai(*args, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert fragment in _one_error_line(proc.stderr)
    assert proc.stdout == ""


def test_cli_duplicate_names_and_escapes(bai: Any, tmp_path: Path) -> None:
    folder = f"dup{os.getpid()}"
    bai("vfolder", "create", folder)
    try:
        dup = bai("vfolder", "create", folder, check=False)
        assert dup.returncode == 1 and folder in _one_error_line(dup.stderr)
        esc = bai("vfolder", "files", folder, "../../etc", check=False)
        assert esc.returncode == 1 and _one_error_line(esc.stderr)
        (tmp_path / "f").write_text("x")
        esc_up = bai("vfolder", "upload", folder, "f", "-d", "../..", check=False)
        assert esc_up.returncode == 1 and _one_error_line(esc_up.stderr)
        bad_mount = bai("session", "create", "local", "-v", folder, "-v", folder, check=False)
        assert bad_mount.returncode == 1 and _one_error_line(bad_mount.stderr)
    finally:
        bai("vfolder", "delete", folder)


def test_resources_table(bai: Any) -> None:
    out = bai("resources").stdout
    assert out.startswith("engine local (local, ") and out.splitlines()[1].startswith("node ")
    assert "SLOT" in out and "cuda.shares" in out
    assert "Fake GPU A" in out  # the fixture's fake GPUs
    res = json.loads(bai("resources", "--json").stdout)
    assert {"node", "capacity", "used", "free", "gpus", "runtimes", "pending"} <= res.keys()


@pytest.mark.skipif(shutil.which("jupyter") is None and not Path(sys.executable).with_name("jupyter").exists(),
                    reason="jupyter launcher not installed")
def test_jupyter_bai_subcommand(engine: Any) -> None:
    exe = Path(sys.executable).with_name("jupyter-bai")
    if not exe.exists():
        pytest.skip("jupyter-bai entry point not installed (package not pip-installed)")
    jupyter = Path(sys.executable).with_name("jupyter")
    env = {**os.environ, **engine.env, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(jupyter), "bai", "--json", "session", "ls"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)


def test_serve_refuses_a_token_in_argv(no_engine: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(["serve", "--token", "s3cret"]) == 1
    assert "JUPYTER_BAI_TOKEN" in _one_error_line(capsys.readouterr().err)
    loose = tmp_path / "tok"
    loose.write_text("s3cret\n")
    loose.chmod(0o644)
    assert run(["serve", "--token-file", str(loose)]) == 1
    assert "chmod 600" in _one_error_line(capsys.readouterr().err)


