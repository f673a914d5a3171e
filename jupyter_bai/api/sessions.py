"""``/sessions/*``: create, inspect, stream logs, exec/run code in, and destroy sessions."""
from __future__ import annotations

import asyncio

from tornado.iostream import StreamClosedError

from ..spec.session import ExecRequest, RunRequest, SessionSpec
from .base import BaiHandler, api_method

class SessionsHandler(BaiHandler):
    @api_method
    async def get(self) -> None:
        status = self.get_argument("status", None)
        self.bool_arg("all")  # Backend.AI's flag: finished sessions are always listed
        self.reply({"sessions": self.engine.sessions.list(status)})

    @api_method
    async def post(self) -> None:
        spec = self.body_model(SessionSpec, "session spec")
        self.reply(self.engine.sessions.create(spec), status=201)


class SessionHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        self.reply(self.engine.sessions.get(name))

    @api_method
    async def delete(self, name: str) -> None:
        self.reply(await self.engine.sessions.destroy(name, forced=self.bool_arg("forced")))


class SessionLogsHandler(BaiHandler):
    @api_method
    async def get(self, name: str) -> None:
        sessions = self.engine.sessions
        if not self.bool_arg("follow"):
            self.reply({"logs": sessions.logs(name, tail=self.int_arg("tail"))})
            return
        session = sessions.get(name)
        path = sessions.log_path(session["id"])
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        offset = 0
        try:
            while True:
                chunk = b""
                if path.exists():
                    with open(path, "rb") as f:
                        f.seek(offset)
                        chunk = f.read(1 << 20)
                if chunk:
                    offset += len(chunk)
                    self.write(chunk)
                    await self.flush()
                    continue
                if sessions.get(session["id"])["status"] in ("TERMINATED", "ERROR", "CANCELLED"):
                    break
                await asyncio.sleep(0.2)
        except StreamClosedError:
            return
        self.finish()


class SessionExecHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        req = self.body_model(ExecRequest, "exec request")
        request = {"op": "exec", "command": req.command, "env": req.env}
        await self.stream_ndjson(self.engine.sessions.agent_stream(name, request))


class SessionRunHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        code = self.body_model(RunRequest, "run request").code
        await self.stream_ndjson(
            self.engine.sessions.agent_stream(name, {"op": "run", "code": code})
        )


class SessionInterruptHandler(BaiHandler):
    @api_method
    async def post(self, name: str) -> None:
        interrupted = False
        async for message in self.engine.sessions.agent_stream(name, {"op": "interrupt"}):
            interrupted = interrupted or bool(message.get("interrupted"))
        self.reply({"interrupted": interrupted})
