"""kill -9 the engine while sessions run; a restarted engine loses nothing."""
from __future__ import annotations

import os
import time
from pathlib import Path

from engine_proc import Api, EngineProcess, free_port


def agent_processes(state_dir: Path) -> list[int]:
    """Host pids of in-session agents started from this state directory."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"bai-session" == c for c in cmd) and any(str(state_dir).encode() in c for c in cmd):
            pids.append(int(entry))
    return pids


def test_kill9_and_restart_readopts_sessions(fresh_engine: EngineProcess, tmp_path: Path) -> None:
    api = Api(fresh_engine)
    api.post("/vfolders", json={"name": "keep"})
    api.put("/vfolders/keep/files", params={"path": "a.txt"}, content=b"kept")
    api.create(name="inter", resources={"cpu": "0.5", "mem": "128m"})
    api.wait("inter")
    api.run("inter", "counter = 10")
    api.create(name="done", type="batch", command="exit 0", resources={"cpu": "0.25"})
    api.wait("done", ())
    api.create(name="slow", type="batch", command="sleep 2; echo finished-while-down",
               resources={"cpu": "0.25"})
    api.create(name="later", type="batch", command="exit 4", resources={"cpu": "0.25"})
    api.wait("slow")
    api.wait("later", ())
    wrappers_before = agent_processes(fresh_engine.state_dir)
    assert len(wrappers_before) == 2  # inter + slow

    fresh_engine.kill9()
    time.sleep(3)  # "slow" finishes while no engine is watching
    fresh_engine.port = free_port()
    fresh_engine.start()
    api = Api(fresh_engine)

    sessions = {s["name"]: s for s in api.get("/sessions").json()["sessions"]}
    assert sessions["inter"]["status"] == "RUNNING"
    assert (sessions["done"]["status"], sessions["done"]["result"]) == ("TERMINATED", "success")
    assert (sessions["later"]["result"], sessions["later"]["exit_code"]) == ("failure", 4)
    slow = api.wait("slow", ())
    assert (slow["status"], slow["result"], slow["exit_code"]) == ("TERMINATED", "success", 0)
    assert "finished-while-down" in api.get("/sessions/slow/logs").json()["logs"]
    # Re-adopted, not restarted: the same interpreter still holds the variable.
    text, _ = api.run("inter", "print(counter + 1)")
    assert text == "11\n"
    assert agent_processes(fresh_engine.state_dir) == [p for p in wrappers_before
                                                       if p in agent_processes(fresh_engine.state_dir)]
    assert len(agent_processes(fresh_engine.state_dir)) == 1
    assert len([s for s in api.get("/sessions").json()["sessions"] if s["name"] == "inter"]) == 1
    assert api.get("/vfolders/keep/download", params={"path": "a.txt"}).content == b"kept"
    assert api.delete("/sessions/inter").json()["status"] == "TERMINATED"
    assert agent_processes(fresh_engine.state_dir) == []


def test_destroy_while_engine_down_is_not_possible_but_lost_process_is_error(
    fresh_engine: EngineProcess,
) -> None:
    """A session whose process vanished while the engine was down ends as ERROR, not RUNNING."""
    api = Api(fresh_engine)
    api.create(name="victim", resources={"cpu": "0.5", "mem": "128m"})
    api.wait("victim")
    pids = agent_processes(fresh_engine.state_dir)
    fresh_engine.kill9()
    for pid in pids:
        os.killpg(pid, 9)
    time.sleep(0.5)
    fresh_engine.port = free_port()
    fresh_engine.start()
    api = Api(fresh_engine)
    s = api.wait("victim", ())
    assert s["status"] in ("ERROR", "TERMINATED")
    assert s["status"] != "RUNNING"
    # Its resources are free again.
    assert api.get("/resources").json()["used"]["cpu"] == "0"


def test_second_engine_on_same_state_dir_is_refused(fresh_engine: EngineProcess, tmp_path: Path) -> None:
    other = EngineProcess(state_dir=fresh_engine.state_dir, runtime_dir=tmp_path / "rt2",
                          port=free_port(), token="t2")
    other.start(expect_status=503)
    try:
        r = Api(other).get("/resources")
        assert r.status_code == 503 and "already uses" in r.json()["message"]
    finally:
        other.stop()
