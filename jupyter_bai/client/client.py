"""``Client``: the synchronous way front ends talk to an engine.

Magics, CLI, widgets and pipeline tasks all go through here, so a feature behaves the same
everywhere.  Requests are built in :mod:`.operations` and answers parsed in :mod:`.wire`;
:class:`~jupyter_bai.client.aio.AsyncClient` is the awaitable twin.
"""
from __future__ import annotations

import os
import posixpath
import queue
import threading
import time
from collections.abc import (
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import closing, contextmanager
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
    _assistant_done,
    _decode_json,
    _Download,
    _entry_for,
    _ExecHandler,
    _file_chunks,
    _headers,
    _iter_lines,
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


class Client:
    """Synchronous client of a jupyter-bai engine (``find_engine()`` when no URL is given).

    Every method raises :class:`~jupyter_bai.spec.errors.BaiError` with the server's one-line
    message on failure.  Streaming calls (exec, run, follow_logs, events) have no timeout.
    """

    def __init__(
        self,
        url: str | EngineConnection | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.connection = _resolve(url, token)
        self._http = httpx.Client(
            base_url=self.connection.api_url,
            headers=_headers(self.connection),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Client({self.connection.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- plumbing

    def _send(self, call: Call, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(call.method, call.path, params=call.params, json=call.json, **kw)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.connection.url) from None
        if resp.status_code >= 400:
            raise error_from_response(
                resp.status_code, resp.content, url=self.connection.url, reason=resp.reason_phrase
            )
        return resp

    def _json(self, call: Call) -> Any:
        return _decode_json(self._send(call))

    @contextmanager
    def _stream(self, call: Call, **kw: Any) -> Iterator[httpx.Response]:
        """Open a streaming response with no timeout; errors map like ordinary calls."""
        try:
            with self._http.stream(
                call.method, call.path, params=call.params, json=call.json,
                timeout=kw.pop("timeout", None), **kw,
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_from_response(
                        resp.status_code, resp.content, url=self.connection.url,
                        reason=resp.reason_phrase,
                    )
                yield resp
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.connection.url) from None

    def _messages(self, call: Call) -> Generator[dict[str, Any], None, None]:
        with self._stream(call) as resp:
            try:
                for line in _iter_lines(resp):
                    msg = _parse_ndjson_line(line)
                    if msg is not None:
                        yield msg
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    # -- node

    def resources(self) -> dict[str, Any]:
        """Node capacity, used/free slots, per-GPU shares, runtimes and pending count."""
        return self._json(_ops.resources())

    def list_images(self) -> dict[str, Any]:
        """Images sessions can use: ``local`` and the Docker engine's (``{"images", "notes"}``)."""
        return self._json(_ops.list_images())

    # -- sessions

    def create_session(
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
        """Create a compute session; with ``wait``, return once it runs (batch: once it ends).

        ``resources`` and ``env`` take a dict or ``["key=value", ...]``; ``mounts`` use
        Backend.AI's grammar (``"data:ro"``, ``"data:/mnt/d"``...).  ``timeout`` bounds the
        wait (None: as long as a PENDING session needs); ``progress(session)`` sees each status.
        """
        sess = self._json(_ops.create_session(
            image, name=name, type=type, command=command, resources=resources, mounts=mounts,
            env=env, idle_timeout=idle_timeout, max_lifetime=max_lifetime,
            labels=labels, binds=binds, ports=ports,
        ))
        if progress is not None:
            progress(sess)
        if not wait:
            return sess
        targets = TERMINAL_STATUSES if type == "batch" else {"RUNNING"}
        return self.wait_session(sess["id"], targets, timeout=timeout, progress=progress, initial=sess)

    def wait_session(
        self,
        name: str,
        statuses: Iterable[str] | None = None,
        *,
        timeout: float | None = 300.0,
        progress: SessionProgress | None = None,
        initial: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Poll until the session reaches one of ``statuses`` (default RUNNING) or ends.

        ``initial`` is the session as last seen (no request if it already qualifies);
        raises :class:`BaiError` (code ``timeout``) after ``timeout`` seconds (None: no limit).
        """
        targets = _wait_targets(statuses)
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status = initial.get("status") if initial else None
        sess = initial if initial and initial.get("status") in targets else None
        attempt = 0
        while sess is None:
            cur = self.get_session(name)
            if cur.get("status") != last_status:
                last_status = cur.get("status")
                if progress is not None:
                    progress(cur)
            if cur.get("status") in targets:
                sess = cur
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise _wait_timeout_error(name, str(cur.get("status")), float(timeout or 0))
            time.sleep(_poll_delay(attempt))
            attempt += 1
        return sess

    def list_sessions(self, status: str | None = None) -> list[dict[str, Any]]:
        """All sessions the engine knows (live and finished), optionally filtered by status."""
        return self._json(_ops.list_sessions(status))["sessions"]

    def get_session(self, name: str) -> dict[str, Any]:
        """One session by name or id."""
        return self._json(_ops.get_session(name))

    def session_logs(self, name: str, tail: int | None = None) -> str:
        """The session's combined log (the last ``tail`` lines when given)."""
        return self._json(_ops.session_logs(name, tail))["logs"]

    def follow_logs(self, name: str) -> Iterator[str]:
        """Yield log text as it is written, until the session ends."""
        with self._stream(_ops.follow_logs(name)) as resp:
            try:
                yield from resp.iter_text()
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    def exec(
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
        with closing(self._messages(_ops.exec(name, _single_command(command), env))) as stream:
            for msg in stream:
                if handler.feed(msg):
                    break
        return handler.result()

    def iter_run(self, name: str, code: str) -> Generator[dict[str, Any], None, None]:
        """The raw message stream of :meth:`run_code` (stream, result, done)."""
        return self._messages(_ops.run_code(name, code))

    def run_code(
        self,
        name: str,
        code: str,
        *,
        on_output: OutputCallback | None = None,
        on_result: Callable[[str], None] | None = None,
        interrupt_on_ctrl_c: bool = True,
    ) -> dict[str, Any]:
        """Run Python code in the session's persistent interpreter; return the ``done`` message.

        Output streams to ``on_output`` as it is printed; the last expression's repr goes to
        ``on_result`` and into the returned dict as ``result``.  Ctrl-C while waiting interrupts
        the remote code (a second Ctrl-C stops waiting).
        """
        handler = _RunHandler(on_output, on_result)
        if not interrupt_on_ctrl_c or threading.current_thread() is not threading.main_thread():
            with closing(self.iter_run(name, code)) as stream:
                for msg in stream:
                    if handler.feed(msg):
                        break
            return handler.result()
        return self._run_interruptible(name, code, handler)

    def _run_interruptible(self, name: str, code: str, handler: _RunHandler) -> dict[str, Any]:
        """Read the stream in a helper thread so Ctrl-C lands here, not inside a socket read."""
        box: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def pump() -> None:
            try:
                with closing(self.iter_run(name, code)) as stream:
                    for msg in stream:
                        box.put(("msg", msg))
                        if stop.is_set() or msg.get("type") == "done":
                            break
                box.put(("end", None))
            except BaseException as exc:  # handed to the caller's thread
                box.put(("exc", exc))

        reader = threading.Thread(target=pump, name="bai-run-reader", daemon=True)
        reader.start()
        interrupted = False
        while True:
            try:
                kind, value = box.get(timeout=0.25)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                if interrupted:
                    stop.set()
                    raise
                interrupted = True
                try:
                    self.interrupt(name)
                except BaiError:
                    pass
                continue
            if kind == "msg":
                if handler.feed(value):
                    stop.set()
                    break
            elif kind == "exc":
                raise value
            else:
                break
        return handler.result()

    def interrupt(self, name: str) -> bool:
        """Interrupt the code running in the session's interpreter (like Ctrl-C)."""
        return bool(self._json(_ops.interrupt(name)).get("interrupted"))

    def destroy_session(self, name: str, forced: bool = False) -> dict[str, Any]:
        """Terminate the session (``forced`` kills without grace); returns it."""
        return self._json(_ops.destroy_session(name, forced))

    # -- vfolders

    def create_vfolder(
        self,
        name: str,
        usage_mode: str = "general",
        permission: str = "rw",
        quota: int | str | None = None,
    ) -> dict[str, Any]:
        """Create a virtual folder; ``quota`` in bytes or as a size string (``"10g"``)."""
        return self._json(_ops.create_vfolder(name, usage_mode, permission, quota))

    def list_vfolders(self) -> list[dict[str, Any]]:
        """All virtual folders with usage."""
        return self._json(_ops.list_vfolders())["vfolders"]

    def get_vfolder(self, name: str) -> dict[str, Any]:
        """One virtual folder."""
        return self._json(_ops.get_vfolder(name))

    def delete_vfolder(self, name: str) -> None:
        """Delete a folder and its files (refused while a live session mounts it)."""
        self._send(_ops.delete_vfolder(name))

    def list_files(self, name: str, path: str = "") -> list[dict[str, Any]]:
        """Entries of a directory inside the folder."""
        return self._json(_ops.list_files(name, path))["files"]

    def upload(
        self,
        name: str,
        files: Iterable[str | os.PathLike[str]],
        dst: str = "",
        *,
        progress: TransferProgress | None = None,
    ) -> list[dict[str, Any]]:
        """Upload local files (directories recursively) into ``dst``; returns the new entries."""
        plan = _plan_upload(files, dst)
        meter = _Meter(sum(u.size for u in plan), progress)
        entries: list[dict[str, Any]] = []
        for item in plan:
            if item.kind == "dir":
                try:
                    entries.append(self.mkdir(name, item.remote, parents=True))
                except Conflict:
                    pass  # already there: uploading into an existing tree is fine
                continue
            assert item.local is not None
            resp = self._send(
                _ops.upload_file(name, item.remote, parents=True),
                content=_file_chunks(item.local, meter, item.remote),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(item.size)},
                timeout=httpx.Timeout(None, connect=10.0),
            )
            entries.append(_decode_json(resp))
            if item.size == 0:
                meter.add(0, item.remote)
        return entries

    def _plan_download(self, name: str, paths: Iterable[str], dest: Path) -> list[_Download]:
        plan: list[_Download] = []
        for raw in paths:
            remote = _clean_remote(raw)
            if not remote:
                raise InvalidRequest("name a file or directory to download (not the folder root)")
            parent, base = posixpath.split(remote)
            entry = _entry_for(self.list_files(name, parent), base)
            if entry is None:
                raise NotFound(f"no such file in vfolder {name!r}: {remote}")
            self._expand_download(name, remote, entry, dest / base, plan)
        return plan

    def _expand_download(
        self, name: str, remote: str, entry: dict[str, Any], local: Path, plan: list[_Download]
    ) -> None:
        if entry.get("type") == "dir":
            plan.append(_Download(remote, local, -1))
            for child in self.list_files(name, remote):
                self._expand_download(
                    name, posixpath.join(remote, child["name"]), child, local / child["name"], plan
                )
        else:
            plan.append(_Download(remote, local, int(entry.get("size") or 0)))

    def download(
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
        plan = self._plan_download(name, paths, dest_dir)
        meter = _Meter(sum(d.size for d in plan if d.size > 0), progress)
        written: list[Path] = []
        for item in plan:
            if item.size < 0:
                item.local.mkdir(parents=True, exist_ok=True)
                continue
            item.local.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_path(item.local)
            try:
                with self._stream(_ops.download_file(name, item.remote)) as resp, open(tmp, "wb") as f:
                    try:
                        for chunk in resp.iter_bytes(CHUNK_SIZE):
                            f.write(chunk)
                            meter.add(len(chunk), item.remote)
                    except httpx.TransportError as exc:
                        raise _transport_error(exc, self.connection.url) from None
                os.replace(tmp, item.local)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(item.local)
        return written

    def mkdir(self, name: str, path: str, parents: bool = False) -> dict[str, Any]:
        """Create a directory in the folder (``parents`` like ``mkdir -p``)."""
        return self._json(_ops.mkdir(name, path, parents))

    def move(self, name: str, src: str, dst: str) -> dict[str, Any]:
        """Rename or move a file/directory inside the folder."""
        return self._json(_ops.move(name, src, dst))

    def rm(self, name: str, path: str, recursive: bool = False) -> None:
        """Remove a file (a directory needs ``recursive``)."""
        self._send(_ops.rm(name, path, recursive))

    # -- events

    def events(self, since: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield engine events (session/vfolder changes) as they happen; ``since`` replays."""
        parser = SSEParser()
        with self._stream(_ops.events(since), headers={"Accept": "text/event-stream"}) as resp:
            try:
                for line in _iter_lines(resp):
                    event = parser.feed(line)
                    if event is not None:
                        yield event
            except httpx.TransportError as exc:
                raise _transport_error(exc, self.connection.url) from None

    # -- API assistant

    def ask(
        self,
        question: str,
        *,
        top_k: int = 5,
        history: list[dict[str, str]] | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Ask the API assistant a question about this platform's API.

        Returns ``{"answer", "sources", "examples", "abstained", "mode", "note", ...}``; each
        source has title, ref, kind, method, path, operation_id and score. ``history`` (earlier
        ``{"question", "answer"}`` turns) lets follow-ups refer back; ``on_delta`` receives the
        answer's text as it streams (useful when an LLM writes it).
        """
        done = None
        for msg in self.ask_stream(question, top_k=top_k, history=history):
            if msg.get("type") == "delta" and on_delta is not None:
                on_delta(str(msg.get("text", "")))
            elif msg.get("type") == "done":
                done = msg
        return _assistant_done(done)

    def ask_stream(
        self, question: str, *, top_k: int = 5, history: list[dict[str, str]] | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """The assistant's raw NDJSON messages: ``sources``, ``delta`` pieces, then ``done``."""
        yield from self._messages(_ops.ask(question, top_k, history, stream=True))

    def assistant_sources(self) -> dict[str, Any]:
        """What the assistant has indexed: built-in and learned sources with document counts."""
        return self._json(_ops.assistant_sources())

    def assistant_learn(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Teach the assistant a folder (Markdown, Python, notebooks) or an OpenAPI file."""
        return self._json(_ops.assistant_learn(path))

    def assistant_forget(self, source: str | os.PathLike[str]) -> dict[str, Any]:
        """Forget a learned file or folder."""
        return self._json(_ops.assistant_forget(source))


