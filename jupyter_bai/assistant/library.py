"""The assistant's sources and their saved index: what is indexed, and rebuilding only what changed.

Saved as ``<index_dir>/index.joblib`` (signed, see :mod:`.persist`): per source its hash, its
docs and (with dense retrieval) its embedding rows, plus the ``bm25s`` model and the embedding
model id. Learned paths are listed in ``learned.json`` (plain JSON, so a refused index loses
nothing: it is rebuilt from the sources).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..spec.errors import InvalidRequest, NotFound
from . import builtin, embed, persist
from .corpus import Doc, check_learnable, load_path, path_hash
from .index import SearchIndex

log = logging.getLogger(__name__)
FORMAT = 1
INDEX_FILE = "index.joblib"
LEARNED_FILE = "learned.json"
#: Seconds between checks that the sources are unchanged (hashing is cheap, not free).
RECHECK_S = 2.0


class Library:
    """Sources → one :class:`SearchIndex`, saved and reloaded; thread-safe."""

    def __init__(self, index_dir: Path, dense: bool | None = None, embedder: Any = None) -> None:
        """``dense``: also embed the docs (default: when the packaged model is installed);
        ``embedder``: anything with ``model_id`` and ``encode(texts) -> matrix`` (default: MiniLM)."""
        self.dir = Path(index_dir)
        self.dense = (embedder is not None or embed.available()) if dense is None else dense
        self._embedder = embedder
        self._lock = threading.RLock()
        self._index: SearchIndex | None = None
        self._hashes: dict[str, str] = {}
        self._checked = 0.0
        self.last_build: dict[str, Any] = {}
        self.refused: str | None = None
        self.skipped: dict[str, str] = {}

    @property
    def model_id(self) -> str:
        if not self.dense:
            return "bm25"
        return self._embedder.model_id if self._embedder is not None else embed.model_id()

    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = embed.shared_embedder()
        return self._embedder

    # -- learned paths

    def learned(self) -> list[str]:
        try:
            data = json.loads((self.dir / LEARNED_FILE).read_text())
        except (OSError, ValueError):
            return []
        return [str(p) for p in data] if isinstance(data, list) else []

    def _write_learned(self, paths: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / (LEARNED_FILE + ".tmp")
        tmp.write_text(json.dumps(paths, indent=1))
        tmp.replace(self.dir / LEARNED_FILE)

    def _hashes_now(self) -> dict[str, str]:
        hashes = builtin.source_hashes()
        for p in self.learned():
            try:
                hashes[p] = path_hash(Path(p))
            except (InvalidRequest, OSError):
                hashes[p] = self._hashes.get(p, "missing")  # keep what was learned
        return hashes

    # -- building

    def _load_state(self) -> dict[str, Any] | None:
        path = self.dir / INDEX_FILE
        if not path.exists():
            return None
        try:
            state = persist.load(path)
        except persist.IndexRefused as exc:
            self.refused = str(exc)
            log.warning("%s; rebuilding the assistant index from its sources", exc)
            path.replace(path.with_name(INDEX_FILE + ".refused"))
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return None
        return state

    def _build(self, hashes: dict[str, str], fresh: dict[str, list[Doc]] | None = None) -> SearchIndex:
        t0 = time.perf_counter()
        old = self._load_state() or {"sources": {}, "model_id": None}
        same_model = old.get("model_id") == self.model_id
        sources: dict[str, Any] = {}
        rebuilt, reused = [], []
        embedder = self.embedder() if self.dense else None
        for sid, h in hashes.items():
            prev = old["sources"].get(sid)
            if fresh and sid in fresh:
                docs = fresh[sid]
            elif prev is not None and (prev["hash"] == h or h == "missing"):
                docs = prev["docs"]
            else:
                try:
                    docs = self._extract(sid)
                except InvalidRequest as exc:  # a learned path gone or broken since: skip it, say so
                    log.warning("assistant source skipped: %s", exc)
                    self.skipped[sid] = str(exc)
                    docs = []
            emb = prev.get("embeddings") if prev is not None and prev["docs"] is docs and same_model else None
            if embedder is not None and emb is None:
                emb = embedder.encode([d.search_text() for d in docs])
            (reused if prev is not None and prev["docs"] is docs and (emb is not None or not self.dense)
             else rebuilt).append(sid)
            sources[sid] = {"hash": h, "docs": docs, "embeddings": emb if self.dense else None}
        docs = [d for s in sources.values() for d in s["docs"]]
        matrix = None
        if self.dense:
            import numpy as np

            matrix = np.vstack([s["embeddings"] for s in sources.values() if len(s["docs"])])
        if not rebuilt and old.get("bm25") is not None and len(old["sources"]) == len(sources):
            index = SearchIndex(docs, bm25_model=old["bm25"], embeddings=matrix, embedder=embedder)
        else:
            index = SearchIndex(docs, embeddings=matrix, embedder=embedder)
            persist.save(self.dir / INDEX_FILE, {
                "format": FORMAT, "model_id": self.model_id, "sources": sources, "bm25": index.bm25_model,
            })
        self.last_build = {"rebuilt": rebuilt, "reused": reused, "docs": len(docs),
                           "seconds": round(time.perf_counter() - t0, 3)}
        return index

    @staticmethod
    def _extract(sid: str) -> list[Doc]:
        if sid.startswith("builtin:"):
            return builtin.build_source(sid)
        return load_path(Path(sid))

    def index(self) -> SearchIndex:
        """The current index: loaded, or rebuilt for the sources that changed."""
        with self._lock:
            now = time.monotonic()
            if self._index is not None and now - self._checked < RECHECK_S:
                return self._index
            hashes = self._hashes_now()
            self._checked = now
            if self._index is None or hashes != self._hashes:
                self._index = self._build(hashes)
                self._hashes = hashes
            return self._index

    # -- user actions

    def learn(self, path: str) -> dict[str, Any]:
        """Read ``path`` first (a bad file changes nothing), then add it and rebuild."""
        with self._lock:
            p = check_learnable(Path(path))
            docs = load_path(p)
            learned = self.learned()
            if str(p) not in learned:
                learned.append(str(p))
            hashes = self._hashes_now()
            hashes[str(p)] = path_hash(p)
            self._index = self._build(hashes, fresh={str(p): docs})
            self._write_learned(learned)
            self._hashes, self._checked = hashes, time.monotonic()
            kinds: dict[str, int] = {}
            for d in docs:
                kinds[d.kind] = kinds.get(d.kind, 0) + 1
            return {"source": str(p), "docs": len(docs), "kinds": kinds, "build": self.last_build}

    def forget(self, source: str) -> dict[str, Any]:
        with self._lock:
            learned = self.learned()
            match = source if source in learned else None
            if match is None:
                try:
                    resolved = str(check_learnable(Path(source)))
                except InvalidRequest:
                    try:
                        resolved = str(Path(source).expanduser().absolute())
                    except RuntimeError:  # ~name of a user that does not exist
                        resolved = source
                match = resolved if resolved in learned else None
            if match is None:
                if source.startswith("builtin:"):
                    raise InvalidRequest(f"{source} is built in and cannot be forgotten")
                raise NotFound(f"the assistant has not learned {source} (see '%bai ask --sources')")
            learned.remove(match)
            self._write_learned(learned)
            self._checked = 0.0
            self._index = None
            self.index()
            return {"forgotten": match, "build": self.last_build}

    def sources(self) -> list[dict[str, Any]]:
        index = self.index()
        counts: dict[str, int] = {}
        for d in index.docs:
            counts[d.source] = counts.get(d.source, 0) + 1
        learned = set(self.learned())
        return [{"source": sid, "kind": "learned" if sid in learned else "builtin", "docs": counts.get(sid, 0),
                 "hash": h[:12], **({"problem": self.skipped[sid]} if sid in self.skipped else {})}
                for sid, h in self._hashes.items()]
