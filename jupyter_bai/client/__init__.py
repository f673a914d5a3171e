"""The client layer: every front end reaches the engine through :class:`Client`."""
from __future__ import annotations

from jupyter_bai.client.client import TERMINAL_STATUSES, AsyncClient, Client
from jupyter_bai.client.connection import EngineConnection, EngineNotFound, find_engine
from jupyter_bai.spec.errors import BaiError

__all__ = [
    "AsyncClient",
    "BaiError",
    "Client",
    "EngineConnection",
    "EngineNotFound",
    "TERMINAL_STATUSES",
    "find_engine",
]
