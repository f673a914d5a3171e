"""What comes back: JSON errors as BaiError, NDJSON and SSE streams, file transfers."""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import sys
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from jupyter_bai.client.connection import (
    NO_ENGINE_HINT,
    EngineConnection,
    EngineNotFound,
    find_engine,
)
from jupyter_bai.client.operations import (
    _ERROR_CLASSES,
    CHUNK_SIZE,
    TERMINAL_STATUSES,
    OutputCallback,
    TransferProgress,
    _clean_remote,
)
from jupyter_bai.spec.errors import (
    BaiError,
    InvalidRequest,
    NotFound,
)
from jupyter_bai.spec.models import AssistantAnswer, RunDone

# --------------------------------------------------------------------------- response parsing


def _assistant_done(msg: Mapping[str, Any] | None) -> AssistantAnswer:
    """The ``done`` message of an assistant stream as the answer (errors raised)."""
    if msg is None:
        raise BaiError("the assistant's answer ended before it was complete", code="connection-lost")
    if msg.get("status") == "error":
        raise _stream_error(msg)
    return AssistantAnswer.model_validate({k: v for k, v in msg.items() if k != "type"})


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

    def feed(self, msg: Mapping[str, Any]) -> bool:
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
        self.done: RunDone | None = None

    def feed(self, msg: Mapping[str, Any]) -> bool:
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
            done = dict(msg)
            if self.result_text is not None:
                done.setdefault("result", self.result_text)
            self.done = RunDone.model_validate(done)
            return True
        return False

    def result(self) -> RunDone:
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


async def _afile_chunks(path: Path, meter: _Meter, label: str) -> AsyncIterator[bytes]:
    """Stream a file in chunks, never whole in memory; reads happen off the event loop."""
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


def _entry_for(listing: Iterable[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
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


