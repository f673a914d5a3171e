"""``AsyncClient``: the asyncio twin of :class:`~jupyter_bai.client.client.Client`."""
from __future__ import annotations

import asyncio
import os
import posixpath
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from jupyter_bai.client.connection import (
    EngineConnection,
)
from jupyter_bai.client.operations import (
    CHUNK_SIZE,
    DEFAULT_TIMEOUT,
    TERMINAL_STATUSES,
    Call,
    OutputCallback,
    SessionProgress,
    TransferProgress,
    _clean_remote,
    _ops,
)
from jupyter_bai.client.wire import (
    SSEParser,
    _afile_chunks,
    _aiter_lines,
    _assistant_done,
    _decode_json,
    _Download,
    _entry_for,
    _ExecHandler,
    _headers,
    _Meter,
    _parse_ndjson_line,
    _plan_upload,
    _poll_delay,
    _resolve,
    _RunHandler,
    _single_command,
    _tmp_path,
    _transport_error,
    _wait_targets,
    _wait_timeout_error,
    error_from_response,
)
from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InvalidRequest,
    NotFound,
)


class AsyncClient:
    """The asyncio twin of :class:`Client`: same methods, same arguments, awaitable.

    Streaming methods (``follow_logs``, ``events``, ``iter_run``) are async iterators;
    cancelling ``run_code`` interrupts the remote code.
    """

    def __init__(
        self,
        url: str | EngineConnection | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connection = _resolve(url, token)
        self._http = httpx.AsyncClient(
            base_url=self.connection.api_url,
            headers=_headers(self.connection),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"AsyncClient({self.connection.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._http.aclose()

    close = aclose

    # -- plumbing

    async def _send(self, call: Call, **kw: Any) -> httpx.Response:
        try:
            resp = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, **kw
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.connection.url) from None
        if resp.status_code >= 400:
            raise error_from_response(
                resp.status_code, resp.content, url=self.connection.url, reason=resp.reason_phrase
            )
        return resp

    async def _json(self, call: Call) -> Any:
        return _decode_json(await self._send(call))

    @asynccontextmanager
    async def _stream(self, call: Call, **kw: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, json=call.json,
                timeout=kw.pop("timeout", None), **kw,
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise error_from_response(
                        resp.status_code, resp.content, url=self.connection.url,
                        reason=resp.reason_phrase,
                    )
                yield resp
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.connection.url) from None

    async def _messages(self, call: Call) -> AsyncGenerator[dict[str, Any], None]:
        async with self._stream(call) as resp:
            try:
                async for line in _aiter_lines(resp):
                    msg = _parse_ndjson_line(line)
                    if msg is not None:
                        yield msg
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    # -- node

    async def resources(self) -> dict[str, Any]:
        """See :meth:`Client.resources`."""
        return await self._json(_ops.resources())

    async def list_images(self) -> dict[str, Any]:
        """See :meth:`Client.list_images`."""
        return await self._json(_ops.list_images())

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
    ) -> dict[str, Any]:
        """See :meth:`Client.create_session`."""
        sess = await self._json(_ops.create_session(
            image, name=name, type=type, command=command, resources=resources, mounts=mounts,
            env=env, idle_timeout=idle_timeout, max_lifetime=max_lifetime,
            labels=labels, binds=binds, ports=ports,
        ))
        if progress is not None:
            progress(sess)
        if not wait:
            return sess
        targets = TERMINAL_STATUSES if type == "batch" else {"RUNNING"}
        return await self.wait_session(
            sess["id"], targets, timeout=timeout, progress=progress, initial=sess
        )

    async def wait_session(
        self,
        name: str,
        statuses: Iterable[str] | None = None,
        *,
        timeout: float | None = 300.0,
        progress: SessionProgress | None = None,
        initial: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Client.wait_session`."""
        targets = _wait_targets(statuses)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status = initial.get("status") if initial else None
        sess = initial if initial and initial.get("status") in targets else None
        attempt = 0
        while sess is None:
            cur = await self.get_session(name)
            if cur.get("status") != last_status:
                last_status = cur.get("status")
                if progress is not None:
                    progress(cur)
            if cur.get("status") in targets:
                sess = cur
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise _wait_timeout_error(name, str(cur.get("status")), float(timeout or 0))
            await asyncio.sleep(_poll_delay(attempt))
            attempt += 1
        return sess

    async def list_sessions(self, status: str | None = None) -> list[dict[str, Any]]:
        """See :meth:`Client.list_sessions`."""
        return (await self._json(_ops.list_sessions(status)))["sessions"]

    async def get_session(self, name: str) -> dict[str, Any]:
        """See :meth:`Client.get_session`."""
        return await self._json(_ops.get_session(name))

    async def session_logs(self, name: str, tail: int | None = None) -> str:
        """See :meth:`Client.session_logs`."""
        return (await self._json(_ops.session_logs(name, tail)))["logs"]

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        """See :meth:`Client.follow_logs`."""
        async with self._stream(_ops.follow_logs(name)) as resp:
            try:
                async for text in resp.aiter_text():
                    yield text
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    async def exec(
        self,
        name: str,
        command: str | Iterable[str],
        *,
        env: Mapping[str, Any] | None = None,
        on_output: OutputCallback | None = None,
    ) -> int:
        """See :meth:`Client.exec`."""
        handler = _ExecHandler(on_output)
        async with aclosing(self._messages(_ops.exec(name, _single_command(command), env))) as stream:
            async for msg in stream:
                if handler.feed(msg):
                    break
        return handler.result()

    def iter_run(self, name: str, code: str) -> AsyncGenerator[dict[str, Any], None]:
        """See :meth:`Client.iter_run`."""
        return self._messages(_ops.run_code(name, code))

    async def run_code(
        self,
        name: str,
        code: str,
        *,
        on_output: OutputCallback | None = None,
        on_result: Callable[[str], None] | None = None,
        interrupt_on_ctrl_c: bool = True,
    ) -> dict[str, Any]:
        """See :meth:`Client.run_code`; cancelling the task interrupts the remote code."""
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
        """See :meth:`Client.interrupt`."""
        return bool((await self._json(_ops.interrupt(name))).get("interrupted"))

    async def destroy_session(self, name: str, forced: bool = False) -> dict[str, Any]:
        """See :meth:`Client.destroy_session`."""
        return await self._json(_ops.destroy_session(name, forced))

    # -- vfolders

    async def create_vfolder(
        self,
        name: str,
        usage_mode: str = "general",
        permission: str = "rw",
        quota: int | str | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Client.create_vfolder`."""
        return await self._json(_ops.create_vfolder(name, usage_mode, permission, quota))

    async def list_vfolders(self) -> list[dict[str, Any]]:
        """See :meth:`Client.list_vfolders`."""
        return (await self._json(_ops.list_vfolders()))["vfolders"]

    async def get_vfolder(self, name: str) -> dict[str, Any]:
        """See :meth:`Client.get_vfolder`."""
        return await self._json(_ops.get_vfolder(name))

    async def delete_vfolder(self, name: str) -> None:
        """See :meth:`Client.delete_vfolder`."""
        await self._send(_ops.delete_vfolder(name))

    async def list_files(self, name: str, path: str = "") -> list[dict[str, Any]]:
        """See :meth:`Client.list_files`."""
        return (await self._json(_ops.list_files(name, path)))["files"]

    async def upload(
        self,
        name: str,
        files: Iterable[str | os.PathLike[str]],
        dst: str = "",
        *,
        progress: TransferProgress | None = None,
    ) -> list[dict[str, Any]]:
        """See :meth:`Client.upload`."""
        plan = _plan_upload(files, dst)
        meter = _Meter(sum(u.size for u in plan), progress)
        entries: list[dict[str, Any]] = []
        for item in plan:
            if item.kind == "dir":
                try:
                    entries.append(await self.mkdir(name, item.remote, parents=True))
                except Conflict:
                    pass
                continue
            assert item.local is not None
            resp = await self._send(
                _ops.upload_file(name, item.remote, parents=True),
                content=_afile_chunks(item.local, meter, item.remote),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(item.size)},
                timeout=httpx.Timeout(None, connect=10.0),
            )
            entries.append(_decode_json(resp))
            if item.size == 0:
                meter.add(0, item.remote)
        return entries

    async def _expand_download(
        self, name: str, remote: str, entry: dict[str, Any], local: Path, plan: list[_Download]
    ) -> None:
        if entry.get("type") == "dir":
            plan.append(_Download(remote, local, -1))
            for child in await self.list_files(name, remote):
                await self._expand_download(
                    name, posixpath.join(remote, child["name"]), child, local / child["name"], plan
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
        """See :meth:`Client.download`."""
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
                async with self._stream(_ops.download_file(name, item.remote)) as resp:
                    with open(tmp, "wb") as f:
                        try:
                            async for chunk in resp.aiter_bytes(CHUNK_SIZE):
                                f.write(chunk)
                                meter.add(len(chunk), item.remote)
                        except httpx.TransportError as exc:
                            raise _transport_error(exc, self.connection.url) from None
                os.replace(tmp, item.local)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(item.local)
        return written

    async def mkdir(self, name: str, path: str, parents: bool = False) -> dict[str, Any]:
        """See :meth:`Client.mkdir`."""
        return await self._json(_ops.mkdir(name, path, parents))

    async def move(self, name: str, src: str, dst: str) -> dict[str, Any]:
        """See :meth:`Client.move`."""
        return await self._json(_ops.move(name, src, dst))

    async def rm(self, name: str, path: str, recursive: bool = False) -> None:
        """See :meth:`Client.rm`."""
        await self._send(_ops.rm(name, path, recursive))

    # -- events

    async def events(self, since: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`Client.events`."""
        parser = SSEParser()
        async with self._stream(_ops.events(since), headers={"Accept": "text/event-stream"}) as resp:
            try:
                async for line in _aiter_lines(resp):
                    event = parser.feed(line)
                    if event is not None:
                        yield event
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    # -- API assistant

    async def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        history: list[dict[str, str]] | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Client.ask`."""
        done = None
        async for msg in self.ask_stream(question, top_k=top_k, history=history):
            if msg.get("type") == "delta" and on_delta is not None:
                on_delta(str(msg.get("text", "")))
            elif msg.get("type") == "done":
                done = msg
        return _assistant_done(done)

    async def ask_stream(
        self, question: str, *, top_k: int = 5, history: list[dict[str, str]] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`Client.ask_stream`."""
        async for msg in self._messages(_ops.ask(question, top_k, history, stream=True)):
            yield msg

    async def assistant_sources(self) -> dict[str, Any]:
        """See :meth:`Client.assistant_sources`."""
        return await self._json(_ops.assistant_sources())

    async def assistant_learn(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """See :meth:`Client.assistant_learn`."""
        return await self._json(_ops.assistant_learn(path))

    async def assistant_forget(self, source: str | os.PathLike[str]) -> dict[str, Any]:
        """See :meth:`Client.assistant_forget`."""
        return await self._json(_ops.assistant_forget(source))
