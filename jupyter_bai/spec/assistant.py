"""Request bodies of the API assistant (``/assistant/*``). Pure; no I/O.

Strict JSON types, so the server takes exactly what ``openapi.yaml`` documents; the assistant
itself checks what JSON Schema cannot say (a question's length once its spaces are collapsed).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AskTurn", "AskRequest", "LearnRequest"]

MAX_TOP_K = 50
"""Most sources one answer returns."""
MAX_TURNS = 100
"""Most earlier turns one question carries."""


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
    top_k: int = Field(default=5, description="How many sources to return.",
                       json_schema_extra={"minimum": 1, "maximum": MAX_TOP_K})
    stream: bool = Field(default=False,
                         description="Stream NDJSON messages as the answer is written.")
    history: list[AskTurn] = Field(
        default_factory=list,
        description="Earlier turns of a chat, oldest first; follow-up questions use them.",
        json_schema_extra={"maxItems": MAX_TURNS},
    )

    source: str | None = Field(
        default=None,
        description="Limit the search to one API: `workbench` (this platform) or a learned file "
        "(its path or file name). Without it the API that matches the question best answers.",
        json_schema_extra={"maxLength": 4096},
    )

    llm: str | None = Field(
        default=None,
        description="Name of a model service of this workbench (OpenAI-compatible) that writes the "
        "answer from the retrieved operations; the sources and runnable examples stay. Without it: "
        "the configured LLM, if any, else an extractive answer.",
        json_schema_extra={"maxLength": 200},
    )

    @field_validator("top_k", mode="before")
    @classmethod
    def _check_top_k(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_TOP_K:
            raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {v!r}")
        return v

    @field_validator("history", mode="before")
    @classmethod
    def _check_history(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError("'history' must be a list of {question, answer} turns")
        if len(v) > MAX_TURNS:
            raise ValueError(f"'history' may hold at most {MAX_TURNS} turns")
        return v


class LearnRequest(BaseModel):
    """``POST /assistant/sources``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(description="Absolute path of a file or folder to learn.")
