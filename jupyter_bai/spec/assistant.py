"""Request bodies of the API assistant (``/assistant/*``). Pure; no I/O.

Strict JSON types, so the server takes exactly what ``openapi.yaml`` documents; the assistant
itself checks what JSON Schema cannot say (a question's length once its spaces are collapsed).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AskTurn", "AskRequest", "LearnRequest"]

MAX_TOP_K = 50
"""Most sources one answer returns."""


class AskTurn(BaseModel):
    """One earlier turn of a chat; follow-up questions lean on it."""

    model_config = ConfigDict(strict=True)

    question: str = ""
    answer: str = ""


class AskRequest(BaseModel):
    """``POST /assistant/ask``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(description="The question, in plain words (at most 2000 characters "
                          "once runs of spaces are collapsed).")
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K, description="How many sources to return.")
    stream: bool = Field(default=False,
                         description="Stream NDJSON messages as the answer is written.")
    history: list[AskTurn] = Field(
        default_factory=list, max_length=100,
        description="Earlier turns of a chat, oldest first; follow-up questions use them.",
    )


class LearnRequest(BaseModel):
    """``POST /assistant/sources``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(description="Absolute path of a file or folder to learn.")
