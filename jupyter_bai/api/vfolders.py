"""``/vfolders/*``: storage folders and the files in them."""
from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from ..spec.errors import InvalidRequest
from ..spec.vfolder import MkdirRequest, MoveRequest, RemoveRequest, VFolderCreate
from .base import BaiHandler, api_method

class VFoldersHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        self.reply({"vfolders": [f.model_dump(mode="json") for f in self.engine.vfolders.list()]})

    @api_method
    async def post(self) -> None:
        req = VFolderCreate.from_json(self.body_json())
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
        path = self.path_arg("path")
        files = self.engine.vfolders.files(name, path)
        self.reply({"files": [f.model_dump(mode="json") for f in files]})

    @api_method
    async def put(self, name: str) -> None:
        path = self.path_arg("path")
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
        path = self.path_arg("path")
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
        req = self.body_model(MkdirRequest, "mkdir request")
        path = req.path
        entry = self.engine.vfolders.mkdir(name, path, parents=req.parents)
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, path).model_dump(mode="json"), status=201)


class VFolderMoveHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        req = self.body_model(MoveRequest, "move request")
        src, dst = req.src, req.dst
        if not src or not dst:
            raise InvalidRequest("'src' and 'dst' are required")
        entry = self.engine.vfolders.move(name, src, dst)
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, dst).model_dump(mode="json"))


class VFolderRmHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        req = self.body_model(RemoveRequest, "rm request")
        if not req.path:
            raise InvalidRequest("'path' is required")
        self.engine.vfolders.remove(name, req.path, recursive=req.recursive)
        self.set_status(204)
        self.finish()
