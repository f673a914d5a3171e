"""FIFO waiting, idle timeout, max lifetime, events, connection file and the no-sandbox fallback."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from engine_proc import Api, EngineProcess, start_engine


@pytest.fixture()
def quick_engine(tmp_path: Path, bwrap: str) -> Iterator[EngineProcess]:
    """An engine with fast idle checks and a short stop grace."""
    eng = start_engine(tmp_path / "eng", extra_argv=[
        "--BaiApp.checker_interval=0.2", "--BaiApp.stop_grace=1", "--BaiApp.default_cpu=0.5",
        "--BaiApp.default_mem=128m"])
    yield eng
    eng.teardown()


def test_request_that_fits_later_waits_pending_in_fifo_order(quick_engine: EngineProcess) -> None:
    api = Api(quick_engine)
    cpus = api.get("/resources").json()["capacity"]["cpu"]
    api.create(name="hog", resources={"cpu": cpus})
    api.wait("hog")
    api.create(name="first", type="batch", command="true", resources={"cpu": "1"})
    api.create(name="second", type="batch", command="true", resources={"cpu": "0.5"})
    time.sleep(0.5)
    assert api.get("/sessions/first").json()["status"] == "PENDING"
    assert api.get("/sessions/second").json()["status"] == "PENDING"
    assert api.get("/resources").json()["pending"] == 2
    api.delete("/sessions/hog")
    first, second = api.wait("first", ()), api.wait("second", ())
    assert first["result"] == second["result"] == "success"
    def scheduled_at(s: dict) -> str:  # type: ignore[type-arg]
        return next(h["at"] for h in s["status_history"] if h["status"] == "SCHEDULED")

    assert scheduled_at(first) <= scheduled_at(second)
    # A pending session can be cancelled.
    api.create(name="hog2", resources={"cpu": cpus})
    api.wait("hog2")
    api.create(name="never", type="batch", command="true", resources={"cpu": "1"})
    assert api.delete("/sessions/never").json()["status"] == "CANCELLED"
    api.delete("/sessions/hog2")


def test_idle_timeout_and_max_lifetime_end_sessions(quick_engine: EngineProcess) -> None:
    api = Api(quick_engine)
    api.create(name="idle", idle_timeout=1.0)
    api.create(name="busy", idle_timeout=1.0)
    api.create(name="short", type="batch", command="sleep 60", max_lifetime=1.0)
    api.wait("idle"), api.wait("busy")
    # A cell that runs longer than the idle timeout keeps the session alive.
    text, _ = api.run("busy", "import time; time.sleep(2); print('still here')")
    assert text == "still here\n"
    idle = api.wait("idle", (), timeout=30)
    assert (idle["status"], idle["status_info"]) == ("TERMINATED", "idle-timeout")
    short = api.wait("short", (), timeout=30)
    assert (short["status"], short["status_info"], short["result"]) == (
        "TERMINATED", "max-lifetime-exceeded", "failure")
    assert api.wait("busy", (), timeout=30)["status_info"] == "idle-timeout"


def test_events_stream_reports_each_status(quick_engine: EngineProcess) -> None:
    api = Api(quick_engine)
    seen: list[dict] = []  # type: ignore[type-arg]
    connected = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{quick_engine.url}/bai/api/v1/events",
                          headers={"Authorization": f"token {quick_engine.token}"},
                          timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                connected.set()
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1].get("status") == "TERMINATED":
                        return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert connected.wait(10)
    api.create(name="evt", type="batch", command="true")
    t.join(30)
    statuses = [e["status"] for e in seen if e.get("name") == "evt"]
    assert statuses == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATED"]
    # A reconnecting client replays what it missed.
    r = httpx.get(f"{quick_engine.url}/bai/api/v1/sessions/evt",
                  headers={"Authorization": f"token {quick_engine.token}"})
    assert r.json()["status"] == "TERMINATED"


def test_connection_file_and_state_dir(quick_engine: EngineProcess) -> None:
    conn = quick_engine.connection_file()
    assert conn["url"] == quick_engine.url and conn["token"] == quick_engine.token
    assert os.stat(quick_engine.runtime_dir / "bai-engine.json").st_mode & 0o077 == 0
    assert (quick_engine.state_dir / "engine.db").exists()
    quick_engine.stop()
    assert not (quick_engine.runtime_dir / "bai-engine.json").exists()


def test_default_state_dir_honours_jupyter_data_dir(tmp_path: Path, bwrap: str) -> None:
    data = tmp_path / "jdata"
    eng = EngineProcess(state_dir=tmp_path / "unused", runtime_dir=tmp_path / "rt", port=0, token="t")
    eng.extra_env = {"JUPYTER_DATA_DIR": str(data)}
    from engine_proc import free_port

    eng.port = free_port()
    # serve() with no state dir: the engine picks jupyter_data_dir()/bai.
    import subprocess
    import sys

    eng.runtime_dir.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from jupyter_bai.api.serve import serve; "
         f"serve(None, {eng.port}, '127.0.0.1')"],
        env={**os.environ, "JUPYTER_DATA_DIR": str(data), "JUPYTER_RUNTIME_DIR": str(eng.runtime_dir),
             "JUPYTER_BAI_TOKEN": "t"},  # never on the command line
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (eng.runtime_dir / "bai-engine.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        conn = json.loads((eng.runtime_dir / "bai-engine.json").read_text())
        assert conn["state_dir"] == str(data / "bai")
        assert (data / "bai" / "engine.db").exists()
    finally:
        proc.terminate()
        proc.wait(20)


def test_plain_process_fallback_says_what_it_cannot_enforce(tmp_path: Path) -> None:
    # Without a sandbox a root engine's sessions run as an ordinary user (1000), which sees
    # host permissions: the state directory must be reachable (pytest's tmp dirs are 0700).
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bai-plain-"))
    base.chmod(0o755)
    eng = start_engine(base / "plain", extra_env={"JUPYTER_BAI_SANDBOX": "none"})
    try:
        api = Api(eng)
        runtime = api.get("/resources").json()["runtimes"][0]
        assert runtime["sandbox"] == "none"
        assert any("read-only mounts are off" in n for n in runtime["notes"])
        api.post("/vfolders", json={"name": "d"})
        api.put("/vfolders/d/files", params={"path": "f.txt"}, content=b"hi")
        api.create(name="p", type="batch", mounts=["d:ro"],
                   command='cat "$BAI_ROOT/home/work/d/f.txt"; echo " $BACKENDAI_SESSION_NAME"')
        s = api.wait("p", ())
        assert s["result"] == "success" and s["sandbox"] == "none"
        assert "hi p" in api.get("/sessions/p/logs").json()["logs"]
        api.create(name="pi")
        api.wait("pi")
        text, _ = api.run("pi", "import os; print(open('d/f.txt').read() if os.path.exists('d') else 'nomount')")
        text2, _ = api.run("pi", "print(os.path.exists(os.environ['BAI_ROOT']))")
        assert text2 == "True\n"
        api.delete("/sessions/pi")
    finally:
        eng.stop()
        shutil.rmtree(base, ignore_errors=True)
