"""Session kernels through a real ``jupyter server`` (the extension hosts the engine).

The issue's done-when path in one test: a kernelspec made with ``kernelspec install``,
files next to the notebook and in a mounted vfolder, an interrupted loop, a server that
dies and comes back to the same kernel, a session destroyed from outside, and a clean stop
that leaves nothing behind.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_bai.engine.runtimes.privilege import resolve_session_user
from jupyter_client import BlockingKernelClient

from engine_proc import free_port

BIN = Path(sys.executable).parent
TERMINAL = ("TERMINATED", "ERROR", "CANCELLED")


class JupyterServer:
    """``jupyter server`` with the jupyter_bai extension, its dirs all under ``base``."""

    def __init__(self, base: Path, extra_argv: list[str] | None = None,
                 extra_env: dict[str, str] | None = None):
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.runtime = base / "runtime"
        self.token = "kernel-test-" + os.urandom(4).hex()
        self.extra_argv = extra_argv or []
        self.env = {
            **os.environ,
            "JUPYTER_BAI_STATE_DIR": str(self.state),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            **(extra_env or {}),
        }
        self.env.pop("JUPYTER_BAI_URL", None)
        self.env.pop("JUPYTER_BAI_TOKEN", None)
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JupyterServer:
        self.port = free_port()
        log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "jupyter"), "server", "--no-browser", "--allow-root", f"--port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--BaiApp.stop_grace=2", *self.extra_argv],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_tail()
            try:
                if self.http("GET", "/bai/api/v1/resources").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("jupyter server did not start: " + self.log_tail())

    def log_tail(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")[-4000:]

    def http(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=120,
                             headers={"Authorization": f"token {self.token}"}, **kw)

    def jupyter_bai(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "jupyter"), "bai", *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def start_notebook_kernel(self, notebook: str, kernel: str) -> httpx.Response:
        return self.http("POST", "/api/sessions", json={
            "path": notebook, "name": Path(notebook).name, "type": "notebook",
            "kernel": {"name": kernel},
        })

    def client_for(self, kernel_id: str) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel_id}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return kc

    def sigterm(self, bound: float = 30) -> float:
        """SIGTERM; seconds until the process exited (still up after ``bound`` s: a hang)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server still up {bound} s after SIGTERM: {self.log_tail()}")
        return time.monotonic() - t0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def sessions_in_store(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.state / "engine.db") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT name, status, spec FROM sessions")]

    def processes_left(self) -> list[str]:
        """Live processes whose command line names this test's state directory."""
        mark = str(self.state).encode()
        left = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                stat = open(f"/proc/{pid}/stat", "rb").read()
            except OSError:
                continue
            if mark in cmd and stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X"):
                text = cmd.replace(b"\0", b" ")[:200].decode(errors="replace")
                left.append(f"{pid}: {text}")
        return left


