"""REST handlers for ``/bai/api/v1``: thin adapters from HTTP to the engine.

Every handler is authenticated with Jupyter's own auth (403 otherwise) and
turns a :class:`BaiError` into ``{"error": code, "message": line}`` with its
4xx status. Routes are listed once in :func:`route_table`; a test checks that
table against ``openapi.yaml``.
"""
from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pydantic
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.iostream import StreamClosedError

from ..engine.engine import Engine
from ..spec.errors import BaiError, InvalidRequest, RuntimeUnavailable
from ..spec.session import SessionSpec, spec_error
from ..spec.vfolder import VFolderCreate

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


class ResourcesHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        self.reply(self.engine.resources())


class ImagesHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        # A Docker API call (milliseconds on a local socket); keep the loop free anyway.
        import asyncio

        self.reply(await asyncio.get_running_loop().run_in_executor(None, self.engine.images))


class SessionsHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        status = self.get_argument("status", None)
        self.reply({"sessions": self.engine.sessions.list(status)})

    @api_method
    async def post(self) -> None:
        spec = SessionSpec.model_validate(self.body_json())
        self.reply(self.engine.sessions.create(spec), status=201)


class SessionHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        self.reply(self.engine.sessions.get(name))

    @api_method
    async def delete(self, name: str) -> None:
        self.reply(await self.engine.sessions.destroy(name, forced=self.bool_arg("forced")))


class SessionLogsHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        sessions = self.engine.sessions
        if not self.bool_arg("follow"):
            self.reply({"logs": sessions.logs(name, tail=self.int_arg("tail"))})
            return
        session = sessions.get(name)
        path = sessions.log_path(session["id"])
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        offset = 0
        try:
            while True:
                chunk = b""
                if path.exists():
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read(1 << 20)
                if chunk:
                    offset += len(chunk)
                    self.write(chunk)
                    await self.flush()
                    continue
                if sessions.get(session["id"])["status"] in ("TERMINATED", "ERROR", "CANCELLED"):
                    break
                await asyncio.sleep(0.2)
        except StreamClosedError:
            return
        self.finish()


class SessionExecHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        body = self.body_json()
        command = body.get("command")
        if not command or not isinstance(command, (str, list)):
            raise InvalidRequest("'command' must be a non-empty string or list of strings")
        env = body.get("env") or {}
        request = {"op": "exec", "command": command, "env": env}
        await self.stream_ndjson(self.engine.sessions.agent_stream(name, request))


class SessionRunHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        code = self.body_json().get("code")
        if not isinstance(code, str):
            raise InvalidRequest("'code' must be a string of Python source")
        await self.stream_ndjson(
            self.engine.sessions.agent_stream(name, {"op": "run", "code": code})
        )


class SessionInterruptHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        interrupted = False
        async for message in self.engine.sessions.agent_stream(name, {"op": "interrupt"}):
            interrupted = interrupted or bool(message.get("interrupted"))
        self.reply({"interrupted": interrupted})


class VFoldersHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        self.reply({"vfolders": [f.model_dump(mode="json") for f in self.engine.vfolders.list()]})

    @api_method
    async def post(self) -> None:
        req = VFolderCreate.model_validate(self.body_json())
        info = self.engine.vfolders.create(req)
        self.engine.events.publish("vfolder", info.name, action="created")
        self.reply(info.model_dump(mode="json"), status=201)


class VFolderHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        self.reply(self.engine.vfolders.get(name).model_dump(mode="json"))

    @api_method
    async def delete(self, name: str) -> None:
        self.engine.delete_vfolder(name)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class VFolderFilesHandler(BaiHandler):
    """Listing (GET) and upload (PUT, streamed to a spooled temp file, never whole in memory)."""

    _spool: Any = None

    async def prepare(self) -> None:
        await super().prepare()
        # Unauthenticated uploads are read and dropped, then refused with 403 by put():
        # answering before the body is read would reset the client's connection.
        if self.request.method == "PUT" and self.current_user:
            self.request.connection.set_max_body_size(1 << 40)
            self._spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)

    def data_received(self, chunk: bytes) -> None:
        if self._spool is not None:
            self._spool.write(chunk)

    def on_finish(self) -> None:
        if self._spool is not None:
            self._spool.close()

    @api_method
    async def get(self, name: str) -> None:
        path = self.get_argument("path", "")
        files = self.engine.vfolders.files(name, path)
        self.reply({"files": [f.model_dump(mode="json") for f in files]})

    @api_method
    async def put(self, name: str) -> None:
        path = self.get_argument("path", "")
        if not path:
            raise InvalidRequest("query parameter 'path' (the destination file) is required")
        folders = self.engine.vfolders
        if self.bool_arg("parents") and "/" in path.strip("/"):
            folders.mkdir(name, path.rsplit("/", 1)[0], parents=True, exist_ok=True)
        size = self._spool.tell()
        self._spool.seek(0)
        loop = asyncio.get_running_loop()
        entry = await loop.run_in_executor(
            None, lambda: folders.upload(name, path, self._spool, size_hint=size)
        )
        self.engine.events.publish("vfolder", name, action="uploaded", path=entry.path)
        self.reply(entry.model_dump(mode="json"), status=201)


class VFolderDownloadHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        path = self.get_argument("path", "")
        file_path = self.engine.vfolders.open_for_download(name, path)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(file_path.stat().st_size))
        self.set_header("Content-Disposition", f'attachment; filename="{file_path.name}"')
        try:
            with open(file_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.write(chunk)
                    await self.flush()
        except StreamClosedError:
            return
        self.finish()


class VFolderMkdirHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        body = self.body_json()
        path = body.get("path") or ""
        entry = self.engine.vfolders.mkdir(name, path, parents=bool(body.get("parents")))
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, path).model_dump(mode="json"), status=201)


class VFolderMoveHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        body = self.body_json()
        src, dst = body.get("src"), body.get("dst")
        if not src or not dst:
            raise InvalidRequest("'src' and 'dst' are required")
        entry = self.engine.vfolders.move(name, src, dst)
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, dst).model_dump(mode="json"))


class VFolderRmHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        body = self.body_json()
        path = body.get("path")
        if not path:
            raise InvalidRequest("'path' is required")
        self.engine.vfolders.remove(name, path, recursive=bool(body.get("recursive")))
        self.set_status(204)
        self.finish()


class EventsHandler(BaiHandler):
    """Server-sent events; ``since`` replays what a reconnecting client missed."""

    @api_method
    async def get(self) -> None:
        since = self.int_arg("since")
        if since is None and self.request.headers.get("Last-Event-ID", "").isdigit():
            since = int(self.request.headers["Last-Event-ID"])
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        stream = self.engine.events.subscribe(since)
        try:
            self.write(": connected\n\n")
            await self.flush()
            while True:
                try:
                    event = await asyncio.wait_for(stream.__anext__(), timeout=SSE_HEARTBEAT)
                except asyncio.TimeoutError:
                    self.write(": ping\n\n")
                else:
                    data = json.dumps(event, default=str)
                    self.write(f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n")
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            await stream.aclose()


class OpenAPIHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        self.set_header("Content-Type", "application/yaml")
        self.finish(OPENAPI_PATH.read_text())


NAME = r"(?P<name>[^/]+)"


def route_table() -> list[tuple[str, type[BaiHandler]]]:
    return [
        (rf"{API}/resources", ResourcesHandler),
        (rf"{API}/images", ImagesHandler),
        (rf"{API}/sessions", SessionsHandler),
        (rf"{API}/sessions/{NAME}", SessionHandler),
        (rf"{API}/sessions/{NAME}/logs", SessionLogsHandler),
        (rf"{API}/sessions/{NAME}/exec", SessionExecHandler),
        (rf"{API}/sessions/{NAME}/run", SessionRunHandler),
        (rf"{API}/sessions/{NAME}/interrupt", SessionInterruptHandler),
        (rf"{API}/vfolders", VFoldersHandler),
        (rf"{API}/vfolders/{NAME}", VFolderHandler),
        (rf"{API}/vfolders/{NAME}/files", VFolderFilesHandler),
        (rf"{API}/vfolders/{NAME}/download", VFolderDownloadHandler),
        (rf"{API}/vfolders/{NAME}/mkdir", VFolderMkdirHandler),
        (rf"{API}/vfolders/{NAME}/move", VFolderMoveHandler),
        (rf"{API}/vfolders/{NAME}/rm", VFolderRmHandler),
        (rf"{API}/events", EventsHandler),
        (rf"{API}/openapi.yaml", OpenAPIHandler),
        *assistant_routes(),
    ]


def assistant_routes() -> list[tuple[str, type[BaiHandler]]]:
    from .assistant_handlers import AssistantAskHandler, AssistantSourcesHandler

    return [
        (rf"{API}/assistant/ask", AssistantAskHandler),
        (rf"{API}/assistant/sources", AssistantSourcesHandler),
    ]
