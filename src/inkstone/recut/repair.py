"""From the model's clip choices to a cut that plays: times copied from the cues,
then order, overlaps, small gaps, minimum length and the duration budget checked
and repaired in Python. What was wrong before repair is kept as a signal of the
model's quality."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

from ..prompting.modes.recut import ClipChoice
from .subtitles import Cue


@dataclass(frozen=True)
class RecutSettings:
    target: float = 0.25  # share of the episode's running time to keep, in (0, 1]
    min_clip_ms: int = 1500  # a shorter clip is lengthened with the cues after it
    merge_gap_ms: int = 1000  # clips of neighbouring cues closer than this become one
    hook: bool = True  # one clip from later in the episode may open the cut
    max_clips: int = 12  # the most clips the model may answer
    budget_slack: float = 0.1  # a choice up to this share over the budget still counts as valid

    def __post_init__(self):
        if not (0 < self.target <= 1):
            raise ValueError(f"target must be a share of the running time in (0, 1], not {self.target}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    first_id: int
    last_id: int
    start: int  # ms in the source: the first cue's start
    end: int  # ms in the source: the latest end among its cues
    hook: bool = False
    caption: str = ""

    @property
    def duration(self) -> int:
        return self.end - self.start

    def cue_ids(self) -> list[int]:
        return list(range(self.first_id, self.last_id + 1))


@dataclass
class Repaired:
    clips: list[Clip]
    valid_before_repair: bool
    issues: list[str] = field(default_factory=list)  # what was wrong with the model's choice
    budget_ms: int = 0

    @property
    def duration(self) -> int:
        return sum(c.duration for c in self.clips)


def span(cues: dict[int, Cue], a: int, b: int, hook: bool = False, caption: str = "") -> Clip:
    """A clip of cues a..b with its source range copied from them."""
    inside = [cues[i] for i in range(a, b + 1)]
    return Clip(a, b, min(c.start for c in inside), max(c.end for c in inside), hook, caption)


def episode_duration(cues: Sequence[Cue]) -> int:
    return max(c.end for c in cues) - min(c.start for c in cues)


def check(choices: Sequence[ClipChoice], cues: Sequence[Cue], s: RecutSettings) -> list[str]:
    """What is wrong with a choice as the model made it; empty when it can be cut as it is."""
    by_id = {c.id: c for c in cues}
    issues = []
    for n, ch in enumerate(choices, 1):
        if ch.first_id not in by_id or ch.last_id not in by_id:
            issues.append(f"clip {n}: unknown cue id")
        elif ch.first_id > ch.last_id:
            issues.append(f"clip {n}: first_id {ch.first_id} after last_id {ch.last_id}")
    if issues:
        return issues
    ranges = [(ch.first_id, ch.last_id) for ch in choices]
    body = ranges[1:] if s.hook and len(ranges) > 1 and ranges[0][0] > ranges[1][0] else ranges
    for (a0, b0), (a1, b1) in zip(body, body[1:]):
        if a1 <= b0:
            issues.append(f"clips {a0}-{b0} and {a1}-{b1} overlap or are out of order")
    if body is not ranges:
        hook = ranges[0]
        if any(a <= hook[1] and hook[0] <= b for a, b in body):
            issues.append("the hook repeats cues of a later clip")
    clips = [span(by_id, a, b) for a, b in ranges]
    short = [c for c in clips if c.duration < s.min_clip_ms]
    if short:
        issues.append(f"{len(short)} clip(s) shorter than {s.min_clip_ms} ms")
    budget = s.target * episode_duration(cues)
    total = sum(c.duration for c in clips)
    if total > budget * (1 + s.budget_slack):
        issues.append(f"{total} ms chosen, over the budget of {round(budget)} ms")
    return issues


def repair(choices: Sequence[ClipChoice], cues: Sequence[Cue], s: RecutSettings) -> Repaired:
    """A playable cut from the model's choices: always in order (but for one hook first when allowed),
    without overlaps, each clip at least min_clip_ms where the episode allows, within the budget."""
    issues = check(choices, cues, s)
    by_id = {c.id: c for c in cues}
    ids = sorted(by_id)
    ranges = []
    for ch in choices:
        if ch.first_id in by_id and ch.last_id in by_id:
            a, b = sorted((ch.first_id, ch.last_id))
            ranges.append((a, b, ch.caption))
    if not ranges:
        raise ValueError("no clip of the answer names cues that exist")
    hook: Optional[tuple[int, int, str]] = None
    if s.hook and len(ranges) > 1 and ranges[0][0] > ranges[1][0]:
        hook, ranges = ranges[0], ranges[1:]
    body = _merge_overlaps(sorted(ranges))
    if hook is not None:
        body = _without(body, hook)
    body = _merge_small_gaps(body, by_id, s.merge_gap_ms)
    clips = ([span(by_id, hook[0], hook[1], True, hook[2])] if hook else []) + \
        [span(by_id, a, b, False, cap) for a, b, cap in body]
    clips = _lengthen_short(clips, by_id, ids, s.min_clip_ms)
    budget = round(s.target * episode_duration(cues))
    clips = _fit_budget(clips, by_id, budget, s.min_clip_ms)
    return Repaired(clips, not issues, issues, budget)


def _merge_overlaps(ranges):
    out = []
    for a, b, cap in ranges:
        if out and a <= out[-1][1]:
            pa, pb, pcap = out[-1]
            out[-1] = (pa, max(pb, b), pcap or cap)
        else:
            out.append((a, b, cap))
    return out


def _without(body, hook):
    """Body clips with the hook's cues taken out (the hook plays them already)."""
    ha, hb, _ = hook
    out = []
    for a, b, cap in body:
        if b < ha or a > hb:
            out.append((a, b, cap))
            continue
        if a < ha:
            out.append((a, ha - 1, cap))
        if b > hb:
            out.append((hb + 1, b, cap))
    return out


