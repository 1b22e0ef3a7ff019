"""Memory extraction: the characters, events, world facts and key lines of an
accepted chapter, as JSON constrained by a schema (structured outputs), turned
into proposals the writer accepts or rejects. Nothing is stored here."""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import Mode, register
from ..request import PromptRequest

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


def instruction(req: PromptRequest) -> str:
    if not req.passage.strip():
        raise ValueError("nothing to extract from: the passage is empty")
    return f"{INSTRUCTION}\n片段：\n{req.passage.strip()}"


# (JSON field, its title field, its text field) for each memory kind.
_FIELDS = {"character": ("characters", "name", "description"), "plot": ("events", "title", "description"),
           "world": ("world", "title", "description"), "dialogue": ("dialogue", "speaker", "line")}


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
    for kind, (key, title_key, text_key) in _FIELDS.items():
        for item in data.get(key) or []:
            title, text = str(item.get(title_key) or "").strip(), str(item.get(text_key) or "").strip()
            if text:
                out.append(Proposal(kind, title, text))
    return str(data.get("summary") or "").strip(), out


MODE = register(Mode(
    name="extract", label="提取记忆 Extract memories", inputs=("passage",), layout="task",
    instruction=instruction, for_writers=False, json_schema=schema, parse=parse,
))
