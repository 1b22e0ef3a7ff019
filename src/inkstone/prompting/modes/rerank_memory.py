"""Memory rerank: the running model orders candidate memories by how much they
bear on what is being written, answering with their numbers as JSON
constrained by a schema. Used by prompting/memory_rerank.py, not by writers."""
from __future__ import annotations

import json

from . import Mode, register
from ..request import PromptRequest

INSTRUCTION = (
    "下面是一个写作要求或问题，以及若干条编号的故事记忆。按与要求的相关程度从高到低，"
    "输出最相关的记忆编号，JSON 格式：{\"order\": [编号, ...]}。无关的记忆不要列出。"
)


class RerankError(ValueError):
    pass


def schema(candidates: int) -> dict:
    """At most `candidates` numbers, each one of the candidates' (1-based)."""
    return {"type": "object", "required": ["order"], "properties": {"order": {
        "type": "array", "maxItems": candidates,
        "items": {"type": "integer", "minimum": 1, "maximum": max(1, candidates)}}}}


def passage(lines: list[str]) -> str:
    """The candidates as the prompt numbers them."""
    return "\n".join(f"[{n}] {line}" for n, line in enumerate(lines, 1))


def instruction(req: PromptRequest) -> str:
    if not req.instruction.strip() or not req.passage.strip():
        raise ValueError("a memory rerank needs the query (instruction) and the numbered memories (passage)")
    return f"{INSTRUCTION}\n要求：{req.instruction.strip()}\n记忆：\n{req.passage.strip()}"


def parse(output: str) -> list[int]:
    """The candidates' 0-based positions in the model's order, each once."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as exc:
        raise RerankError(f"the rerank answer is not JSON ({exc.msg})") from exc
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, list):
        raise RerankError("the rerank answer has no list named order")
    seen: list[int] = []
    for n in order:
        if isinstance(n, int) and n >= 1 and n - 1 not in seen:
            seen.append(n - 1)
    return seen


MODE = register(Mode(
    name="rerank_memory", label="记忆重排 Rerank memories", inputs=("instruction", "passage"), layout="task",
    instruction=instruction, for_writers=False, json_schema=schema, parse=parse,
))
