"""``--llm SERVICE``: a model service of this workbench as the assistant's answer writer.

The service's endpoint (through the engine's proxy) and, unless it is public, a token the engine
issues for itself (kept until shortly before it expires, so asking does not mint one per question)
become an :class:`~jupyter_bai.assistant.llm.LLMConfig`. A service that does not exist or has no
healthy route is refused before anything is retrieved, with one line that says so.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ..assistant.llm import AUTO_MODEL, LLMConfig
from ..spec.errors import InvalidState, NotFound, RuntimeUnavailable
from ..spec.service import ServiceStatus

#: Lifetime of a token the engine issues to itself for the assistant, and how long before its
#: expiry a new one is issued.
TOKEN_TTL_S = 3600.0
TOKEN_RENEW_S = 300.0
#: Statuses with at least one route that answers.
SERVING = frozenset({ServiceStatus.HEALTHY.value, ServiceStatus.DEGRADED.value})


class ServiceLLMs:
    """Resolves service names to LLM configs for one engine; thread-safe token cache."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._tokens: dict[str, tuple[str, float]] = {}  # service id -> (token, expires_at)
        self._lock = threading.Lock()

    def resolve(self, engine: Any, name: str) -> LLMConfig:
        services = engine.services
        if services is None:
            raise RuntimeUnavailable("model services are not running on this engine, so --llm cannot be used")
        try:
            info = services.get(name)
        except NotFound:
            raise NotFound(f"no model service named '{name}' (see '%bai service ls'); "
                           "--llm takes the name of a running model service") from None
        if info["status"] not in SERVING:
            raise InvalidState(f"model service '{name}' is not healthy (status {info['status']}): "
                               "wait until it is HEALTHY ('%bai service info " + name + "') or ask without --llm")
        token = None if info["public"] else self._token(services, info["id"])
        return LLMConfig(url=info["endpoint"] + "v1", model=AUTO_MODEL, api_key=token,
                         timeout=self.timeout, label=f"model service '{name}'")

    def _token(self, services: Any, service_id: str) -> str:
        with self._lock:
            token, expires = self._tokens.get(service_id, ("", 0.0))
            if expires - time.time() < TOKEN_RENEW_S:
                issued = services.issue_token(service_id, TOKEN_TTL_S)
                token, expires = issued["token"], float(issued["expires_at"])
                self._tokens[service_id] = (token, expires)
            return token