def _merge_small_gaps(body, by_id, gap_ms):
    """Clips of consecutive cues with a short pause between them play as one."""
    out = []
    for a, b, cap in body:
        if out and a == out[-1][1] + 1 and by_id[a].start - by_id[out[-1][1]].end <= gap_ms:
            pa, _, pcap = out[-1]
            out[-1] = (pa, b, pcap or cap)
        else:
            out.append((a, b, cap))
    return out


def _lengthen_short(clips: list[Clip], by_id, ids, min_ms) -> list[Clip]:
    """Extend a too-short clip by the cues after it (before it at the episode's end), never into
    another clip; a clip that cannot grow is kept only if it is the only one."""
    taken = {i for c in clips for i in c.cue_ids()}
    out = []
    for c in clips:
        a, b = c.first_id, c.last_id
        grown = span(by_id, a, b, c.hook, c.caption)
        while grown.duration < min_ms:
            if b + 1 in by_id and b + 1 not in taken:
                b += 1
            elif a - 1 in by_id and a - 1 not in taken:
                a -= 1
            else:
                break
            taken.update((a, b))
            grown = span(by_id, a, b, c.hook, c.caption)
        if grown.duration >= min_ms or len(clips) == 1:
            out.append(grown)
    return out or clips[:1]


def _fit_budget(clips: list[Clip], by_id, budget: int, min_ms: int) -> list[Clip]:
    """Over the budget: take the last cue off the longest body clip that stays at least min_ms
    long; when none can shrink, drop the shortest body clip (the hook goes last). At least one
    cue always stays."""
    clips = list(clips)
    while sum(c.duration for c in clips) > budget and sum(len(c.cue_ids()) for c in clips) > 1:
        body = [c for c in clips if not c.hook] or clips
        shrunk = {id(c): span(by_id, c.first_id, c.last_id - 1, c.hook, c.caption)
                  for c in body if c.first_id < c.last_id}
        can = [c for c in body if id(c) in shrunk and shrunk[id(c)].duration >= min_ms]
        if can:
            longest = max(can, key=lambda c: c.duration)
            clips[clips.index(longest)] = shrunk[id(longest)]
        elif len(clips) > 1:
            clips.remove(min(body, key=lambda c: c.duration))
        else:
            only = clips[0]
            clips[0] = span(by_id, only.first_id, only.last_id - 1, only.hook, only.caption)
    return clips
