"""Retrieval over :class:`~.corpus.Doc` s: BM25 (llama-index's bm25s model), dense, or hybrid.

Every mode scores all documents at once (a few ms for thousands of operations), so a search can be
limited to some sources (``--in``) and results are one per operation: an operation's REST doc,
client method and ``%bai`` verb count once, as the best of them. Hybrid is a weighted sum of
the two scores, each divided by its best (:func:`hybrid_scores`). A learned API is searched on equal terms with the workbench's own docs; when
both match, the API whose best document scores highest for the question (hybrid: both signals)
leads the results, with a margin (:data:`LEARNED_MARGIN`) for the file the user chose to learn;
it was tuned on the tune halves of ``bench/corpora/*/questions.yaml`` against the own-docs
questions asked with the Jupyter Server API learned (the two overlap most: sessions, kernels,
files).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .corpus import Doc
from .text import STOPWORDS, expand_identifiers

MODES = ("bm25", "dense", "hybrid")
#: Hybrid score: ``HYBRID_ALPHA * cosine / best cosine + (1 - HYBRID_ALPHA) * bm25 / best bm25``
#: over the searched documents (a convex combination of normalised scores, which keeps how far
#: apart two documents are, where reciprocal-rank fusion keeps only their order). Chosen with the
#: documents' embedded text on the tune halves of ``bench/corpora``: equal weight did best.
HYBRID_ALPHA = 0.5
#: Without vectors: score multiplier for documents of a learned file (see the module docstring).
LEARNED_BOOST = 1.1
#: With vectors: the API whose best document has the highest score (hybrid or cosine; a learned
#: file counting this much extra) puts its first :data:`API_LEAD` results first. Routing on the
#: hybrid score rather than the cosine alone kept the workbench's own answers for its own
#: questions (own+jupyter tune R@1 0.52 -> 0.73) at a small cost on the Jupyter tune half.
LEARNED_MARGIN = 0.10
API_LEAD = 3


@dataclass
class Hit:
    doc: Doc
    score: float  # bm25: raw score; dense: cosine; hybrid: weighted sum of both, each over its best
    bm25: float = 0.0
    cosine: float | None = None


def group_of(source: str) -> str:
    """Which API a source belongs to: ``builtin`` (this workbench) or the learned file itself."""
    return "builtin" if source.startswith("builtin:") else source


def op_key(doc: Doc) -> str:
    """One key per operation per API, so an operation's REST, client and CLI docs collapse."""
    group = group_of(doc.source)
    if doc.operation_id and group == "builtin":
        return f"builtin:{doc.operation_id}"
    if doc.method and doc.path:
        return f"{group}:{doc.method} {doc.path}"
    return doc.id


def hybrid_scores(lex: Any, cos: Any) -> Any:
    """Convex combination of max-normalised BM25 and cosine (see :data:`HYBRID_ALPHA`)."""
    top_lex, top_cos = float(lex.max()), float(cos.max())
    lex_n = lex / top_lex if top_lex > 0 else np.zeros_like(lex)
    cos_n = np.clip(cos / top_cos, 0.0, None) if top_cos > 0 else np.zeros_like(cos)
    return HYBRID_ALPHA * cos_n + (1 - HYBRID_ALPHA) * lex_n


def _nodes(docs: list[Doc]) -> list[Any]:
    from llama_index.core.schema import TextNode

    return [TextNode(id_=d.id, text=d.search_text()) for d in docs]


