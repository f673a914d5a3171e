"""Streaming chat with an OpenAI-compatible server (``/v1/chat/completions``, ``stream: true``).

Used when ``c.BaiApp.assistant_llm_url`` is set or a question names a model service of this
workbench (``--llm SERVICE``); any failure raises :class:`LLMUnavailable` so the caller can fall
back to the extractive answer and say why. A server that ignores ``stream`` and answers one JSON
completion is read whole.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

#: ``model`` value that asks the server which model it serves (``GET /v1/models``, the first one).
AUTO_MODEL = "auto"


class LLMUnavailable(Exception):
    """The LLM endpoint is down, too slow, or answered something that is not a chat stream."""


@dataclass(frozen=True)
class LLMConfig:
    url: str
    model: str = "default"
    api_key: str | None = None
    #: Seconds to wait for the first token, and between tokens.
    timeout: float = 20.0
    #: How errors name the endpoint (e.g. "model service 'chat'"); default: "the LLM at URL".
    label: str = ""

    def base(self) -> str:
        """The ``.../v1`` prefix the OpenAI routes hang off."""
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base[: -len("/chat/completions")]
        return base if base.endswith("/v1") else base + "/v1"

    def endpoint(self) -> str:
        return self.base() + "/chat/completions"

    def name(self) -> str:
        return self.label or f"the LLM at {self.url}"


async def _model(http: httpx.AsyncClient, cfg: LLMConfig, headers: dict[str, str]) -> str:
    """The model to ask for: the configured one, or the first the server lists."""
    if cfg.model != AUTO_MODEL:
        return cfg.model
    resp = await http.get(cfg.base() + "/models", headers=headers)
    if resp.status_code >= 400:
        raise LLMUnavailable(f"{cfg.name()} answered HTTP {resp.status_code} when asked for its models")
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMUnavailable(f"{cfg.name()} lists no model at {cfg.base()}/models") from None


def _piece(data: str, cfg: LLMConfig, key: str) -> str:
    try:
        choice = json.loads(data)["choices"][0]
        return str((choice.get(key) or {}).get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMUnavailable(f"{cfg.name()} sent a malformed answer") from None


async def stream_chat(cfg: LLMConfig, messages: list[dict[str, str]]) -> AsyncIterator[str]:
    """Yield the answer's text pieces as the server sends them."""
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    timeout = httpx.Timeout(cfg.timeout, connect=min(cfg.timeout, 5.0))
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            body = {"model": await _model(http, cfg, headers), "messages": messages, "stream": True,
                    "temperature": 0.1}
            async with http.stream("POST", cfg.endpoint(), json=body,
                                   headers={**headers, "Accept": "text/event-stream"}) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise LLMUnavailable(f"{cfg.name()} answered HTTP {resp.status_code}")
                if resp.headers.get("content-type", "").startswith("application/json"):
                    piece = _piece((await resp.aread()).decode(errors="replace"), cfg, "message")
                    if piece:
                        yield piece
                    return
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    piece = _piece(data, cfg, "delta")
                    if piece:
                        yield piece
    except httpx.TimeoutException:
        raise LLMUnavailable(
            f"{cfg.name()} did not answer within {cfg.timeout:g} s "
            f"(waited {time.monotonic() - started:.1f} s)") from None
    except httpx.HTTPError as exc:
        raise LLMUnavailable(f"{cfg.name()} is unreachable ({type(exc).__name__})") from None
