"""``Client`` and ``AsyncClient``: the one way front ends talk to an engine.

Magics, CLI, widgets and pipeline tasks all go through here, so a feature behaves the same
everywhere.  Each operation is described once (``_ops`` builds the request, shared helpers parse
the answer); the sync and async classes only differ in how they send it.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import queue
import sys
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import aclosing, asynccontextmanager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from jupyter_bai.client.connection import (
    NO_ENGINE_HINT,
    EngineConnection,
    EngineNotFound,
    find_engine,
)
from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InsufficientResources,
    InvalidRequest,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuntimeUnavailable,
)

__all__ = [
    "AsyncClient",
    "Client",
    "OutputCallback",
    "SSEParser",
    "TERMINAL_STATUSES",
    "TransferProgress",
    "error_from_response",
]

#: Statuses a session never leaves.
TERMINAL_STATUSES: frozenset[str] = frozenset({"TERMINATED", "ERROR", "CANCELLED"})
#: The road to RUNNING, in order (progress bars count along it).
START_STATUSES: tuple[str, ...] = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING")

#: ``on_output(stream_name, text)``: stream_name is ``"stdout"`` or ``"stderr"``.
OutputCallback = Callable[[str, str], None]
#: ``progress(done_bytes, total_bytes, current_remote_or_local_path)``, cumulative over a call.
TransferProgress = Callable[[int, int, str], None]
#: ``progress(session)``: called with the session each time its status changes while waiting.
SessionProgress = Callable[[dict[str, Any]], None]

DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 1 << 20

_ERROR_CLASSES: dict[str, type[BaiError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InsufficientResources,
        NotFound,
        Conflict,
        InvalidState,
        QuotaExceeded,
        RuntimeUnavailable,
        EngineNotFound,
    )
}


# --------------------------------------------------------------------------- request building


@dataclass(frozen=True)
class Call:
    """One REST request, independent of the HTTP client that sends it."""

    method: str
    path: str  # relative to ``{url}/bai/api/v1``
    params: dict[str, str] | None = None
    json: Any = None


def _q(name: str) -> str:
    """Quote a name or id for use as one path segment."""
    return quote(str(name), safe="")


def _kv(items: Mapping[str, Any] | Iterable[str] | None, what: str) -> dict[str, str]:
    """``{"k": v}`` or ``["k=v", ...]`` as a dict of strings; a malformed item is a user error."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): _str_value(v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _resources(items: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """Typed ``["cpu=1", "mem=1g"]`` checked with the spec's rules (same messages as the API),
    then sent as typed so the engine applies its own defaults to the slots left out."""
    if items is None or isinstance(items, Mapping):
        return _kv(items, "resource")
    items = [items] if isinstance(items, str) else list(items)
    from jupyter_bai.spec.resources import ResourceSlots

    ResourceSlots.parse(items)
    return _kv([str(i).strip() for i in items], "resource")


def _env(items: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """``-e K=V`` items validated by the spec (reserved names, duplicates) before sending."""
    if items is None or isinstance(items, Mapping):
        return _kv(items, "environment variable")
    from jupyter_bai.spec.session import parse_env

    return parse_env(list(items) if not isinstance(items, str) else [items])


def _str_value(v: Any) -> str:
    """Slot values travel as decimal strings so fractions keep their precision."""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _clean_remote(path: str | None) -> str:
    """A vfolder-relative path without leading/trailing slashes (the server checks escapes)."""
    return (path or "").strip("/")


class _ops:
    """Request builders: the single description of every route the client uses."""

    @staticmethod
    def resources() -> Call:
        return Call("GET", "/resources")

    @staticmethod
    def list_images() -> Call:
        return Call("GET", "/images")

    @staticmethod
    def create_session(
        image: str,
        *,
        name: str | None,
        type: str,
        command: str | None,
        resources: Mapping[str, Any] | Iterable[str] | None,
        mounts: Iterable[str] | None,
        env: Mapping[str, Any] | Iterable[str] | None,
        idle_timeout: float | None,
        max_lifetime: float | None,
    ) -> Call:
        body: dict[str, Any] = {
            "image": image,
            "type": type,
            "resources": _resources(resources),
            "mounts": list(mounts or []),
            "env": _env(env),
        }
        if name is not None:
            body["name"] = name
        if command is not None:
            body["command"] = command
        if idle_timeout is not None:
            body["idle_timeout"] = idle_timeout
        if max_lifetime is not None:
            body["max_lifetime"] = max_lifetime
        return Call("POST", "/sessions", json=body)

    @staticmethod
    def list_sessions(status: str | None) -> Call:
        return Call("GET", "/sessions", params={"status": status} if status else None)

    @staticmethod
    def get_session(name: str) -> Call:
        return Call("GET", f"/sessions/{_q(name)}")

    @staticmethod
    def session_logs(name: str, tail: int | None) -> Call:
        params = {"tail": str(int(tail))} if tail is not None else None
        return Call("GET", f"/sessions/{_q(name)}/logs", params=params)

    @staticmethod
    def follow_logs(name: str) -> Call:
        return Call("GET", f"/sessions/{_q(name)}/logs", params={"follow": "true"})

    @staticmethod
    def exec(name: str, command: str | Iterable[str], env: Mapping[str, Any] | None) -> Call:
        body: dict[str, Any] = {
            "command": command if isinstance(command, str) else [str(c) for c in command]
        }
        if env:
            body["env"] = _kv(env, "environment variable")
        return Call("POST", f"/sessions/{_q(name)}/exec", json=body)

    @staticmethod
    def run_code(name: str, code: str) -> Call:
        return Call("POST", f"/sessions/{_q(name)}/run", json={"code": code})

    @staticmethod
    def interrupt(name: str) -> Call:
        return Call("POST", f"/sessions/{_q(name)}/interrupt")

    @staticmethod
    def destroy_session(name: str, forced: bool) -> Call:
        return Call(
            "DELETE", f"/sessions/{_q(name)}", params={"forced": "true" if forced else "false"}
        )

    @staticmethod
    def create_vfolder(
        name: str, usage_mode: str, permission: str, quota: int | str | None
    ) -> Call:
        body: dict[str, Any] = {"name": name, "usage_mode": usage_mode, "permission": permission}
        if quota is not None:
            body["quota"] = quota
        return Call("POST", "/vfolders", json=body)

    @staticmethod
    def list_vfolders() -> Call:
        return Call("GET", "/vfolders")

    @staticmethod
    def get_vfolder(name: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}")

    @staticmethod
    def delete_vfolder(name: str) -> Call:
        return Call("DELETE", f"/vfolders/{_q(name)}")

    @staticmethod
    def list_files(name: str, path: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}/files", params={"path": _clean_remote(path)})

    @staticmethod
    def upload_file(name: str, path: str, parents: bool) -> Call:
        params = {"path": _clean_remote(path)}
        if parents:
            params["parents"] = "true"
        return Call("PUT", f"/vfolders/{_q(name)}/files", params=params)

    @staticmethod
    def download_file(name: str, path: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}/download", params={"path": _clean_remote(path)})

    @staticmethod
    def mkdir(name: str, path: str, parents: bool) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/mkdir",
            json={"path": _clean_remote(path), "parents": bool(parents)},
        )

    @staticmethod
    def move(name: str, src: str, dst: str) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/move",
            json={"src": _clean_remote(src), "dst": _clean_remote(dst)},
        )

    @staticmethod
    def rm(name: str, path: str, recursive: bool) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/rm",
            json={"path": _clean_remote(path), "recursive": bool(recursive)},
        )

    @staticmethod
    def events(since: int | None) -> Call:
        return Call("GET", "/events", params={"since": str(int(since))} if since is not None else None)

    @staticmethod
    def ask(question: str, top_k: int, history: list[dict[str, str]] | None, stream: bool) -> Call:
        body: dict[str, Any] = {"question": question, "top_k": top_k, "stream": stream}
        if history:
            body["history"] = [{"question": str(t.get("question", "")), "answer": str(t.get("answer", ""))}
                               for t in history]
        return Call("POST", "/assistant/ask", json=body)

    @staticmethod
    def assistant_sources() -> Call:
        return Call("GET", "/assistant/sources")

    @staticmethod
    def assistant_learn(path: str | os.PathLike[str]) -> Call:
        # the engine runs on this machine: send an absolute path so "./docs" means the caller's
        return Call("POST", "/assistant/sources", json={"path": str(Path(path).expanduser().absolute())})

    @staticmethod
    def assistant_forget(source: str | os.PathLike[str]) -> Call:
        src = str(source)
        if not src.startswith("builtin:") and not os.path.isabs(src):
            src = str(Path(src).expanduser().absolute())
        return Call("DELETE", "/assistant/sources", params={"source": src})


# --------------------------------------------------------------------------- response parsing


def _assistant_done(msg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``done`` message of an assistant stream as the answer dict (errors raised)."""
    if msg is None:
        raise BaiError("the assistant's answer ended before it was complete", code="connection-lost")
    if msg.get("status") == "error":
        raise _stream_error(msg)
    return {k: v for k, v in msg.items() if k != "type"}


