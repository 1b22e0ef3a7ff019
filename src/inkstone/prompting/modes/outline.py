"""Outline → chapter: a whole chapter from one line of the outline."""
from . import Mode, register, writing_query
from ..request import PromptRequest


def instruction(req: PromptRequest) -> str:
    if not req.instruction.strip():
        raise ValueError("outline mode needs an outline line to write the chapter from")
    return f"根据这条大纲写出完整的一章正文：{req.instruction.strip()}"


MODE = register(Mode(
    name="outline", label="大纲成章 Outline → chapter", inputs=("story_text", "instruction"), layout="writing",
    instruction=instruction, memory_query=writing_query, summaries=True,
))
