"""``/bai/api/v1/assistant/*``: the API assistant, for the sidebar chat panel and the client."""
from __future__ import annotations

from typing import Any

from ..spec.errors import InvalidRequest
from .base import BaiHandler, api_method


class AssistantHandler(BaiHandler):
    @property
    def assistant(self) -> Any:
        return self.settings["bai_app"].get_assistant()


class AssistantAskHandler(AssistantHandler):
    @api_method
    async def post(self) -> None:
        body = self.body_json()
        top_k = body.get("top_k", 5)
        history = body.get("history") or []
        if not isinstance(history, list):
            raise InvalidRequest("'history' must be a list of {question, answer} turns")
        source = body.get("source")
        if body.get("stream"):
            await self.stream_ndjson(self.assistant.ask(body.get("question"), top_k, history, source))
        else:
            self.reply(await self.assistant.answer(body.get("question"), top_k, history, source))


class AssistantSourcesHandler(AssistantHandler):
    @api_method
    async def get(self) -> None:
        self.reply(await self.assistant.sources())

    @api_method
    async def post(self) -> None:
        self.reply(await self.assistant.learn(self.body_json().get("path")), status=201)

    @api_method
    async def delete(self) -> None:
        self.reply(await self.assistant.forget(self.get_argument("source", "")))