def _one_line(text: str) -> str:
    """Messages are shown on one line in the CLI and magics."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_from_response(
    status: int, body: bytes, *, url: str = "", reason: str = ""
) -> BaiError:
    """The :class:`BaiError` for an HTTP error answer: the server's code and message when given."""
    data: Any = None
    try:
        data = json.loads(body.decode("utf-8", "replace")) if body else None
    except ValueError:
        data = None
    message = ""
    if isinstance(data, dict):
        message = _one_line(str(data.get("message") or data.get("reason") or ""))
        code = data.get("error")
        if isinstance(code, str) and code:
            cls = _ERROR_CLASSES.get(code)
            if cls is not None:
                return cls(message or code, status=status)
            return BaiError(message or code, status=status, code=code)
    if status in (401, 403):
        return BaiError(
            f"the engine at {url} refused the request ({status}): the token is missing or "
            "wrong; check JUPYTER_BAI_TOKEN or the connection file",
            status=status,
            code="forbidden",
        )
    if status == 404:
        return NotFound(
            message or f"not found at {url}: is a jupyter-bai engine serving there?", status=404
        )
    text = message or reason or "error"
    return BaiError(f"the engine answered {status}: {text}", status=status, code="http-error")


def _transport_error(exc: httpx.TransportError, url: str) -> BaiError:
    """A network failure as one actionable line."""
    if isinstance(exc, httpx.ConnectError):
        return EngineNotFound(
            f"cannot reach the jupyter-bai engine at {url} (connection refused): {NO_ENGINE_HINT}"
        )
    if isinstance(exc, httpx.TimeoutException):
        return BaiError(
            f"the jupyter-bai engine at {url} did not answer in time", status=504, code="timeout"
        )
    return BaiError(
        f"lost the connection to the jupyter-bai engine at {url}: {_one_line(str(exc)) or type(exc).__name__}",
        status=502,
        code="connection-lost",
    )


