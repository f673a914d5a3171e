"""The assistant's sources and their saved index: what is indexed, and rebuilding only what changed.

Saved as ``<index_dir>/index.joblib`` (signed, see :mod:`.persist`): per source its hash and
docs, the ``bm25s`` model, and (with dense retrieval) a vector per distinct document text, keyed
by the text's sha256 and the model id, so re-learning a changed file embeds only what changed. Learned paths are listed in ``learned.json`` (plain JSON, so a refused index loses
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
from .embed import mean_vectors
from .corpus import Doc, check_learnable, load_path, path_hash, sha256_bytes
from .index import SearchIndex

log = logging.getLogger(__name__)
FORMAT = 3
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
        self._vectors: dict[str, Any] = {}  # sha256 of a doc's embed_texts() -> its vector
        self._vectors_done: threading.Event | None = None
        self._state: dict[str, Any] = {}

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
        old = self._load_state() or {"sources": {}}
        sources: dict[str, Any] = {}
        rebuilt, reused = [], []
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
            (reused if prev is not None and prev["docs"] is docs else rebuilt).append(sid)
            sources[sid] = {"hash": h, "docs": docs}
        docs = [d for s in sources.values() for d in s["docs"]]
        if old.get("vectors", {}).get("model_id") == self.model_id:
            self._vectors = dict(old["vectors"]["table"])
        if not rebuilt and old.get("bm25") is not None and len(old["sources"]) == len(sources):
            index = SearchIndex(docs, bm25_model=old["bm25"])
        else:
            index = SearchIndex(docs)
        self._state = {"format": FORMAT, "sources": sources, "bm25": index.bm25_model}
        if rebuilt or len(old["sources"]) != len(sources):
            self._save()
        self.last_build = {"rebuilt": rebuilt, "reused": reused, "docs": len(docs),
                           "seconds": round(time.perf_counter() - t0, 3), "embedded": 0,
                           "vectors": "off" if not self.dense else "pending"}
        if self.dense:
            self._attach_vectors(index)
        return index

    def _save(self) -> None:
        state = dict(self._state)
        if self.dense:
            state["vectors"] = {"model_id": self.model_id, "table": self._vectors}
        persist.save(self.dir / INDEX_FILE, state)

    def _attach_vectors(self, index: SearchIndex) -> None:
        """Vectors from the cache (by content hash) at once; the missing ones in the background.
        BM25 answers meanwhile; the index switches to hybrid when the vectors are in."""
        keys = [sha256_bytes("\n\x1f".join(d.embed_texts()).encode()) for d in index.docs]
        # one document per missing text: documents with the same texts share a vector
        missing = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in self._vectors}.values())
        if not missing:
            try:
                self._finish_vectors(index, keys, 0)
            except Exception:  # the model is missing or broken: stay on BM25, say why
                log.exception("assistant: loading the embedding model failed; answering with BM25 only")
                self.last_build["vectors"] = "failed"
            return
        done = threading.Event()
        self._vectors_done = done

        def work() -> None:
            try:
                matrix = mean_vectors(self.embedder(), [index.docs[i].embed_texts() for i in missing])
                with self._lock:
                    for row, i in enumerate(missing):
                        self._vectors[keys[i]] = matrix[row]
                    if self._index is index or self._index is None:
                        self._finish_vectors(index, keys, len(missing))
                        self._save()
            except Exception:  # the model is missing or broken: stay on BM25, say why
                log.exception("assistant: computing vectors failed; answering with BM25 only")
                self.last_build["vectors"] = "failed"
            finally:
                done.set()

        threading.Thread(target=work, name="bai-assistant-vectors", daemon=True).start()

    def _finish_vectors(self, index: SearchIndex, keys: list[str], embedded: int) -> None:
        import numpy as np

        index.set_embeddings(np.vstack([self._vectors[k] for k in keys]), self.embedder())
        # forget vectors of texts no longer indexed, so the cache does not grow forever
        live = set(keys)
        self._vectors = {k: v for k, v in self._vectors.items() if k in live}
        self.last_build.update(embedded=embedded, vectors="ready")

    def wait_vectors(self, timeout: float | None = None) -> bool:
        """Block until background vectors are in (for benchmarks and tests); True when ready."""
        done = self._vectors_done
        return done.wait(timeout) if done is not None else True

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
