"""Automatic memory: ask the model for the characters, events, world facts and
key lines of an accepted passage, as JSON constrained by a schema (vLLM
structured outputs), and turn them into proposals the user accepts or rejects.
Nothing is stored here."""
from __future__ import annotations

import json
from dataclasses import dataclass

def schema(max_items: int = 6, max_chars: int = 120) -> dict:
    """JSON schema of an extraction. The bounds keep the output within max tokens,
    so a constrained generation always finishes as complete JSON."""
    text = {"type": "string", "maxLength": max_chars}

    def items(a: str, b: str) -> dict:
        return {"type": "array", "maxItems": max_items, "items": {
            "type": "object", "properties": {a: text, b: text}, "required": [a, b]}}

    return {
        "type": "object",
        "properties": {"summary": {"type": "string", "maxLength": 2 * max_chars},
                       "characters": items("name", "description"), "events": items("title", "description"),
                       "world": items("title", "description"), "dialogue": items("speaker", "line")},
        "required": ["summary", "characters", "events", "world", "dialogue"],
    }


INSTRUCTION = (
    "阅读下面的小说片段，提取需要长期记住的信息，输出 JSON："
    "summary 为一两句话的情节摘要；characters 为出场人物（name 姓名，description 身份、性格、变化）；"
    "events 为重要情节（title，description）；world 为世界设定（title，description）；"
    "dialogue 为关键台词（speaker，line）。只写片段中出现的内容。"
)


class ExtractionError(ValueError):
    pass


@dataclass
class Proposal:
    kind: str
    title: str
    text: str


def extraction_prompt(tokenizer, fmt: str, passage: str) -> str:
    from ..inference.prompts import render

    return render(tokenizer, fmt, "", [], "", f"{INSTRUCTION}\n片段：\n{passage.strip()}") + (
        "" if fmt == "chat" else "\n")


def parse(output: str) -> tuple[str, list[Proposal]]:
    """(summary, proposals) from the model's JSON; empty fields are dropped."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ExtractionError(
            f"the extraction was cut off or is not JSON ({exc.msg}); raise max tokens and try again") from exc
    if not isinstance(data, dict):
        raise ExtractionError("the extraction is not a JSON object")
    out: list[Proposal] = []

    def add(kind, title, text):
        title, text = str(title or "").strip(), str(text or "").strip()
        if text:
            out.append(Proposal(kind, title, text))

    for c in data.get("characters") or []:
        add("character", c.get("name"), c.get("description"))
    for e in data.get("events") or []:
        add("plot", e.get("title"), e.get("description"))
    for w in data.get("world") or []:
        add("world", w.get("title"), w.get("description"))
    for d in data.get("dialogue") or []:
        add("dialogue", d.get("speaker"), d.get("line"))
    return str(data.get("summary") or "").strip(), out
