"""Subtitle recut: the model reads an episode's cues as numbered lines and picks
the clips of a hook-first short cut, as JSON whose cue ids are constrained by a
schema `enum` to the ids that exist. It never writes a timestamp: times are
copied from the cues afterwards, outside the model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

from . import Mode, register
from ..request import PromptRequest

INSTRUCTIONS = {
    "zh": ("下面是一集短剧的字幕，每行一条，行首是编号。把它剪成节奏快、开头有钩子的爆款版本："
           "按播放顺序列出要保留的片段，每个片段是一段连续的字幕（first_id 到 last_id），"
           "可以把最抓人的一段放在最前面作钩子。保留约 {share}% 的时长。输出 JSON。"),
    "en": ("Below are the subtitles of one short-drama episode, one cue per line, each starting with its "
           "number. Cut it into a fast, hook-first viral version: list the clips to keep in playing order, "
           "each a run of consecutive cues (first_id to last_id); the most gripping clip may come first as "
           "a hook. Keep about {share}% of the running time. Answer in JSON."),
}


class RecutAnswerError(ValueError):
    """The model's answer is not a clip list (cut off, or not JSON of the schema)."""


@dataclass(frozen=True)
class ClipChoice:
    first_id: int
    last_id: int
    caption: str = ""


def numbered_lines(texts: Sequence[tuple[int, str]]) -> str:
    """The cues as the model sees them: "12 text" per line."""
    return "\n".join(f"{i} {' '.join(t.split())}" for i, t in texts)


def task_line(lang: str, keep_share: float) -> str:
    """The instruction for a language and a share of the running time to keep."""
    return INSTRUCTIONS["en" if lang == "en" else "zh"].format(share=round(keep_share * 100))


def instruction(req: PromptRequest) -> str:
    if not req.passage.strip():
        raise ValueError("nothing to recut: the episode has no cues")
    return f"{req.instruction.strip() or task_line('zh', 0.25)}\n\n{req.passage.strip()}"


def schema(cue_ids: Sequence[int], max_clips: int = 12, max_caption: int = 24) -> dict:
    """The answer's JSON schema: cue ids only from `cue_ids`, a bounded number of clips and a short
    optional caption, so a constrained answer always ends within max tokens."""
    ids = sorted(set(int(i) for i in cue_ids))
    if not ids:
        raise ValueError("a recut needs at least one cue id")
    cue = {"type": "integer", "enum": ids}
    return {
        "type": "object",
        "properties": {"clips": {"type": "array", "minItems": 1, "maxItems": max_clips, "items": {
            "type": "object",
            "properties": {"first_id": cue, "last_id": cue, "caption": {"type": "string", "maxLength": max_caption}},
            "required": ["first_id", "last_id"], "additionalProperties": False}}},
        "required": ["clips"], "additionalProperties": False,
    }


def answer(clips: Sequence[ClipChoice]) -> str:
    """A clip list as the model should write it (the training target)."""
    rows = [{"first_id": c.first_id, "last_id": c.last_id, **({"caption": c.caption} if c.caption else {})}
            for c in clips]
    return json.dumps({"clips": rows}, ensure_ascii=False, separators=(",", ":"))


def parse(output: str, cue_ids: Optional[Sequence[int]] = None) -> list[ClipChoice]:
    """The clips of an answer; raises RecutAnswerError when it is not a valid clip list."""
    try:
        data = json.loads(output)
    except json.JSONDecodeError as exc:
        raise RecutAnswerError(f"the answer is cut off or not JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list) or not data["clips"]:
        raise RecutAnswerError("the answer has no list of clips")
    known = set(cue_ids) if cue_ids is not None else None
    out = []
    for n, item in enumerate(data["clips"], 1):
        if not isinstance(item, dict):
            raise RecutAnswerError(f"clip {n} is not an object")
        a, b = item.get("first_id"), item.get("last_id")
        if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
            raise RecutAnswerError(f"clip {n} lacks integer first_id and last_id")
        if known is not None and (a not in known or b not in known):
            raise RecutAnswerError(f"clip {n} names a cue id that does not exist ({a}..{b})")
        out.append(ClipChoice(a, b, str(item.get("caption") or "").strip()))
    return out


MODE = register(Mode(
    name="recut", label="字幕重剪 Subtitle recut", inputs=("passage", "instruction"), layout="task",
    instruction=instruction, for_writers=False, json_schema=schema, parse=parse,
))
