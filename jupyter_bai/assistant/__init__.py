"""The API assistant: answers questions about this platform's API from its own docs.

A retrieval index (hybrid: llama-index BM25 fused with int8 MiniLM vectors run by onnxruntime,
no PyTorch, nothing downloaded) over one document per REST operation, client method, CLI/magic
verb and Markdown section, plus whatever a user adds with ``--learn`` (``--in`` searches one API). It runs inside the engine process (``/assistant/ask``);
front ends reach it through the client like every other feature.
"""
from __future__ import annotations

from .answer import ABSTAIN_MESSAGE
from .service import Assistant, LLMConfig

__all__ = ["ABSTAIN_MESSAGE", "Assistant", "LLMConfig"]
