"""The base of every REST handler under ``/bai/api/v1``: auth, JSON errors, bodies, streams.

Every handler method is declared with :func:`api_method`: authenticated with Jupyter's own
auth, authorized (``auth_resource = "bai"``, action read/write/execute) by the server's
``Authorizer``, and turning a :class:`BaiError` into ``{"error": code, "message": line}`` with
its 4xx status. Its declaration (models, status, summary) is what ``openapi.py`` documents.
Routes are listed once in :func:`jupyter_bai.api.routes.route_table`.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
from dataclasses import dataclass
from http.client import responses
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, TypeVar

import pydantic
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel
from tornado import web
from tornado.iostream import StreamClosedError

from ..engine.engine import Engine
from ..spec.errors import BaiError, InvalidRequest, RuntimeUnavailable
from ..spec.models import ApiModel
from ..spec.session import spec_error
from ..spec.vfolder import path_problem

API = "/bai/api/v1"
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
SSE_HEARTBEAT = 15.0
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Action = Literal["read", "write", "execute"]
#: What each HTTP status means in this API (the error responses openapi.yaml lists).
ERROR_STATUSES: dict[int, str] = {
    400: "invalid-request", 403: "forbidden", 404: "not-found", 409: "conflict",
    413: "quota-exceeded", 503: "runtime-unavailable",
}
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


class ResponseMismatch(RuntimeError):
    """An answer that does not match its declared model (a 500, never a 4xx)."""


@dataclass(frozen=True)
class Operation:
    """One REST operation as its handler method declares it; ``openapi.py`` documents it.

    ``request``/``query`` are the JSON body and query-string models, ``response`` the answer's
    model (every JSON answer is validated through it), ``content`` its media type (``stream``
    is the model of each item of an NDJSON/SSE stream), ``errors`` the 4xx/5xx it can answer
    (403 is always possible). The description is the handler method's docstring.
    """

    action: Action
    operation_id: str
    summary: str
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    content: str = "application/json"
    stream: type[BaseModel] | None = None
    alt_content: tuple[tuple[str, str], ...] = ()
    request_content: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    errors: tuple[int, ...] = ()
    returns: str = "OK."
    description: str = ""


def api_method(
    action: Action | F | None = None,
    *,
    operation_id: str = "",
    summary: str = "",
    tag: str = "",
    response: type[BaseModel] | None = None,
    status: int = 200,
    request: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    content: str = "application/json",
    stream: type[BaseModel] | None = None,
    alt_content: tuple[tuple[str, str], ...] = (),
    request_content: str = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    errors: tuple[int, ...] = (),
    returns: str = "OK.",
) -> Any:
    """Declare a REST operation: authenticate, authorize ``action`` on ``bai``, map errors to JSON.

    ``@api_method("read", operation_id=..., summary=..., response=Model, ...)``; the bare form
    ``@api_method`` authorizes by HTTP method (GET read, others write) and documents nothing
    (``openapi.py`` refuses such a route until it is declared).
    """

    def decorate(method: F) -> F:
        verb = method.__name__.upper()
        act: Action = action if isinstance(action, str) else ("read" if verb in ("GET", "HEAD") else "write")
        op = Operation(
            action=act, operation_id=operation_id, summary=summary, tag=tag, response=response,
            status=status, request=request, query=query, content=content, stream=stream,
            alt_content=alt_content, request_content=request_content, headers=headers,
            errors=errors, returns=returns, description=inspect.cleandoc(method.__doc__ or ""),
        )

        @functools.wraps(method)
        async def handle(self: BaiHandler, *args: Any, **kwargs: Any) -> Any:
            self._operation = op
            try:
                return await method(self, *args, **kwargs)
            except BaiError as exc:
                self._send_error(exc)
            except pydantic.ValidationError as exc:
                self._send_error(spec_error(exc))

        guarded = web.authenticated(authorized(act, message=f"not allowed to {act} bai resources")(handle))
        guarded.operation = op  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    if callable(action):
        method, action = action, None
        return decorate(method)
    return decorate


class BaiHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = "bai"
    _operation: Operation | None = None
    _content_type: str | None = None

    def set_header(self, name: str, value: Any) -> None:
        if name.lower() == "content-type":
            self._content_type = str(value)
        super().set_header(name, value)

    def compute_etag(self) -> str | None:
        """No ETag: API answers are live state, never revalidated, and tornado would hash every
        body on the event loop (~15 ms for a 50,000-file listing's 10 MB)."""
        return None

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        """Keep the media type a handler chose (APIHandler would force application/json)."""
        kwargs.setdefault("set_content_type", self._content_type or "application/json")
        return super().finish(*args, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (403 from auth, 405, ...) as ``{"error", "message"}`` too."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = ""
        if isinstance(exc, web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else (exc.log_message or "")
        if status_code == 403 and not message:
            message = ("missing or wrong token: send 'Authorization: token <TOKEN>' "
                       "(JUPYTER_BAI_TOKEN or the connection file bai-engine.json)")
        code = ERROR_STATUSES.get(status_code, "invalid-request" if status_code < 500 else "internal-error")
        if getattr(self, "_stream_request_body", False):
            # refused before its body was read (auth, xsrf): the connection cannot be reused
            self.set_header("Connection", "close")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "message": message or responses.get(status_code, "error")}))

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

    def reply(self, data: Any, status: int | None = None) -> None:
        """Send ``data`` as JSON, validated through the operation's response model."""
        self._send_json(self._encode(data), status)

    async def reply_off_loop(self, make: Callable[[], Any], status: int | None = None) -> None:
        """``reply(make())`` with the query and the encoding in a thread.

        For answers that grow with the store (every session ever run): building and
        validating them is milliseconds of CPU the event loop should not spend.
        """
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, lambda: self._encode(make()))
        self._send_json(body, status)

    def _encode(self, data: Any) -> str:
        op = self._operation
        if op is not None and op.response is not None:
            try:
                model = data if isinstance(data, op.response) else op.response.model_validate(data)
            except pydantic.ValidationError as exc:  # the engine's bug, not the caller's: a 500
                raise ResponseMismatch(f"{op.operation_id}: answer does not match {op.response.__name__}: {exc}") from None
            data = model.to_json() if isinstance(model, ApiModel) else model.model_dump(mode="json")
        return json.dumps(data, default=str)

    def _send_json(self, body: str, status: int | None) -> None:
        op = self._operation
        self.set_status(status if status is not None else (op.status if op is not None else 200))
        self.set_header("Content-Type", "application/json")
        self.finish(body)

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
        path = self.get_argument(name, "", strip=False) or ""  # spaces are part of a name
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
