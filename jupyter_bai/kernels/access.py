"""How a kernel provisioner reaches the engine that runs its session.

Inside the Jupyter server that hosts the engine, the engine is called directly: no HTTP
round trip per poll, and it still answers while the server shuts down (the HTTP server
stops listening first, and a clean stop must still end the kernels' sessions). Anywhere
else (a kernel manager in another process) the REST client is used.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from ..client import AsyncClient
from ..spec.session import SessionSpec


ENDING = ("TERMINATING", "TERMINATED", "ERROR", "CANCELLED")
REMOTE_POLL = 0.25  # seconds between status reads over REST (no event stream there)


class SessionAccess(Protocol):
    """The session calls a kernel needs."""

    state_dir: Path | None  # where reattach records live (in-process only)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get(self, name: str) -> dict[str, Any]: ...

    async def destroy(self, name: str, forced: bool) -> dict[str, Any]: ...

    async def logs(self, name: str, tail: int) -> str: ...

    async def ending(self, name: str) -> dict[str, Any]:
        """Return the session once it is ending or ended (a start that failed, a destroy)."""
        ...


class InProcess:
    """The engine of the Jupyter server this kernel manager lives in."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.state_dir: Path | None = Path(engine.config.state_dir)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        # the image check (a Docker API call) runs off the event loop
        return dict(await self.engine.sessions.create_async(SessionSpec.from_json(body)))

    async def get(self, name: str) -> dict[str, Any]:
        return dict(self.engine.sessions.get(name))

    async def destroy(self, name: str, forced: bool) -> dict[str, Any]:
        return dict(await self.engine.sessions.destroy(name, forced=forced))

    async def logs(self, name: str, tail: int) -> str:
        return str(self.engine.sessions.logs(name, tail=tail))

    async def ending(self, name: str) -> dict[str, Any]:
        """Woken by the engine's status events, not by polling."""
        events = self.engine.events
        stream = events.subscribe(since=events.last_seq())  # nothing after this read is missed
        try:
            session = await self.get(name)
            if session["status"] in ENDING:
                return session
            async for event in stream:
                if event["kind"] == "resync" or (
                        event["kind"] == "session" and event["name"] == name
                        and event.get("status") in ENDING):
                    session = await self.get(name)
                    if session["status"] in ENDING:
                        return session
        finally:
            await stream.aclose()
        raise AssertionError("the event stream ended")  # pragma: no cover - it never does


class Remote:
    """An engine in another process, found like every client finds it."""

    state_dir: Path | None = None

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        async with AsyncClient() as client:
            image = body.pop("image")
            return dict(await client.create_session(image, **body))

    async def get(self, name: str) -> dict[str, Any]:
        async with AsyncClient() as client:
            return dict(await client.get_session(name))

    async def destroy(self, name: str, forced: bool) -> dict[str, Any]:
        async with AsyncClient() as client:
            return dict(await client.destroy_session(name, forced=forced))

    async def logs(self, name: str, tail: int) -> str:
        async with AsyncClient() as client:
            return str(await client.session_logs(name, tail=tail))

    async def ending(self, name: str) -> dict[str, Any]:
        while True:
            session = await self.get(name)
            if session["status"] in ENDING:
                return session
            await asyncio.sleep(REMOTE_POLL)


def server_app(config_parent: Any) -> Any:
    """The jupyter ServerApp above a kernel manager (KernelManager -> MappingKernelManager ->
    ServerApp), or None outside a server."""
    node = config_parent
    for _ in range(4):
        if node is None:
            return None
        if hasattr(node, "web_app") and hasattr(node, "root_dir"):
            return node
        node = getattr(node, "parent", None)
    return None


def access_for(serverapp: Any) -> SessionAccess:
    """The in-process engine when this server hosts one, else the REST client."""
    web_app = getattr(serverapp, "web_app", None) if serverapp is not None else None
    bai_app = web_app.settings.get("bai_app") if web_app is not None else None
    engine = getattr(bai_app, "engine", None)
    return InProcess(engine) if engine is not None else Remote()
