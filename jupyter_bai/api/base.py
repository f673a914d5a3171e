"""The base of every REST handler under ``/bai/api/v1``: auth, JSON errors, bodies, streams.

Every handler is authenticated with Jupyter's own auth (403 otherwise) and
turns a :class:`BaiError` into ``{"error": code, "message": line}`` with its
4xx status. Routes are listed once in :func:`jupyter_bai.api.routes.route_table`;
a test checks that table against ``openapi.yaml``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pydantic
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.iostream import StreamClosedError

from ..engine.engine import Engine
from ..spec.errors import BaiError, InvalidRequest, RuntimeUnavailable
from ..spec.session import spec_error

API = "/bai/api/v1"
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
SSE_HEARTBEAT = 15.0
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def api_method(method: F) -> F:
    """Authenticate, then map user errors to JSON 4xx."""

    @web.authenticated
    @functools.wraps(method)
    async def wrapper(self: "BaiHandler", *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except BaiError as exc:
            self._send_error(exc)
        except pydantic.ValidationError as exc:
            self._send_error(spec_error(exc))

    return wrapper  # type: ignore[return-value]


class BaiHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "bai"

    @property
    def engine(self) -> Engine:
        app = self.settings["bai_app"]
        if app.engine is None:
            raise RuntimeUnavailable(f"the jupyter-bai engine is not running: {app.engine_error or 'starting'}")
        return app.engine

    def _send_error(self, exc: BaiError) -> None:
        if self._finished:
            return
        if self._headers_written:
            self.finish()
            return
        self.clear()
        self.set_status(exc.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(exc.to_json()))

    def body_json(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def int_arg(self, name: str) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise InvalidRequest(f"query parameter '{name}' must be an integer, got '{raw}'") from None

    def bool_arg(self, name: str) -> bool:
        return (self.get_argument(name, "false") or "").lower() in ("1", "true", "yes")

    async def stream_ndjson(self, messages: Any) -> None:
        """Forward each message as it comes; stop (closing upstream) if the client leaves."""
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        started = False
        try:
            async for message in messages:
                started = True
                self.write(json.dumps(message) + "\n")
                await self.flush()
        except StreamClosedError:
            return
        except BaiError as exc:
            if started:
                self.write(json.dumps({"type": "done", "status": "error", "ename": exc.code,
                                       "evalue": str(exc)}) + "\n")
            else:
                raise
        finally:
            await messages.aclose()
        self.finish()
