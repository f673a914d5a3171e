"""Nothing leaks: 200 create/destroy cycles on each runtime leave no cgroup directory,
container, socket or process of THIS engine behind (other engines share the machine, so
everything is counted by this engine's id, state directory and process only).
"""
from __future__ import annotations

import glob
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import docker_image
from engine_proc import Api, EngineProcess, start_engine
from test_docker import LABEL, dclient, images  # noqa: F401 - shared session fixtures

CYCLES = 200
PARALLEL = 4
TERMINAL = ("TERMINATED", "CANCELLED", "ERROR")


@pytest.fixture()
def leng(tmp_path: Path, bwrap: str, dclient: Any, images: dict[str, str]) -> Iterator[EngineProcess]:  # noqa: F811
    eng = start_engine(tmp_path / "eng",
                       {"JUPYTER_BAI_DOCKER_BINDS": ",".join(docker_image.HOST_BINDS)})
    yield eng
    eng.teardown()
    for c in containers(dclient, eng):
        c.remove(force=True)


def engine_id(eng: EngineProcess) -> str:
    from jupyter_bai.engine.runtimes.base import engine_id as eid

    return eid(eng.state_dir)


def cgroup_dirs(eng: EngineProcess) -> list[str]:
    """This engine's session cgroups (under every hierarchy)."""
    return [p for p in glob.glob(f"/sys/fs/cgroup/**/jupyter-bai/{engine_id(eng)}/*", recursive=True)
            if os.path.isdir(p)]


def containers(dclient: Any, eng: EngineProcess) -> list[Any]:  # noqa: F811
    return dclient.containers.list(all=True, filters={"label": f"{LABEL}engine={engine_id(eng)}"})