def _decode_json(resp: httpx.Response) -> Any:
    """The body as JSON; empty bodies (204) are None."""
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        raise BaiError(
            f"the engine sent a non-JSON answer to {resp.request.method} {resp.request.url.path}",
            status=502,
            code="bad-response",
        ) from None


def _parse_ndjson_line(line: str) -> dict[str, Any] | None:
    """One message of an exec/run stream, or None for a blank keep-alive line."""
    line = line.strip()
    if not line:
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        raise BaiError(
            f"malformed stream message from the engine: {line[:80]}", code="bad-response"
        ) from None
    if isinstance(msg, dict) and msg.get("type") == "error":
        # an error reported after the stream started (the status line was already 200)
        code = str(msg.get("error") or "invalid-request")
        cls = _ERROR_CLASSES.get(code, BaiError)
        raise cls(_one_line(str(msg.get("message") or code)), code=code)
    return msg if isinstance(msg, dict) else None


class _LineSplitter:
    """Split streamed text on ``\n`` only (``str.splitlines`` would also split on U+2028)."""

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, text: str) -> list[str]:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        return [line[:-1] if line.endswith("\r") else line for line in lines]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest.rstrip("\r")] if rest else []


def _iter_lines(resp: httpx.Response) -> Iterator[str]:
    splitter = _LineSplitter()
    for text in resp.iter_text():
        yield from splitter.feed(text)
    yield from splitter.flush()


