"""Rewrite: the same events in other words; the instruction says how."""
from . import Mode, register, writing_query
from ..request import PromptRequest

DEFAULT_HOW = "润色这段文字，保持情节不变。"


def instruction(req: PromptRequest) -> str:
    if not req.passage.strip():
        raise ValueError("rewrite needs the passage to rewrite: select or paste it")
    return f"改写下面这段文字。{req.instruction.strip() or DEFAULT_HOW}\n原文：\n{req.passage.strip()}"


MODE = register(Mode(
    name="rewrite", label="改写 Rewrite", inputs=("story_text", "instruction", "passage"), layout="writing",
    instruction=instruction, memory_query=writing_query, summaries=True,
))