def engine_sockets(eng: EngineProcess) -> int:
    pid = eng.proc.pid
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def session_processes(eng: EngineProcess) -> list[int]:
    """Processes (other than the engine) whose command line names this engine's sessions."""
    needle = str(eng.state_dir / "sessions").encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == eng.proc.pid:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    """Cleanup after a stop may finish a moment later (a cgroup waits for its last task)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if not value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} left behind: {value}")
        time.sleep(0.2)


def cycle(api: Api, i: int, image: str, prefix: str) -> dict:  # type: ignore[type-arg]
    """One create/destroy: every 20th is interactive and destroyed once RUNNING, the rest
    are batch ``true`` destroyed at once (often while their start is in flight)."""
    name = f"{prefix}{i}"
    if i % 20 == 0:
        api.create(image=image, name=name, resources={"cpu": "0.1", "mem": "128m"})
        assert api.wait(name)["status"] == "RUNNING"
    else:
        api.create(image=image, name=name, type="batch", command="true",
                   resources={"cpu": "0.1", "mem": "96m"})
    r = api.delete(f"/sessions/{name}")
    if r.status_code == 409:  # the batch command already finished: nothing to destroy
        assert "already" in r.json()["message"]
    else:
        assert r.status_code == 200, r.text
    return api.wait(name, (), timeout=120)


def run_cycles(api: Api, image: str, prefix: str, n: int) -> list[dict]:  # type: ignore[type-arg]
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda i: cycle(api, i, image, prefix), range(n)))


def check_no_leaks(eng: EngineProcess, dclient: Any, before_sockets: int) -> None:  # noqa: F811
    eventually(lambda: cgroup_dirs(eng), "cgroup directories")
    eventually(lambda: containers(dclient, eng), "containers")
    eventually(lambda: session_processes(eng), "session processes")
    # A leak is one socket per session (hundreds); the shared client's small pool, the
    # event stream and the test's own keep-alive connections account for a few.
    assert engine_sockets(eng) - before_sockets < 20, (engine_sockets(eng), before_sockets)


@pytest.mark.parametrize("runtime", ["local", "docker"])
def test_200_create_destroy_cycles_leave_nothing(
    leng: EngineProcess, dclient: Any, images: dict[str, str], runtime: str  # noqa: F811
) -> None:
    api = Api(leng)
    image = "local" if runtime == "local" else images["image"]
    run_cycles(api, image, "warm", PARALLEL * 2)  # the pools and the event stream exist now
    eventually(lambda: containers(dclient, leng), "containers")
    before = engine_sockets(leng)
    ended = run_cycles(api, image, "c", CYCLES)
    assert {s["status"] for s in ended} <= {"TERMINATED", "CANCELLED"}, \
        [(s["name"], s["status"], s["status_info"]) for s in ended if s["status"] not in TERMINAL[:2]]
    assert all(s["status"] in TERMINAL for s in api.get("/sessions").json()["sessions"])
    check_no_leaks(leng, dclient, before)


def test_destroy_right_after_create_stops_the_container(
    leng: EngineProcess, dclient: Any, images: dict[str, str]  # noqa: F811
) -> None:
    """The race of issue 8: a destroy while the container is being created."""
    api = Api(leng)
    for i in range(5):
        s = api.create(image=images["image"], name=f"race{i}", resources={"cpu": "0.1", "mem": "128m"})
        assert api.delete(f"/sessions/race{i}").status_code == 200
        done = api.wait(f"race{i}", (), timeout=60)
        assert done["status"] in ("TERMINATED", "CANCELLED"), done
        found = dclient.containers.list(all=True, filters={"label": f"{LABEL}session-id={s['id']}"})
        assert not [c for c in found if c.status == "running"]
    eventually(lambda: containers(dclient, leng), "containers")


def test_cgroups_of_sessions_gone_while_the_engine_was_down_are_swept(
    leng: EngineProcess, bwrap: str
) -> None:
    api = Api(leng)
    s = api.create(name="orphan", type="batch", command="sleep 300")
    assert api.wait("orphan")["status"] == "RUNNING"
    eventually(lambda: not cgroup_dirs(leng), "no cgroup at all")  # it has one
    leng.kill9()
    # As a crash between "TERMINATED" and the cleanup (or a tool editing the store) would.
    with sqlite3.connect(leng.state_dir / "engine.db") as db:
        db.execute("UPDATE sessions SET status = 'TERMINATED' WHERE id = ?", (s["id"],))
    assert any(p.endswith(s["id"]) for p in cgroup_dirs(leng))
    from engine_proc import free_port

    leng.port = free_port()
    leng.start()
    eventually(lambda: cgroup_dirs(leng), "cgroup directories")
    eventually(lambda: session_processes(leng), "session processes")


def engine_threads(eng: EngineProcess) -> int:
    return len(os.listdir(f"/proc/{eng.proc.pid}/task"))


def test_docker_sessions_need_no_thread_each(
    leng: EngineProcess, dclient: Any, images: dict[str, str]  # noqa: F811
) -> None:
    """Exits are learned from one event stream, not from a blocked thread per container."""
    api = Api(leng)
    body = {"image": images["image"], "resources": {"cpu": "0.1", "mem": "128m"}}
    run_cycles(api, images["image"], "twarm", PARALLEL * 2)  # executor threads exist now
    api.create(name="tfirst", **body)
    assert api.wait("tfirst")["status"] == "RUNNING"  # the watcher thread exists now
    before = engine_threads(leng)
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda i: api.create(name=f"t{i}", **body), range(10)))
    for i in range(10):
        assert api.wait(f"t{i}")["status"] == "RUNNING"
    # 11 containers are waited on now; the old runtime had 11 threads blocked in wait().
    assert engine_threads(leng) - before < 6, (engine_threads(leng), before)
    for i in range(10):
        api.delete(f"/sessions/t{i}")
    api.delete("/sessions/tfirst")
    eventually(lambda: containers(dclient, leng), "containers")


def test_a_stopped_engine_leaves_no_cgroup_directory(tmp_path: Path, bwrap: str) -> None:
    """Every engine gets jupyter-bai/<engine id>; one that stops with no session left removes
    it, or a machine that runs the test suite collects thousands of empty cgroups."""
    eng = start_engine(tmp_path / "e")
    try:
        api = Api(eng)
        api.create(name="brief", type="batch", command="true")
        assert api.wait("brief", ("TERMINATED",))["status"] == "TERMINATED"
        mine = glob.glob(f"/sys/fs/cgroup/**/jupyter-bai/{engine_id(eng)}", recursive=True)
        assert mine, "the engine made its cgroup directory"
    finally:
        eng.teardown()
    eventually(lambda: [p for p in mine if os.path.isdir(p)], "the engine's cgroup directory")