async def _aiter_lines(resp: httpx.Response) -> AsyncIterator[str]:
    splitter = _LineSplitter()
    async for text in resp.aiter_text():
        for line in splitter.feed(text):
            yield line
    for line in splitter.flush():
        yield line


def _stream_error(msg: Mapping[str, Any]) -> BaiError:
    """An engine error reported inside a stream's ``done`` message (headers already sent)."""
    code = str(msg.get("ename") or msg.get("error") or "invalid-state")
    text = _one_line(str(msg.get("evalue") or msg.get("message") or "the engine ended the stream"))
    cls = _ERROR_CLASSES.get(code)
    return cls(text) if cls is not None else BaiError(text, code=code)


def default_output(stream: str, text: str) -> None:
    """Write remote output to the local stream of the same name, as it arrives."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


class _ExecHandler:
    """Folds an exec stream into callbacks and the final exit code."""

    def __init__(self, on_output: OutputCallback | None) -> None:
        self.on_output = on_output or default_output
        self.exit_code: int | None = None

    def feed(self, msg: dict[str, Any]) -> bool:
        """Handle one message; True once the stream is done."""
        kind = msg.get("type")
        if kind == "stream":
            self.on_output(str(msg.get("name", "stdout")), str(msg.get("text", "")))
        elif kind == "done":
            code = msg.get("exit_code")
            if code is None:
                raise _stream_error(msg)
            self.exit_code = int(code)
            return True
        return False

    def result(self) -> int:
        if self.exit_code is None:
            raise BaiError("the exec stream ended before the command finished", code="connection-lost")
        return self.exit_code


class _RunHandler:
    """Folds a run stream into callbacks and the final ``done`` message (plus ``result``)."""

    def __init__(
        self, on_output: OutputCallback | None, on_result: Callable[[str], None] | None
    ) -> None:
        self.on_output = on_output or default_output
        self.on_result = on_result
        self.result_text: str | None = None
        self.done: dict[str, Any] | None = None

    def feed(self, msg: dict[str, Any]) -> bool:
        kind = msg.get("type")
        if kind == "stream":
            self.on_output(str(msg.get("name", "stdout")), str(msg.get("text", "")))
        elif kind == "result":
            self.result_text = str(msg.get("text", ""))
            if self.on_result is not None:
                self.on_result(self.result_text)
        elif kind == "done":
            if msg.get("status") == "error" and not msg.get("traceback") and msg.get("ename") in _ERROR_CLASSES:
                raise _stream_error(msg)  # the engine failed, not the user's code
            self.done = dict(msg)
            if self.result_text is not None:
                self.done.setdefault("result", self.result_text)
            return True
        return False

    def result(self) -> dict[str, Any]:
        if self.done is None:
            raise BaiError("the run stream ended before the code finished", code="connection-lost")
        return self.done


@dataclass
class SSEParser:
    """Incremental ``text/event-stream`` parser (WHATWG rules): feed lines, get events.

    Each event is its JSON ``data`` with ``seq`` (from ``id:``) and ``event`` (the event type)
    filled in when the data does not carry them.
    """

    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    last_id: str | None = None

    def feed(self, line: str) -> dict[str, Any] | None:
        """Feed one line (without its newline); returns an event when a blank line ends one."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / heartbeat
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored
        return None

    def _dispatch(self) -> dict[str, Any] | None:
        data, event, ident = self._data, self._event or "message", self._id
        self._data, self._event = [], ""
        if ident is not None:
            self.last_id = ident
        if not data:
            return None
        text = "\n".join(data)
        try:
            payload = json.loads(text)
        except ValueError:
            payload = {"data": text}
        if not isinstance(payload, dict):
            payload = {"data": payload}
        payload.setdefault("event", event)
        if ident is not None and "seq" not in payload:
            payload["seq"] = int(ident) if ident.isdigit() else ident
        return payload


# --------------------------------------------------------------------------- transfers


@dataclass
class _Upload:
    """One planned upload step: a file to PUT or an (empty) directory to create."""

    kind: str  # "file" | "dir"
    remote: str
    local: Path | None = None
    size: int = 0


