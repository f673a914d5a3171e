"""``EngineDriver``: a :class:`~jupyter_bai.client.driver.Driver` over an engine in this process.

No server, no HTTP: the client calls the :class:`~jupyter_bai.engine.engine.Engine` directly
(on the client's event loop). Useful for scripts and tests that want sessions without a
Jupyter server, and the proof that the front ends depend on the Driver seam only:
``Client(driver=EngineDriver.starting(state_dir))`` works with the CLI, ``%bai`` and notebooks.
"""
from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jupyter_bai.api.sessions import follow_log
from jupyter_bai.client.driver import Driver, Unsupported
from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.spec.errors import BaiError
from jupyter_bai.spec.models import (
    DeployCheck,
    DeployInfo,
    ServiceVersions,
    PipelineJobInfo,
    ServiceInfo,
    ServiceToken,
    Event,
    ExecMessage,
    FileEntry,
    ImageList,
    Metrics,
    Resources,
    RunMessage,
    SessionInfo,
    VFolderInfo,
)
from jupyter_bai.spec.deploy import DeployRequest
from jupyter_bai.spec.pipeline import PipelineSpec
from jupyter_bai.spec.service import AutoscaleRule, ServiceCreate
from jupyter_bai.spec.session import SessionSpec, spec_error
from jupyter_bai.spec.vfolder import VFolderCreate

SPOOL_IN_MEMORY = 8 << 20


