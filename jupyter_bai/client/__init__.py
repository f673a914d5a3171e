"""The client layer: every front end reaches the engine through :class:`Client`.

``aio.AsyncClient`` is the one implementation of every operation; ``client.Client`` runs it
on a private loop thread for synchronous callers. Both talk through a ``driver.Driver`` (the
backend seam): ``http.HttpDriver`` for this engine's REST API (requests built in
``operations``, answers parsed in ``wire``), ``inprocess.EngineDriver`` for an engine in this
process. Answers are ``jupyter_bai.spec.models``.
"""
from __future__ import annotations

from jupyter_bai.client.aio import AsyncClient
from jupyter_bai.client.client import Client
from jupyter_bai.client.driver import Driver
from jupyter_bai.client.http import HttpDriver
from jupyter_bai.client.connection import EngineConnection, EngineNotFound, find_engine
from jupyter_bai.client.operations import TERMINAL_STATUSES
from jupyter_bai.spec.errors import BaiError

__all__ = [
    "AsyncClient",
    "BaiError",
    "Client",
    "Driver",
    "HttpDriver",
    "EngineConnection",
    "EngineNotFound",
    "TERMINAL_STATUSES",
    "find_engine",
]