def _plan_upload(files: Iterable[str | os.PathLike[str]], dst: str) -> list[_Upload]:
    """Expand local files/directories into remote targets under ``dst`` before sending anything.

    Checking every path first means a typo fails before half the files are uploaded.
    """
    base = _clean_remote(dst)
    plan: list[_Upload] = []
    paths = [Path(f) for f in files]
    if not paths:
        raise InvalidRequest("nothing to upload: name at least one file")
    for p in paths:
        if not p.exists():
            raise InvalidRequest(f"no such local file or directory: {p}")
    for p in paths:
        top = posixpath.join(base, p.resolve().name) if base else p.resolve().name
        if p.is_dir():
            plan.append(_Upload("dir", top))
            for root, dirs, names in os.walk(p):
                dirs.sort()
                rel = Path(root).relative_to(p).as_posix()
                rdir = top if rel == "." else posixpath.join(top, rel)
                for d in dirs:
                    plan.append(_Upload("dir", posixpath.join(rdir, d)))
                for n in sorted(names):
                    lp = Path(root) / n
                    if lp.is_file():
                        plan.append(_Upload("file", posixpath.join(rdir, n), lp, lp.stat().st_size))
        elif p.is_file():
            plan.append(_Upload("file", top, p, p.stat().st_size))
        else:
            raise InvalidRequest(f"not a regular file or directory: {p}")
    return plan


class _Meter:
    """Cumulative byte counter feeding a :data:`TransferProgress` callback."""

    def __init__(self, total: int, progress: TransferProgress | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def add(self, n: int, label: str) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done), label)


def _file_chunks(path: Path, meter: _Meter, label: str) -> Iterator[bytes]:
    """Stream a file in chunks; it is never read into memory whole."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                break
            meter.add(len(chunk), label)
            yield chunk


async def _afile_chunks(path: Path, meter: _Meter, label: str) -> AsyncIterator[bytes]:
    """Async flavour of :func:`_file_chunks` (reads happen off the event loop)."""
    f: BinaryIO = await asyncio.to_thread(open, path, "rb")
    try:
        while True:
            chunk = await asyncio.to_thread(f.read, CHUNK_SIZE)
            if not chunk:
                break
            meter.add(len(chunk), label)
            yield chunk
    finally:
        f.close()


@dataclass
class _Download:
    remote: str
    local: Path
    size: int


def _entry_for(listing: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for e in listing:
        if e.get("name") == name:
            return e
    return None


def _tmp_path(local: Path) -> Path:
    """Downloads land in a hidden temp file first so a failure leaves no half file."""
    return local.with_name(f".{local.name}.bai-part")


def _wait_targets(statuses: Iterable[str] | None) -> frozenset[str]:
    return frozenset(statuses or {"RUNNING"}) | TERMINAL_STATUSES


def _wait_timeout_error(name: str, status: str, timeout: float) -> BaiError:
    return BaiError(
        f"session {name!r} is still {status} after {timeout:g} s", status=504, code="timeout"
    )


def _poll_delay(attempt: int) -> float:
    """Short sleeps first (local sessions start in milliseconds), then back off to 0.5 s."""
    return min(0.02 * (2 ** attempt), 0.5)


def _single_command(command: str | Iterable[str]) -> str | list[str]:
    """``"ls -l | wc"`` stays a shell string; a sequence is an argv list."""
    if isinstance(command, str):
        return command
    return [str(c) for c in command]


# --------------------------------------------------------------------------- the clients


def _resolve(url: str | EngineConnection | None, token: str | None) -> EngineConnection:
    if isinstance(url, EngineConnection):
        return url
    if url is None:
        conn = find_engine()
        return conn if token is None else EngineConnection(conn.url, token)
    return EngineConnection(url=url, token=token or "")


def _headers(conn: EngineConnection) -> dict[str, str]:
    headers = {"User-Agent": "jupyter-bai-client", "Accept": "application/json"}
    if conn.token:
        headers["Authorization"] = f"token {conn.token}"
    return headers


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
        wait: bool = False,
        timeout: float | None = None,
        progress: SessionProgress | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Client.create_session`."""
        sess = await self._json(_ops.create_session(
            image, name=name, type=type, command=command, resources=resources, mounts=mounts,
            env=env, idle_timeout=idle_timeout, max_lifetime=max_lifetime,
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
