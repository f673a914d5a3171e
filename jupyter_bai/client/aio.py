"""``AsyncClient``: the one implementation of every client operation.

It talks to a backend through a :class:`~jupyter_bai.client.driver.Driver` (the engine's REST
API by default) and returns :mod:`jupyter_bai.spec.models`. The synchronous
:class:`~jupyter_bai.client.client.Client` runs this very class on a private event-loop thread.
"""
from __future__ import annotations

import asyncio
import os
import posixpath
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

from jupyter_bai.client.connection import EngineConnection
from jupyter_bai.client.driver import Driver
from jupyter_bai.client.operations import (
    DEFAULT_TIMEOUT,
    TERMINAL_STATUSES,
    OutputCallback,
    SessionProgress,
    TransferProgress,
    _clean_remote,
    _kv,
    _ops,
    local_path,
    source_ref,
)
from jupyter_bai.client.wire import (
    _afile_chunks,
    _assistant_done,
    _Download,
    _entry_for,
    _ExecHandler,
    _Meter,
    _plan_upload,
    _poll_delay,
    _resolve,
    _RunHandler,
    _single_command,
    _tmp_path,
    _wait_targets,
    _wait_timeout_error,
)
from jupyter_bai.spec.errors import BaiError, Conflict, InvalidRequest, NotFound
from jupyter_bai.pipelines import load_file
from jupyter_bai.spec.pipeline import PipelineSpec
from jupyter_bai.spec.models import (
    DeployCheck,
    DeployInfo,
    ServiceVersion,
    PipelineJobInfo,
    ServiceInfo,
    ServiceToken,
    AssistantAnswer,
    AssistantChange,
    AssistantSources,
    Event,
    FileEntry,
    ImageList,
    Metrics,
    Resources,
    RunDone,
    RunMessage,
    SessionInfo,
    VFolderInfo,
)


