"""``/sessions/*``: create, inspect, stream logs, exec/run code in, and destroy sessions."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tornado.iostream import StreamClosedError

from ..spec.models import (
    DestroyQuery, ExecMessage, ExecRequest, Interrupted, LogsQuery, LogsText, RunMessage,
    RunRequest, SessionInfo, SessionList, SessionsQuery,
)
from ..spec.session import SessionSpec
from .base import BaiHandler, api_method

class SessionsHandler(BaiHandler):
    @api_method("read", operation_id="listSessions", tag="sessions", query=SessionsQuery,
                response=SessionList, summary="List sessions, live and finished.",
                returns="The sessions, newest first.", errors=(400,))
    async def get(self) -> None:
        """Example: `%bai session ls --status RUNNING`, `Client().list_sessions()`."""
        status = self.get_argument("status", None)
        self.bool_arg("all")  # Backend.AI's flag: finished sessions are always listed
        await self.reply_off_loop(lambda: {"sessions": self.engine.sessions.list(status)})

    @api_method("write", operation_id="createSession", tag="sessions", request=SessionSpec,
                response=SessionInfo, status=201, summary="Create a compute session.",
                returns="The new session.", errors=(400, 404, 409, 503))
    async def post(self) -> None:
        """Returns at once with the session in PENDING (or later). A request that can never fit
        the node fails with 400 `insufficient-resources`; one that fits later waits as PENDING
        (FIFO). To wait for RUNNING, poll `GET /sessions/{name}` or watch `/events`.
        Example: `%bai session create local -t exp1 -r cpu=1 -r mem=1g -v data:ro`.
        A batch session ends by itself: `jupyter bai session create ... --type batch --wait`
        streams its output and exits with the command's exit code.
        """
        spec = self.body_model(SessionSpec, "session spec")
        self.reply(await self.engine.sessions.create_async(spec), status=201)


class SessionHandler(BaiHandler):
    @api_method("read", operation_id="getSession", tag="sessions", response=SessionInfo,
                summary="One session with its status history.", returns="The session.",
                errors=(404,))
    async def get(self, name: str) -> None:
        self.reply(self.engine.sessions.get(name))

    @api_method("write", operation_id="destroySession", tag="sessions", query=DestroyQuery,
                response=SessionInfo, summary="Terminate a session.",
                returns="The session, now TERMINATING or TERMINATED.", errors=(404, 409))
    async def delete(self, name: str) -> None:
        """Example: `%bai session destroy exp1`, `Client().destroy_session('exp1')`."""
        self.reply(await self.engine.sessions.destroy(name, forced=self.bool_arg("forced")))


class SessionLogsHandler(BaiHandler):
    @api_method("read", operation_id="getSessionLogs", tag="sessions", query=LogsQuery,
                response=LogsText, alt_content=(("text/plain", "with `follow=true`"),),
                summary="The session's output log, whole, its tail, or followed live.",
                returns="`{\"logs\": text}`, or with `follow=true` a text/plain stream.",
                errors=(400, 404))
    async def get(self, name: str) -> None:
        """Example: `%bai session logs exp1 --tail 20`, `jupyter bai session logs exp1 -f`."""
        sessions = self.engine.sessions
        if not self.bool_arg("follow"):
            self.reply({"logs": sessions.logs(name, tail=self.int_arg("tail"))})
            return
        chunks = follow_log(sessions, name)
        first = await anext(chunks, b"")  # a missing session is a 404 before the 200 is sent
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        try:
            while first:
                self.write(first)
                await self.flush()
                first = await anext(chunks, b"")
        except StreamClosedError:
            return
        finally:
            await chunks.aclose()
        self.finish()


async def follow_log(sessions: Any, name: str) -> AsyncIterator[bytes]:
    """A session's log from its start, as it grows, until the session ends (shared by the
    logs route and the in-process driver)."""
    session = sessions.get(name)
    path = sessions.log_path(session["id"])
    offset = 0
    while True:
        chunk = b""
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(1 << 20)
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if sessions.get(session["id"])["status"] in ("TERMINATED", "ERROR", "CANCELLED"):
            return
        await asyncio.sleep(0.2)


class SessionExecHandler(BaiHandler):
    @api_method("execute", operation_id="execInSession", tag="sessions", request=ExecRequest,
                content="application/x-ndjson", stream=ExecMessage,
                summary="Run a command inside a running session, streaming its output.",
                returns="An NDJSON stream of ExecMessage objects.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        """The answer is newline-delimited JSON: `stream` messages as output is produced, then one
        `done` message with the exit code. Example: `jupyter bai session exec exp1 -- ls -l`
        (its exit status is the command's).
        """
        req = self.body_model(ExecRequest, "exec request")
        request = {"op": "exec", "command": req.command, "env": req.env}
        await self.stream_ndjson(self.engine.sessions.agent_stream(name, request))


class SessionRunHandler(BaiHandler):
    @api_method("execute", operation_id="runCode", tag="sessions", request=RunRequest,
                content="application/x-ndjson", stream=RunMessage,
                summary="Run Python code in the session's persistent interpreter (query mode).",
                returns="An NDJSON stream of RunMessage objects.", errors=(400, 404, 409))
    async def post(self, name: str) -> None:
        """Variables persist from one call to the next. Only interactive RUNNING sessions accept
        code (else 409 `invalid-state`). The answer is NDJSON: `stream` messages as the code
        prints, an optional `result` (the repr of the last expression), then `done`.
        Example: a `%%bai run exp1` cell, or `Client().run_code('exp1', 'x = 1')`.
        """
        code = self.body_model(RunRequest, "run request").code
        await self.stream_ndjson(
            self.engine.sessions.agent_stream(name, {"op": "run", "code": code})
        )


class SessionInterruptHandler(BaiHandler):
    @api_method("execute", operation_id="interruptSession", tag="sessions", response=Interrupted,
                summary="Interrupt the code running in the session's interpreter (like Ctrl-C).",
                returns="Whether something was running and got interrupted.", errors=(404, 409))
    async def post(self, name: str) -> None:
        interrupted = False
        async for message in self.engine.sessions.agent_stream(name, {"op": "interrupt"}):
            interrupted = interrupted or bool(message.get("interrupted"))
        self.reply({"interrupted": interrupted})
