"""The backend seam: the Client and the CLI work unchanged over a second Driver.

``EngineDriver`` drives a real Engine in this process (real SQLite, bubblewrap sessions, no
HTTP server at all), the way the Backend.AI cluster driver will drive a cluster.
"""
from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_bai.cli import BaiContext, run
from jupyter_bai.client import Client, Driver, HttpDriver
from jupyter_bai.client.inprocess import EngineDriver
from jupyter_bai.spec.errors import NotFound
from jupyter_bai.spec.models import SessionInfo


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[Client]:
    state = tmp_path_factory.mktemp("inproc") / "state"
    c = Client(driver=EngineDriver.starting(state, docker=False, stop_grace=1.0))
    yield c
    c.close()


def test_the_driver_interface_is_documented_and_both_drivers_implement_it() -> None:
    abstract = sorted(Driver.__abstractmethods__)
    assert abstract == sorted([  # changing the seam is deliberate: every backend must follow
        "resources", "list_images",
        "create_session", "list_sessions", "get_session", "destroy_session", "session_logs",
        "follow_logs", "exec_stream", "run_stream", "interrupt",
        "create_vfolder", "list_vfolders", "get_vfolder", "delete_vfolder", "list_files",
        "upload_file", "download_file", "mkdir", "move", "rm",
        "events",
    ])
    for name in abstract:
        assert inspect.getdoc(getattr(Driver, name)), name
    for cls in (HttpDriver, EngineDriver):
        assert not cls.__abstractmethods__, cls
        for name in abstract:
            impl, spec = getattr(cls, name), getattr(Driver, name)
            assert list(inspect.signature(impl).parameters) == list(inspect.signature(spec).parameters), (cls, name)


def test_client_over_an_engine_in_this_process(inproc: Client, tmp_path: Path) -> None:
    assert inproc.connection is None and "engine in this process" in repr(inproc)
    folder, sess, job = "seamdata", "seam1", "seamjob"
    (tmp_path / "in.txt").write_text("hello seam\n")
    inproc.create_vfolder(folder, usage_mode="data")
    ticks: list[tuple[int, int, str]] = []
    entries = inproc.upload(folder, [tmp_path / "in.txt"], "d", progress=lambda *a: ticks.append(a))
    assert [e.path for e in entries] == ["d/in.txt"] and ticks[-1][:2] == (11, 11)
    assert [f["name"] for f in inproc.list_files(folder, "d")] == ["in.txt"]
    with pytest.raises(NotFound):
        inproc.upload("no-such-folder", [tmp_path / "in.txt"])

    info = inproc.create_session("local", name=sess, mounts=[f"{folder}:ro"], wait=True, timeout=60)
    assert isinstance(info, SessionInfo) and info.status == "RUNNING"
    out: list[str] = []
    assert inproc.exec(sess, f"cat /home/work/{folder}/d/in.txt; exit 4", on_output=lambda s, t: out.append(t)) == 4
    assert "".join(out) == "hello seam\n"
    inproc.run_code(sess, "x = 20", on_output=lambda s, t: None)
    assert inproc.run_code(sess, "x * 2", on_output=lambda s, t: None)["result"] == "40"

    done = inproc.create_session("local", name=job, type="batch", command="echo one; echo two >&2; exit 3",
                                 wait=True, timeout=60)
    assert (done.status, done.result, done.exit_code) == ("TERMINATED", "failure", 3)
    assert "".join(inproc.follow_logs(job)).split() == ["one", "two"]

    kinds = []
    for event in inproc.events(since=0):
        kinds.append((event.kind, event.name))
        if (event.kind, event.name) == ("session", job) and event.status == "TERMINATED":
            break
    assert ("vfolder", folder) in kinds and ("session", sess) in kinds

    got = inproc.download(folder, "d/in.txt", tmp_path / "out")
    assert [p.read_text() for p in got] == ["hello seam\n"]
    assert inproc.destroy_session(sess)["status"] in ("TERMINATING", "TERMINATED")
    inproc.wait_session(sess, {"TERMINATED"}, timeout=60)
    inproc.delete_vfolder(folder)
    assert folder not in [v.name for v in inproc.list_vfolders()]


def test_the_cli_over_an_engine_in_this_process(inproc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv), bai=BaiContext(client_factory=lambda: inproc))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = cli("session", "create", "local", "-t", "seamcli", "--type", "batch",
                         "-c", "echo from-the-seam; exit 6", "--wait")
    assert (code, out) == (6, "from-the-seam\n") and "TERMINATED (exit code 6)" in err
    code, out, _ = cli("--json", "session", "info", "seamcli")
    assert code == 0 and json.loads(out)["exit_code"] == 6
    code, out, _ = cli("session", "create", "local", "-t", "seamexec", "--wait")
    assert code == 0 and "RUNNING" in out
    code, out, _ = cli("session", "exec", "seamexec", "--", "sh", "-c", "echo $((6*7)); exit 9")
    assert (code, out) == (9, "42\n")
    code, _, err = cli("vfolder", "upload", "nope-folder", os.devnull)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    code, _, _ = cli("session", "destroy", "seamexec", "--forced")
    assert code == 0
