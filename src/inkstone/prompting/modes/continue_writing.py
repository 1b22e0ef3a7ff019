"""Continue: go on from the story so far, optionally steered by an instruction."""
from . import Mode, register, writing_query

DEFAULT_INSTRUCTION = "接着前文继续写下去，保持人物和文风一致。"

MODE = register(Mode(
    name="continue", label="续写 Continue", inputs=("story_text", "instruction"), layout="writing",
    instruction=lambda req: req.instruction.strip() or DEFAULT_INSTRUCTION,
    memory_query=writing_query, summaries=True,
))
