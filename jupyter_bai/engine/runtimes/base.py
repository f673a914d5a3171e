"""The narrow interface every runtime (local sandbox, docker) implements.

Shaped like jupyter_client's kernel provisioners: launch something, learn
whether it is still alive, stop it with a grace period, and find it again
after the engine restarts (``adopt``). Everything a runtime needs to find a
session again lives in the JSON ``handle`` the engine stores in SQLite.
"""
from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

from .agent_client import agent_request


def engine_id(state_dir: Path) -> str:
    """Names this engine's containers and cgroups (engines on one machine never share them)."""
    return hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedMount:
    """A vfolder mount after lookup: where it lives on the host and where it appears."""

    name: str
    host_path: Path
    target: str
    readonly: bool


@dataclass
class LaunchContext:
    session_id: str
    session_name: str
    image: str
    session_dir: Path
    interactive: bool
    command: str | None
    env: dict[str, str]
    mounts: list[ResolvedMount]
    gpu_devices: list[int] = field(default_factory=list)
    extra_dev_paths: list[str] = field(default_factory=list)
    extra_bind_paths: list[str] = field(default_factory=list)
    # The session's resource slots as stored (decimal strings; mem in bytes).
    resources: dict[str, str] = field(default_factory=dict)
    # Container ports to publish on 127.0.0.1 (docker; local sessions share the host network).
    ports: list[int] = field(default_factory=list)

    @property
    def cpu(self) -> Decimal:
        return Decimal(str(self.resources.get("cpu") or 0))

    @property
    def mem(self) -> int:
        return int(Decimal(str(self.resources.get("mem") or 0)))

    @property
    def log_path(self) -> Path:
        return self.session_dir / "logs" / "output.log"

    @property
    def state_dir(self) -> Path:
        """The wrapper's own files: the engine's, never bound into the session (which could
        otherwise fake its exit status or plant a symlink for a root wrapper to write through)."""
        return self.session_dir / "state"

    @property
    def exit_path(self) -> Path:
        return self.state_dir / "exit"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "wrapper.pid"


class RuntimeLost(Exception):
    """The runtime itself went away (a Docker daemon that stopped answering)."""


class Runtime(abc.ABC):
    """Starts and supervises the processes or containers behind sessions."""

    name: str = "abstract"

    @property
    def sandbox_kind(self) -> str:
        """How sessions are isolated ("bwrap", "none", "docker"); cheap, no I/O."""
        return self.name

    @abc.abstractmethod
    def handles(self, image: str) -> bool:
        """Whether an image reference belongs to this runtime."""

    @abc.abstractmethod
    def availability(self) -> dict[str, Any]:
        """``{"name", "available", "sandbox", "notes": [...]}`` for ``resources``."""

    @abc.abstractmethod
    def start(self, ctx: LaunchContext) -> dict[str, Any]:
        """Launch and return the handle to persist; must not block for long."""

    @abc.abstractmethod
    def adopt(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> dict[str, Any] | None:
        """Find a session again after a restart; None when it is gone."""

    @abc.abstractmethod
    def exit_code(self, ctx: LaunchContext, handle: dict[str, Any]) -> int | None:
        """The exit status once the session's main process ended, else None."""

    @abc.abstractmethod
    def is_alive(self, handle: dict[str, Any]) -> bool: ...

    @abc.abstractmethod
    async def wait(self, handle: dict[str, Any]) -> None:
        """Return when the session's main process has ended."""

    @abc.abstractmethod
    async def stop(self, handle: dict[str, Any], grace: float) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL everything."""

    @abc.abstractmethod
    def agent_socket(self, ctx: LaunchContext) -> str:
        """Host path of the in-session agent's unix socket."""

    async def agent_request(self, ctx: LaunchContext, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One request to the in-session agent (a runtime may answer some without one)."""
        async for msg in agent_request(self.agent_socket(ctx), request):
            yield msg

    def exit_reason(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> str | None:
        """Why the session ended, when the runtime knows better than an exit code (OOM)."""
        return None

    def close(self) -> None:
        """Release shared resources (threads, daemon connections) at engine shutdown."""

    def cleanup(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> None:
        """Release what start() made (scratch dirs, containers); logs stay."""

    def check(self, image: str, resources: Any) -> None:
        """Refuse at create what can never start (unknown image, too little memory)."""

    def image_command(self, image: str) -> str | None:
        """The image's own command line (model services' ``cmd``/``nim``); None: it has none."""
        return None

    def sweep(self, live: set[str]) -> list[str]:
        """Remove leftovers (containers) of sessions not in ``live``; what was removed."""
        return []
