"""The docker runtime against a real Docker engine and the locally built test image.

Everything goes through real engine processes (``jupyter bai serve``) and the real daemon;
containers are reached only through 127.0.0.1 and unix sockets. Without a Docker engine the
tests skip on a developer machine and fail when ``CI=true`` (see ``conftest.require``).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import docker_image
from conftest import require
from engine_proc import Api, EngineProcess, free_port, start_engine

REPO = Path(__file__).resolve().parents[1]
LABEL = "ai.backend.bai."


def _docker_client() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except Exception:  # noqa: BLE001
        return None


@pytest.fixture(scope="session")
def dclient() -> Any:
    client = _docker_client()
    require(client is not None, "a Docker engine (dockerd answering on DOCKER_HOST or /var/run/docker.sock)")
    return client


@pytest.fixture(scope="session")
def images(dclient: Any) -> dict[str, str]:
    return docker_image.build(dclient)


def docker_env(**extra: str) -> dict[str, str]:
    return {"JUPYTER_BAI_DOCKER_BINDS": ",".join(docker_image.HOST_BINDS), **extra}


def engine_containers(dclient: Any, eng: EngineProcess) -> list[Any]:
    from jupyter_bai.engine.runtimes.docker import engine_id

    return dclient.containers.list(
        all=True, filters={"label": f"{LABEL}engine={engine_id(eng.state_dir)}"})


def remove_engine_containers(dclient: Any, eng: EngineProcess) -> None:
    for c in engine_containers(dclient, eng):
        c.remove(force=True)


@pytest.fixture(scope="module")
def deng(tmp_path_factory: pytest.TempPathFactory, dclient: Any, images: dict[str, str]) -> Iterator[EngineProcess]:
    eng = start_engine(tmp_path_factory.mktemp("dengine"),
                       docker_env(JUPYTER_BAI_FAKE_GPUS='[{"name": "Fake GPU", "memory": "16g"}]'))
    yield eng
    eng.teardown()
    leftovers = engine_containers(dclient, eng)
    remove_engine_containers(dclient, eng)
    assert leftovers == [] or all(c.status == "running" for c in leftovers)


@pytest.fixture()
def api(deng: EngineProcess) -> Api:
    return Api(deng)


def container_of(dclient: Any, sid: str) -> Any:
    found = dclient.containers.list(all=True, filters={"label": f"{LABEL}session-id={sid}"})
    return found[0] if found else None


def one_line(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"error", "message"}, body
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    return body["message"]


# --------------------------------------------------------------------------- the container


def test_resources_report_docker_available(api: Api, dclient: Any) -> None:
    runtimes = {r["name"]: r for r in api.get("/resources").json()["runtimes"]}
    assert runtimes["docker"]["available"] is True
    assert runtimes["docker"]["version"] == dclient.version()["Version"]
    assert runtimes["local"]["available"] is True


def test_interactive_session_is_a_limited_labelled_container(
    api: Api, deng: EngineProcess, dclient: Any, images: dict[str, str]
) -> None:
    from jupyter_bai.engine.runtimes.docker import engine_id

    api.post("/vfolders", json={"name": "ddata"})
    api.put("/vfolders/ddata/files", params={"path": "hello.txt"}, content=b"from-the-host")
    api.post("/vfolders", json={"name": "dout"})
    s = api.create(image=images["image"], name="dint",
                   resources={"cpu": "0.5", "mem": "256m", "cuda.shares": "0.5"},
                   mounts=["ddata:ro", "dout:/mnt/out"], env={"MY_VAR": "42"})
    s = api.wait("dint")
    assert s["status"] == "RUNNING", s
    assert s["sandbox"] == "docker" and s["runtime"] == "docker"

    code = r"""
import os, json
out = {"cwd": os.getcwd(), "env": {k: v for k, v in os.environ.items()
       if k.startswith(("BACKENDAI_", "CUDA_", "GPU_", "MY_"))}}
out["data"] = open("/home/work/ddata/hello.txt").read()
try:
    open("/home/work/ddata/new.txt", "w").write("x")
    out["ro"] = "writable"
except OSError as e:
    out["ro"] = e.strerror
open("/mnt/out/result.txt", "w").write("written-in-container")
open("/home/work/scratch.txt", "w").write("scratch")
for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    if os.path.exists(p):
        out["mem"] = open(p).read().strip()
        break
