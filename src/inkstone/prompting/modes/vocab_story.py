"""Vocabulary story: a short modern story for a language learner that uses the target
words, one group of words per paragraph. The vocabulary loop (inkstone.vocab) renders
the brief with `brief` and sends it as the request's instruction."""
from __future__ import annotations

from typing import Sequence

from . import Mode, register
from ..request import PromptRequest

_HEAD = {
    "ja": "日本語の学習者のために、現代を舞台にした短い物語を日本語で書いてください。{theme}"
          "長さは約{length}字。次の段落ごとに、挙げた単語をすべて自然に使ってください。",
    "zh": "为中文学习者用中文写一篇以现代生活为背景的短篇故事。{theme}长度约{length}字。"
          "每一段都要自然地用上该段列出的全部词语。",
    "en": "Write a short modern story in English for a language learner. {theme}"
          "About {length} words. Each paragraph must use every word listed for it, naturally.",
}
_THEME = {"ja": "テーマ：{}。", "zh": "主题：{}。", "en": "Theme: {}. "}
_PARAGRAPH = {"ja": "第{n}段落：{words}", "zh": "第{n}段：{words}", "en": "Paragraph {n}: {words}"}
_SEP = {"ja": "、", "zh": "、", "en": ", "}
_TAIL = {"ja": "物語の本文だけを書いてください。", "zh": "只写故事正文。", "en": "Write only the story."}


def brief(lang: str, groups: Sequence[Sequence[str]], theme: str = "", length: int = 400) -> str:
    """The instruction for a first draft: theme, length, and the words of each paragraph."""
    lines = [_HEAD[lang].format(theme=_THEME[lang].format(theme.strip()) if theme.strip() else "", length=length)]
    lines += [_PARAGRAPH[lang].format(n=i, words=_SEP[lang].join(g)) for i, g in enumerate(groups, start=1)]
    lines.append(_TAIL[lang])
    return "\n".join(lines)


def instruction(req: PromptRequest) -> str:
    if not req.instruction.strip():
        raise ValueError("a vocabulary story needs its brief: the words to use")
    return req.instruction.strip()


MODE = register(Mode(
    name="vocab_story", label="词汇故事 Vocabulary story", inputs=("instruction",), layout="task",
    instruction=instruction, for_writers=False,
))
