"""Count tokens fast: the hot spot of `prepare`.

First choice is `fastokens`, a BPE encoder that loads the same tokenizer.json
(vLLM offers it as a tokenizer backend too): about 8x the Hugging Face
tokenizers library on Chinese novel text, with the same ids. It is trusted only
after matching the tokenizer exactly on probe texts. Loading it takes seconds
for a large vocabulary (Gemma's 262k), so it loads on a background thread and
is kept for the process: until it is ready, and wherever it is missing or
disagrees, the tokenizers library's Rust backend counts (`encode_batch_fast`:
batched, multi-threaded). Both give the same counts, so switching mid-run is
safe. Counts are without special tokens. Slow (Python) tokenizers still work,
just slower.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

BPE_CACHE_DEFAULT = 10_000  # the tokenizers library's default capacity

# Texts both encoders must agree on, token for token, before fastokens is trusted:
# Chinese prose and dialogue, full-width and ASCII punctuation, Latin text with
# spaces, digits, rare characters, emoji, stray control tokens and whitespace runs.
PROBES = (
    "\u3000\u3000却说黛玉自那日弃舟登岸时，便有荣国府打发了轿子并拉行李的车辆久候了。",
    "宝玉笑道：“这个妹妹我曾见过的。”贾母笑道：“可又是胡说，你又何曾见过他？”",
    "Chapter 12: The Return.  \"Well,\" she said -- 3.14159, 2024年11月25日; naïve café!",
    "第一百二十回 甄士隐详说太虚情 贾雨村归结红楼梦\n\n\t  多个   空格\r\n",
    "𠀀𪚥龘靐 😀👍🏽 ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３ <bos> <eos> <|im_end|> <pad>",
    "",
)

# Loaded fastokens encoders, per tokenizer backend object (kept alive with it, so ids stay unique).
_FAST: dict[int, tuple[object, object]] = {}
_FAST_LOCK = threading.Lock()


class TokenCounter:
    def __init__(self, tokenizer, use_fast: bool = True, load_fast: bool = True):
        """use_fast: count with fastokens where it matches. load_fast: load it if this process
        has not yet (False: use it only when already loaded, for jobs shorter than its loading)."""
        self.tokenizer = tokenizer
        source = getattr(tokenizer, "backend_tokenizer", None)
        backend = source
        if backend is not None and (backend.truncation or backend.padding):
            # Counting must see every token: work on a copy without truncation/padding.
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        self.backend = backend
        self._batch = None
        self.fast = None
        self.used = {"fastokens": 0, "tokenizers": 0}  # texts counted by each encoder
        self._fast_ready = threading.Event()
        if backend is not None:
            self._batch = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        if backend is not None and use_fast:
            cached = _FAST.get(id(source))
            if cached is not None:
                self._set_fast(cached[1])
            elif not load_fast:
                self._fast_ready.set()
            else:
                threading.Thread(target=self._load_fast, args=(source,), name="fastokens-load", daemon=True).start()
        else:
            self._fast_ready.set()
        self._cache_off = self._resize_bpe_cache(0)
        self.newline = self.count(["\n"])[0]

    # -- the fast encoder ------------------------------------------------------------------
    def _load_fast(self, source) -> None:
        try:
            fast = _load_fastokens(self.tokenizer, self.backend)
            with _FAST_LOCK:
                _FAST[id(source)] = (source, fast)
            self._set_fast(fast)
        finally:
            self._fast_ready.set()

    def _set_fast(self, fast) -> None:
        self.fast = fast
        self._fast_ready.set()

    def wait_fast(self, timeout: Optional[float] = None) -> bool:
        """Wait until the fast encoder is loaded (or known to be unusable); True if it is in use."""
        self._fast_ready.wait(timeout)
        return self.fast is not None

    @property
    def engine(self) -> str:
        """Which encoder counted, for the run report."""
        if self.backend is None:
            return "transformers (slow tokenizer)"
        names = [k for k, v in self.used.items() if v]
        return " + ".join(names) or ("fastokens" if self.fast is not None else "tokenizers")

    # -- the tokenizers library's cache ------------------------------------------------------
    def _resize_bpe_cache(self, capacity: int) -> bool:
        # The BPE word cache keeps growing over a big corpus (about 1.3 KB per Chinese paragraph
        # with Gemma, whose "words" are whole paragraphs that never repeat), and switching it off
        # costs no measurable CPU here. A private tokenizers API: skipped where it is missing.
        resize = getattr(getattr(self.backend, "model", None), "_resize_cache", None)
        if resize is None:
            return False
        try:
            resize(capacity)
            return True
        except Exception:  # noqa: BLE001 - an optimisation only
            return False

    def close(self) -> None:
        """Give the tokenizer its usual BPE cache back."""
        if self._cache_off:
            self._resize_bpe_cache(BPE_CACHE_DEFAULT)
            self._cache_off = False

    # -- counting ------------------------------------------------------------------------------
    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        fast = self.fast
        if fast is not None:
            self.used["fastokens"] += len(texts)
            _, offsets = fast.encode_batch_flat(list(texts), False)
            return np.diff(np.frombuffer(offsets, dtype=np.uint64)).astype(np.int64).tolist()
        if self._batch is not None:
            self.used["tokenizers"] += len(texts)
            return [len(e) for e in self._batch(list(texts), add_special_tokens=False)]  # len(): no id list built
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def count_here(self, texts: Sequence[str]) -> list[int]:
        """Like count(), on the calling thread only: a small job must not queue behind a big
        batch that another thread is running in the tokenizer's shared thread pool."""
        fast = self.fast
        if fast is not None:
            return [len(fast.encode(t, False).ids) for t in texts]
        if self.backend is not None:
            return [len(self.backend.encode(t, add_special_tokens=False)) for t in texts]
        return self.count(texts)

    def cut(self, text: str, max_tokens: int) -> list[str]:
        """Cut one text into pieces of at most `max_tokens` tokens, on token boundaries."""
        if self.backend is not None:
            offsets = [o[0] for o in self.backend.encode(text, add_special_tokens=False).offsets]
        else:  # a slow tokenizer has no offsets: cut by characters in proportion
            n = max(self.count([text])[0], 1)
            offsets = [i * len(text) // n for i in range(n)]
        starts = offsets[::max_tokens][1:]
        bounds = [0] + sorted({s for s in starts if 0 < s < len(text)}) + [len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:]) if text[a:b]]


def _load_fastokens(tokenizer, backend):
    """A fastokens encoder for this tokenizer, or None where it is missing or disagrees."""
    try:
        import fastokens
    except ImportError:
        return None
    try:
        # Prefer the file on disk: loading from it does not hold the GIL, serialising does.
        file = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "tokenizer.json"
        fast = (fastokens.Tokenizer.from_file(str(file)) if file.is_file()
                else fastokens.Tokenizer.from_json_str(backend.to_str()))
        fast.no_truncation()
        fast.no_padding()
        agree = all(fast.encode(t, False).ids == backend.encode(t, add_special_tokens=False).ids for t in PROBES)
    except Exception as exc:  # noqa: BLE001 - an unsupported tokenizer: count with the reference one
        log.info("fastokens cannot load this tokenizer (%s); counting with tokenizers", exc)
        return None
    if not agree:
        log.info("fastokens disagrees with this tokenizer on probe texts; counting with tokenizers")
        return None
    return fast
