"""``%bai`` / ``%%bai run``: same verbs as the CLI, notebook output, one-line errors."""
from __future__ import annotations

import io
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyter_bai.spec.models import SessionInfo
from IPython.utils.capture import CapturedIO, capture_output

from jupyter_bai.magics import BaiMagics, RemoteResult


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_bai")
    return shell


@pytest.fixture()
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))
    monkeypatch.delenv("JUPYTER_BAI_URL", raising=False)
    monkeypatch.delenv("JUPYTER_BAI_TOKEN", raising=False)


def line(ip: InteractiveShell, text: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        value = ip.run_line_magic("bai", text)
    return value, cap


def cell(ip: InteractiveShell, head: str, body: str) -> tuple[Any, CapturedIO]:
    with capture_output() as cap:
        value = ip.run_cell_magic("bai", head, body)
    return value, cap


def error_line(cap: CapturedIO) -> str:
    lines = cap.stderr.strip().splitlines()
    assert len(lines) == 1, cap.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in cap.stderr
    return lines[0]


# --------------------------------------------------------------------------- no engine needed


def test_extension_registers_line_and_cell_magic(ip: InteractiveShell) -> None:
    magics = ip.magics_manager.magics
    assert "bai" in magics["line"] and "bai" in magics["cell"]
    assert isinstance(magics["line"]["bai"].__self__, BaiMagics)


def test_help(ip: InteractiveShell, no_engine: None) -> None:
    value, cap = line(ip, "--help")
    assert value is None and "Usage: %bai" in cap.stdout and "vfolder" in cap.stdout
    value, cap = line(ip, "session --help")
    assert "Usage: %bai session" in cap.stdout and "destroy" in cap.stdout and value is None
    value, cap = line(ip, "")
    assert "Usage: %bai" in cap.stdout and value is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sesion ls", "No such command 'sesion'. Did you mean 'session'? (see '%bai --help')"),
        ("session create", "Missing argument 'IMAGE'. (see '%bai session create --help')"),
        ("session create local --type x", "(see '%bai session create --help')"),
        ("session ls 'unclosed", "No closing quotation (see '%bai --help')"),
        ("session run s", "use a %%bai run SESSION cell"),
        ("serve", "server extension already hosts one"),
    ],
)
def test_bad_usage_is_one_line_with_hint(ip: InteractiveShell, no_engine: None, text: str, fragment: str) -> None:
    value, cap = line(ip, text)
    assert value is None
    assert fragment in error_line(cap)


def test_no_engine_is_one_line(ip: InteractiveShell, no_engine: None) -> None:
    value, cap = line(ip, "resources")
    assert value is None
    assert error_line(cap).startswith("error: no jupyter-bai engine is running")
    value, cap = cell(ip, "run s1", "print(1)")
    assert value is None and "no jupyter-bai engine" in error_line(cap)


@pytest.mark.parametrize("head", ["", "run", "run a b", "chatty s1"])
def test_bad_cell_usage(ip: InteractiveShell, no_engine: None, head: str) -> None:
    value, cap = cell(ip, head, "print(1)")
    assert value is None and "%%bai run SESSION" in error_line(cap)


def test_remote_result_reprs_as_its_text() -> None:
    assert repr(RemoteResult("{'a': 1}")) == "{'a': 1}"


# --------------------------------------------------------------------------- real engine


@pytest.fixture()
def live(ip: InteractiveShell, engine_env: dict[str, str]) -> Iterator[InteractiveShell]:
    yield ip


