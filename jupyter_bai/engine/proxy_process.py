"""Keeps the endpoint proxy process running: adopts the one a previous engine started,
starts it when it is missing, restarts it (same port) when it dies.

The proxy lives in its own session (``start_new_session``), so killing the engine (or the
Jupyter server) leaves it serving; its pid, start time and port are kept in the store.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from .config import EngineConfig
from .services import free_port
from .store import Store

log = logging.getLogger(__name__)


class ProxySupervisor:
    def __init__(self, config: EngineConfig, store: Store, interval: float = 0.2):
        self.config = config
        self.store = store
        self.interval = interval
        self.port = 0
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _state(self) -> dict[str, Any]:
        row = self.store.one("SELECT value FROM service_proxy WHERE key = 'process'")
        return json.loads(row["value"]) if row else {}

    def _save(self, state: dict[str, Any]) -> None:
        with self.store.tx():
            self.store.execute(
                "INSERT INTO service_proxy(key, value) VALUES ('process', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (json.dumps(state),))

    def _alive(self, state: dict[str, Any]) -> bool:
        """The recorded proxy is still this state dir's proxy (not a reused pid)."""
        pid = state.get("pid")
        if not pid:
            return False
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return False
        try:
            proc = psutil.Process(pid)
            return (abs(proc.create_time() - state.get("started", 0)) < 1.0
                    and proc.status() != psutil.STATUS_ZOMBIE
                    and str(self.config.db_path) in proc.cmdline())
        except psutil.Error:
            return False

    def _spawn(self) -> dict[str, Any]:
        log_path = self.config.state_dir / "proxy.log"
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_bai.proxy", "--db", str(self.config.db_path),
                 "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        state = {"pid": self._proc.pid, "port": self.port,
                 "started": psutil.Process(self._proc.pid).create_time()}
        self._save(state)
        log.info("service endpoint proxy started (pid %d) on %s", self._proc.pid, self.endpoint)
        return state

    def ensure(self) -> bool:
        """Adopt or (re)start the proxy while services exist; True when it had to be started.

        With no service it is left alone (an idle proxy exits by itself), so nothing outlives
        the services it was for; the port is chosen (and kept) all the same.
        """
        state = self._state()
        self.port = self.config.service_port or state.get("port") or free_port(set())
        if not state.get("port"):
            self._save({**state, "port": self.port})
        if self._alive(state) and state.get("port") == self.port:
            return False
        if not self.store.one("SELECT 1 FROM services"):
            return False
        if state.get("pid") and state.get("port") != self.port and self._alive(state):
            self.stop()
        if self._proc is not None:
            self._proc.poll()  # reap the dead one
        self._spawn()
        return True

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.ensure)
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.ensure():
                    self.restarts += 1
            except Exception:
                log.exception("supervising the endpoint proxy")

    async def close(self, stop: bool) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if stop:
            self.stop()

    def stop(self) -> None:
        state = self._state()
        if self._alive(state):
            try:
                os.kill(state["pid"], 15)
            except ProcessLookupError:
                pass
            deadline = time.time() + 5
            while time.time() < deadline and self._alive(state):
                if self._proc is not None:
                    self._proc.poll()
                time.sleep(0.05)
        if self._proc is not None:
            self._proc.poll()
