"""``@endpoint``, ``@on_start``, ``@on_stop``: record the function, give it back unchanged.

Interactively nothing is served, so the notebook keeps calling ``predict(...)`` as before; the
runner reads the same registry after it has run the notebook's cells.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

__all__ = ["Endpoint", "Registry", "registry", "endpoint", "on_start", "on_stop",
           "DuplicateEndpoint", "METHODS"]

F = TypeVar("F", bound=Callable[..., Any])
METHODS = ("GET", "POST")
_PATH = re.compile(r"^/[A-Za-z0-9._~/{}-]*$")
RESERVED = ("/health", "/live", "/openapi.json", "/docs", "/redoc")


class DuplicateEndpoint(ValueError):
    """Two different functions on one method and path."""


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    func: Callable[..., Any]

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", "endpoint")


@dataclass
class Registry:
    """What a notebook's cells registered, in order."""

    endpoints: dict[tuple[str, str], Endpoint] = field(default_factory=dict)
    start_hooks: list[Callable[[], Any]] = field(default_factory=list)
    stop_hooks: list[Callable[[], Any]] = field(default_factory=list)

    def add(self, ep: Endpoint) -> None:
        old = self.endpoints.get((ep.method, ep.path))
        if old is not None and old.name != ep.name:
            raise DuplicateEndpoint(
                f"two endpoints on {ep.method} {ep.path}: '{old.name}' and '{ep.name}'")
        self.endpoints[(ep.method, ep.path)] = ep  # re-running a cell replaces its function

    @staticmethod
    def _add_hook(hooks: list[Callable[[], Any]], func: Callable[[], Any]) -> None:
        name = getattr(func, "__name__", None)
        hooks[:] = [h for h in hooks if getattr(h, "__name__", None) != name]
        hooks.append(func)

    def clear(self) -> None:
        self.endpoints.clear()
        self.start_hooks.clear()
        self.stop_hooks.clear()


registry = Registry()
"""The process-wide registry the decorators write to (the runner clears it first)."""


def check_path(path: str) -> str:
    if not isinstance(path, str) or not _PATH.match(path) or "//" in path:
        raise ValueError(f"invalid endpoint path {path!r}: expected '/name' (letters, digits, "
                         "'.', '_', '~', '-', '/')")
    if path.rstrip("/") in RESERVED:
        raise ValueError(f"endpoint path {path!r} is reserved by the runner")
    return path


def endpoint(path: str, method: str = "POST") -> Callable[[F], F]:
    """Serve the function at ``path``: POST takes a JSON body keyed by parameter name (or the
    whole body for a single pydantic parameter), GET takes query parameters."""
    check_path(path)
    verb = str(method).upper()
    if verb not in METHODS:
        raise ValueError(f"invalid method {method!r} for endpoint {path}: use GET or POST")

    def wrap(func: F) -> F:
        registry.add(Endpoint(path, verb, func))
        return func

    return wrap


def on_start(func: F) -> F:
    """Run once when the service starts, after the notebook's cells (readiness waits for it)."""
    Registry._add_hook(registry.start_hooks, func)
    return func


def on_stop(func: F) -> F:
    """Run once when the service stops."""
    Registry._add_hook(registry.stop_hooks, func)
    return func
