"""PromptService: a request in, the exact prompt out.

It owns everything a prompt is made of: the tokenizer and the prompt format,
the system prompt, story memory (searched through `MemoryAccess`), the
summaries of the story's earlier chapters, and the budget that fits them into
the context. It never generates: callers hand `PreparedPrompt.token_ids` to
the engine.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..engine.contract import PromptTooLong, check_fits
from ..memory.access import MemoryAccess
from ..memory.store import MemoryEntry
from ..prompt_format import encode, memory_block, render
from .assembly import entry_line, fit_writing, pick_memories
from .memory_rerank import MemoryReranker
from .modes import Mode, get_mode
from .request import IMAGE_PLACEHOLDER, PreparedPrompt, PromptRequest, story_name


@dataclass
class PromptSettings:
    model_name: str
    max_model_len: int
    prompt_format: str = "plain"  # chat | plain (already resolved against the tokenizer)
    system_prompt: str = ""
    max_tokens: int = 512  # a request's default
    memory_items: int = 8  # retrieved per generation, all kinds together
    memory_token_budget: int = 1024
    memory_rerank: bool = False  # the running model reorders the memories found (use_engine)

    @classmethod
    def from_config(cls, cfg, model_name: str, prompt_format: str) -> "PromptSettings":
        return cls(model_name=model_name, max_model_len=cfg.model.max_model_len, prompt_format=prompt_format,
                   system_prompt=cfg.inference.system_prompt, max_tokens=cfg.inference.max_tokens,
                   memory_items=cfg.memory.max_memory_items, memory_token_budget=cfg.memory.context_token_budget,
                   memory_rerank=cfg.memory.rerank)


class PromptService:
    def __init__(self, tokenizer, settings: PromptSettings, memory: Optional[MemoryAccess] = None,
                 summaries: Optional[Callable[[str], Sequence[str]]] = None,
                 chapter_ending: Optional[Callable[[str], str]] = None):
        self.tokenizer = tokenizer
        self.settings = settings
        self.memory = memory
        self._summaries = summaries
        self._chapter_ending = chapter_ending  # story -> the end of its last accepted chapter
        self.reranker: Optional[MemoryReranker] = None  # set by use_engine when memory_rerank is on
        # Tokenizing a long story takes a while: callers on an event loop use `aprepare`.
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="prompt")

    def use_engine(self, engine) -> None:
        """The engine that reranks memories, when the settings ask for a rerank."""
        if self.settings.memory_rerank:
            self.reranker = MemoryReranker(engine, self.prepare)

    @property
    def prompt_format(self) -> str:
        return self.settings.prompt_format

    def prepare(self, req: PromptRequest) -> PreparedPrompt:
        """The prompt for `req`; raises PromptTooLong or ValueError with a message for the user."""
        mode = get_mode(req.mode)
        story = story_name(req.story)
        instruction = mode.instruction(req)  # raises on missing inputs before any search
        memories = self._relevant(mode, req, story)
        build = {"writing": self._writing, "task": self._task, "raw": self._raw, "chat": self._chat}[mode.layout]
        prepared = build(req, instruction, memories, story)
        prepared.mode, prepared.story = mode.name, story
        prepared.image = req.image
        self._check_image_tokens(prepared)
        return prepared

    def _check_image_tokens(self, prepared: PreparedPrompt) -> None:
        """A picture goes with exactly one image token, and text alone with none: vLLM
        would otherwise wait for a picture that never comes, or lose one."""
        if not hasattr(self, "_image_token"):  # looked up once: the vocabulary is large
            self._image_token = self.tokenizer.get_vocab().get(IMAGE_PLACEHOLDER)
        if prepared.image is not None and self._image_token is None:
            raise ValueError(f"{self.settings.model_name} does not read images; serve a model trained with "
                             "train-vision")
        found = prepared.token_ids.count(self._image_token) if self._image_token is not None else 0
        wanted = 1 if prepared.image is not None else 0
        if found != wanted:
            raise ValueError(f"the prompt holds {found} image token(s) ({IMAGE_PLACEHOLDER}) for {wanted} picture(s); "
                             f"remove {IMAGE_PLACEHOLDER} from the text" if found > wanted else
                             f"this mode does not take a picture; choose describe or scene")

    async def aprepare(self, req: PromptRequest) -> PreparedPrompt:
        return await asyncio.get_running_loop().run_in_executor(self._workers, self.prepare, req)

    def encode_recorded(self, text: str, mode: str) -> list[int]:
        """Token ids of a prompt recorded in the history, as `prepare` made them."""
        layout = get_mode(mode).layout
        if layout == "raw" or (layout == "chat" and not getattr(self.tokenizer, "chat_template", None)):
            return self.tokenizer(text, add_special_tokens=True).input_ids
        if layout == "chat":
            return self.tokenizer(text, add_special_tokens=False).input_ids
        return encode(self.tokenizer, text, self.settings.prompt_format)

    def encode_output(self, text: str) -> list[int]:
        """Token ids of generated text as the model wrote it (no special tokens added)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def close(self) -> None:
        self._workers.shutdown(wait=False)

    # ---- parts ------------------------------------------------------------------------
    def _relevant(self, mode: Mode, req: PromptRequest, story: str) -> list[MemoryEntry]:
        if not req.use_memory or self.memory is None:
            return []
        query, limit = mode.memory_query(req), self.settings.memory_items
        if self.reranker is None:
            return self.memory.relevant(query, story=story, limit=limit)
        # The model sees twice the memories a prompt takes, and the prompt takes its best.
        return self.reranker.rerank(query, self.memory.relevant(query, story=story, limit=2 * limit))[:limit]

    def _story_so_far(self, story: str, draft: str) -> str:
        """The draft after the last accepted chapter, preceded by that chapter's ending, so a
        new chapter starts where the last one stopped. A draft that already holds the ending
        (a client that sends the whole story) gets nothing added."""
        ending = self._chapter_ending(story) if self._chapter_ending else ""
        if not ending or ending[-40:] in draft:  # 40 characters: a sentence or two, unlikely by chance
            return draft
        return ending + "\n\n" + draft if draft else ending

    def _default_max_tokens(self, req: PromptRequest) -> int:
        return req.max_tokens if req.max_tokens is not None else self.settings.max_tokens

    # ---- layouts ----------------------------------------------------------------------
    def _writing(self, req: PromptRequest, instruction: str, memories: list[MemoryEntry], story: str) -> PreparedPrompt:
        s = self.settings
        mode = get_mode(req.mode)
        summaries = list(self._summaries(story)) if (mode.summaries and req.use_memory and self._summaries) else []
        max_tokens = self._default_max_tokens(req)
        story_text = self._story_so_far(story, req.story_text) if mode.summaries else req.story_text
        fitted = fit_writing(self.tokenizer, fmt=s.prompt_format, system=s.system_prompt, instruction=instruction,
                             story=story_text, memories=memories, summaries=summaries,
                             max_model_len=s.max_model_len, max_tokens=max_tokens,
                             memory_token_budget=s.memory_token_budget)
        return PreparedPrompt(mode=req.mode, story=story, text=fitted.text, token_ids=fitted.ids, max_tokens=max_tokens,
                              memories=fitted.memories, summaries=fitted.summaries,
                              story_chars_dropped=fitted.story_chars_dropped,
                              memories_dropped=len(memories) - len(fitted.memories))

    def _task(self, req: PromptRequest, instruction: str, memories: list[MemoryEntry], story: str) -> PreparedPrompt:
        """A one-off task (memory extraction): the instruction alone, and as many tokens as
        the request asks for, shortened to what fits."""
        fmt = self.settings.prompt_format
        text = render(self.tokenizer, fmt, "", [], "", instruction) + ("" if fmt == "chat" else "\n")
        ids = encode(self.tokenizer, text, fmt)
        room = self.settings.max_model_len - len(ids)
        if room < 64:
            raise PromptTooLong(f"the passage is too long for this task ({len(ids)} tokens); give a shorter one")
        max_tokens = min(self._default_max_tokens(req), room)
        return PreparedPrompt(mode=req.mode, story=story, text=text, token_ids=ids, max_tokens=max_tokens)

    def _raw(self, req: PromptRequest, instruction: str, memories: list[MemoryEntry], story: str) -> PreparedPrompt:
        def render_raw(lines: list[str]) -> tuple[str, list[int]]:
            text = memory_block(lines) + "\n\n" + req.text if lines else req.text
            return text, self.tokenizer(text, add_special_tokens=True).input_ids

        return self._with_memories(req, render_raw, memories, story, what="prompt")

    def _chat(self, req: PromptRequest, instruction: str, memories: list[MemoryEntry], story: str) -> PreparedPrompt:
        messages = [dict(m) for m in req.messages]
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]

        def render_chat(lines: list[str]) -> tuple[str, list[int]]:
            with_mem = [dict(m) for m in messages]
            if lines and users:  # memories go in front of the latest request, as in the writing template
                with_mem[users[-1]]["content"] = memory_block(lines) + "\n\n" + with_mem[users[-1]]["content"]
            tok = self.tokenizer
            if getattr(tok, "chat_template", None):
                try:
                    text = tok.apply_chat_template(with_mem, tokenize=False, add_generation_prompt=True)
                except Exception as exc:  # jinja's TemplateError: e.g. roles that must alternate
                    raise ValueError(f"The model's chat template refused these messages: {exc}") from exc
                return text, tok(text, add_special_tokens=False).input_ids  # the template wrote them
            text = "\n".join(f"{m['role']}: {m['content']}" for m in with_mem) + "\nassistant:"
            return text, tok(text, add_special_tokens=True).input_ids

        return self._with_memories(req, render_chat, memories, story, what="messages")

    def _with_memories(self, req: PromptRequest, render_with: Callable[[list[str]], tuple[str, list[int]]],
                       memories: list[MemoryEntry], story: str, what: str) -> PreparedPrompt:
        """A client's own prompt: check it fits, then add the memories that still fit."""
        limit = self.settings.max_model_len
        text, ids = render_with([])
        max_tokens = req.max_tokens if req.max_tokens is not None else min(self.settings.max_tokens, limit - len(ids))
        if max_tokens < 1 or len(ids) + max_tokens > limit:
            err = PromptTooLong(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(ids) + max(max_tokens, 1)} tokens ({len(ids)} in the {what}, {max(max_tokens, 1)} for the "
                f"completion). Please reduce the length of the {what} or max_tokens.")
            err.param = "max_tokens" if req.max_tokens is not None else what
            raise err
        room = min(self.settings.memory_token_budget, limit - max_tokens - len(ids)) - 16  # header, seams
        kept = pick_memories(self.tokenizer, memories, room)
        while kept:
            mem_text, mem_ids = render_with([entry_line(m.entry) for m in kept])
            if len(mem_ids) + max_tokens <= limit:
                text, ids = mem_text, mem_ids
                break
            kept.pop()
        check_fits(len(ids), max_tokens, limit)
        return PreparedPrompt(mode=req.mode, story=story, text=text, token_ids=ids, max_tokens=max_tokens,
                              memories=kept, memories_dropped=len(memories) - len(kept))
