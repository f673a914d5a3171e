"""End-to-end session behaviour through the REST API of a real engine (bwrap sandbox)."""
from __future__ import annotations

import time
import uuid

import pytest

from engine_proc import Api, EngineProcess


@pytest.fixture()
def api(engine: EngineProcess) -> Api:
    return Api(engine)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_batch_session_records_success_and_history(api: Api) -> None:
    name = uniq("ok")
    api.create(name=name, type="batch", command="echo hello from $BACKENDAI_SESSION_NAME")
    s = api.wait(name, ())
    assert (s["status"], s["result"], s["exit_code"]) == ("TERMINATED", "success", 0)
    assert [h["status"] for h in s["status_history"]] == [
        "PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATED"]
    assert f"hello from {name}" in api.get(f"/sessions/{name}/logs").json()["logs"]


def test_batch_session_records_failure_exit_code(api: Api) -> None:
    name = uniq("fail")
    api.create(name=name, type="batch", command="echo oops >&2; exit 7")
    s = api.wait(name, ())
    assert (s["status"], s["result"], s["exit_code"]) == ("TERMINATED", "failure", 7)
    assert "oops" in api.get(f"/sessions/{name}/logs", params={"tail": 5}).json()["logs"]


def test_sandbox_layout_env_and_readonly_mount(api: Api) -> None:
    folder = uniq("data")
    assert api.post("/vfolders", json={"name": folder}).status_code == 201
    assert api.put(f"/vfolders/{folder}/files", params={"path": "in.txt"}, content=b"x").status_code == 201
    out = uniq("out")
    assert api.post("/vfolders", json={"name": out}).status_code == 201
    name = uniq("layout")
    api.create(
        name=name, type="batch", resources={"cpu": "1", "mem": "256m"},
        mounts=[f"{folder}:ro", f"{out}:/home/work/results"],
        env={"MY_FLAG": "1", "HF_TOKEN": "hf_secret"},
        command=(
            f"set -e; cat /home/work/{folder}/in.txt; pwd; echo $MY_FLAG $BACKENDAI_SESSION_ID "
            f"$BACKENDAI_KERNEL_IMAGE $BACKENDAI_CLUSTER_SIZE gpus=[$CUDA_VISIBLE_DEVICES] $GPU_COUNT; "
            f"if touch /home/work/{folder}/new 2>/dev/null; then echo WROTE-RO; fi; "
            "echo result > /home/work/results/r.txt; test ! -e /root/.bashrc || echo HOST-ROOT-VISIBLE; "
            "echo token=$HF_TOKEN"
        ),
    )
    s = api.wait(name, ())
    logs = api.get(f"/sessions/{name}/logs").json()["logs"]
    assert s["result"] == "success", logs
    assert "x/home/work" in logs.replace("\n", "")
    assert f"1 {s['id']} local 1 gpus=[] 0" in logs
    assert "WROTE-RO" not in logs and "HOST-ROOT-VISIBLE" not in logs
    # The session gets the secret; session info never shows it.
    assert "token=hf_secret" in logs
    assert s["env"] == {"MY_FLAG": "1", "HF_TOKEN": "***"}
    files = api.get(f"/vfolders/{folder}/files").json()["files"]
    assert [f["name"] for f in files] == ["in.txt"]
    r = api.get(f"/vfolders/{out}/download", params={"path": "r.txt"})
    assert r.content == b"result\n"
    assert s["mounts"] == [
        {"source": folder, "target": f"/home/work/{folder}", "perm": "ro"},
        {"source": out, "target": "/home/work/results", "perm": "rw"},
    ]


