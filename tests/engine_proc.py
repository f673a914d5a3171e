"""Start and stop real engines (``jupyter_bai.api.serve``) for tests and benchmarks."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The token goes in the environment (JUPYTER_BAI_TOKEN), never in argv where `ps` shows it.
SERVE_CODE = (
    "import sys; from jupyter_bai.api.serve import serve; "
    "serve(sys.argv[1], int(sys.argv[2]), '127.0.0.1', extra_argv=sys.argv[3:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EngineProcess:
    state_dir: Path
    runtime_dir: Path
    port: int
    token: str
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "JUPYTER_BAI_URL": self.url,
            "JUPYTER_BAI_TOKEN": self.token,
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
        }

    def start(self, timeout: float = 60, expect_status: int = 200) -> "EngineProcess":
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime_dir), **self.extra_env}
        env.pop("JUPYTER_BAI_URL", None)
        env.pop("JUPYTER_TOKEN", None)
        env["JUPYTER_BAI_TOKEN"] = self.token
        log = open(self.state_dir.parent / f"engine-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_CODE, str(self.state_dir), str(self.port),
             *self.extra_argv],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/bai/api/v1/resources",
                              headers={"Authorization": f"token {self.token}"}, timeout=2)
                if r.status_code == expect_status:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"engine did not answer in {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.state_dir.parent / f"engine-{self.port}.log").read_text()[-3000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def teardown(self) -> None:
        """Stop the server and whatever it left running on purpose (sessions and the endpoint
        proxy outlive a server so that a restart adopts them): nothing outlives a test."""
        self.stop()
        reap_leftovers(self.state_dir)

    def connection_file(self) -> dict[str, object]:
        return json.loads((self.runtime_dir / "bai-engine.json").read_text())


def start_engine(
    base: Path, extra_env: dict[str, str] | None = None, extra_argv: list[str] | None = None
) -> EngineProcess:
    base.mkdir(parents=True, exist_ok=True)
    return EngineProcess(
        state_dir=base / "state", runtime_dir=base / "runtime", port=free_port(),
        token="test-token-" + os.urandom(6).hex(), extra_env=extra_env or {},
        extra_argv=extra_argv or [],
    ).start()


class Api:
    """Raw HTTP against /bai/api/v1, for tests of the API itself (not the client)."""

    def __init__(self, eng: EngineProcess, token: str | None = None):
        self.base = f"{eng.url}/bai/api/v1"
        tok = eng.token if token is None else token
        self.http = httpx.Client(headers={"Authorization": f"token {tok}"} if tok else {},
                                 timeout=60)

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(self.base + path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, json: object = None, **kw: object) -> httpx.Response:
        return self.http.post(self.base + path, json=json, **kw)  # type: ignore[arg-type]

    def put(self, path: str, **kw: object) -> httpx.Response:
        return self.http.put(self.base + path, **kw)  # type: ignore[arg-type]

    def delete(self, path: str, **kw: object) -> httpx.Response:
        return self.http.delete(self.base + path, **kw)  # type: ignore[arg-type]

    def create(self, **spec: object) -> dict:  # type: ignore[type-arg]
        r = self.post("/sessions", json={"image": "local", **spec})
        assert r.status_code == 201, r.text
        return r.json()

    def wait(self, name: str, statuses: tuple[str, ...] = ("RUNNING",), timeout: float = 60) -> dict:  # type: ignore[type-arg]
        terminal = ("TERMINATED", "ERROR", "CANCELLED")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.get(f"/sessions/{name}").json()
            if s["status"] in statuses or s["status"] in terminal:
                return s
            time.sleep(0.05)
        raise AssertionError(f"session {name} stuck in {s['status']}")

    def stream(self, path: str, body: object) -> list[dict]:  # type: ignore[type-arg]
        out = []
        with self.http.stream("POST", self.base + path, json=body) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line:
                    out.append(json.loads(line))
        return out

    def run(self, name: str, code: str) -> tuple[str, list[dict]]:  # type: ignore[type-arg]
        msgs = self.stream(f"/sessions/{name}/run", {"code": code})
        text = "".join(m.get("text", "") for m in msgs if m["type"] == "stream")
        return text, msgs


def reap_leftovers(root: Path) -> list[int]:
    """SIGKILL local sessions and endpoint proxies of engines whose state lies under ``root``.

    A local session's wrapper (its process group's leader) carries ``BAI_STATE_DIR`` under
    the engine's state dir; a proxy names the engine's database in its argv.
    """
    prefix = str(Path(root).resolve())
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        state = next((e[len(b"BAI_STATE_DIR="):].decode(errors="replace") for e in env
                      if e.startswith(b"BAI_STATE_DIR=")), "")
        session = state.startswith(prefix + os.sep)
        proxy = "jupyter_bai.proxy" in argv and any(a.startswith(prefix + os.sep) for a in argv)
        if not (session or proxy):
            continue
        pid = int(entry)
        try:
            if session and os.getpgid(pid) == pid and pid != os.getpgrp():
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed
