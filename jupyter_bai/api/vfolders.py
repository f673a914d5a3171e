"""``/vfolders/*``: storage folders and the files in them."""
from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from ..spec.errors import InvalidRequest
from ..spec.models import (
    DownloadQuery, FileEntry, FileList, FilesQuery, MkdirRequest, MoveRequest, RmRequest,
    UploadQuery, VFolderInfo, VFolderList,
)
from ..spec.vfolder import VFolderCreate
from .base import BaiHandler, api_method

class VFoldersHandler(BaiHandler):
    @api_method("read", operation_id="listVfolders", tag="vfolders", response=VFolderList,
                summary="List virtual folders with their usage.", returns="The folders.")
    async def get(self) -> None:
        self.reply({"vfolders": [f.model_dump(mode="json") for f in self.engine.vfolders.list()]})

    @api_method("write", operation_id="createVfolder", tag="vfolders", request=VFolderCreate,
                response=VFolderInfo, status=201, summary="Create a virtual folder.",
                returns="The new folder.", errors=(400, 409))
    async def post(self) -> None:
        """Example: `%bai vfolder create data -m data --quota 10g`."""
        req = VFolderCreate.model_validate(self.body_json())
        info = self.engine.vfolders.create(req)
        self.engine.events.publish("vfolder", info.name, action="created")
        self.reply(info.model_dump(mode="json"), status=201)


class VFolderHandler(BaiHandler):
    @api_method("read", operation_id="getVfolder", tag="vfolders", response=VFolderInfo,
                summary="One virtual folder.", returns="The folder.", errors=(404,))
    async def get(self, name: str) -> None:
        self.reply(self.engine.vfolders.get(name).model_dump(mode="json"))

    @api_method("write", operation_id="deleteVfolder", tag="vfolders", status=204,
                summary="Delete a folder and its files.", returns="Deleted.", errors=(404, 409))
    async def delete(self, name: str) -> None:
        """Refused with 409 while a live session mounts it."""
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

    @api_method("read", operation_id="listFiles", tag="vfolders", query=FilesQuery,
                response=FileList, summary="List a directory inside the folder.",
                returns="The directory's entries.", errors=(400, 404))
    async def get(self, name: str) -> None:
        path = self.get_argument("path", "")
        files = self.engine.vfolders.files(name, path)
        self.reply({"files": [f.model_dump(mode="json") for f in files]})

    @api_method("write", operation_id="uploadFile", tag="vfolders", query=UploadQuery,
                request_content="application/octet-stream", response=FileEntry, status=201,
                summary="Upload one file (the raw request body) to a path in the folder.",
                returns="The written file.", errors=(400, 404, 409, 413))
    async def put(self, name: str) -> None:
        """The body is streamed to disk, never held in memory whole. The parent directory must
        exist unless `parents=true`. Example: `%bai vfolder upload data ./train.csv` (the
        client checks that the folder exists before sending any byte).
        """
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
    @api_method("read", operation_id="downloadFile", tag="vfolders", query=DownloadQuery,
                content="application/octet-stream", headers=(("Content-Length", "integer"),),
                summary="Download one file's bytes.", returns="The file content, with Content-Length.",
                errors=(400, 404))
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
    @api_method("write", operation_id="makeDirectory", tag="vfolders", request=MkdirRequest,
                response=FileEntry, status=201, summary="Create a directory in the folder.",
                returns="The directory.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        body = self.body_json()
        path = body.get("path") or ""
        entry = self.engine.vfolders.mkdir(name, path, parents=bool(body.get("parents")))
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, path).model_dump(mode="json"), status=201)


class VFolderMoveHandler(BaiHandler):
    @api_method("write", operation_id="moveFile", tag="vfolders", request=MoveRequest,
                response=FileEntry, summary="Move or rename a file or directory inside the folder.",
                returns="The entry at its new path.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        body = self.body_json()
        src, dst = body.get("src"), body.get("dst")
        if not src or not dst:
            raise InvalidRequest("'src' and 'dst' are required")
        entry = self.engine.vfolders.move(name, src, dst)
        self.reply(entry.model_dump(mode="json") if entry is not None else
                   self.engine.vfolders.stat(name, dst).model_dump(mode="json"))


class VFolderRmHandler(BaiHandler):
    @api_method("write", operation_id="removeFile", tag="vfolders", request=RmRequest, status=204,
                summary="Remove a file, or a directory with `recursive`.", returns="Removed.",
                errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        body = self.body_json()
        path = body.get("path")
        if not path:
            raise InvalidRequest("'path' is required")
        self.engine.vfolders.remove(name, path, recursive=bool(body.get("recursive")))
        self.set_status(204)
        self.finish()
