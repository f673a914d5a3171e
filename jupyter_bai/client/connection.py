"""How a front end finds the engine: environment first, then the runtime-dir connection file.

The server extension and ``jupyter bai serve`` write ``bai-engine.json`` (URL, token, pid,
state dir) into ``jupyter_runtime_dir()``; kernels they start get ``JUPYTER_BAI_URL`` and
``JUPYTER_BAI_TOKEN`` in their environment.  Either way ``%bai`` and ``jupyter bai`` reach the
same engine without the user typing a URL.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_bai._files import write_private_json
from jupyter_bai.spec.errors import BaiError

CONNECTION_FILE_NAME = "bai-engine.json"
ENV_URL = "JUPYTER_BAI_URL"
ENV_TOKEN = "JUPYTER_BAI_TOKEN"
API_PREFIX = "/bai/api/v1"

NO_ENGINE_HINT = "start JupyterLab with `make lab` or run `jupyter bai serve`"


class EngineNotFound(BaiError):
    """No engine is reachable; the message says how to start one."""

    status, code = 503, "engine-not-found"


@dataclass(frozen=True)
class EngineConnection:
    """Where the engine's REST API lives: the Jupyter server root URL and its token."""

    url: str
    token: str = ""

    @property
    def api_url(self) -> str:
        """Base of every REST route (``{url}/bai/api/v1``)."""
        return self.url.rstrip("/") + API_PREFIX


def connection_file_path() -> Path:
    """The connection file's path; honours ``JUPYTER_RUNTIME_DIR`` at call time."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / CONNECTION_FILE_NAME


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probes without touching it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def read_connection_file(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The file's content when it names a live engine, else None (missing, broken or stale)."""
    p = Path(path) if path is not None else connection_file_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not data["url"]:
        return None
    pid = data.get("pid")
    if pid is not None:
        try:
            if not pid_alive(int(pid)):
                return None  # a crashed engine left its file behind
        except (TypeError, ValueError):
            return None
    return data


def find_engine() -> EngineConnection:
    """The engine to talk to: ``JUPYTER_BAI_URL``/``JUPYTER_BAI_TOKEN``, else the connection file.

    Raises :class:`EngineNotFound` with a hint when neither names a running engine.
    """
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return EngineConnection(url=url, token=os.environ.get(ENV_TOKEN, ""))
    data = read_connection_file()
    if data is not None:
        return EngineConnection(url=data["url"], token=str(data.get("token") or ""))
    raise EngineNotFound(f"no jupyter-bai engine is running: {NO_ENGINE_HINT}")


def write_connection_file(
    conn: EngineConnection,
    pid: int,
    state_dir: str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
) -> Path:
    """Publish the engine's URL and token (mode 0600, atomic rename) so front ends find it."""
    p = Path(path) if path is not None else connection_file_path()
    payload = {"url": conn.url, "token": conn.token, "pid": int(pid), "state_dir": str(state_dir)}
    write_private_json(p, payload, prefix=".bai-engine-")
    return p


def remove_connection_file(
    path: str | os.PathLike[str] | None = None, *, pid: int | None = None
) -> None:
    """Remove the file on shutdown; with ``pid``, only if it still names that process.

    The pid check keeps a second engine's fresh file from being removed by an older one.
    """
    p = Path(path) if path is not None else connection_file_path()
    if pid is not None:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("pid") not in (None, pid):
            return
    try:
        p.unlink()
    except FileNotFoundError:
        pass