class SearchIndex:
    """BM25 always; dense vectors once ``embeddings`` (docs x dim, normalised) are set."""

    def __init__(self, docs: list[Doc], bm25_model: Any = None, embeddings: Any = None,
                 embedder: Any = None) -> None:
        from llama_index.retrievers.bm25 import BM25Retriever

        if not docs:
            raise ValueError("an index needs at least one document")
        self.docs = docs
        logging.getLogger("llama_index.retrievers.bm25.base").setLevel(logging.ERROR)
        if bm25_model is None:
            retriever = BM25Retriever(nodes=_nodes(docs), similarity_top_k=1)
        else:
            retriever = BM25Retriever(existing_bm25=bm25_model, similarity_top_k=1)
        self.bm25_model = retriever.bm25
        self._stemmer = retriever.stemmer
        self.embeddings = embeddings
        self.embedder = embedder
        self._keys = [op_key(d) for d in docs]
        self._groups = np.array([group_of(d.source) for d in docs])
        self._learned = self._groups != "builtin"

    @property
    def has_dense(self) -> bool:
        return self.embeddings is not None and self.embedder is not None

    def set_embeddings(self, matrix: Any, embedder: Any) -> None:
        """Vectors computed in the background arrive here; searches switch to them at once."""
        self.embedder = embedder
        self.embeddings = matrix

    def sources(self) -> list[str]:
        return list(dict.fromkeys(d.source for d in self.docs))

    def _mask(self, sources: Iterable[str] | None) -> Any:
        if sources is None:
            return np.ones(len(self.docs), dtype=bool)
        allowed = set(sources)
        return np.array([d.source in allowed for d in self.docs], dtype=bool)

    def bm25_scores(self, query: str) -> Any:
        """BM25 score of every document (0 where no query word occurs)."""
        import bm25s
        # question words ("how", "do", "I") say nothing about the topic but match help texts
        content = [w for w in query.split() if w.lower().strip("?!.,;:'\"") not in STOPWORDS]
        tokens = bm25s.tokenize(expand_identifiers(" ".join(content) or query), stemmer=self._stemmer,
                                return_ids=False, show_progress=False)[0]
        if not tokens:
            return np.zeros(len(self.docs), dtype=np.float32)
        return np.asarray(self.bm25_model.get_scores(tokens), dtype=np.float32)

    def dense_scores(self, query: str) -> Any:
        """Cosine similarity of every document to the query."""
        return self.embeddings @ self.embedder.encode([query])[0]

    def _best_api(self, score: Any) -> Any:
        """Mask of the docs of the API (workbench or a learned file) whose best document scores
        highest for the question; a learned file gets :data:`LEARNED_MARGIN` on top."""
        best_group, best = None, -2.0
        groups = self._groups
        for g in dict.fromkeys(groups.tolist()):
            quality = float(score[groups == g].max()) + (LEARNED_MARGIN if g != "builtin" else 0.0)
            if quality > best:
                best_group, best = g, quality
        return groups == best_group

    def search(self, query: str, k: int = 10, mode: str = "bm25",
               sources: Iterable[str] | None = None) -> list[Hit]:
        """Best ``k`` operations/sections for ``query`` among ``sources`` (all when None)."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r} (use one of {', '.join(MODES)})")
        if mode != "bm25" and not self.has_dense:
            mode = "bm25"  # vectors not ready yet (or no model): lexical answers meanwhile
        mask = self._mask(sources)
        lex = np.where(mask, self.bm25_scores(query), 0.0)
        cos = np.where(mask, self.dense_scores(query), -1.0) if mode != "bm25" else None
        if mode == "bm25":
            score = lex.copy()
        elif mode == "dense":
            score = cos.copy()  # type: ignore[union-attr]
        else:
            score = hybrid_scores(lex, cos)
        lead: Any = None
        if sources is None and self._learned.any():
            if cos is None:
                score = np.where(self._learned & (score > 0), score * LEARNED_BOOST, score)
            else:
                lead = self._best_api(score)
        floor = -1.0 if mode == "dense" else 0.0
        hits: dict[str, Hit] = {}
        order = np.argsort(-score)
        if lead is not None:  # the best-matching API's first few results lead, then everything by score
            first = order[lead[order]][:API_LEAD]
            order = np.concatenate([first, order[~np.isin(order, first)]])
        for i in order:
            i = int(i)
            if not mask[i] or score[i] <= floor:
                continue
            doc, key = self.docs[i], self._keys[i]
            seen = hits.get(key)
            if seen is not None:  # one result per operation, shown as its REST operation doc
                if doc.kind == "operation" and seen.doc.kind != "operation":
                    seen.doc = doc
                continue
            if len(hits) >= k:
                continue  # keep looking only for better representatives of the hits we have
            hits[key] = Hit(doc, float(score[i]), bm25=float(lex[i]), cosine=None if cos is None else float(cos[i]))
            if len(hits) >= k and score[i] <= 0:
                break
        return list(hits.values())
