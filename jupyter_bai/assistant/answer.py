"""Extractive answers: the best operation with runnable examples, then the other sources.

Declining (calibrated on the tune halves' off-topic and answerable questions of
``bench/corpora/*/questions.yaml`` plus the own-docs set, reported on the held-out halves by
``bench/assistant_eval.py``): with vectors, the assistant declines when the best cosine similarity
among the top ten results is below :data:`MIN_COSINE`, or below :data:`SURE_COSINE` while at most
two thirds (:data:`VECTOR_COVERAGE`) of the question's content words (stemmed, stop words dropped)
occur in the top five documents. Recalibrated for the one-sentence embedded texts by a grid over
the three values on the tune halves (third-party sets alone, and with the own-docs set): the best
declined 89% of the third-party off-topic questions (94% with the own docs) and answered 97% of
answerable ones. Without vectors (BM25 only) the coverage rule alone decides, at half
(:data:`ABSTAIN_COVERAGE`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .corpus import Doc
from .index import Hit
from .text import glossary_terms, key_terms

ABSTAIN_MESSAGE = "I couldn't find anything about that in the indexed API docs."
#: The top documents must contain more than this share of the question's content words.
ABSTAIN_COVERAGE = 0.5
#: Below this best cosine a question is declined whatever its words match.
MIN_COSINE = 0.275
#: Below this best cosine a question needs more than this share of its words covered to be answered.
SURE_COSINE = 0.40
VECTOR_COVERAGE = 0.67
COVERAGE_DEPTH = 5
EXAMPLE_LABELS = (("magic", "In a notebook (or `jupyter bai ...` in a terminal)"),
                  ("client", "Python client"), ("http", "HTTP"))


def source_json(hit: Hit) -> dict[str, Any]:
    d = hit.doc
    return {"title": d.title, "ref": d.ref, "kind": d.kind, "method": d.method, "path": d.path,
            "operation_id": d.operation_id, "score": round(hit.score, 4),
            "source": d.source, "api": api_name(d.source)}


def api_name(source: str) -> str:
    """Which API a source belongs to, for people: this workbench, or the learned file by name."""
    return "this workbench" if source.startswith("builtin:") else Path(source).name


def _stems(words: list[str]) -> set[str]:
    import Stemmer  # PyStemmer, the stemmer llama-index's BM25 uses

    return set(Stemmer.Stemmer("english").stemWords(words))


def coverage(question: str, hits: list[Hit]) -> float:
    """Share of the question's content words found in the top documents."""
    terms = _stems(key_terms(question))
    if not terms:
        return 0.0
    text = " ".join(h.doc.search_text().lower() for h in hits[:COVERAGE_DEPTH])
    return len(terms & _stems(re.findall(r"[a-z0-9]+", text))) / len(terms)


def should_abstain(question: str, hits: list[Hit], threshold: float = ABSTAIN_COVERAGE) -> bool:
    if not hits:
        return True
    cosines = [h.cosine for h in hits[:10] if h.cosine is not None]
    if not cosines:
        return coverage(question, hits) <= threshold
    best = max(cosines)
    return best < MIN_COSINE or (best < SURE_COSINE and coverage(question, hits) <= VECTOR_COVERAGE)


def _stem(w: str) -> str:
    return w[:5]


def relevant_lines(doc: Doc, question: str, limit: int = 4) -> list[str]:
    """Lines of a doc that share the most key terms with the question (its "why")."""
    terms = {_stem(t) for t in key_terms(question)}
    scored = []
    for i, line in enumerate(doc.text.splitlines()):
        line = line.strip()
        if not line or line.startswith("operationId:") or len(line) > 400:
            continue
        hit = {_stem(w) for w in re.findall(r"[a-z0-9]+", f"{line} {glossary_terms(line)}".lower())} & terms
        if hit:
            scored.append((-len(hit), i, line))
    return [line for _, _, line in sorted(scored)[:limit]]


