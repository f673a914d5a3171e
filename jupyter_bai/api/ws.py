"""``/ws``: one WebSocket that multiplexes the event stream and live metrics (the sidebar's).

Authenticated like every REST route (Jupyter's token or cookie; 403 otherwise)
and origin-checked by jupyter-server's WebSocket base classes. Each connection
holds at most one bounded event subscription and one newest-only metrics slot,
and waits for each frame to be taken by the socket before sending the next, so a
stalled client costs a bounded amount of memory and is sent a ``resync`` (with a
fresh snapshot) when it reads again. The protocol is in README ("Event stream")
and in openapi.yaml.
"""
from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Awaitable, Callable

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..engine.engine import Engine

CHANNELS = ("events", "metrics")
OPS = ("subscribe", "unsubscribe", "snapshot", "ping")
# Kernel send buffer of one connection: small, so a client that stops reading is noticed
# after ~100 KB rather than after megabytes of stale events, and then resynced.
SEND_BUFFER = 64 * 1024


class BadOp(Exception):
    """A client message the protocol does not allow; answered with an error frame."""


class StreamSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    auth_resource = "bai"

    engine: Engine
    _floor = 0  # events at or below this seq are covered by the last snapshot sent

    def set_default_headers(self) -> None:
        """JupyterHandler's default headers make no sense on a WebSocket."""

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", "bai")):
            raise web.HTTPError(403)
        app = self.settings["bai_app"]
        if app.engine is None:
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": "runtime-unavailable", "message":
                                    f"the jupyter-bai engine is not running: "
                                    f"{app.engine_error or 'starting'}"}))
            return
        self.engine = app.engine
        await super().get(*args, **kwargs)

    async def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().open(*args, **kwargs)  # keep-alive pings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        try:
            assert self.ws_connection is not None
            sock = self.ws_connection.stream.socket  # type: ignore[attr-defined]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except (AttributeError, OSError):
            pass
        await self._send({"type": "hello", "seq": self.engine.events.last_seq(), "engine": "local"})

    async def on_message(self, message: str | bytes) -> None:
        try:
            try:
                request = json.loads(message)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadOp(f"message is not valid JSON: {exc}") from None
            if not isinstance(request, dict):
                raise BadOp("message must be a JSON object")
            await self._handle(request)
        except BadOp as exc:
            await self._send({"type": "error", "message": str(exc)})

    async def _handle(self, request: dict[str, Any]) -> None:
        op = request.get("op")
        if op not in OPS:
            raise BadOp(f"unknown op {op!r} (known: {', '.join(OPS)})")
        if op == "ping":
            await self._send({"type": "pong"})
        elif op == "snapshot":
            await self._send_snapshot()
        else:
            channel = request.get("channel")
            if channel not in CHANNELS:
                raise BadOp(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
            self._stop(channel)
            if op == "subscribe":
                since = request.get("since")
                if channel == "events" and since is not None and (
                    not isinstance(since, int) or isinstance(since, bool) or since < 0
                ):
                    raise BadOp(
                        f"'since' must be an event seq (integer >= 0) or null, got {since!r}"
                    )
                run: Callable[[], Awaitable[None]] = (
                    (lambda: self._follow_events(since)) if channel == "events"
                    else self._follow_metrics
                )
                self._tasks[channel] = asyncio.create_task(self._guard(run()))

    async def _send_snapshot(self) -> None:
        snapshot = await asyncio.get_running_loop().run_in_executor(None, self.engine.snapshot)
        seq = snapshot.pop("seq")
        self._floor = max(self._floor, seq)
        await self._send({"type": "resync", "seq": seq, "snapshot": snapshot})

    async def _follow_events(self, since: int | None) -> None:
        stream = self.engine.events.subscribe(since)
        try:
            async for event in stream:
                if event["kind"] == "resync":
                    await self._send_snapshot()
                elif event["seq"] > self._floor:
                    await self._send({"channel": "events", "event": event})
        finally:
            await stream.aclose()

    async def _follow_metrics(self) -> None:
        stream = self.engine.metrics.subscribe()  # type: ignore[union-attr]
        try:
            async for sample in stream:
                await self._send({"channel": "metrics", "sample": sample})
        finally:
            await stream.aclose()

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except (WebSocketClosedError, asyncio.CancelledError):
            pass
        except Exception:
            self.log.exception("jupyter-bai WebSocket stream failed")
            self.close(1011, "internal error")

    async def _send(self, message: dict[str, Any]) -> None:
        """Wait until the socket took the frame: backpressure instead of a growing buffer."""
        await self.write_message(json.dumps(message, default=str))

    def _stop(self, channel: str) -> None:
        task = self._tasks.pop(channel, None)
        if task is not None:
            task.cancel()

    def on_close(self) -> None:
        for channel in list(getattr(self, "_tasks", {})):
            self._stop(channel)