class AsyncClient:
    """Client of a jupyter-bai engine (``find_engine()`` when no URL is given), awaitable.

    Every method raises :class:`~jupyter_bai.spec.errors.BaiError` with a one-line message on
    failure and returns typed models (which also read like dicts: ``info["status"]``).
    Streaming methods (``follow_logs``, ``events``, ``iter_run``, ``ask_stream``) are async
    iterators; cancelling ``run_code`` interrupts the remote code. ``driver`` plugs in another
    backend (see :mod:`jupyter_bai.client.driver`); ``url``/``token``/``transport`` configure
    the default :class:`~jupyter_bai.client.http.HttpDriver`.
    """

    def __init__(
        self,
        url: str | EngineConnection | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        driver: Driver | None = None,
    ) -> None:
        if driver is None:
            from jupyter_bai.client.http import HttpDriver

            self.connection: EngineConnection | None = _resolve(url, token)
            driver = HttpDriver(self.connection, timeout=timeout, transport=transport)
        else:
            self.connection = getattr(driver, "connection", None)
        self.driver = driver

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.driver.where!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend's connections."""
        await self.driver.aclose()

    close = aclose

    # -- node

    async def resources(self) -> Resources:
        """Node capacity, used/free slots, per-GPU shares, runtimes and pending count."""
        return await self.driver.resources()

    async def metrics(self) -> Metrics:
        """Live usage: host CPU/memory, per-GPU utilisation and memory, per-session usage."""
        return await self.driver.metrics()

    async def list_images(self) -> ImageList:
        """Images sessions can use: ``local`` and the Docker engine's (``images``, ``notes``)."""
        return await self.driver.list_images()

    # -- sessions

    async def create_session(
        self,
        image: str,
        *,
        name: str | None = None,
        type: str = "interactive",
        command: str | None = None,
        resources: Mapping[str, Any] | Iterable[str] | None = None,
        mounts: Iterable[str] | None = None,
        env: Mapping[str, Any] | Iterable[str] | None = None,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        labels: Mapping[str, str] | None = None,
        binds: Iterable[Mapping[str, str]] | None = None,
        ports: Iterable[int] | None = None,
        wait: bool = False,
        timeout: float | None = None,
        progress: SessionProgress | None = None,
    ) -> SessionInfo:
        """Create a compute session; with ``wait``, return once it runs (batch: once it ends).

        ``resources`` and ``env`` take a dict or ``["key=value", ...]``; ``mounts`` use
        Backend.AI's grammar (``"data:ro"``, ``"data:/mnt/d"``...).  ``timeout`` bounds the
        wait (None: as long as a PENDING session needs); ``progress(session)`` sees each status.
        The session may end in ERROR or CANCELLED: check ``status`` (and ``exit_code``).
        """
        body = _ops.session_body(
            image, name=name, type=type, command=command, resources=resources, mounts=mounts,
            env=env, idle_timeout=idle_timeout, max_lifetime=max_lifetime,
            labels=labels, binds=binds, ports=ports,
        )
        sess = await self.driver.create_session(body)
        if progress is not None:
            progress(sess)
        if not wait:
            return sess
        targets = TERMINAL_STATUSES if type == "batch" else {"RUNNING"}
        return await self.wait_session(
            sess.id, targets, timeout=timeout, progress=progress, initial=sess
        )

    async def wait_session(
        self,
        name: str,
        statuses: Iterable[str] | None = None,
        *,
        timeout: float | None = 300.0,
        progress: SessionProgress | None = None,
        initial: Mapping[str, Any] | None = None,
    ) -> SessionInfo:
        """Poll until the session reaches one of ``statuses`` (default RUNNING) or ends.

        ``initial`` is the session as last seen (no request if it already qualifies);
        raises :class:`BaiError` (code ``timeout``) after ``timeout`` seconds (None: no limit).
        """
        targets = _wait_targets(statuses)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status = initial.get("status") if initial else None
        if initial is not None and initial.get("status") in targets:
            return initial if isinstance(initial, SessionInfo) else SessionInfo.model_validate(dict(initial))
        attempt = 0
        watch_id = initial.get("id") if initial is not None else None
        async with self.driver.watch_session(str(watch_id or name)) as changed:
            while True:
                cur = await self.get_session(name)
                if cur.status != last_status:
                    last_status = cur.status
                    if progress is not None:
                        progress(cur)
                if cur.status in targets:
                    return cur
                if deadline is not None and time.monotonic() >= deadline:
                    raise _wait_timeout_error(name, cur.status, float(timeout or 0))
                if changed is None:
                    await asyncio.sleep(_poll_delay(attempt))
                else:
                    # woken by the backend's events; the timeout only covers a missed one
                    left = min(5.0, 0.5 * 2 ** attempt)
                    if deadline is not None:
                        left = max(0.0, min(left, deadline - time.monotonic()))
                    await changed(left)
                attempt += 1

    # -- model services

    async def create_service(
        self,
        image: str,
        model_folder: str,
        replicas: int = 1,
        *,
        name: str,
        public: bool = False,
        runtime_variant: str = "custom",
        resources: Mapping[str, Any] | Iterable[str] | None = None,
        env: Mapping[str, Any] | Iterable[str] | None = None,
        mounts: Iterable[str] | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> ServiceInfo:
        """Serve the model in ``model_folder`` with ``replicas`` routes (inference sessions).

        The endpoint is ``info.endpoint`` (``http://127.0.0.1:<port>/services/<name>/``); a
        non-public one needs ``issue_service_token(name)``. With ``wait``, return once every
        route is HEALTHY or one failed to start (check ``info.status``).
        """
        body: dict[str, Any] = {
            "name": name, "image": image, "model_folder": model_folder, "replicas": replicas,
            "public": public, "runtime_variant": runtime_variant,
            "resources": _kv(resources, "resource") if resources else {},
            "env": _kv(env, "environment variable") if env else {},
            "mounts": list(mounts or []),
        }
        info = await self.driver.create_service(body)
        return await self.wait_service(info.name, timeout=timeout) if wait else info

    async def wait_service(self, name: str, timeout: float | None = None) -> ServiceInfo:
        """Poll until every route is HEALTHY or one failed to start."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = await self.driver.get_service(name)
            if info.is_settled:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise BaiError(f"service '{name}' is still {info.status} after {timeout:g}s")
            await asyncio.sleep(0.25)

    # -- notebook deploy

    async def check_deploy(self, notebook: str) -> DeployCheck:
        """What ``notebook`` (a path under the server's root_dir, or absolute inside it) would
        serve: its content hash, endpoints and the problems that stop a deploy."""
        return await self.driver.check_deploy(str(notebook))

    async def deploy(
        self,
        notebook: str,
        *,
        name: str,
        replicas: int = 1,
        public: bool = False,
        resources: Mapping[str, Any] | Iterable[str] | None = None,
        files: Iterable[str] = (),
        image: str = "local",
        wait: bool = False,
        timeout: float | None = None,
    ) -> DeployInfo:
        """Deploy the saved notebook's ``@endpoint`` functions as service ``name`` (a new
        numbered version; a redeploy rolls routes over one at a time). ``files`` are packed
        next to it at ``/models/<file name>``. With ``wait``, return once every route runs the
        new version, or raise when one fails or never gets ready (the old routes keep serving).
        """
        body: dict[str, Any] = {
            "notebook": str(notebook), "replicas": replicas, "public": public,
            "resources": _kv(resources, "resource") if resources else {},
            "files": [str(f) for f in files], "image": image,
        }
        info = await self.driver.deploy_notebook(name, body)
        if wait:
            await self.wait_deploy(name, info.version, timeout=timeout)
        return info

    async def wait_deploy(self, name: str, version: int,
                          timeout: float | None = None) -> ServiceInfo:
        """Poll until every route runs ``version`` and is HEALTHY; raise if one of its routes
        fails to start or turns UNHEALTHY (saying whether the old version still serves)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = await self.driver.get_service(name)
            if info.version != version:
                raise BaiError(f"service '{name}' moved on to version {info.version}")
            mine = [r for r in info.routes if r.version == version and r.status != "TERMINATING"]
            others = [r for r in info.routes if r.version != version and r.status != "TERMINATING"]
            bad = next((r for r in mine if r.status in ("FAILED_TO_START", "UNHEALTHY")), None)
            if bad is not None:
                still = sum(r.status == "HEALTHY" for r in others)
                kept = (f"; the previous version keeps serving ({still} route"
                        f"{'s' if still != 1 else ''})" if still else "")
                why = _route_failure(bad.status_info)
                raise BaiError(f"version {version} of service '{name}' did not become ready "
                               f"({bad.status}): {why}{kept}")
            if not others and len(mine) >= info.replicas and all(
                    r.status == "HEALTHY" for r in mine):
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise BaiError(f"version {version} of service '{name}' is not ready after "
                               f"{timeout:g}s (service {info.status})")
            await asyncio.sleep(0.25)

    async def rollback_service(self, name: str, wait: bool = False,
                               timeout: float | None = None) -> DeployInfo:
        """Serve the version before the current one again (routes roll over to it)."""
        info = await self.driver.rollback_service(name)
        if wait:
            await self.wait_deploy(name, info.version, timeout=timeout)
        return info

    async def service_versions(self, name: str) -> list[ServiceVersion]:
        """A deployed service's numbered versions, oldest first (``current`` marks the served one)."""
        return (await self.driver.service_versions(name)).versions

    async def list_services(self) -> list[ServiceInfo]:
        """Every model service with its routes."""
        return await self.driver.list_services()

    async def get_service(self, name: str) -> ServiceInfo:
        """One service: status, endpoint, routes and their health."""
        return await self.driver.get_service(name)

    async def scale_service(self, name: str, replicas: int) -> ServiceInfo:
        """Change the number of routes (scale-down drains them first)."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise InvalidRequest(f"invalid replica count {replicas!r}: expected 0 or more")
        return await self.driver.scale_service(name, replicas)

    async def delete_service(self, name: str) -> ServiceInfo:
        """Remove the service: tokens are revoked, routes drain and stop."""
        return await self.driver.delete_service(name)

    async def issue_service_token(self, name: str, ttl: str = "1d") -> ServiceToken:
        """A bearer token for a non-public endpoint (``ttl``: seconds or 30m, 12h, 1d, 2w)."""
        return await self.driver.issue_service_token(name, str(ttl))

    async def add_autoscale_rule(
        self, name: str, *, metric: str, comparator: str, threshold: float, step: int,
        cooldown: float = 60.0, min_replicas: int = 0, max_replicas: int = 64,
    ) -> ServiceInfo:
        """When ``metric`` (inflight, rps, gpu_util) is ``comparator`` (gt, lt) ``threshold``,
        change the replicas by ``step``, at most once per ``cooldown`` s, within min..max."""
        return await self.driver.add_autoscale_rule(name, {
            "metric": metric, "comparator": comparator, "threshold": threshold, "step": step,
            "cooldown": cooldown, "min_replicas": min_replicas, "max_replicas": max_replicas})

    async def remove_autoscale_rule(self, name: str, rule: str) -> ServiceInfo:
        """Remove the rule with id ``rule`` (ids are in ``get_service(name).autoscaling_rules``)."""
        return await self.driver.remove_autoscale_rule(name, rule)

    async def service_logs(self, name: str, tail: int | None = None) -> str:
        """Every route's log, each under a header naming the route."""
        return await self.driver.service_logs(name, tail)

    async def list_sessions(self, status: str | None = None) -> list[SessionInfo]:
        """All sessions the engine knows (live and finished), optionally filtered by status."""
        return await self.driver.list_sessions(status)

    async def get_session(self, name: str) -> SessionInfo:
        """One session by name or id."""
        return await self.driver.get_session(name)

    async def session_logs(self, name: str, tail: int | None = None) -> str:
        """The session's combined log (the last ``tail`` lines when given)."""
        return await self.driver.session_logs(name, tail)

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        """Yield log text as it is written, until the session ends."""
        async with aclosing(self.driver.follow_logs(name)) as stream:
            async for text in stream:
                yield text

    async def exec(
        self,
        name: str,
        command: str | Iterable[str],
        *,
        env: Mapping[str, Any] | None = None,
        on_output: OutputCallback | None = None,
    ) -> int:
        """Run a command inside the session; stream its output; return its exit code.

        A string runs through the shell, a sequence is an argv list.
        """
        handler = _ExecHandler(on_output)
        envs = _kv(env, "environment variable") if env else None
        async with aclosing(self.driver.exec_stream(name, _single_command(command), envs)) as stream:
            async for msg in stream:
                if handler.feed(msg):
                    break
        return handler.result()

    async def iter_run(self, name: str, code: str) -> AsyncIterator[RunMessage]:
        """The raw message stream of :meth:`run_code` (stream, result, done)."""
        async with aclosing(self.driver.run_stream(name, code)) as stream:
            async for msg in stream:
                yield msg

    async def run_code(
        self,
        name: str,
        code: str,
        *,
        on_output: OutputCallback | None = None,
        on_result: Callable[[str], None] | None = None,
        interrupt_on_ctrl_c: bool = True,
    ) -> RunDone:
        """Run Python code in the session's persistent interpreter; return the ``done`` message.

        Output streams to ``on_output`` as it is printed; the last expression's repr goes to
        ``on_result`` and into the answer as ``result``. Cancelling the call (Ctrl-C in the sync
        client) interrupts the remote code when ``interrupt_on_ctrl_c``.
        """
        handler = _RunHandler(on_output, on_result)
        try:
            async with aclosing(self.iter_run(name, code)) as stream:
                async for msg in stream:
                    if handler.feed(msg):
                        break
        except asyncio.CancelledError:
            if interrupt_on_ctrl_c:
                try:
                    await asyncio.shield(self.interrupt(name))
                except (BaiError, asyncio.CancelledError):
                    pass
            raise
        return handler.result()

    async def interrupt(self, name: str) -> bool:
        """Interrupt the code running in the session's interpreter (like Ctrl-C)."""
        return await self.driver.interrupt(name)

    # -- pipelines

    @staticmethod
    def _resolve_pipeline(pipeline: str | os.PathLike[str] | PipelineSpec | Mapping[str, Any],
                      env: Mapping[str, str] | None = None) -> PipelineSpec:
        """A pipeline file (``${VAR}`` from this process's environment and ``env``), a
        ``jupyter_bai.pipelines.Pipeline``, a ``PipelineSpec`` or its JSON, validated."""
        if isinstance(pipeline, PipelineSpec):
            return pipeline
        if hasattr(pipeline, "spec") and callable(pipeline.spec):  # jupyter_bai.pipelines
            spec: PipelineSpec = pipeline.spec()
            return spec
        if isinstance(pipeline, Mapping):
            return PipelineSpec.from_json(dict(pipeline))
        return load_file(pipeline, {**os.environ, **(env or {})})

    async def run_pipeline(
        self, pipeline: str | os.PathLike[str] | PipelineSpec | Mapping[str, Any],
        env: Mapping[str, str] | None = None, wait: bool = False,
        timeout: float | None = None,
        progress: Callable[[PipelineJobInfo], Any] | None = None,
    ) -> PipelineJobInfo:
        """Start a pipeline job; with ``wait``, return when it has ended."""
        spec = self._resolve_pipeline(pipeline, env)
        job = await self.driver.submit_pipeline(spec.model_dump(mode="json", exclude_none=True))
        if wait:
            return await self.wait_pipeline_job(job.id, timeout=timeout, progress=progress)
        return job

    async def wait_pipeline_job(
        self, job: str, timeout: float | None = None,
        progress: Callable[[PipelineJobInfo], Any] | None = None,
    ) -> PipelineJobInfo:
        """Poll until the job is SUCCEEDED, FAILED or CANCELLED; ``progress`` sees each change."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Any = None
        while True:
            cur = await self.driver.get_pipeline_job(job)
            shown = [(t.status, t.attempts) for t in cur.tasks] + [cur.status]
            if progress is not None and shown != last:
                progress(cur)
            last = shown
            if cur.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return cur
            if deadline is not None and time.monotonic() >= deadline:
                raise BaiError(f"pipeline job {job} is still {cur.status} after {timeout:g}s")
            await asyncio.sleep(0.2)

    async def list_pipeline_jobs(self) -> list[PipelineJobInfo]:
        """Pipeline jobs, newest first."""
        return await self.driver.list_pipeline_jobs()

    async def get_pipeline_job(self, job: str) -> PipelineJobInfo:
        """One job with its tasks (status, attempts, exit code, duration) and history."""
        return await self.driver.get_pipeline_job(job)

    async def cancel_pipeline_job(self, job: str) -> PipelineJobInfo:
        """Stop the running tasks (SIGTERM, grace, SIGKILL); the rest become CANCELLED."""
        return await self.driver.cancel_pipeline_job(job)

    async def rerun_pipeline_job(self, job: str) -> PipelineJobInfo:
        """Run a failed or cancelled job again from its failed tasks, keeping the outputs of
        those that succeeded."""
        return await self.driver.rerun_pipeline_job(job)

    async def pipeline_task_logs(self, job: str, task: str) -> str:
        """A task's output (its last attempt's)."""
        return await self.driver.pipeline_task_logs(job, task)

    async def destroy_session(self, name: str, forced: bool = False) -> SessionInfo:
        """Terminate the session (``forced`` kills without grace); returns it."""
        return await self.driver.destroy_session(name, forced)

    # -- vfolders

    async def create_vfolder(
        self,
        name: str,
        usage_mode: str = "general",
        permission: str = "rw",
        quota: int | str | None = None,
    ) -> VFolderInfo:
        """Create a virtual folder; ``quota`` in bytes or as a size string (``"10g"``)."""
        return await self.driver.create_vfolder(_ops.vfolder_body(name, usage_mode, permission, quota))

    async def list_vfolders(self) -> list[VFolderInfo]:
        """All virtual folders with usage."""
        return await self.driver.list_vfolders()

    async def get_vfolder(self, name: str) -> VFolderInfo:
        """One virtual folder."""
        return await self.driver.get_vfolder(name)

    async def delete_vfolder(self, name: str) -> None:
        """Delete a folder and its files (refused while a live session mounts it)."""
        await self.driver.delete_vfolder(name)

    async def list_files(self, name: str, path: str = "") -> list[FileEntry]:
        """Entries of a directory inside the folder."""
        return await self.driver.list_files(name, _clean_remote(path))

    async def upload(
        self,
        name: str,
        files: Iterable[str | os.PathLike[str]],
        dst: str = "",
        *,
        progress: TransferProgress | None = None,
    ) -> list[FileEntry]:
        """Upload local files (directories recursively) into ``dst``; returns the new entries.

        Everything is checked first (local paths, the folder exists): an error comes before
        any byte, and before ``progress`` is first called.
        """
        plan = _plan_upload(files, dst)
        await self.get_vfolder(name)  # NotFound here, not after a progress bar
        meter = _Meter(sum(u.size for u in plan), progress)
        entries: list[FileEntry] = []
        for item in plan:
            if item.kind == "dir":
                try:
                    entries.append(await self.mkdir(name, item.remote, parents=True))
                except Conflict:
                    pass  # already there: uploading into an existing tree is fine
                continue
            assert item.local is not None
            entries.append(await self.driver.upload_file(
                name, item.remote, _afile_chunks(item.local, meter, item.remote), item.size,
                parents=True,
            ))
            if item.size == 0:
                meter.add(0, item.remote)
        return entries

    async def _expand_download(
        self, name: str, remote: str, entry: Mapping[str, Any], local: Path, plan: list[_Download]
    ) -> None:
        if entry.get("type") == "dir":
            plan.append(_Download(remote, local, -1))
            for child in await self.list_files(name, remote):
                await self._expand_download(
                    name, posixpath.join(remote, child.name), child, local / child.name, plan
                )
        else:
            plan.append(_Download(remote, local, int(entry.get("size") or 0)))

    async def download(
        self,
        name: str,
        paths: str | Iterable[str],
        dest: str | os.PathLike[str] = ".",
        *,
        progress: TransferProgress | None = None,
    ) -> list[Path]:
        """Download files (directories recursively) into ``dest``; returns the local paths."""
        if isinstance(paths, str):
            paths = [paths]
        dest_dir = Path(dest)
        if dest_dir.exists() and not dest_dir.is_dir():
            raise InvalidRequest(f"destination is not a directory: {dest_dir}")
        plan: list[_Download] = []
        for raw in paths:
            remote = _clean_remote(raw)
            if not remote:
                raise InvalidRequest("name a file or directory to download (not the folder root)")
            parent, base = posixpath.split(remote)
            entry = _entry_for(await self.list_files(name, parent), base)
            if entry is None:
                raise NotFound(f"no such file in vfolder {name!r}: {remote}")
            await self._expand_download(name, remote, entry, dest_dir / base, plan)
        meter = _Meter(sum(d.size for d in plan if d.size > 0), progress)
        written: list[Path] = []
        for item in plan:
            if item.size < 0:
                item.local.mkdir(parents=True, exist_ok=True)
                continue
            item.local.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_path(item.local)
            try:
                with open(tmp, "wb") as f:
                    async with aclosing(self.driver.download_file(name, item.remote)) as chunks:
                        async for chunk in chunks:
                            await asyncio.to_thread(f.write, chunk)
                            meter.add(len(chunk), item.remote)
                os.replace(tmp, item.local)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(item.local)
        return written

    async def mkdir(self, name: str, path: str, parents: bool = False) -> FileEntry:
        """Create a directory in the folder (``parents`` like ``mkdir -p``)."""
        return await self.driver.mkdir(name, _clean_remote(path), bool(parents))

    async def move(self, name: str, src: str, dst: str) -> FileEntry:
        """Rename or move a file/directory inside the folder."""
        return await self.driver.move(name, _clean_remote(src), _clean_remote(dst))

    async def rm(self, name: str, path: str, recursive: bool = False) -> None:
        """Remove a file (a directory needs ``recursive``)."""
        await self.driver.rm(name, _clean_remote(path), bool(recursive))

    # -- events

    async def events(self, since: int | None = None) -> AsyncIterator[Event]:
        """Yield engine events (session/vfolder changes) as they happen; ``since`` replays.

        An event with ``kind == "resync"`` (``event.is_resync``) means the stream skipped
        events (this consumer was too slow, or ``since`` is older than the kept history):
        reload what you show (``list_sessions()``, ``list_vfolders()``, ``resources()``),
        then keep reading; its ``seq`` is where the stream continues from.
        """
        async with aclosing(self.driver.events(since)) as stream:
            async for event in stream:
                yield event

    # -- API assistant

    async def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        history: list[dict[str, str]] | None = None,
        on_delta: Callable[[str], None] | None = None,
        source: str | None = None,
        llm: str | None = None,
    ) -> AssistantAnswer:
        """Ask the API assistant a question about this platform's API.

        Returns ``answer``, ``sources``, ``examples``, ``abstained``, ``mode``, ``note``, ...;
        each source has title, ref, kind, method, path, operation_id, score, and ``source`` and
        ``api`` (which API it belongs to). ``history`` (earlier ``{"question", "answer"}``
        turns) lets follow-ups refer back; ``on_delta`` receives the answer's text as it streams
        (useful when an LLM writes it). ``source`` limits the search to one API:
        ``"workbench"`` or a learned file (path or file name). ``llm`` names a model service of
        this workbench that writes the answer (``mode: "llm"``; the sources and examples stay).
        """
        done = None
        async with aclosing(self.ask_stream(question, top_k=top_k, history=history,
                                            source=source, llm=llm)) as stream:
            async for msg in stream:
                if msg.get("type") == "delta" and on_delta is not None:
                    on_delta(str(msg.get("text", "")))
                elif msg.get("type") == "done":
                    done = msg
        return _assistant_done(done)

    async def ask_stream(
        self, question: str, *, top_k: int = 5, history: list[dict[str, str]] | None = None,
        source: str | None = None, llm: str | None = None,
    ) -> AsyncIterator[Mapping[str, Any]]:
        """The assistant's raw NDJSON messages: ``sources``, ``delta`` pieces, then ``done``."""
        body = _ops.ask_body(question, top_k, history, stream=True, source=source, llm=llm)
        async with aclosing(self.driver.ask_stream(body)) as stream:
            async for msg in stream:
                yield msg

    async def assistant_sources(self) -> AssistantSources:
        """What the assistant has indexed: built-in and learned sources with document counts."""
        return await self.driver.assistant_sources()

    async def assistant_learn(self, path: str | os.PathLike[str]) -> AssistantChange:
        """Teach the assistant a folder (Markdown, Python, notebooks) or an OpenAPI file."""
        return await self.driver.assistant_learn(local_path(path))

    async def assistant_forget(self, source: str | os.PathLike[str]) -> AssistantChange:
        """Forget a learned file or folder."""
        return await self.driver.assistant_forget(source_ref(source))


def _route_failure(status_info: str | None) -> str:
    """A route's failure on one line: its reason and, when logs follow, the last log line."""
    lines = [ln.strip() for ln in (status_info or "").splitlines() if ln.strip()]
    if not lines:
        return "no detail"
    if len(lines) == 1:
        return lines[0]
    head = lines[0].removesuffix("last log lines:").rstrip("; :")
    return f"{head} (last log line: {lines[-1]})"