def test_destroy_lets_a_term_trap_finish_within_the_grace(api: Api) -> None:
    """SIGTERM reaches the command, not bubblewrap, so cleanup in a trap is not cut off."""
    name = uniq("grace")
    api.create(name=name, type="batch", command="trap 'sleep 0.5; echo got-term; exit 0' TERM; "
                                                "echo started; sleep 60 & wait")
    api.wait(name)
    deadline = time.monotonic() + 20
    while "started" not in api.get(f"/sessions/{name}/logs").json()["logs"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.delete(f"/sessions/{name}").json()["status"] == "TERMINATED"
    assert "got-term" in api.get(f"/sessions/{name}/logs").json()["logs"]


def test_interactive_run_keeps_variables_and_exec(api: Api) -> None:
    name = uniq("inter")
    api.create(name=name)
    assert api.wait(name)["status"] == "RUNNING"
    text, msgs = api.run(name, "import os\nx = 41\nprint('cwd', os.getcwd())\nx + 1")
    assert "cwd /home/work" in text
    assert {"type": "result", "text": "42"} in msgs
    assert msgs[-1] == {"type": "done", "status": "ok"}
    text, msgs = api.run(name, "print(x * 2)\n1/0")
    assert text == "82\n"
    assert msgs[-1]["status"] == "error" and msgs[-1]["ename"] == "ZeroDivisionError"
    msgs = api.stream(f"/sessions/{name}/exec", {"command": "echo out; echo err >&2; exit 3"})
    assert msgs[-1] == {"type": "done", "exit_code": 3}
    assert "".join(m["text"] for m in msgs if m.get("name") == "stderr") == "err\n"
    r = api.delete(f"/sessions/{name}")
    assert r.status_code == 200 and r.json()["status"] == "TERMINATED"
    # A destroyed session cannot run code any more, with a clear 409.
    r = api.post(f"/sessions/{name}/run", json={"code": "x"})
    assert r.status_code == 409 and "TERMINATED" in r.json()["message"]


def test_exec_on_batch_session_is_refused(api: Api) -> None:
    name = uniq("b")
    api.create(name=name, type="batch", command="sleep 30")
    api.wait(name)
    r = api.post(f"/sessions/{name}/exec", json={"command": "true"})
    assert r.status_code == 409 and "batch" in r.json()["message"]
    assert api.delete(f"/sessions/{name}", params={"forced": "true"}).json()["status"] == "TERMINATED"


def _names(api: Api) -> set[str]:
    return {s["name"] for s in api.get("/sessions").json()["sessions"]}


@pytest.mark.parametrize(
    "spec, status, words",
    [
        ({"resources": {"mem": "12x"}}, 400, ["12x"]),
        ({"resources": {"gpu": "1"}}, 400, ["gpu", "cuda.shares"]),
        ({"resources": {"cuda.shares": "0.555"}}, 400, ["0.01"]),
        ({"resources": {"cpu": "64"}}, 400, ["cpu=64", "whole node"]),
        ({"resources": {"cuda.device": "3"}}, 400, ["cuda.device=3"]),
        ({"mounts": ["no-such-folder"]}, 404, ["no-such-folder"]),
        ({"mounts": ["a:relative/path"]}, 400, ["relative/path"]),
        ({"type": "batch"}, 400, ["command"]),
        # 400 when the Docker daemon answers (image not present), 503 when there is none.
        ({"image": "no-such-image:1.0"}, (400, 503), ["no-such-image"]),
        ({"name": "bad name!"}, 400, ["bad name!"]),
        ({"env": {"BACKENDAI_SESSION_ID": "x"}}, 400, ["BACKENDAI_SESSION_ID"]),
    ],
)
def test_bad_session_requests_are_refused_and_leave_nothing(
    api: Api, spec: dict, status: int | tuple[int, ...], words: list[str]  # type: ignore[type-arg]
) -> None:
    before = _names(api)
    name = uniq("bad")
    r = api.post("/sessions", json={"image": "local", "name": name, **spec})
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), r.text
    body = r.json()
    assert set(body) == {"error", "message"} and "\n" not in body["message"]
    for word in words:
        assert word in body["message"]
    assert _names(api) == before


