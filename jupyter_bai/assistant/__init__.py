"""The API assistant: answers questions about this platform's API from its own docs.

A retrieval index (llama-index BM25; dense/hybrid when an offline embedding model is installed)
over one document per REST operation, client method, CLI/magic verb and Markdown section, plus
whatever a user adds with ``--learn``. It runs inside the engine process (``/assistant/ask``);
front ends reach it through the client like every other feature.
"""
from __future__ import annotations

from .answer import ABSTAIN_MESSAGE
from .service import Assistant, LLMConfig

__all__ = ["ABSTAIN_MESSAGE", "Assistant", "LLMConfig"]