def execute(kc: BlockingKernelClient, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    out: list[str] = []
    reply = kc.execute_interactive(
        code, timeout=timeout,
        output_hook=lambda m: out.append(m["content"].get("text", ""))
        if m["msg_type"] == "stream" else None,
    )
    return "".join(out), reply["content"]


def ok(kc: BlockingKernelClient, code: str) -> str:
    text, content = execute(kc, code)
    assert content["status"] == "ok", content
    return text.strip()


async def _wait_dead(url: str, token: str, kernel_id: str, bound: float) -> list[str]:
    """Watch the kernel's websocket (as JupyterLab does) until the server reports it dead."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws_url = url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    states: list[str] = []
    deadline = time.monotonic() + bound
    try:
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(conn.read_message(), timeout=max(0.1, deadline - time.monotonic()))
            if msg is None:
                states.append("<closed>")
                break
            if isinstance(msg, str):
                data = json.loads(msg)
                if data.get("msg_type") == "status":
                    states.append(data["content"]["execution_state"])
                    if states[-1] == "dead":
                        break
    except asyncio.TimeoutError:
        pass
    finally:
        conn.close()
    return states


@pytest.fixture()
def server(tmp_path: Path, bwrap: str):  # type: ignore[no-untyped-def]
    srv = JupyterServer(tmp_path)
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()
    # Never leave a test's sessions running, whatever failed.
    for line in srv.processes_left():
        pid = int(line.split(":", 1)[0])
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def test_kernelspec_kernel_in_a_real_server_survives_a_restart_and_dies_when_destroyed(
    server: JupyterServer,
) -> None:
    nb_dir = server.root / "proj" / "nb"
    nb_dir.mkdir(parents=True)
    (nb_dir / "data.txt").write_text("next to the notebook\n")
    # The project belongs to the user the kernel runs as (1000 under a root engine, as CI is):
    # the bind gives no more rights than that user has on the host.
    user = resolve_session_user()
    os.chown(nb_dir, user.uid, user.gid)
    server.start()
    assert server.http("POST", "/bai/api/v1/vfolders", json={"name": "data"}).status_code == 201
    r = server.http("PUT", "/bai/api/v1/vfolders/data/files", params={"path": "mounted.txt"},
                    content=b"from the vfolder\n")
    assert r.status_code in (200, 201), r.text
    made = server.jupyter_bai("kernelspec", "install", "kt", "-r", "cpu=1", "-r", "mem=1g",
                              "-v", "data:ro", "--display-name", "Kernel test", "--user")
    assert made.returncode == 0, made.stderr
    listed = server.jupyter_bai("kernelspec", "ls")
    assert "Kernel test" in listed.stdout and "cpu=1 mem=1g" in listed.stdout

    r = server.start_notebook_kernel("proj/nb/analysis.ipynb", "kt")
    assert r.status_code == 201, r.text
    kid = r.json()["kernel"]["id"]
    kc = server.client_for(kid)
    try:
        # the notebook's folder is the cwd; its files and the mounted vfolder are there
        assert ok(kc, "import os; print(os.getcwd())") == "/home/work/jupyter/proj/nb"
        assert ok(kc, "print(open('data.txt').read())") == "next to the notebook"
        assert ok(kc, "print(open('/home/work/data/mounted.txt').read())") == "from the vfolder"
        ok(kc, "open('written.txt', 'w').write('from the kernel')")
        assert (nb_dir / "written.txt").read_text() == "from the kernel"
        # nothing else of the host: the server's state dir is not reachable
        assert ok(kc, f"print(os.path.exists({str(server.state)!r}))") == "False"

        # interrupt a loop (the stop button: POST .../interrupt)
        msg_id = kc.execute("import time\nfor i in range(6000): time.sleep(0.01)")
        time.sleep(1.0)
        assert server.http("POST", f"/api/kernels/{kid}/interrupt").status_code == 204
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        ok(kc, "x = 6 * 7")
    finally:
        kc.stop_channels()

    # the kernel's session: interactive, labelled with the kernel and the notebook
    sessions = server.http("GET", "/bai/api/v1/sessions", params={"status": "RUNNING"}).json()["sessions"]
    mine = [s for s in sessions if s["labels"].get("kernel-id") == kid]
    assert len(mine) == 1, sessions
    sess = mine[0]
    assert sess["type"] == "interactive"
    assert sess["labels"]["notebook"] == "proj/nb/analysis.ipynb"
    assert sess["binds"] == [{"source": os.path.realpath(server.root),
                              "target": "/home/work/jupyter", "perm": "rw"}]
    info = server.jupyter_bai("session", "info", sess["name"])
    assert "kernel-id" in info.stdout and "proj/nb/analysis.ipynb" in info.stdout, info.stdout

    # the server dies (kill -9) and comes back: same kernel, same variables, same notebook
    server.kill9()
    server.start()
    assert kid in [k["id"] for k in server.http("GET", "/api/kernels").json()]
    nb_sessions = server.http("GET", "/api/sessions").json()
    assert [s["kernel"]["id"] for s in nb_sessions if s["path"] == "proj/nb/analysis.ipynb"] == [kid]
    kc = server.client_for(kid)
    try:
        assert ok(kc, "print(x)") == "42"
    finally:
        kc.stop_channels()

    # destroyed from outside: JupyterLab is told the kernel is dead (not restarted, not hung)
    states: list[str] = []

    async def destroy_and_watch() -> None:
        watch = asyncio.ensure_future(_wait_dead(server.url, server.token, kid, bound=60))
        await asyncio.sleep(1.0)
        gone = server.jupyter_bai("session", "destroy", sess["name"])
        assert gone.returncode == 0, gone.stderr
        states.extend(await watch)

    asyncio.run(destroy_and_watch())
    assert states[-1] == "dead", states
    assert server.http("GET", f"/api/kernels/{kid}").status_code == 404
    assert not [s for s in server.http("GET", "/bai/api/v1/sessions").json()["sessions"]
                if s["labels"].get("kernel-id") == kid and s["status"] not in TERMINAL]

    # a second kernel, then a clean stop: its session ends, nothing is left behind
    r = server.start_notebook_kernel("proj/nb/second.ipynb", "kt")
    assert r.status_code == 201, r.text
    took = server.sigterm()
    print(f"clean stop with a running kernel took {took:.2f} s")
    assert all(s["status"] in TERMINAL for s in server.sessions_in_store()), server.sessions_in_store()
    assert server.processes_left() == []
    assert not list((server.state / "kernels").glob("*.json"))


def _kernel_sessions(server: JupyterServer, kid: str) -> list[dict[str, Any]]:
    return [s for s in server.http("GET", "/bai/api/v1/sessions").json()["sessions"]
            if s["labels"].get("kernel-id") == kid]


def test_restart_and_crash_give_a_fresh_kernel_in_a_new_session(server: JupyterServer) -> None:
    server.start()
    assert server.jupyter_bai("kernelspec", "install", "kr", "-r", "cpu=1", "--user").returncode == 0
    r = server.start_notebook_kernel("r.ipynb", "kr")
    assert r.status_code == 201, r.text
    kid = r.json()["kernel"]["id"]
    kc = server.client_for(kid)
    ok(kc, "x = 1")
    kc.stop_channels()
    listed = server.jupyter_bai("session", "ls")
    assert "interactive (kernel)" in listed.stdout, listed.stdout

    # the restart button: the old session ends, a new one runs the same kernel id
    assert server.http("POST", f"/api/kernels/{kid}/restart").status_code == 200
    sessions = _kernel_sessions(server, kid)
    assert [s["status"] for s in sessions] == ["TERMINATED", "RUNNING"], sessions
    kc = server.client_for(kid)
    assert ok(kc, "print('x' in dir())") == "False"

    # the kernel process dies by itself: Jupyter's restarter starts it again (a new session)
    kc.execute("import os; os._exit(1)")
    kc.stop_channels()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = _kernel_sessions(server, kid)
        if len(sessions) == 3 and sessions[-1]["status"] == "RUNNING":
            break
        time.sleep(0.2)
    assert [s["status"] for s in sessions] == ["TERMINATED", "TERMINATED", "RUNNING"], sessions
    assert sessions[1]["status_info"] == "process exited"
    deadline = time.monotonic() + 60
    while server.http("GET", f"/api/kernels/{kid}").json()["execution_state"] in ("restarting", "starting") \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    kc = server.client_for(kid)
    try:
        assert ok(kc, "print(6 * 7)") == "42"
    finally:
        kc.stop_channels()
    server.sigterm()
    assert all(s["status"] in TERMINAL for s in server.sessions_in_store())
    assert server.processes_left() == []
