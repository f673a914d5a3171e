"""``HttpDriver``: the :class:`~jupyter_bai.client.driver.Driver` over this engine's REST API."""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from jupyter_bai.client.connection import EngineConnection
from jupyter_bai.client.driver import Driver
from jupyter_bai.client.operations import CHUNK_SIZE, DEFAULT_TIMEOUT, Call, _ops
from jupyter_bai.client.wire import (
    SSEParser,
    _aiter_lines,
    _decode_json,
    _headers,
    _parse_ndjson_line,
    _transport_error,
    error_from_response,
)
from jupyter_bai.spec.errors import BaiError
from jupyter_bai.spec.models import (
    DeployCheck,
    DeployInfo,
    ServiceVersions,
    PipelineJobInfo,
    PipelineJobList,
    ServiceInfo,
    ServiceList,
    ServiceToken,
    AssistantChange,
    AssistantSources,
    Event,
    ExecMessage,
    FileEntry,
    FileList,
    ImageList,
    Metrics,
    Interrupted,
    LogsText,
    Resources,
    RunMessage,
    SessionInfo,
    SessionList,
    VFolderInfo,
    VFolderList,
)

M = TypeVar("M", bound=BaseModel)


def _model(cls: type[M], data: Any, what: str) -> M:
    """An answer as its model; a shape the client does not understand is one clear line."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BaiError(
            f"the engine's answer to {what} does not match the API ({loc}: {first['msg']}); "
            "are the client and the engine the same version?",
            status=502, code="bad-response",
        ) from None


class HttpDriver(Driver):
    """Talks to ``{url}/bai/api/v1`` with httpx; ``transport`` swaps the network (tests)."""

    def __init__(
        self,
        connection: EngineConnection,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connection = connection
        self.where = connection.url
        self._http = httpx.AsyncClient(
            base_url=connection.api_url,
            headers=_headers(connection),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing

    async def _send(self, call: Call, **kw: Any) -> httpx.Response:
        try:
            resp = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, **kw
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.where) from None
        if resp.status_code >= 400:
            raise error_from_response(
                resp.status_code, resp.content, url=self.where, reason=resp.reason_phrase
            )
        return resp

    async def _get(self, cls: type[M], call: Call) -> M:
        return _model(cls, _decode_json(await self._send(call)), f"{call.method} {call.path}")

    @asynccontextmanager
    async def _stream(self, call: Call, **kw: Any) -> AsyncIterator[httpx.Response]:
        """A streaming response with no read timeout; errors map like ordinary calls."""
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, json=call.json, timeout=None, **kw,
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise error_from_response(
                        resp.status_code, resp.content, url=self.where, reason=resp.reason_phrase
                    )
                yield resp
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.where) from None

    async def _lines(self, call: Call, **kw: Any) -> AsyncIterator[str]:
        async with self._stream(call, **kw) as resp:
            try:
                async for line in _aiter_lines(resp):
                    yield line
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.where) from None

    async def _messages(self, call: Call, cls: type[M]) -> AsyncIterator[M]:
        async for line in self._lines(call):
            msg = _parse_ndjson_line(line)
            if msg is not None:
                yield _model(cls, msg, f"{call.method} {call.path}")

    # -- node

    async def resources(self) -> Resources:
        return await self._get(Resources, _ops.resources())

    async def metrics(self) -> Metrics:
        return await self._get(Metrics, _ops.metrics())

    async def list_images(self) -> ImageList:
        return await self._get(ImageList, _ops.list_images())

    # -- sessions

    async def create_session(self, request: Mapping[str, Any]) -> SessionInfo:
        return await self._get(SessionInfo, _ops.create_session(request))

    async def create_service(self, request: Mapping[str, Any]) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.create_service(request))

    async def check_deploy(self, notebook: str) -> DeployCheck:
        return await self._get(DeployCheck, _ops.check_deploy(notebook))

    async def deploy_notebook(self, name: str, request: Mapping[str, Any]) -> DeployInfo:
        return await self._get(DeployInfo, _ops.deploy_notebook(name, request))

    async def rollback_service(self, name: str) -> DeployInfo:
        return await self._get(DeployInfo, _ops.rollback_service(name))

    async def service_versions(self, name: str) -> ServiceVersions:
        return await self._get(ServiceVersions, _ops.service_versions(name))

    async def list_services(self) -> list[ServiceInfo]:
        return (await self._get(ServiceList, _ops.list_services())).services

    async def get_service(self, name: str) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.get_service(name))

    async def scale_service(self, name: str, replicas: int) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.scale_service(name, replicas))

    async def delete_service(self, name: str) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.delete_service(name))

    async def issue_service_token(self, name: str, ttl: str) -> ServiceToken:
        return await self._get(ServiceToken, _ops.issue_service_token(name, ttl))

    async def add_autoscale_rule(self, name: str, rule: Mapping[str, Any]) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.add_autoscale_rule(name, rule))

    async def remove_autoscale_rule(self, name: str, rule: str) -> ServiceInfo:
        return await self._get(ServiceInfo, _ops.remove_autoscale_rule(name, rule))

    async def service_logs(self, name: str, tail: int | None) -> str:
        return (await self._get(LogsText, _ops.service_logs(name, tail))).logs

    async def list_sessions(self, status: str | None) -> list[SessionInfo]:
        return (await self._get(SessionList, _ops.list_sessions(status))).sessions

    async def get_session(self, name: str) -> SessionInfo:
        return await self._get(SessionInfo, _ops.get_session(name))

    async def destroy_session(self, name: str, forced: bool) -> SessionInfo:
        return await self._get(SessionInfo, _ops.destroy_session(name, forced))

    async def submit_pipeline(self, spec: Mapping[str, Any]) -> PipelineJobInfo:
        return await self._get(PipelineJobInfo, _ops.submit_pipeline(spec))

    async def list_pipeline_jobs(self) -> list[PipelineJobInfo]:
        return (await self._get(PipelineJobList, _ops.list_pipeline_jobs())).jobs

    async def get_pipeline_job(self, job: str) -> PipelineJobInfo:
        return await self._get(PipelineJobInfo, _ops.get_pipeline_job(job))

    async def cancel_pipeline_job(self, job: str) -> PipelineJobInfo:
        return await self._get(PipelineJobInfo, _ops.cancel_pipeline_job(job))

    async def rerun_pipeline_job(self, job: str) -> PipelineJobInfo:
        return await self._get(PipelineJobInfo, _ops.rerun_pipeline_job(job))

    async def pipeline_task_logs(self, job: str, task: str) -> str:
        return (await self._get(LogsText, _ops.pipeline_task_logs(job, task))).logs

    async def session_logs(self, name: str, tail: int | None) -> str:
        return (await self._get(LogsText, _ops.session_logs(name, tail))).logs

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        async with self._stream(_ops.follow_logs(name)) as resp:
            try:
                async for text in resp.aiter_text():
                    yield text
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.where) from None

    def exec_stream(
        self, name: str, command: str | list[str], env: Mapping[str, str] | None
    ) -> AsyncIterator[ExecMessage]:
        return self._messages(_ops.exec(name, command, env), ExecMessage)

    def run_stream(self, name: str, code: str) -> AsyncIterator[RunMessage]:
        return self._messages(_ops.run_code(name, code), RunMessage)

    async def interrupt(self, name: str) -> bool:
        return (await self._get(Interrupted, _ops.interrupt(name))).interrupted

    # -- vfolders

    async def create_vfolder(self, request: Mapping[str, Any]) -> VFolderInfo:
        return await self._get(VFolderInfo, _ops.create_vfolder(request))

    async def list_vfolders(self) -> list[VFolderInfo]:
        return (await self._get(VFolderList, _ops.list_vfolders())).vfolders

    async def get_vfolder(self, name: str) -> VFolderInfo:
        return await self._get(VFolderInfo, _ops.get_vfolder(name))

    async def delete_vfolder(self, name: str) -> None:
        await self._send(_ops.delete_vfolder(name))

    async def list_files(self, name: str, path: str) -> list[FileEntry]:
        return (await self._get(FileList, _ops.list_files(name, path))).files

    async def upload_file(
        self, name: str, path: str, chunks: AsyncIterable[bytes], size: int, *, parents: bool
    ) -> FileEntry:
        call = _ops.upload_file(name, path, parents)
        resp = await self._send(
            call, content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=httpx.Timeout(None, connect=10.0),
        )
        return _model(FileEntry, _decode_json(resp), f"PUT {call.path}")

    async def download_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        async with self._stream(_ops.download_file(name, path)) as resp:
            try:
                async for chunk in resp.aiter_bytes(CHUNK_SIZE):
                    yield chunk
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.where) from None

    async def mkdir(self, name: str, path: str, parents: bool) -> FileEntry:
        return await self._get(FileEntry, _ops.mkdir(name, path, parents))

    async def move(self, name: str, src: str, dst: str) -> FileEntry:
        return await self._get(FileEntry, _ops.move(name, src, dst))

    async def rm(self, name: str, path: str, recursive: bool) -> None:
        await self._send(_ops.rm(name, path, recursive))

    # -- events

    async def events(self, since: int | None) -> AsyncIterator[Event]:
        parser = SSEParser()
        async for line in self._lines(_ops.events(since), headers={"Accept": "text/event-stream"}):
            event = parser.feed(line)
            if event is not None:
                yield Event.model_validate(event)

    # -- API assistant

    async def ask_stream(self, request: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        async for line in self._lines(_ops.ask(request)):
            msg = _parse_ndjson_line(line)
            if msg is not None:
                yield msg

    async def assistant_sources(self) -> AssistantSources:
        return await self._get(AssistantSources, _ops.assistant_sources())

    async def assistant_learn(self, path: str) -> AssistantChange:
        return await self._get(AssistantChange, _ops.assistant_learn(path))

    async def assistant_forget(self, source: str) -> AssistantChange:
        return await self._get(AssistantChange, _ops.assistant_forget(source))
