"""``/vfolders/*``: storage folders and the files in them.

Every call into :class:`~jupyter_bai.engine.vfolders.VFolderManager` does file I/O (whole-tree
walks for usage, big listings, deletes), so it runs in an executor, never on the event loop.
"""
from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Any, Callable, TypeVar
from urllib.parse import quote

from jupyter_core.utils import ensure_async
from tornado import web
from tornado.iostream import StreamClosedError

from ..engine.vfolders import Upload
from ..spec.errors import BaiError, InvalidRequest
from ..spec.models import (
    DownloadQuery, FileEntry, FileList, FilesQuery, MkdirRequest, MoveRequest, RmRequest,
    UploadQuery, VFolderInfo, VFolderList,
)
from ..spec.vfolder import VFolderCreate
from .base import BaiHandler, api_method

T = TypeVar("T")

#: Body bytes gathered before one write in the executor (tornado hands over 64 KiB pieces).
UPLOAD_BUFFER = 1 << 20
DOWNLOAD_CHUNK = 1 << 20


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in the default executor so the event loop keeps answering meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name (RFC 6266, RFC 5987)."""
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _entries_json(key: str, entries: list[Any]) -> bytes:
    """``{key: [...]}`` as UTF-8, built in the executor one entry at a time: one
    ``json.dumps`` (or one ``encode`` on the loop) of 50,000 entries is a single C call that
    holds the GIL, and so stalls the event loop, for a third of a second."""
    items = ", ".join(json.dumps(e.model_dump(mode="json")) for e in entries)
    return f"{{{json.dumps(key)}: [{items}]}}".encode()


def _reply_bytes(handler: BaiHandler, body: bytes) -> None:
    handler.set_header("Content-Type", "application/json")
    handler.finish(body)


class VFoldersHandler(BaiHandler):
    @api_method("read", operation_id="listVfolders", tag="vfolders", response=VFolderList,
                summary="List virtual folders with their usage.", returns="The folders.")
    async def get(self) -> None:
        body = await blocking(lambda: _entries_json("vfolders", self.engine.vfolders.list()))
        _reply_bytes(self, body)

    @api_method("write", operation_id="createVfolder", tag="vfolders", request=VFolderCreate,
                response=VFolderInfo, status=201, summary="Create a virtual folder.",
                returns="The new folder.", errors=(400, 409))
    async def post(self) -> None:
        """Example: `%bai vfolder create data -m data --quota 10g`."""
        req = VFolderCreate.from_json(self.body_json())
        info = await blocking(self.engine.vfolders.create, req)
        self.engine.events.publish("vfolder", info.name, action="created")
        self.reply(info.model_dump(mode="json"), status=201)


class VFolderHandler(BaiHandler):
    @api_method("read", operation_id="getVfolder", tag="vfolders", response=VFolderInfo,
                summary="One virtual folder.", returns="The folder.", errors=(404,))
    async def get(self, name: str) -> None:
        info = await blocking(self.engine.vfolders.get, name)
        self.reply(info.model_dump(mode="json"))

    @api_method("write", operation_id="deleteVfolder", tag="vfolders", status=204,
                summary="Delete a folder and its files.", returns="Deleted.", errors=(404, 409))
    async def delete(self, name: str) -> None:
        """Refused with 409 while a live session mounts it."""
        # On the loop: the engine checks the folder's users and publishes the event there
        # (EventBus is not thread-safe); the files themselves go in a background thread.
        self.engine.delete_vfolder(name)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class VFolderFilesHandler(BaiHandler):
    """Listing (GET) and upload (PUT): the body streams straight into a temp file in the
    folder, checked against the quota and ``max_upload_size`` as it arrives."""

    _upload: Upload | None = None
    _pending: bytearray | None = None
    _body_read = False

    async def prepare(self) -> None:
        await super().prepare()
        # Unauthenticated uploads are read and dropped, then refused with 403 by put().
        if self.request.method != "PUT" or not self.current_user:
            return
        # Authorize before the body is read or anything is made in the folder (put()'s own
        # check would come only after the whole body had streamed into it).
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "write", self.auth_resource)
        )
        if not allowed:
            raise web.HTTPError(403, f"not allowed to write {self.auth_resource} resources")
        self.request.connection.set_max_body_size(1 << 62)  # the cap is enforced below
        try:
            self._upload = await self._begin()
        except BaiError as exc:
            self.refuse(exc)
            return
        self._pending = bytearray()

    async def _begin(self) -> Upload:
        """Check everything the headers allow before a byte of the body is read."""
        name = self.path_kwargs.get("name") or (self.path_args[0] if self.path_args else "")
        path = self.path_arg("path")
        if not path:
            raise InvalidRequest("query parameter 'path' (the destination file) is required")
        size: int | None = None
        raw = self.request.headers.get("Content-Length")
        if raw is not None:
            try:
                size = int(raw)
            except ValueError:
                raise InvalidRequest(f"Content-Length {raw!r} is not a number") from None
        return await blocking(
            self.engine.vfolders.begin_upload, name, path, size_hint=size,
            parents=self.bool_arg("parents"), limit=self.engine.config.max_upload_size,
        )

    def clear(self) -> None:
        """An answer sent before the whole body was read (any refusal, Jupyter's own 403
        included) makes tornado close the connection rather than read on; say so, or the
        client reuses the connection and its next request is reset."""
        super().clear()
        if self.request.method == "PUT" and not self._body_read:
            self.set_header("Connection", "close")

    def refuse(self, exc: BaiError) -> None:
        """Answer now; tornado then stops reading the body and closes the connection."""
        self._pending = None
        if self._upload is not None:
            self._upload.abort()
        self._send_error(exc)

    async def data_received(self, chunk: bytes) -> None:
        if self._pending is None or self._upload is None:
            return
        self._pending += chunk
        if len(self._pending) >= UPLOAD_BUFFER:
            await self._flush_pending()

    async def _flush_pending(self) -> None:
        assert self._pending is not None and self._upload is not None
        data, self._pending = bytes(self._pending), bytearray()
        try:
            await blocking(self._upload.write, data)
        except BaiError as exc:
            self.refuse(exc)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._upload is not None:
            asyncio.get_running_loop().run_in_executor(None, self._upload.abort)

    def on_finish(self) -> None:
        if self._upload is not None:
            asyncio.get_running_loop().run_in_executor(None, self._upload.abort)

    @api_method("read", operation_id="listFiles", tag="vfolders", query=FilesQuery,
                response=FileList, summary="List a directory inside the folder.",
                returns="The directory's entries.", errors=(400, 404))
    async def get(self, name: str) -> None:
        path = self.path_arg("path")
        files = self.engine.vfolders.files_json
        body = await blocking(lambda: b'{"files": ' + files(name, path) + b"}")
        _reply_bytes(self, body)

    @api_method("write", operation_id="uploadFile", tag="vfolders", query=UploadQuery,
                request_content="application/octet-stream", response=FileEntry, status=201,
                summary="Upload one file (the raw request body) to a path in the folder.",
                returns="The written file.", errors=(400, 404, 409, 413))
    async def put(self, name: str) -> None:
        """The body is streamed to disk, never held in memory whole. The parent directory must
        exist unless `parents=true`. Example: `%bai vfolder upload data ./train.csv` (the
        client checks that the folder exists before sending any byte).
        """
        self._body_read = True  # tornado calls put() once the body has ended
        upload = self._upload
        if upload is None:  # refused in prepare(); the error was sent there
            return
        if self._pending:
            await self._flush_pending()
        if self._finished:
            return
        entry: FileEntry = await blocking(upload.commit)
        self.engine.events.publish("vfolder", name, action="uploaded", path=entry.path)
        self.reply(entry.model_dump(mode="json"), status=201)


class VFolderDownloadHandler(BaiHandler):
    @api_method("read", operation_id="downloadFile", tag="vfolders", query=DownloadQuery,
                content="application/octet-stream",
                summary="Download one file's bytes.", returns="The file content, with Content-Length.",
                errors=(400, 404))
    async def get(self, name: str) -> None:
        path = self.path_arg("path")
        dl = await blocking(self.engine.vfolders.open_for_download, name, path)
        try:
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(dl.size))
            self.set_header("Content-Disposition", content_disposition(dl.name))
            left = dl.size  # a file growing meanwhile is cut at the announced length
            while left > 0:
                chunk = await blocking(dl.file.read, min(DOWNLOAD_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return
        finally:
            await blocking(dl.close)
        self.finish()


class VFolderMkdirHandler(BaiHandler):
    @api_method("write", operation_id="makeDirectory", tag="vfolders", request=MkdirRequest,
                response=FileEntry, status=201, summary="Create a directory in the folder.",
                returns="The directory.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        req = self.body_model(MkdirRequest, "mkdir request")
        entry = await blocking(self.engine.vfolders.mkdir, name, req.path, parents=req.parents)
        self.reply(entry.model_dump(mode="json"), status=201)


class VFolderMoveHandler(BaiHandler):
    @api_method("write", operation_id="moveFile", tag="vfolders", request=MoveRequest,
                response=FileEntry, summary="Move or rename a file or directory inside the folder.",
                returns="The entry at its new path.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        req = self.body_model(MoveRequest, "move request")
        src, dst = req.src, req.dst
        if not src or not dst:
            raise InvalidRequest("'src' and 'dst' are required")
        entry = await blocking(self.engine.vfolders.move, name, src, dst)
        self.reply(entry.model_dump(mode="json"))


class VFolderRmHandler(BaiHandler):
    @api_method("write", operation_id="removeFile", tag="vfolders", request=RmRequest, status=204,
                summary="Remove a file, or a directory with `recursive`.", returns="Removed.",
                errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        req = self.body_model(RmRequest, "rm request")
        if not req.path:
            raise InvalidRequest("'path' is required")
        await blocking(self.engine.vfolders.remove, name, req.path, recursive=req.recursive)
        self.set_status(204)
        self.finish()
