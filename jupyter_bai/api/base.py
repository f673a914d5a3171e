"""The base of every REST handler under ``/bai/api/v1``: auth, JSON errors, bodies, streams.

Every handler is authenticated with Jupyter's own auth (403 otherwise) and
turns a :class:`BaiError` into ``{"error": code, "message": line}`` with its
4xx status. Routes are listed once in :func:`jupyter_bai.api.routes.route_table`;
a test checks that table against ``openapi.yaml``.
"""
from __future__ import annotations

import functools
import json
import re
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
from ..spec.vfolder import path_problem

API = "/bai/api/v1"
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
SSE_HEARTBEAT = 15.0
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
M = TypeVar("M", bound=pydantic.BaseModel)
MAX_INT = 2**63 - 1
INT_RE = re.compile(r"-?[0-9]{1,19}")
BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _no_constant(name: str) -> Any:
    raise InvalidRequest(f"request body is not valid JSON: {name} is not a JSON number")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object. Python's ``json`` is more lenient than JSON: it takes
    NaN and Infinity, and raises ``UnicodeDecodeError`` or ``ValueError`` (a number with more than
    4300 digits) where a client sent garbage; all of those are the client's error here."""
    if not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"request body is not UTF-8 (byte {exc.start}): send JSON encoded as UTF-8"
        ) from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} (at {exc.pos})") from None
    except ValueError as exc:
        reason = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise InvalidRequest(f"request body is not valid JSON: {reason}") from None
    except RecursionError:
        raise InvalidRequest("request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:  # "\ud800" escapes decode to lone surrogates, which no file name or env can hold
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "request body is not valid JSON text: a string holds a lone UTF-16 surrogate"
        ) from None
    return data


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

    def finish(self, chunk: Any = None, **kwargs: Any) -> Any:
        """Keep a Content-Type the handler set: ``APIHandler.finish`` would make every reply,
        an empty log stream or this API's YAML document included, ``application/json``."""
        current = self._headers.get("Content-Type", "")
        if not current or current.startswith("text/html"):  # tornado's default: not set here
            current = "application/json"
        kwargs.setdefault("set_content_type", current)
        return super().finish(chunk, **kwargs)

    def body_json(self) -> dict[str, Any]:
        """The body as a JSON object; anything else (not UTF-8, not JSON, NaN) is a 400."""
        return parse_json_object(self.request.body)

    def body_model(self, model: type[M], what: str = "request") -> M:
        """The body validated by a pydantic request model; a problem is one 400 line."""
        data = self.body_json()
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise spec_error(exc, what, model) from None

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def int_arg(self, name: str, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
        """An integer query parameter within bounds (SQLite's are 64-bit), else a 400."""
        raw = self.get_argument(name, None)
        if raw is None:
            return None
        if not INT_RE.fullmatch(raw):
            raise InvalidRequest(f"query parameter '{name}' must be an integer, got {_short(raw)}")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise InvalidRequest(
                f"query parameter '{name}' must be between {minimum} and {maximum}, got {value}"
            )
        return value

    def last_event_id(self) -> int | None:
        """The ``Last-Event-ID`` an SSE client echoes back; one that is not ours is ignored."""
        raw = self.request.headers.get("Last-Event-ID", "")
        if re.fullmatch(r"[0-9]{1,18}", raw):
            return int(raw)
        return None

    def path_arg(self, name: str = "path") -> str:
        """A folder-relative path from the query (``""`` when absent) the kernel can take."""
        path = self.get_argument(name, "") or ""
        problem = path_problem(path)
        if problem:
            raise InvalidRequest(f"query parameter '{name}': {problem}")
        return path

    def bool_arg(self, name: str) -> bool:
        """``true``/``false`` (also ``1``/``0``, ``yes``/``no``); anything else is a 400."""
        raw = self.get_argument(name, None)
        if raw is None:
            return False
        value = BOOLS.get(raw.lower())
        if value is None:
            raise InvalidRequest(f"query parameter '{name}' must be true or false, got {_short(raw)}")
        return value

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
