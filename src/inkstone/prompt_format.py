"""The words and layout of a writing prompt, shared by training data and writing.

`prepare` renders its instruction pairs with `render`, and the prompt service
renders every generation with it, so a fine-tuned model sees at writing time
exactly the layout it was trained on. Pure functions of their arguments: no
memory store, no engine.

Layout: style instruction (system), story memories, summaries of earlier
chapters ("前情提要"), the story so far, the user's instruction. Chat models
get it as one user message under the chat template; base models get plain
text that ends where the story goes on.
"""
from __future__ import annotations

from typing import Literal, Sequence

PromptFormat = Literal["auto", "chat", "plain"]

# How a memory's kind is named inside a prompt (the first word of the store's labels).
KIND_WORDS = {"character": "人物", "plot": "情节", "world": "设定", "dialogue": "台词"}


def memory_line(kind: str, line: str) -> str:
    """One memory as it stands in the prompt; its token cost is counted on exactly this."""
    return f"- [{KIND_WORDS.get(kind, kind)}] {line}"


def summary_line(summary: str) -> str:
    return f"- {summary}"


def memory_block(lines: Sequence[str]) -> str:
    """The memories section from lines made by `memory_line`."""
    return "【故事记忆】\n" + "\n".join(lines) if lines else ""


def summary_block(summaries: Sequence[str]) -> str:
    return "【前情提要】\n" + "\n".join(summary_line(s) for s in summaries) if summaries else ""


def _user_content(memory_lines: Sequence[str], story: str, instruction: str, summaries: Sequence[str]) -> str:
    parts = [memory_block(memory_lines), summary_block(summaries)]
    if story:
        parts.append("【前文】\n" + story)
    if instruction:
        parts.append("【要求】\n" + instruction)
    return "\n\n".join(p for p in parts if p)


def render(tokenizer, fmt: str, system: str, memory_lines: Sequence[str], story: str, instruction: str,
           summaries: Sequence[str] = ()) -> str:
    if fmt == "chat":
        user = _user_content(memory_lines, story, instruction, summaries)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Plain continuation for base models: context first, then the story itself,
    # so the text ends exactly where the model should go on writing.
    parts = [system, memory_block(memory_lines), summary_block(summaries),
             f"【要求】\n{instruction}" if instruction else ""]
    head = "\n\n".join(p for p in parts if p)
    return f"{head}\n\n【正文】\n{story}" if head else story


def resolve_format(tokenizer, fmt: str, model_name: str) -> Literal["chat", "plain"]:
    if fmt != "auto":
        return fmt  # type: ignore[return-value]
    name = model_name.lower()
    instruct = any(tag in name for tag in ("instruct", "chat", "-it"))
    return "chat" if instruct and getattr(tokenizer, "chat_template", None) else "plain"


def encode(tokenizer, text: str, fmt: str) -> list[int]:
    # A chat template already holds its special tokens; plain text gets the
    # tokenizer's own (e.g. Gemma's <bos>).
    return tokenizer(text, add_special_tokens=(fmt == "plain")).input_ids
