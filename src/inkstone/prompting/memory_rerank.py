"""The running model reorders the memories a search found (memory.rerank).

Search ranks by vector and by word overlap; the model reads the query and
the candidates (the rerank_memory mode) and answers with their numbers in the
order that bears on the query, constrained to JSON. Candidates it leaves out
keep their search order after the ones it named. A rerank that fails (engine
gone, answer cut off) leaves the search order as it was and says so in the
log: reranking must never stop a generation.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from ..engine.contract import Engine, GenerationParams, Text
from ..memory.store import MemoryEntry
from .modes import get_mode
from .modes.rerank_memory import RerankError, passage
from .request import PreparedPrompt, PromptRequest

log = logging.getLogger(__name__)

_ANSWER_TOKENS_PER_CANDIDATE = 4  # "12, " and the JSON around it


class MemoryReranker:
    def __init__(self, engine: Engine, prepare: Callable[[PromptRequest], PreparedPrompt]):
        self.engine = engine
        self._prepare = prepare
        self.failures = 0  # reranks that fell back to the search order

    def rerank(self, query: str, entries: Sequence[MemoryEntry]) -> list[MemoryEntry]:
        """`entries` in the model's order of relevance to `query`."""
        entries = list(entries)
        if len(entries) < 2 or not query.strip():
            return entries
        try:
            order = self._ask(query, entries)
        except (RerankError, RuntimeError, ValueError) as exc:
            self.failures += 1
            log.warning("memory rerank failed, keeping the search order: %s", exc)
            return entries
        named = [entries[i] for i in order if i < len(entries)]
        return named + [e for e in entries if e not in named]

    def _ask(self, query: str, entries: list[MemoryEntry]) -> list[int]:
        mode = get_mode("rerank_memory")
        answer_tokens = 8 + _ANSWER_TOKENS_PER_CANDIDATE * len(entries)
        prepared = self._prepare(PromptRequest(
            mode=mode.name, instruction=query[-500:], passage=passage([e.as_prompt_line() for e in entries]),
            use_memory=False, max_tokens=answer_tokens))
        params = GenerationParams(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=prepared.max_tokens,
                                  repetition_penalty=1.0, json_schema=mode.json_schema(len(entries)))
        text = "".join(ev.text for ev in self.engine.stream(prepared.token_ids, params) if isinstance(ev, Text))
        return mode.parse(text)
