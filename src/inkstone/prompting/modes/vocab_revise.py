"""Vocabulary revision: the same story again, now using the target words it missed,
keeping the ones it already uses. The brief names only the missing words to add."""
from __future__ import annotations

from typing import Sequence

from . import Mode, register
from ..request import PromptRequest

_HEAD = {
    "ja": "次の物語を書き直してください。まだ使われていない単語を、すべて自然に入れてください：{missing}。",
    "zh": "改写下面的故事，把还没用上的词语全部自然地用进去：{missing}。",
    "en": "Rewrite the story below so that it also uses these missing words, naturally: {missing}.",
}
_KEEP = {
    "ja": "すでに使っている単語はそのまま残してください：{used}。",
    "zh": "已经用上的词语请保留：{used}。",
    "en": "Keep the words it already uses: {used}.",
}
_TAIL = {"ja": "書き直した物語の本文だけを書いてください。\n物語：", "zh": "只写改写后的故事正文。\n故事：",
         "en": "Write only the rewritten story.\nStory:"}
_SEP = {"ja": "、", "zh": "、", "en": ", "}


def brief(lang: str, missing: Sequence[str], used: Sequence[str]) -> str:
    """The instruction for a revision: the missing words, then the used ones to keep."""
    if not missing:
        raise ValueError("nothing to revise: the story already uses every word")
    lines = [_HEAD[lang].format(missing=_SEP[lang].join(missing))]
    if used:
        lines.append(_KEEP[lang].format(used=_SEP[lang].join(used)))
    lines.append(_TAIL[lang])
    return "\n".join(lines)


def instruction(req: PromptRequest) -> str:
    if not req.passage.strip():
        raise ValueError("a vocabulary revision needs the story to revise")
    if not req.instruction.strip():
        raise ValueError("a vocabulary revision needs its brief: the missing words")
    return f"{req.instruction.strip()}\n{req.passage.strip()}"


MODE = register(Mode(
    name="vocab_revise", label="词汇改写 Vocabulary revision", inputs=("instruction", "passage"), layout="task",
    instruction=instruction, for_writers=False,
))
