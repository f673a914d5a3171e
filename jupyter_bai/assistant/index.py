"""Retrieval over :class:`~.corpus.Doc` s with llama-index.

``bm25`` (llama-index-retrievers-bm25) is the default; ``dense`` uses the packaged MiniLM model
when installed (see :mod:`.embed`); ``hybrid`` fuses both by reciprocal rank. What is kept for
persistence is plain data: the docs, the ``bm25s`` model and the embedding matrix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .corpus import Doc
from .text import STOPWORDS, expand_identifiers

MODES = ("bm25", "dense", "hybrid")
#: Reciprocal-rank-fusion constant (Cormack et al.); 60 is the usual choice.
RRF_K = 60
#: How deep each retriever looks before fusion.
FUSION_DEPTH = 30


@dataclass
class Hit:
    doc: Doc
    score: float  # bm25: its raw score; dense: cosine; hybrid: RRF
    bm25: float = 0.0


def _nodes(docs: list[Doc]) -> list[Any]:
    from llama_index.core.schema import TextNode

    return [TextNode(id_=d.id, text=d.search_text()) for d in docs]


class SearchIndex:
    """BM25 always; dense vectors when ``embeddings`` (a docs × dim matrix) are given."""

    def __init__(self, docs: list[Doc], bm25_model: Any = None, embeddings: Any = None,
                 embedder: Any = None) -> None:
        from llama_index.retrievers.bm25 import BM25Retriever

        if not docs:
            raise ValueError("an index needs at least one document")
        self.docs = docs
        self._by_id = {d.id: i for i, d in enumerate(docs)}
        # bm25s warns when k > number of docs; that is fine here
        logging.getLogger("llama_index.retrievers.bm25.base").setLevel(logging.ERROR)
        if bm25_model is None:
            self.retriever = BM25Retriever(nodes=_nodes(docs), similarity_top_k=min(10, len(docs)))
            self.retriever.bm25.corpus = self.retriever.corpus
        else:
            self.retriever = BM25Retriever(existing_bm25=bm25_model, similarity_top_k=min(10, len(docs)))
        self.embeddings = embeddings
        self.embedder = embedder

    @property
    def bm25_model(self) -> Any:
        return self.retriever.bm25

    @property
    def has_dense(self) -> bool:
        return self.embeddings is not None and self.embedder is not None

    def _bm25(self, query: str, k: int) -> list[Hit]:
        from llama_index.core.schema import QueryBundle

        self.retriever.similarity_top_k = max(1, min(k, len(self.docs)))
        # question words ("how", "do", "I") say nothing about the topic but match help texts
        content = [w for w in query.split() if w.lower().strip("?!.,;:'\"") not in STOPWORDS]
        query = " ".join(content) or query
        hits = []
        for nws in self.retriever.retrieve(QueryBundle(expand_identifiers(query))):
            i = self._by_id.get(nws.node.node_id)
            if i is not None and (nws.score or 0) > 0:
                hits.append(Hit(self.docs[i], float(nws.score or 0), bm25=float(nws.score or 0)))
        return hits

    def _dense(self, query: str, k: int) -> list[Hit]:
        import numpy as np

        qv = self.embedder.encode([query])[0]
        sims = self.embeddings @ qv
        order = np.argsort(-sims)[:k]
        return [Hit(self.docs[int(i)], float(sims[int(i)])) for i in order]

    def search(self, query: str, k: int = 10, mode: str = "bm25") -> list[Hit]:
        """Best ``k`` docs for ``query``; every hit carries its BM25 score for abstention."""
        if mode == "bm25" or not self.has_dense:
            if mode != "bm25":
                raise ValueError(f"retrieval mode {mode!r} needs dense embeddings, which this index has not")
            return self._bm25(query, k)
        if mode == "dense":
            lex = {h.doc.id: h.bm25 for h in self._bm25(query, FUSION_DEPTH)}
            hits = self._dense(query, k)
            for h in hits:
                h.bm25 = lex.get(h.doc.id, 0.0)
            return hits
        if mode != "hybrid":
            raise ValueError(f"unknown retrieval mode {mode!r} (use one of {', '.join(MODES)})")
        lexical = self._bm25(query, FUSION_DEPTH)
        dense = self._dense(query, FUSION_DEPTH)
        fused: dict[str, Hit] = {}
        for ranked in (lexical, dense):
            for rank, h in enumerate(ranked):
                cur = fused.setdefault(h.doc.id, Hit(h.doc, 0.0, bm25=0.0))
                cur.score += 1.0 / (RRF_K + rank + 1)
                cur.bm25 = max(cur.bm25, h.bm25)
        return sorted(fused.values(), key=lambda h: -h.score)[:k]
