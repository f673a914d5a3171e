"""Serve a notebook: ``@endpoint`` functions become HTTP routes, the other code cells run once.

In the notebook the decorators only record the function (it stays callable); the runner
(``python -m jupyter_bai.serving NOTEBOOK --port N``) captures the saved notebook's code cells
statically (:mod:`.capture`), runs them once and serves what they registered (:mod:`.app`).
Only pydantic, FastAPI, uvicorn and nbformat are imported here: a deployed route runs a copy of
this package next to the notebook, without the rest of jupyter_bai.
"""
from __future__ import annotations

from .decorators import Endpoint, Registry, endpoint, on_start, on_stop, registry

__all__ = ["endpoint", "on_start", "on_stop", "Endpoint", "Registry", "registry"]