def test_duplicate_names_and_twice_mounted_folders(api: Api) -> None:
    folder = uniq("twice")
    api.post("/vfolders", json={"name": folder})
    r = api.post("/sessions", json={"image": "local", "mounts": [folder, f"{folder}:/data"]})
    assert r.status_code == 400 and "twice" in r.json()["message"]
    name = uniq("dup")
    api.create(name=name)
    r = api.post("/sessions", json={"image": "local", "name": name})
    assert r.status_code == 409 and name in r.json()["message"]
    assert api.post("/vfolders", json={"name": folder}).status_code == 409
    api.delete(f"/sessions/{name}")
    # The name is free again once the session is over (Backend.AI semantics).
    api.create(name=name, type="batch", command="true")
    assert api.wait(name, ())["result"] == "success"


def test_unauthenticated_calls_get_403(engine: EngineProcess) -> None:
    for token in ("", "wrong-token"):
        anon = Api(engine, token=token)
        assert anon.get("/sessions").status_code == 403
        assert anon.post("/sessions", json={"image": "local"}).status_code == 403
        assert anon.put("/vfolders/x/files", params={"path": "a"}, content=b"x").status_code == 403
        assert anon.get("/events").status_code == 403


def test_mounted_folder_cannot_be_deleted(api: Api) -> None:
    folder = uniq("busy")
    api.post("/vfolders", json={"name": folder})
    name = uniq("holder")
    api.create(name=name, mounts=[folder])
    api.wait(name)
    r = api.delete(f"/vfolders/{folder}")
    assert r.status_code == 409 and name in r.json()["message"]
    api.delete(f"/sessions/{name}")
    assert api.delete(f"/vfolders/{folder}").status_code == 204


def test_vfolder_escapes_and_quota_are_refused(api: Api) -> None:
    folder = uniq("safe")
    assert api.post("/vfolders", json={"name": folder, "quota": "1k"}).status_code == 201
    for path in ("../x", "/etc/passwd", "a/../../x"):
        r = api.put(f"/vfolders/{folder}/files", params={"path": path}, content=b"x")
        assert r.status_code == 400 and "escapes" in r.json()["message"], (path, r.text)
        assert api.get(f"/vfolders/{folder}/download", params={"path": path}).status_code == 400
    r = api.put(f"/vfolders/{folder}/files", params={"path": "big"}, content=b"x" * 4096)
    assert r.status_code == 413
    assert api.get(f"/vfolders/{folder}/files").json()["files"] == []


def test_fractional_gpus_pack_onto_one_device(api: Api) -> None:
    """The engine fixture declares two fake GPUs (no real GPU on CI machines)."""
    names = [uniq("half"), uniq("half"), uniq("whole")]
    small = {"cpu": "0.25", "mem": "128m"}
    api.create(name=names[0], resources={**small, "cuda.shares": "0.5"})
    api.create(name=names[1], resources={**small, "cuda.shares": "0.5"})
    api.create(name=names[2], resources={**small, "cuda.device": "1"})
    sessions = [api.wait(n) for n in names]
    assert all(s["status"] == "RUNNING" for s in sessions), sessions
    devs = [s["allocation"]["devices"] for s in sessions]
    assert devs[0] == devs[1] and len(devs[0]) == 1 and devs[2] != devs[0]
    text, _ = api.run(names[0], "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], "
                                "os.environ['BACKENDAI_GPU_LIMIT'])")
    assert text.strip() == f"{devs[0][0]} advisory"
    res = api.get("/resources").json()
    assert float(res["free"]["cuda.shares"]) == 0 and res["free"]["cuda.device"] == "0"
    third = uniq("wait")
    api.create(name=third, resources={**small, "cuda.shares": "0.25"})
    assert api.get(f"/sessions/{third}").json()["status"] == "PENDING"
    api.delete(f"/sessions/{names[0]}")
    assert api.wait(third)["status"] == "RUNNING"
    for n in (names[1], names[2], third):
        api.delete(f"/sessions/{n}")


