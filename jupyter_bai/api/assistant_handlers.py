"""``/bai/api/v1/assistant/*``: the API assistant, for the sidebar chat panel and the client."""
from __future__ import annotations

from typing import Any

from ..spec.assistant import AskRequest, LearnRequest
from .base import BaiHandler, api_method


class AssistantHandler(BaiHandler):
    @property
    def assistant(self) -> Any:
        return self.settings["bai_app"].get_assistant()


class AssistantAskHandler(AssistantHandler):
    @api_method
    async def post(self) -> None:
        req = self.body_model(AskRequest, "question")
        history = [turn.model_dump() for turn in req.history]
        if req.stream:
            await self.stream_ndjson(self.assistant.ask(req.question, req.top_k, history))
        else:
            self.reply(await self.assistant.answer(req.question, req.top_k, history))


class AssistantSourcesHandler(AssistantHandler):
    @api_method
    async def get(self) -> None:
        self.reply(await self.assistant.sources())

    @api_method
    async def post(self) -> None:
        path = self.body_model(LearnRequest, "learn request").path
        self.reply(await self.assistant.learn(path), status=201)

    @api_method
    async def delete(self) -> None:
        self.reply(await self.assistant.forget(self.get_argument("source", "")))