print(json.dumps(out))
"""
    text, msgs = api.run("dint", code)
    out = json.loads(text)
    assert out["cwd"] == "/home/work"
    assert out["data"] == "from-the-host"
    assert out["ro"] == "Read-only file system"
    assert out["mem"] == str(256 * 1024 * 1024)
    env = out["env"]
    assert env["BACKENDAI_SESSION_ID"] == s["id"] and env["BACKENDAI_SESSION_NAME"] == "dint"
    assert env["BACKENDAI_KERNEL_IMAGE"] == images["image"] and env["BACKENDAI_CLUSTER_SIZE"] == "1"
    assert env["MY_VAR"] == "42"
    # A fake GPU: no device request (no NVIDIA runtime), the same env as the local runtime.
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["GPU_COUNT"] == "1"
    assert env["BACKENDAI_GPU_SHARES"] == "0.5"
    got = api.get("/vfolders/dout/download", params={"path": "result.txt"})
    assert got.content == b"written-in-container"

    c = container_of(dclient, s["id"])
    host = c.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["Init"] is True
    assert not host.get("DeviceRequests")
    assert c.labels[LABEL + "session-name"] == "dint"
    assert c.labels[LABEL + "kind"] == "interactive"
    assert c.labels[LABEL + "state-dir"] == str(deng.state_dir.resolve())
    assert c.labels[LABEL + "engine"] == engine_id(deng.state_dir)
    assert c.labels[LABEL + "session-id"] == s["id"]
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert mounts["/home/work/ddata"]["RW"] is False
    assert mounts["/mnt/out"]["RW"] is True
    assert mounts["/home/work"]["RW"] is True
    assert mounts["/opt/bai/agent.py"]["RW"] is False
    # The image's service port is published on the loopback interface only.
    bindings = host["PortBindings"]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for bs in bindings.values() for b in bs)

    # exec goes through the agent too
    msgs = api.stream("/sessions/dint/exec", {"command": ["sh", "-c", "echo exec-$MY_VAR; whoami || id -u"]})
    assert "exec-42" in "".join(m.get("text", "") for m in msgs)

    r = api.delete("/sessions/dint")
    assert r.json()["status"] == "TERMINATED"
    assert container_of(dclient, s["id"]) is None
    assert "agent ready" in api.get("/sessions/dint/logs").json()["logs"]


def test_batch_session_logs_exit_code_and_removal(api: Api, dclient: Any, images: dict[str, str]) -> None:
    s = api.create(image=images["image"], name="dbatch", type="batch",
                   command="echo to-stdout; echo to-stderr >&2; exit 3", resources={"cpu": "0.25"})
    s = api.wait("dbatch", ())
    assert (s["status"], s["result"], s["exit_code"]) == ("TERMINATED", "failure", 3)
    logs = api.get("/sessions/dbatch/logs").json()["logs"]
    assert "to-stdout" in logs and "to-stderr" in logs
    assert api.get("/sessions/dbatch/logs", params={"tail": "1"}).json()["logs"] == "to-stderr"
    assert container_of(dclient, s["id"]) is None

    s = api.create(image=images["image"], name="dok", type="batch",
                   command="test \"$(pwd)\" = /home/work && echo ok-$BACKENDAI_SESSION_NAME")
    s = api.wait("dok", ())
    assert (s["status"], s["result"], s["exit_code"]) == ("TERMINATED", "success", 0)
    assert api.get("/sessions/dok/logs").json()["logs"] == "ok-dok\n"


def test_stop_sends_sigterm_then_waits_the_grace(api: Api, dclient: Any, images: dict[str, str]) -> None:
    s = api.create(image=images["image"], name="dgrace", type="batch",
                   command="trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.1; done")
    api.wait("dgrace")
    deadline = time.monotonic() + 10
    while "started" not in api.get("/sessions/dgrace/logs").json()["logs"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c = container_of(dclient, s["id"])
    assert c.attrs["State"]["Running"]
    done = api.delete("/sessions/dgrace").json()
    assert done["status"] == "TERMINATED"
    assert "got-term" in api.get("/sessions/dgrace/logs").json()["logs"]
    assert container_of(dclient, s["id"]) is None


def test_service_port_answers_on_loopback(api: Api, dclient: Any, images: dict[str, str]) -> None:
    s = api.create(image=images["image"], name="dweb",
                   command="echo served > index.html; python3 -m http.server 8080")
    assert api.wait("dweb")["status"] == "RUNNING"
    c = container_of(dclient, s["id"])
    (binding,) = c.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    deadline = time.monotonic() + 15
    while True:
        try:
            r = httpx.get(f"http://127.0.0.1:{binding['HostPort']}/index.html", timeout=2)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the service port never answered"
            time.sleep(0.1)
    assert r.text == "served\n"
    api.delete("/sessions/dweb")
    assert container_of(dclient, s["id"]) is None


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_at_create_and_changes_nothing(api: Api, dclient: Any, images: dict[str, str]) -> None:
    before = api.get("/sessions").json()["sessions"]
    r = api.post("/sessions", json={"image": "no-such-image:1.0", "name": "dbad"})
    assert r.status_code == 400
    assert "image 'no-such-image:1.0' is not present on the Docker engine" in one_line(r)
    r = api.post("/sessions", json={"image": images["image"], "name": "dbad",
                                    "resources": {"mem": "32m"}})
    assert r.status_code == 400
    # The spec's own floor (64m) refuses it before the image is looked at...
    assert one_line(r) == ("invalid session spec: resources: invalid resource 'mem=32m': "
                           "mem must be at least 64m (leave it out for the default)")
    r = api.post("/sessions", json={"image": images["image"], "name": "dbad",
                                    "resources": {"mem": "80m"}})
    assert r.status_code == 400  # ...and the image's label asks for more than that floor
    assert one_line(r) == (f"image '{images['image']}' needs at least mem={docker_image.MIN_MEM} "
                           "(ai.backend.resource.min.mem); asked for mem=80m")
    r = api.post("/sessions", json={"image": images["image"], "name": "dbad",
                                    "mounts": ["no-such-folder"]})
    assert r.status_code == 404
    assert "no-such-folder" in one_line(r)
    assert api.get("/sessions").json()["sessions"] == before


def test_container_that_exits_at_once_is_error_with_its_last_lines(api: Api, dclient: Any, images: dict[str, str]) -> None:
    # The image's python3 cannot start (no stdlib where it looks): the agent dies at once.
    s = api.create(image=images["image"], name="dearly", env={"PYTHONHOME": "/nonexistent"})
    s = api.wait("dearly", ())
    assert s["status"] == "ERROR"
    assert s["status_info"].startswith("exited during start with code 1")
    assert "Fatal Python error" in s["status_info"] or "encodings" in s["status_info"]
    assert container_of(dclient, s["id"]) is None


def test_image_without_python_starts_exec_works_run_says_why_not(
    api: Api, dclient: Any, images: dict[str, str]
) -> None:
    s = api.create(image=images["nopy"], name="dnopy", command="echo started > /home/work/s.txt")
    s = api.wait("dnopy")
    assert s["status"] == "RUNNING", s
    # session exec goes through docker exec, in /home/work, as the session user
    msgs = api.stream("/sessions/dnopy/exec", {"command": "/bin/cat s.txt; /usr/bin/id -u; exit 3",
                                               "env": {"X": "1"}})
    out = "".join(m.get("text", "") for m in msgs if m["type"] == "stream")
    assert out.split() == ["started", "1000"] and msgs[-1] == {"type": "done", "exit_code": 3}
    # %%bai run needs Python in the image: one clear line
    r = api.post("/sessions/dnopy/run", json={"code": "1"})
    assert r.status_code == 409
    assert one_line(r) == ("session 'dnopy' has no python3 in its image: 'session exec' works "
                           "(through docker exec); '%%bai run' needs Python in the image")
    assert "no python3 in this image" in api.get("/sessions/dnopy/logs").json()["logs"]
    assert api.delete("/sessions/dnopy").json()["status"] == "TERMINATED"
    assert container_of(dclient, s["id"]) is None


def test_image_ls_api_client_cli(api: Api, deng: EngineProcess, images: dict[str, str]) -> None:
    data = api.get("/images").json()
    names = {i["name"]: i for i in data["images"]}
    assert names["local"]["runtime"] == "local"
    assert names[images["image"]]["runtime"] == "docker"
    assert names[images["image"]]["min_mem"] == docker_image.MIN_MEM
    assert data["notes"] == []

    from jupyter_bai.client import Client

    assert images["image"] in {i["name"] for i in Client(deng.url, deng.token).list_images()["images"]}
    env = {**os.environ, **deng.env}
    proc = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", "image", "ls"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.lower().splitlines()[0].split()
    assert header[:2] == ["name", "runtime"]
    assert any(line.split()[:2] == [images["image"], "docker"] for line in proc.stdout.splitlines())


def test_image_ls_magic(deng: EngineProcess, images: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    for key, value in deng.env.items():
        monkeypatch.setenv(key, value)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_bai")
    with capture_output() as cap:
        value = ip.run_line_magic("bai", "image ls --json")
    assert images["image"] in {i["name"] for i in value["images"]}, cap.stderr
    with capture_output() as cap:
        ip.run_line_magic("bai", "image ls")
    html = "".join(o.data.get("text/html", "") for o in cap.outputs)
    assert "<table" in html and images["image"] in html


# --------------------------------------------------------------------------- the quickstart with a Docker image


def test_quickstart_steps_with_a_docker_image(deng: EngineProcess, dclient: Any, images: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, **deng.env}

    def bai(*args: str, input: str | None = None) -> str:
        proc = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *args], env=env, input=input,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    (tmp_path / "train.csv").write_text("x,y\n1,2\n3,4\n")
    bai("vfolder", "create", "qsdata")
    bai("vfolder", "upload", "qsdata", "train.csv")
    bai("session", "create", images["image"], "-t", "qs", "-r", "cpu=1", "-r", "mem=256m",
        "-v", "qsdata:ro", "--wait")
    out = bai("session", "run", "qs", "-",
              input="rows = open('/home/work/qsdata/train.csv').read().splitlines()\nprint(len(rows) - 1, 'rows')\n")
    assert "2 rows" in out
    info = json.loads(bai("--json", "session", "info", "qs"))
    assert info["status"] == "RUNNING" and info["runtime"] == "docker"
    assert "2 rows" in bai("session", "logs", "qs")
    bai("session", "destroy", "qs")
    assert json.loads(bai("--json", "session", "info", "qs"))["status"] == "TERMINATED"
    assert container_of(dclient, info["id"]) is None


# --------------------------------------------------------------------------- user


def test_container_runs_as_the_configured_non_root_user(tmp_path: Path, dclient: Any, images: dict[str, str]) -> None:
    eng = start_engine(tmp_path / "eng", docker_env(JUPYTER_BAI_DOCKER_USER="1000:1000"))
    try:
        api = Api(eng)
        api.create(image=images["image"], name="u", type="batch",
                   command="id -u; id -g; echo hi > /home/work/f && cat /home/work/f")
        s = api.wait("u", ())
        assert s["result"] == "success", api.get("/sessions/u/logs").json()
        assert api.get("/sessions/u/logs").json()["logs"].split() == ["1000", "1000", "hi"]
    finally:
        eng.stop()
        remove_engine_containers(dclient, eng)


# --------------------------------------------------------------------------- daemon trouble


def test_daemon_down_at_create_is_503_and_the_engine_keeps_serving(tmp_path: Path) -> None:
    missing = tmp_path / "no-docker.sock"
    eng = start_engine(tmp_path / "eng", docker_env(JUPYTER_BAI_DOCKER_HOST=f"unix://{missing}"))
    try:
        api = Api(eng)
        docker_rt = {r["name"]: r for r in api.get("/resources").json()["runtimes"]}["docker"]
        assert docker_rt["available"] is False
        assert f"docker daemon at unix://{missing} is not answering" in docker_rt["notes"][0]
        r = api.post("/sessions", json={"image": "bai-test:1", "name": "x"})
        assert r.status_code == 503
        assert one_line(r).startswith(f"docker daemon at unix://{missing} is not answering")
        assert api.get("/sessions").json()["sessions"] == []
        images = api.get("/images").json()
        assert [i["name"] for i in images["images"]] == ["local"]
        assert "not answering" in images["notes"][0]
        api.create(image="local", name="still", type="batch", command="echo fine")
        assert api.wait("still", ())["result"] == "success"
    finally:
        eng.stop()


class SocketProxy:
    """A unix-socket forwarder to the real daemon, to make "the daemon" go away and return."""

    def __init__(self, path: Path, upstream: str):
        self.path, self.upstream = path, upstream
        self.conns: list[socket.socket] = []
        self.server: socket.socket | None = None

    def start(self) -> "SocketProxy":
        self.path.unlink(missing_ok=True)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        self.server.listen(64)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.upstream)
            self.conns += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.path.unlink(missing_ok=True)
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.conns = []


def _daemon_socket() -> str | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host[len("unix://"):] if host.startswith("unix://") else None


def test_daemon_going_away_marks_sessions_error_and_nothing_is_orphaned(
    tmp_path: Path, dclient: Any, images: dict[str, str]
) -> None:
    upstream = _daemon_socket()
    if upstream is None:
        pytest.skip("the daemon is not on a unix socket")
    proxy = SocketProxy(tmp_path / "docker.sock", upstream).start()
    eng = start_engine(tmp_path / "eng", docker_env(JUPYTER_BAI_DOCKER_HOST=f"unix://{proxy.path}"))
    try:
        api = Api(eng)
        s = api.create(image=images["image"], name="victim")
        assert api.wait("victim")["status"] == "RUNNING"
        assert container_of(dclient, s["id"]) is not None
        proxy.stop()
        s = api.wait("victim", ("ERROR",), timeout=30)
        assert s["status"] == "ERROR"
        assert s["status_info"].startswith("docker daemon went away: docker daemon at unix://")
        # The engine keeps serving, and says why Docker is off.
        docker_rt = {r["name"]: r for r in api.get("/resources").json()["runtimes"]}["docker"]
        assert docker_rt["available"] is False
        api.create(image="local", name="still", type="batch", command="echo fine")
        assert api.wait("still", ())["result"] == "success"
        # The daemon comes back: the container of the ERROR session is removed.
        proxy.start()
        docker_rt = {r["name"]: r for r in api.get("/resources").json()["runtimes"]}["docker"]
        assert docker_rt["available"] is True
        assert container_of(dclient, s["id"]) is None
        assert engine_containers(dclient, eng) == []
    finally:
        eng.stop()
        remove_engine_containers(dclient, eng)
        proxy.stop() if proxy.server and proxy.server.fileno() != -1 else None


# --------------------------------------------------------------------------- restart


def test_kill9_restart_readopts_containers_and_removes_orphans(
    tmp_path: Path, dclient: Any, images: dict[str, str]
) -> None:
    eng = start_engine(tmp_path / "eng", docker_env())
    try:
        api = Api(eng)
        inter = api.create(image=images["image"], name="inter", resources={"cpu": "0.25", "mem": "128m"})
        api.wait("inter")
        api.run("inter", "counter = 10")
        slow = api.create(image=images["image"], name="slow", type="batch",
                          command="sleep 2; echo finished-while-down; exit 3",
                          resources={"cpu": "0.25", "mem": "128m"})
        gone = api.create(image=images["image"], name="gone", resources={"cpu": "0.25", "mem": "128m"})
        api.wait("slow")
        api.wait("gone")
        assert len(engine_containers(dclient, eng)) == 3

        eng.kill9()
        # While no engine runs, "gone" is destroyed in the store (as a tool or a crash
        # between "TERMINATED" and removing the container would leave it).
        with sqlite3.connect(eng.state_dir / "engine.db") as db:
            db.execute("UPDATE sessions SET status = 'TERMINATED' WHERE id = ?", (gone["id"],))
        time.sleep(3)  # "slow" finishes while no engine is watching
        eng.port = free_port()
        eng.start()
        api = Api(eng)

        assert api.get("/sessions/inter").json()["status"] == "RUNNING"
        text, _ = api.run("inter", "print(counter + 1)")
        assert text == "11\n"  # re-adopted, not restarted
        s = api.wait("slow", ())
        assert (s["status"], s["result"], s["exit_code"]) == ("TERMINATED", "failure", 3)
        assert "finished-while-down" in api.get("/sessions/slow/logs").json()["logs"]
        assert container_of(dclient, slow["id"]) is None
        assert container_of(dclient, gone["id"]) is None
        assert [c.labels[LABEL + "session-name"] for c in engine_containers(dclient, eng)] == ["inter"]
        assert api.delete("/sessions/inter").json()["status"] == "TERMINATED"
        assert engine_containers(dclient, eng) == []
    finally:
        eng.stop()
        remove_engine_containers(dclient, eng)


# --------------------------------------------------------------------------- GPU arguments (no GPU needed)


def test_real_gpus_become_device_requests_and_mps_gets_host_ipc(tmp_path: Path) -> None:
    from jupyter_bai.engine.runtimes.base import LaunchContext, ResolvedMount
    from jupyter_bai.engine.runtimes.docker import DockerRuntime

    rt = DockerRuntime(tmp_path / "state", binds=["/usr"], user="1234:99")
    ctx = LaunchContext(
        session_id="abcdef12-0000", session_name="g", image="img:1", session_dir=tmp_path / "s",
        interactive=True, command=None,
        env={"CUDA_VISIBLE_DEVICES": "1,3", "CUDA_MPS_PIPE_DIRECTORY": "/tmp/mps"},
        mounts=[ResolvedMount("m", tmp_path / "m", "/models", True)],
        gpu_devices=[1, 3], extra_dev_paths=["/dev/nvidia1", "/dev/nvidia3"],
        extra_bind_paths=["/tmp/mps"], resources={"cpu": "2", "mem": "1073741824"},
    )
    kw = rt.container_kwargs(ctx, {"User": "", "Env": ["PATH=/opt/conda/bin:/usr/bin"]},
                             {"ai.backend.service-ports": "jupyter:http:8888,tb:http:6006"})
    (req,) = kw["device_requests"]
    assert req["Driver"] == "nvidia" and req["DeviceIDs"] == ["1", "3"]
    assert kw["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"  # numbered from 0 inside
    assert kw["environment"]["PATH"] == "/opt/conda/bin:/usr/bin"
    assert kw["ipc_mode"] == "host"
    binds = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kw["mounts"]}
    assert binds["/tmp/mps"] == ("/tmp/mps", False)
    assert binds["/models"] == (str(tmp_path / "m"), True)
    assert binds["/usr"] == ("/usr", True)
    assert kw["nano_cpus"] == 2_000_000_000 and kw["mem_limit"] == 1 << 30
    assert kw["ports"] == {"8888/tcp": ("127.0.0.1", None), "6006/tcp": ("127.0.0.1", None)}
    assert kw["user"] == "1234:99" and kw["init"] is True and kw["working_dir"] == "/home/work"
    # Fake GPUs (no /dev/nvidia*): no device request, env untouched.
    ctx.extra_dev_paths = []
    kw = rt.container_kwargs(ctx, {}, {})
    assert "device_requests" not in kw and kw["environment"]["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert kw["ports"] == {}


# --------------------------------------------------------------------------- streaming logs, pulling


def test_logs_stream_while_the_container_runs(api: Api, images: dict[str, str]) -> None:
    api.create(image=images["image"], name="dstream", type="batch",
               command="for i in 1 2 3; do echo line-$i; sleep 0.3; done")
    got = []
    t0 = time.monotonic()
    with api.http.stream("GET", api.base + "/sessions/dstream/logs", params={"follow": "true"}) as r:
        assert r.status_code == 200
        for chunk in r.iter_text():
            got.append((time.monotonic() - t0, chunk))
    text = "".join(c for _, c in got)
    assert text == "line-1\nline-2\nline-3\n"
    assert got[0][0] < got[-1][0] - 0.3  # it arrived as it was written, not at the end
    assert api.wait("dstream", ())["result"] == "success"


def test_pull_is_attempted_only_when_configured_and_fails_readably(
    tmp_path: Path, dclient: Any, images: dict[str, str]
) -> None:
    ref = f"127.0.0.1:{free_port()}/bai/missing:1"  # a registry that is not there
    eng = start_engine(tmp_path / "eng", docker_env(JUPYTER_BAI_DOCKER_PULL="1"))
    try:
        api = Api(eng)
        assert api.create(image=ref, name="p")["status"] == "PENDING"  # may be pulled at start
        s = api.wait("p", ())
        assert s["status"] == "ERROR"
        assert s["status_info"].startswith(f"failed to start: could not pull image '{ref}': ")
        assert "\n" not in s["status_info"]
        assert engine_containers(dclient, eng) == []
    finally:
        eng.stop()
        remove_engine_containers(dclient, eng)


def test_many_containers_at_once_all_finish(api: Api, dclient: Any, images: dict[str, str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"image": images["image"], "type": "batch", "command": "echo $BACKENDAI_SESSION_NAME",
            "resources": {"cpu": "0.1", "mem": "96m"}}
    with ThreadPoolExecutor(10) as pool:
        created = list(pool.map(lambda i: api.create(name=f"dmany{i}", **body), range(10)))
    for s in created:
        done = api.wait(s["name"], (), timeout=120)
        assert (done["status"], done["result"]) == ("TERMINATED", "success"), done
        assert api.get(f"/sessions/{s['name']}/logs").json()["logs"] == f"{s['name']}\n"
        assert container_of(dclient, s["id"]) is None


def test_memory_limit_is_enforced_and_named(api: Api, dclient: Any, images: dict[str, str]) -> None:
    s = api.create(image=images["image"], name="doom", type="batch", resources={"mem": "96m"},
                   command="echo before; python3 -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'")
    s = api.wait("doom", ())
    assert (s["status"], s["result"]) == ("TERMINATED", "failure"), s
    assert s["exit_code"] == 137
    assert s["status_info"] == "out of memory: the session used all of its mem=96m"
    logs = api.get("/sessions/doom/logs").json()["logs"]
    assert "before" in logs and str(300 * 1024 * 1024) not in logs
    assert container_of(dclient, s["id"]) is None


# --------------------------------------------------------------------------- pipelines


def test_pipeline_task_on_a_docker_image_reads_and_writes_the_pipeline_folder(
        deng: EngineProcess, dclient: Any, images: dict[str, str], tmp_path: Path) -> None:
    """FastTrack's tasks name their image: one task in the sandbox, its dependent in a
    container, outputs passed between them through the job's pipeline folder."""
    import yaml

    from jupyter_bai.client import Client

    small = {"cpu": "0.25", "mem": "128m"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "mixed", "tasks": [
        {"name": "make", "image": "local", "resources": small,
         "command": "echo 0.$RANDOM > /pipeline/outputs/result.txt"},
        {"name": "use", "image": images["image"], "resources": small, "depends_on": ["make"],
         "command": "set -e; cat /pipeline/input1/result.txt > /pipeline/outputs/seen; "
                    "echo $BACKENDAI_PIPELINE_TASK_ID >> /pipeline/outputs/seen; "
                    "if touch /pipeline/inputs/make/x 2>/dev/null; then exit 9; fi"},
    ]}))
    client = Client(deng.url, deng.token)
    try:
        job = client.run_pipeline(tmp_path / "p.yaml", wait=True, timeout=180)
        use = {t["name"]: t for t in job["tasks"]}["use"]
        assert job["status"] == "SUCCEEDED", (job, client.pipeline_task_logs(job["id"], "use"))
        assert client.get_session(use["session_id"])["runtime"] == "docker"
        with tempfile.TemporaryDirectory() as dest:
            [made] = client.download(job["folder"], "tasks/make/outputs/result.txt", dest)
            [seen] = client.download(job["folder"], "tasks/use/outputs/seen", dest)
            assert Path(seen).read_text() == Path(made).read_text() + "use\n"
    finally:
        client.close()


def test_notebook_task_on_an_image_without_nbclient_says_what_it_needs(
        deng: EngineProcess, images: dict[str, str], tmp_path: Path) -> None:
    import nbformat
    import yaml
    from nbformat.v4 import new_code_cell, new_notebook

    from jupyter_bai.client import Client

    nbformat.write(new_notebook(cells=[new_code_cell("print(1)")]), tmp_path / "r.ipynb")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"tasks": [
        {"name": "nb", "notebook": "r.ipynb", "image": images["image"],
         "resources": {"cpu": "0.25", "mem": "128m"}}]}))
    client = Client(deng.url, deng.token)
    try:
        job = client.run_pipeline(tmp_path / "p.yaml", wait=True, timeout=120)
        [task] = job["tasks"]
        assert (job["status"], task["exit_code"]) == ("FAILED", 2)
        logs = client.pipeline_task_logs(job["id"], "nb")
        assert "notebook tasks need nbclient and ipykernel in the image" in logs, logs
    finally:
        client.close()
