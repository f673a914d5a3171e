"""The client layer: every front end reaches the engine through :class:`Client`.

``operations`` describes each REST call once, ``wire`` parses what comes back, and
``client``/``aio`` send them synchronously or with asyncio.
"""
from __future__ import annotations

from jupyter_bai.client.aio import AsyncClient
from jupyter_bai.client.client import Client
from jupyter_bai.client.connection import EngineConnection, EngineNotFound, find_engine
from jupyter_bai.client.operations import TERMINAL_STATUSES
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
