"""jupyter-bai: a GPU research workbench inside Jupyter, after Backend.AI."""
from __future__ import annotations

from typing import Any

from ._version import __version__


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .api.app import BaiApp

    return [{"module": "jupyter_bai", "app": BaiApp}]


def load_ipython_extension(ipython: Any) -> None:
    from .magics import load_ipython_extension as _load

    _load(ipython)


def __getattr__(name: str) -> Any:
    # Lazy so `import jupyter_bai` stays cheap for the server and the sandbox.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(name)


__all__ = ["__version__", "Client", "AsyncClient", "load_ipython_extension"]