def test_notebook_quickstart(live: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ip = live
    tag = os.getpid()
    folder, sess = f"nb{tag}", f"nbs{tag}"
    monkeypatch.chdir(tmp_path)
    Path("train.csv").write_text("a,b\n1,2\n")

    value, cap = line(ip, "resources")
    assert value is None and cap.stderr == ""
    html = cap.outputs[0].data["text/html"]
    assert "bai-resources" in html and "Fake GPU A" in html and "width:" in html

    value, cap = line(ip, f"vfolder create {folder} -m data")
    assert value is None and folder in cap.outputs[0].data["text/html"]
    value, cap = line(ip, f"vfolder upload {folder} ./train.csv")
    assert value is None and "train.csv" in cap.outputs[-1].data["text/html"]

    value, cap = line(ip, f"session create local -t {sess} -r cpu=1 -r mem=512m -v {folder}:ro --wait")
    assert value is None and cap.stderr == ""
    html = cap.outputs[-1].data["text/html"]
    assert "bai-status-running" in html and f"/home/work/{folder}" in html

    info = line(ip, f"--json session info {sess}")[0]
    assert isinstance(info, SessionInfo) and info["status"] == "RUNNING" and info["name"] == sess
    assert sess in [s["name"] for s in line(ip, "session ls --json")[0]]
    value, cap = line(ip, "session ls")
    assert value is None and "bai-status-running" in cap.outputs[0].data["text/html"]

    value, cap = cell(ip, f"run {sess}", f"import os\nprint(os.listdir('/home/work/{folder}'))\n")
    assert value is None and cap.stdout == "['train.csv']\n"

    value, cap = cell(ip, f"run {sess}", "counter = 41\nimport sys\nprint('to err', file=sys.stderr)\n")
    assert value is None and cap.stderr == "to err\n"
    value, cap = cell(ip, f"run {sess}", "counter += 1\ncounter\n")
    assert isinstance(value, RemoteResult) and repr(value) == "42"

    value, cap = cell(ip, f"run {sess}", "def f():\n    raise ValueError('boom')\nf()\n")
    assert value is None
    assert "\x1b[31m" in cap.stderr and "ValueError: boom" in cap.stderr
    assert "jupyter_bai" not in cap.stderr  # remote frames only

    value, cap = line(ip, f"session exec {sess} -- ls /home/work/{folder}")
    assert value is None and cap.stdout == "train.csv\n"

    value, cap = line(ip, f"session logs {sess}")
    assert value is None and cap.stdout  # printed as text

    value, cap = line(ip, f"session info no-such-{tag}")
    assert value is None and f"no-such-{tag}" in error_line(cap)
    value, cap = line(ip, f"vfolder create {folder}")
    assert value is None and folder in error_line(cap)

    value, cap = line(ip, f"session destroy {sess}")
    assert value is None and f"session {sess}: TERMINAT" in cap.outputs[0].data["text/plain"]
    value, cap = cell(ip, f"run {sess}", "1")
    assert value is None and error_line(cap)
    line(ip, f"vfolder delete {folder}")


def test_ctrl_c_interrupts_remote_code(live: InteractiveShell) -> None:
    ip = live
    sess = f"nbint{os.getpid()}"
    line(ip, f"session create local -t {sess} --wait")
    try:
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        value, cap = cell(ip, f"run {sess}", "import time\nprint('start', flush=True)\ntime.sleep(60)\n")
        assert time.monotonic() - t0 < 30
        assert value is None
        assert cap.stdout == "start\n"
        assert "KeyboardInterrupt" in cap.stderr
        # the interpreter survives the interrupt
        assert repr(cell(ip, f"run {sess}", "'alive'")[0]) == "'alive'"
    finally:
        line(ip, f"session destroy {sess} --forced")


class _GoOnFirst(io.StringIO):
    """A cell's stdout that uploads the job's 'go' file as soon as the job's first line shows."""

    def __init__(self, client: Any, folder: str, go: Path) -> None:
        super().__init__()
        self.client, self.folder, self.go, self.sent = client, folder, go, False

    def write(self, text: str) -> int:
        n = super().write(text)
        if not self.sent and "first\n" in self.getvalue():
            self.sent = True
            self.client.upload(self.folder, [self.go])
        return n


def test_batch_wait_shows_the_jobs_output_live(live: InteractiveShell, client: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The job waits for a file the cell's output sends only once 'first' has been shown."""
    ip = live
    folder, job = f"nblive{os.getpid()}", f"nblivej{os.getpid()}"
    client.create_vfolder(folder)
    (tmp_path / "go").write_text("")
    command = (f"echo first; for i in $(seq 1200); do [ -e /home/work/{folder}/go ] && break; sleep 0.05; done; "
               f"[ -e /home/work/{folder}/go ] && echo second || echo never; exit 4")
    out = _GoOnFirst(client, folder, tmp_path / "go")
    try:
        with capture_output() as cap:
            monkeypatch.setattr(sys, "stdout", out)
            value = ip.run_line_magic(
                "bai", f"session create local -t {job} --type batch -v {folder} -c {shlex.quote(command)} --wait")
            monkeypatch.undo()
        assert value is None and out.getvalue() == "first\nsecond\n"
        html = cap.outputs[-1].data["text/html"]  # then the status table
        assert "bai-status-terminated" in html and "failure" in html and "(4)" in html
    finally:
        client.delete_vfolder(folder)


def test_upload_to_a_missing_folder_shows_only_the_error(live: InteractiveShell, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_bai import cli

    drawn: list[tuple[int, int]] = []
    bar_call = cli._TransferBar.__call__
    monkeypatch.setattr(cli._TransferBar, "__call__",
                        lambda self, done, total, label: (drawn.append((done, total)), bar_call(self, done, total, label)))
    monkeypatch.chdir(tmp_path)
    Path("data.bin").write_bytes(os.urandom(1 << 20))
    value, cap = line(live, "vfolder upload no-such-folder-m data.bin")
    assert drawn == [] and value is None and cap.outputs == [] and cap.stdout == ""  # no progress bar
    assert "no-such-folder-m" in error_line(cap)