def test_symlink_made_inside_a_session_cannot_escape_the_folder(api: Api) -> None:
    folder = uniq("links")
    api.post("/vfolders", json={"name": folder})
    name = uniq("linker")
    api.create(name=name, type="batch", mounts=[folder],
               command=f"cd /home/work/{folder} && ln -s /etc evil && ln -s /etc/hostname host "
                       "&& echo inside > real.txt && ln -s real.txt good")
    assert api.wait(name, ())["result"] == "success"
    for path in ("evil/passwd", "host", "good"):
        r = api.get(f"/vfolders/{folder}/download", params={"path": path})
        assert r.status_code == 400 and "symlink" in r.json()["message"], (path, r.text)
    assert api.get(f"/vfolders/{folder}/files", params={"path": "evil"}).status_code == 400
    r = api.put(f"/vfolders/{folder}/files", params={"path": "evil/x"}, content=b"x")
    assert r.status_code == 400
    # Links are listed as links and never followed, even those that stay inside the folder.
    files = {f["name"]: f["type"] for f in api.get(f"/vfolders/{folder}/files").json()["files"]}
    assert files == {"evil": "symlink", "host": "symlink", "good": "symlink", "real.txt": "file"}
    assert api.get(f"/vfolders/{folder}/download", params={"path": "real.txt"}).content == b"inside\n"


def test_twenty_sessions_created_at_once_all_finish(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [uniq("burst") for _ in range(20)]
    body = {"type": "batch", "command": "echo $BACKENDAI_SESSION_NAME",
            "resources": {"cpu": "0.1", "mem": "64m"}}
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda n: api.create(name=n, **body), names))
    finals = [api.wait(n, ()) for n in names]
    assert [(s["status"], s["result"]) for s in finals] == [("TERMINATED", "success")] * 20
    listed = [s for s in api.get("/sessions").json()["sessions"] if s["name"] in names]
    assert len(listed) == 20
    for n in names:
        assert n in api.get(f"/sessions/{n}/logs").json()["logs"]


def test_memory_and_cpu_limits_are_enforced_with_cgroups(api: Api, engine: EngineProcess) -> None:
    runtime = api.get("/resources").json()["runtimes"][0]
    assert any("enforced with cgroups" in n for n in runtime["notes"]), runtime
    name = uniq("oom")
    api.create(name=name, type="batch", resources={"cpu": "0.5", "mem": "64m"},
               command="python3 -c 'b = bytearray(400 << 20); print(\"allocated\")'")
    s = api.wait(name, ())
    logs = api.get(f"/sessions/{name}/logs").json()["logs"]
    assert s["result"] == "failure" and "allocated" not in logs
    assert "out of memory" in s["status_info"]
    # The cpu quota is in place while the session runs.
    name = uniq("cpu")
    api.create(name=name, type="batch", resources={"cpu": "0.5", "mem": "64m"}, command="sleep 30")
    s = api.wait(name)
    import glob

    found = glob.glob(f"/sys/fs/cgroup/cpu/**/jupyter-bai/*/{s['id']}/cpu.cfs_quota_us", recursive=True)
    found += glob.glob(f"/sys/fs/cgroup/**/jupyter-bai/*/{s['id']}/cpu.max", recursive=True)
    assert found and open(found[0]).read().split()[0] == "50000"
    api.delete(f"/sessions/{name}", params={"forced": "true"})


def test_scratch_files_of_an_ended_session_are_removed(api: Api, engine: EngineProcess) -> None:
    """The session's /home/work goes (removed in the background) while its logs stay."""
    name = uniq("scratch")
    s = api.create(name=name, type="batch",
                   command="mkdir -p many && cd many && seq 3000 | xargs touch && echo made")
    s = api.wait(name, ())
    assert s["result"] == "success"
    session_dir = engine.state_dir / "sessions" / s["id"]
    assert (session_dir / "logs").is_dir()
    deadline = time.monotonic() + 30
    while any((session_dir / sub).exists() for sub in ("work", ".work.removing")):
        assert time.monotonic() < deadline, sorted(p.name for p in session_dir.iterdir())
        time.sleep(0.1)
    assert "made" in api.get(f"/sessions/{name}/logs").json()["logs"]
