"""``%bai serve-local NOTEBOOK``: try the service in this process before deploying it.

The saved notebook is captured and run exactly as a route would run it, then served by
uvicorn on a thread, on 127.0.0.1 (a free port unless one is given).
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import uvicorn

from .app import State, add_endpoints, build_app
from .capture import Captured, capture_file
from .runner import StartupFailed, run_cells, run_hooks

__all__ = ["LocalServer", "serve_local"]


class LocalServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, port: int,
                 captured: Captured, stop_hooks: list[Callable[[], Any]]):
        self._server, self._thread, self.port = server, thread, port
        self.captured = captured
        self._stop_hooks = stop_hooks

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        run_hooks(self._stop_hooks, "on_stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_local(notebook: str | Path, port: int = 0) -> LocalServer:
    """Run the notebook's service code and serve it; raises ``StartupFailed`` or
    ``ValueError`` (the notebook's problems) with one line saying what is wrong."""
    path = Path(notebook)
    captured = capture_file(path)
    if captured.problems:
        raise ValueError(f"{path.name}: " + "; ".join(captured.problems))
    reg = run_cells(captured, path, chdir=False)
    run_hooks(reg.start_hooks, "on_start")
    state = State(ready=True, detail="ready")
    app = build_app(path.stem, state)
    add_endpoints(app, reg)
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"bai-serve-local-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise StartupFailed(f"could not serve on 127.0.0.1:{port}")
    return LocalServer(server, thread, port, captured, list(reg.stop_hooks))