class EngineDriver(Driver):
    """Drives ``engine`` directly; :meth:`starting` makes one that starts (and owns) an engine."""

    def __init__(self, engine: Engine, *, owns: bool = False) -> None:
        self.engine = engine
        self.owns = owns
        self.where = f"engine in this process ({engine.config.state_dir})"

    @classmethod
    def starting(cls, state_dir: str | Path, **config: Any) -> Callable[[], Awaitable[EngineDriver]]:
        """An async factory for ``Client(driver=...)``: starts an engine on the client's loop."""

        async def start() -> EngineDriver:
            engine = Engine(EngineConfig(state_dir=Path(state_dir), **config))
            await engine.start()
            return cls(engine, owns=True)

        return start

    async def aclose(self) -> None:
        if self.owns:
            self.owns = False
            await self.engine.close()

    # -- node

    async def resources(self) -> Resources:
        return Resources.model_validate(self.engine.resources())

    async def metrics(self) -> Metrics:
        assert self.engine.metrics is not None
        return Metrics.model_validate(await self.engine.metrics.current())

    async def list_images(self) -> ImageList:
        return ImageList.model_validate(await asyncio.to_thread(self.engine.images))

    # -- sessions

    async def create_session(self, request: Mapping[str, Any]) -> SessionInfo:
        try:
            spec = SessionSpec.model_validate(dict(request))
        except ValidationError as exc:
            raise spec_error(exc) from None
        return SessionInfo.model_validate(await self.engine.sessions.create_async(spec))

    @property
    def _services(self) -> Any:
        if self.engine.services is None:
            raise BaiError("model services are not running on this engine")
        return self.engine.services

    async def create_service(self, request: Mapping[str, Any]) -> ServiceInfo:
        return ServiceInfo.model_validate(
            self._services.create(ServiceCreate.from_json(dict(request))))

    @property
    def _deploys(self) -> Any:
        if self.engine.deploys is None:
            raise BaiError("model services are not running on this engine")
        return self.engine.deploys

    async def check_deploy(self, notebook: str) -> DeployCheck:
        return DeployCheck.model_validate(self._deploys.check(notebook))

    async def deploy_notebook(self, name: str, request: Mapping[str, Any]) -> DeployInfo:
        return DeployInfo.model_validate(
            await self._deploys.deploy(name, DeployRequest.from_json(dict(request))))

    async def rollback_service(self, name: str) -> DeployInfo:
        return DeployInfo.model_validate(self._deploys.rollback(name))

    async def service_versions(self, name: str) -> ServiceVersions:
        return ServiceVersions.model_validate(self._deploys.versions(name))

    async def list_services(self) -> list[ServiceInfo]:
        return [ServiceInfo.model_validate(s) for s in self._services.list()]

    async def get_service(self, name: str) -> ServiceInfo:
        return ServiceInfo.model_validate(self._services.get(name))

    async def scale_service(self, name: str, replicas: int) -> ServiceInfo:
        return ServiceInfo.model_validate(self._services.scale(name, replicas))

    async def delete_service(self, name: str) -> ServiceInfo:
        return ServiceInfo.model_validate(self._services.delete(name))

    async def issue_service_token(self, name: str, ttl: str) -> ServiceToken:
        return ServiceToken.model_validate(self._services.issue_token(name, ttl))

    async def add_autoscale_rule(self, name: str, rule: Mapping[str, Any]) -> ServiceInfo:
        return ServiceInfo.model_validate(
            self._services.add_rule(name, AutoscaleRule.from_json(dict(rule))))

    async def remove_autoscale_rule(self, name: str, rule: str) -> ServiceInfo:
        return ServiceInfo.model_validate(self._services.remove_rule(name, rule))

    async def service_logs(self, name: str, tail: int | None) -> str:
        return str(self._services.logs(name, tail=tail))

    async def list_sessions(self, status: str | None) -> list[SessionInfo]:
        return [SessionInfo.model_validate(s) for s in self.engine.sessions.list(status)]

    async def get_session(self, name: str) -> SessionInfo:
        return SessionInfo.model_validate(self.engine.sessions.get(name))

    async def destroy_session(self, name: str, forced: bool) -> SessionInfo:
        return SessionInfo.model_validate(await self.engine.sessions.destroy(name, forced=forced))

    def _pipelines(self) -> Any:
        if self.engine.pipelines is None:
            raise Unsupported("the pipeline runner is not running")
        return self.engine.pipelines

    async def submit_pipeline(self, spec: Mapping[str, Any]) -> PipelineJobInfo:
        job = await self._pipelines().submit_any(PipelineSpec.from_json(dict(spec)))
        return PipelineJobInfo.model_validate(job)

    async def list_pipeline_jobs(self) -> list[PipelineJobInfo]:
        return [PipelineJobInfo.model_validate(j) for j in self._pipelines().list()]

    async def get_pipeline_job(self, job: str) -> PipelineJobInfo:
        return PipelineJobInfo.model_validate(self._pipelines().get(job))

    async def cancel_pipeline_job(self, job: str) -> PipelineJobInfo:
        return PipelineJobInfo.model_validate(await self._pipelines().cancel(job))

    async def rerun_pipeline_job(self, job: str) -> PipelineJobInfo:
        return PipelineJobInfo.model_validate(self._pipelines().rerun(job))

    async def pipeline_task_logs(self, job: str, task: str) -> str:
        return str(await self._pipelines().task_logs_any(job, task))

    async def session_logs(self, name: str, tail: int | None) -> str:
        return str(self.engine.sessions.logs(name, tail=tail))

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        chunks = follow_log(self.engine.sessions, name)
        try:
            async for chunk in chunks:
                yield chunk.decode("utf-8", "replace")
        finally:
            await chunks.aclose()

    async def _agent(self, name: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        stream = self.engine.sessions.agent_stream(name, request)
        started = False
        try:
            async for msg in stream:
                started = True
                yield msg
        except BaiError as exc:
            if not started:
                raise
            yield {"type": "done", "status": "error", "ename": exc.code, "evalue": str(exc)}
        finally:
            await stream.aclose()

    async def exec_stream(
        self, name: str, command: str | list[str], env: Mapping[str, str] | None
    ) -> AsyncIterator[ExecMessage]:
        async for msg in self._agent(name, {"op": "exec", "command": command, "env": dict(env or {})}):
            yield ExecMessage.model_validate(msg)

    async def run_stream(self, name: str, code: str) -> AsyncIterator[RunMessage]:
        async for msg in self._agent(name, {"op": "run", "code": code}):
            yield RunMessage.model_validate(msg)

    async def interrupt(self, name: str) -> bool:
        interrupted = False
        async for msg in self._agent(name, {"op": "interrupt"}):
            interrupted = interrupted or bool(msg.get("interrupted"))
        return interrupted

    # -- vfolders

    async def create_vfolder(self, request: Mapping[str, Any]) -> VFolderInfo:
        info = self.engine.vfolders.create(VFolderCreate.from_json(dict(request)))
        self.engine.events.publish("vfolder", info.name, action="created")
        return VFolderInfo.model_validate(info.model_dump())

    async def list_vfolders(self) -> list[VFolderInfo]:
        return [VFolderInfo.model_validate(f.model_dump()) for f in self.engine.vfolders.list()]

    async def get_vfolder(self, name: str) -> VFolderInfo:
        return VFolderInfo.model_validate(self.engine.vfolders.get(name).model_dump())

    async def delete_vfolder(self, name: str) -> None:
        self.engine.delete_vfolder(name)

    async def list_files(self, name: str, path: str) -> list[FileEntry]:
        return [FileEntry.model_validate(f.model_dump()) for f in self.engine.vfolders.files(name, path)]

    async def upload_file(
        self, name: str, path: str, chunks: AsyncIterable[bytes], size: int, *, parents: bool
    ) -> FileEntry:
        folders = self.engine.vfolders
        if parents and "/" in path.strip("/"):
            folders.mkdir(name, path.rsplit("/", 1)[0], parents=True, exist_ok=True)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            async for chunk in chunks:
                await asyncio.to_thread(spool.write, chunk)
            written = spool.tell()
            spool.seek(0)
            entry = await asyncio.to_thread(folders.upload, name, path, spool, size_hint=written)
        self.engine.events.publish("vfolder", name, action="uploaded", path=entry.path)
        return FileEntry.model_validate(entry.model_dump())

    async def download_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        dl = await asyncio.to_thread(self.engine.vfolders.open_for_download, name, path)
        try:
            left = dl.size  # a file growing meanwhile is cut at its size when opened
            while left > 0 and (chunk := await asyncio.to_thread(dl.file.read, min(1 << 20, left))):
                left -= len(chunk)
                yield chunk
        finally:
            dl.close()

    async def mkdir(self, name: str, path: str, parents: bool) -> FileEntry:
        entry = self.engine.vfolders.mkdir(name, path, parents=parents)
        entry = entry if entry is not None else self.engine.vfolders.stat(name, path)
        return FileEntry.model_validate(entry.model_dump())

    async def move(self, name: str, src: str, dst: str) -> FileEntry:
        entry = self.engine.vfolders.move(name, src, dst)
        entry = entry if entry is not None else self.engine.vfolders.stat(name, dst)
        return FileEntry.model_validate(entry.model_dump())

    async def rm(self, name: str, path: str, recursive: bool) -> None:
        self.engine.vfolders.remove(name, path, recursive=recursive)

    # -- events

    async def events(self, since: int | None) -> AsyncIterator[Event]:
        stream = self.engine.events.subscribe(since)
        try:
            async for event in stream:
                yield Event.model_validate({**event, "event": event.get("kind")})
        finally:
            await stream.aclose()