def best_operation(hits: list[Hit], docs_by_op: dict[str, Doc]) -> tuple[Hit, Doc]:
    """The top hit and the doc to take examples from (its operation's, when it has one)."""
    # an answer is about an operation when one is among the top three (prose about it may rank first)
    top = next((h for h in hits[:3] if h.doc.operation_id), hits[0])
    op_doc = docs_by_op.get(top.doc.operation_id or "") if top.doc.kind != "operation" else top.doc
    return top, op_doc or top.doc


def examples_for(top: Doc, op_doc: Doc) -> dict[str, str]:
    ex = dict(op_doc.examples)
    for k, v in top.examples.items():
        ex.setdefault(k, v)
    return ex


def examples_markdown(examples: dict[str, str]) -> str:
    """The runnable examples as fenced blocks (the same under an extractive or an LLM answer)."""
    parts = []
    for key, label in EXAMPLE_LABELS:
        if key in examples:
            lang = "python" if key == "client" else ""
            parts.append(f"{label}:\n```{lang}\n{examples[key]}\n```")
    return "\n\n".join(parts)


def extractive(question: str, hits: list[Hit], docs_by_op: dict[str, Doc],
               threshold: float = ABSTAIN_COVERAGE) -> dict[str, Any]:
    """``{"answer", "sources", "examples", "abstained"}`` from ranked hits, no LLM."""
    sources = [source_json(h) for h in hits]
    if should_abstain(question, hits, threshold):
        return {"answer": ABSTAIN_MESSAGE, "sources": [], "examples": {}, "abstained": True}
    top, op_doc = best_operation(hits, docs_by_op)
    examples = examples_for(top.doc, op_doc)
    parts = []
    if op_doc.method and op_doc.path:
        head = f"**{op_doc.title.split(' — ', 1)[-1]}** — `{op_doc.method} {op_doc.path}` ({api_name(op_doc.source)})"
        if op_doc.operation_id:
            head += f" (operation `{op_doc.operation_id}`)"
        parts.append(head)
    else:
        parts.append(f"**{top.doc.title}** ({top.doc.ref})")
    lines = relevant_lines(top.doc, question) or relevant_lines(op_doc, question)
    if lines:
        parts.append("\n".join(f"> {line}" for line in lines))
    elif not examples:
        parts.append(top.doc.text[:600])
    if examples:
        parts.append(examples_markdown(examples))
    others = [h for h in hits[1:]]
    if others:
        parts.append("Other sources:\n" + "\n".join(
            f"- {h.doc.title} ({h.doc.ref}, {api_name(h.doc.source)}) — score {h.score:.3g}" for h in others))
    return {"answer": "\n\n".join(parts), "sources": sources, "examples": examples, "abstained": False}


def llm_messages(question: str, hits: list[Hit], history: list[dict[str, str]]) -> list[dict[str, str]]:
    """A chat prompt that makes the model answer only from the numbered passages and cite them."""
    passages = []
    for i, h in enumerate(hits, 1):
        ex = "\n".join(f"{k}: {v}" for k, v in h.doc.examples.items())
        passages.append(f"[{i}] {h.doc.title} ({h.doc.ref}; API: {api_name(h.doc.source)})\n"
                        f"{h.doc.text[:1500]}\n{ex}".strip())
    system = ("You answer questions about HTTP APIs (this jupyter-bai workbench's own, and API "
              "descriptions the user taught it) using ONLY the numbered passages. Name the operation "
              "(REST method and path; for this workbench also the client method and %bai line) and "
              "which API it belongs to, give a ready-to-run example, and cite passages as [n]. If the "
              "passages do not answer the question, say you could not find it in the indexed API docs.")
    msgs = [{"role": "system", "content": system}]
    for turn in history[-3:]:
        msgs.append({"role": "user", "content": turn.get("question", "")})
        msgs.append({"role": "assistant", "content": turn.get("answer", "")[:2000]})
    msgs.append({"role": "user", "content": "Passages:\n\n" + "\n\n".join(passages) + f"\n\nQuestion: {question}"})
    return msgs
