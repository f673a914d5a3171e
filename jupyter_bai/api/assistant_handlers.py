"""``/bai/api/v1/assistant/*``: the API assistant, for the sidebar chat panel and the client."""
from __future__ import annotations

from typing import Any

from ..spec.models import AskRequest, AssistantAnswer, AssistantChange, AssistantSources, DeleteSourceQuery, LearnRequest
from .base import BaiHandler, api_method


class AssistantHandler(BaiHandler):
    @property
    def assistant(self) -> Any:
        return self.settings["bai_app"].get_assistant()


class AssistantAskHandler(AssistantHandler):
    @api_method("read", operation_id="askAssistant", tag="assistant", request=AskRequest,
                response=AssistantAnswer, alt_content=(("application/x-ndjson", "with `stream: true`"),),
                summary="Ask the API assistant a question; get an answer with sources and runnable examples.",
                returns="The answer (or, with `stream`, NDJSON messages ending with `done`).",
                errors=(400, 404, 409))
    async def post(self) -> None:
        """Retrieves the best-matching operations, client methods, magic/CLI verbs and doc sections
        from the assistant's index (built on the first question) and answers extractively, or
        synthesised by an OpenAI-compatible LLM, citing its sources and keeping the runnable
        examples: a model service of this workbench named by `llm` (its endpoint and a token the
        engine issues; 404 when there is no such service, 409 when it is not healthy), else
        `c.BaiApp.assistant_llm_service` or `c.BaiApp.assistant_llm_url`. When nothing relevant is indexed the answer says so (`abstained: true`).
        With `stream: true` the answer comes as NDJSON messages: `sources`, `delta` pieces, `done`.
        Example: `%bai ask "QUESTION"`, `%bai ask --llm chat "QUESTION"`, `Client().ask("QUESTION", llm="chat")`.
        """
        req = self.body_model(AskRequest, "question")
        history = [turn.model_dump() for turn in req.history]
        app = self.settings["bai_app"]
        service = req.llm or app.assistant_llm_service or None
        llm = app.service_llms().resolve(self.engine, service) if service else None
        if req.stream:
            await self.stream_ndjson(self.assistant.ask(req.question, req.top_k, history, req.source, llm))
        else:
            self.reply(await self.assistant.answer(req.question, req.top_k, history, req.source, llm))


class AssistantSourcesHandler(AssistantHandler):
    @api_method("read", operation_id="listAssistantSources", tag="assistant", response=AssistantSources,
                summary="List what the assistant has indexed, built in and learned.",
                returns="Sources with their document counts and hashes.")
    async def get(self) -> None:
        """Example: `%bai ask --sources`, `Client().assistant_sources()`."""
        self.reply(await self.assistant.sources())

    @api_method("write", operation_id="learnAssistantSource", tag="assistant", request=LearnRequest,
                response=AssistantChange, status=201,
                summary="Teach the assistant a folder (Markdown, Python, notebooks) or an OpenAPI file.",
                returns="What was learned.", errors=(400,))
    async def post(self) -> None:
        """The path is read on the engine's machine. A JSON or YAML OpenAPI file of any size gives
        one document per operation. An unreadable path or a malformed file is refused with the
        file and what is wrong, and changes nothing.
        Example: `%bai ask --learn ./docs`, `Client().assistant_learn("petstore.yaml")`.
        """
        path = self.body_model(LearnRequest, "learn request").path
        self.reply(await self.assistant.learn(path), status=201)

    @api_method("write", operation_id="forgetAssistantSource", tag="assistant", query=DeleteSourceQuery,
                response=AssistantChange, summary="Make the assistant forget a learned file or folder.",
                returns="What was forgotten.", errors=(400, 404))
    async def delete(self) -> None:
        """Example: `%bai ask --forget ./docs`, `Client().assistant_forget("./docs")`."""
        self.reply(await self.assistant.forget(self.get_argument("source", "")))
