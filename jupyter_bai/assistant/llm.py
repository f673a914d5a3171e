"""Streaming chat with an OpenAI-compatible server (``/v1/chat/completions``, ``stream: true``).

Used only when ``c.BaiApp.assistant_llm_url`` is set; any failure raises :class:`LLMUnavailable`
so the caller can fall back to the extractive answer and say why.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


class LLMUnavailable(Exception):
    """The LLM endpoint is down, too slow, or answered something that is not a chat stream."""


@dataclass(frozen=True)
class LLMConfig:
    url: str
    model: str = "default"
    api_key: str | None = None
    #: Seconds to wait for the first token, and between tokens.
    timeout: float = 20.0

    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


async def stream_chat(cfg: LLMConfig, messages: list[dict[str, str]]) -> AsyncIterator[str]:
    """Yield the answer's text pieces as the server sends them."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    body = {"model": cfg.model, "messages": messages, "stream": True, "temperature": 0.1}
    timeout = httpx.Timeout(cfg.timeout, connect=min(cfg.timeout, 5.0))
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            async with http.stream("POST", cfg.endpoint(), json=body, headers=headers) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise LLMUnavailable(f"the LLM at {cfg.url} answered HTTP {resp.status_code}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                        piece = chunk["choices"][0].get("delta", {}).get("content") or ""
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        raise LLMUnavailable(f"the LLM at {cfg.url} sent a malformed stream") from None
                    if piece:
                        yield piece
    except httpx.TimeoutException:
        raise LLMUnavailable(
            f"the LLM at {cfg.url} did not answer within {cfg.timeout:g} s "
            f"(waited {time.monotonic() - started:.1f} s)") from None
    except httpx.HTTPError as exc:
        raise LLMUnavailable(f"the LLM at {cfg.url} is unreachable ({type(exc).__name__})") from None
