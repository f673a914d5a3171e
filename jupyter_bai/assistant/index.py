"""Retrieval over :class:`~.corpus.Doc` s: BM25 (llama-index's bm25s model), dense, or hybrid.

Every mode scores all documents at once (a few ms for thousands of operations), so a search can be
limited to some sources (``--in``) and results are one per operation: an operation's REST doc,
client method and ``%bai`` verb count once, as the best of them. Hybrid is reciprocal-rank fusion
of the two rankings. A learned API is searched on equal terms with the workbench's own docs; when
both match, the API whose best document is closest to the question leads the results, with a
margin (:data:`LEARNED_MARGIN`) for the file the user chose to learn; it was tuned on the tune
halves of ``bench/corpora/*/questions.yaml`` against the own-docs questions asked with the
Jupyter Server API learned (the two overlap most: sessions, kernels, files).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .corpus import Doc
from .text import STOPWORDS, expand_identifiers

MODES = ("bm25", "dense", "hybrid")
#: Reciprocal-rank-fusion constant (Cormack et al.); 60 is the usual choice.
RRF_K = 60
#: Weight of the dense ranking against BM25's in the fusion.
DENSE_WEIGHT = 1.0
#: How deep each ranking goes into the fusion.
FUSION_DEPTH = 50
#: Without vectors: score multiplier for documents of a learned file (see the module docstring).
LEARNED_BOOST = 1.1
#: With vectors: the API whose best document is most similar to the question (a learned file
#: counting this much extra cosine) puts its first :data:`API_LEAD` results first.
LEARNED_MARGIN = 0.06
API_LEAD = 3


@dataclass
class Hit:
    doc: Doc
    score: float  # bm25: raw score; dense: cosine; hybrid: RRF
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

    def _best_api(self, cos: Any) -> Any:
        """Mask of the docs of the API (workbench or a learned file) whose best document is the
        most similar to the question; a learned file gets :data:`LEARNED_MARGIN` on top."""
        best_group, best = None, -2.0
        groups = self._groups
        for g in dict.fromkeys(groups.tolist()):
            quality = float(cos[groups == g].max()) + (LEARNED_MARGIN if g != "builtin" else 0.0)
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
            score = np.zeros(len(self.docs))
            for ranked, floor_, weight in ((lex, 0, 1.0), (cos, -1, DENSE_WEIGHT)):
                order = np.argsort(-ranked)[:FUSION_DEPTH]
                order = order[mask[order] & (ranked[order] > floor_)]
                score[order] += weight / (RRF_K + 1 + np.arange(len(order)))
        lead: Any = None
        if sources is None and self._learned.any():
            if cos is None:
                score = np.where(self._learned & (score > 0), score * LEARNED_BOOST, score)
            else:
                lead = self._best_api(cos)
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
