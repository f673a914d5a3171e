"""Run a captured notebook once (cells in order, then ``@on_start`` hooks) into a registry.

The cells run in one fresh module namespace, in the notebook's directory (so relative paths
mean what they meant in Jupyter). A cell that raises stops start-up with
:class:`StartupFailed`, whose message names the cell and the exception.
"""
from __future__ import annotations

import os
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Callable

from .capture import Captured
from .decorators import DuplicateEndpoint, Registry, registry

__all__ = ["StartupFailed", "run_cells", "run_hooks"]

MODULE = "__notebook__"


class StartupFailed(RuntimeError):
    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


def _short_traceback(exc: BaseException) -> str:
    """The traceback from the cell on (the runner's own frames left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")
              or "jupyter_bai" not in f.filename]
    return "".join(traceback.format_list(frames)) + "".join(
        traceback.format_exception_only(type(exc), exc))


def run_cells(captured: Captured, notebook: Path, chdir: bool = True) -> Registry:
    """Execute the cells; return what they registered (the process-wide registry).
    ``chdir=False`` in a kernel, whose working directory is the user's."""
    registry.clear()
    module = types.ModuleType(MODULE)
    module.__file__ = str(notebook)
    sys.modules[MODULE] = module
    folder = str(notebook.resolve().parent)
    if chdir:
        os.chdir(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    for cell in captured.cells:
        try:
            code = compile(cell.source, f"<cell {cell.number}>", "exec")
            exec(code, module.__dict__)
        except DuplicateEndpoint as exc:
            raise StartupFailed(f"cell {cell.number}: {exc}") from None
        except BaseException as exc:  # noqa: BLE001 - SystemExit in a cell is a failure too
            raise StartupFailed(
                f"cell {cell.number} raised {type(exc).__name__}: {exc}",
                _short_traceback(exc)) from None
    if not registry.endpoints:
        raise StartupFailed("no @endpoint was registered by the notebook's cells")
    return registry


def run_hooks(hooks: list[Callable[[], Any]], what: str) -> None:
    for hook in hooks:
        name = getattr(hook, "__name__", "hook")
        try:
            hook()
        except BaseException as exc:  # noqa: BLE001
            raise StartupFailed(f"@{what} '{name}' raised {type(exc).__name__}: {exc}",
                                _short_traceback(exc)) from None
