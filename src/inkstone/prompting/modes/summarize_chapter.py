"""Chapter summary: one or two sentences that later prompts carry as "前情提要".

Asked for when a chapter is accepted (with the memory proposals) and again when
the writer presses "regenerate" beside a summary they do not like."""
from . import Mode, register
from ..request import PromptRequest

MAX_PASSAGE_CHARS = 6000  # a chapter's opening and ending say most of what happened in it


def instruction(req: PromptRequest) -> str:
    text = req.passage.strip()
    if not text:
        raise ValueError("the chapter to summarize is empty")
    if len(text) > MAX_PASSAGE_CHARS:
        half = MAX_PASSAGE_CHARS // 2
        text = text[:half] + "\n……\n" + text[-half:]
    return f"用一两句话概括下面这一章的主要情节，只写摘要本身：\n{text}"


MODE = register(Mode(
    name="summarize", label="章节摘要 Chapter summary", inputs=("passage",), layout="task",
    instruction=instruction, for_writers=False,
))
