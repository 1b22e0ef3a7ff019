"""The canonical record of a cut: `timeline.json`. Every export is made from it.

It names the source subtitles (path and sha256), the video if any, the settings,
and each clip in playing order with its cue ids and its source range in ms, so
any clip can be traced back to the original episode.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .repair import Clip
from .subtitles import Cue

VERSION = 1


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Timeline:
    source: str  # the subtitle file
    source_sha256: str
    language: str
    settings: dict
    clips: list[Clip]
    cues: list[Cue]  # the cues the clips refer to (all of the episode's valid cues)
    video: Optional[str] = None
    episode_ms: int = 0
    valid_before_repair: bool = True
    issues: list[str] = field(default_factory=list)
    model: str = ""
    adapter: Optional[str] = None

    @property
    def duration(self) -> int:
        return sum(c.duration for c in self.clips)

    def cues_of(self, clip: Clip) -> list[Cue]:
        by_id = {c.id: c for c in self.cues}
        return [by_id[i] for i in clip.cue_ids()]

    def to_dict(self) -> dict:
        return {
            "version": VERSION, "source": self.source, "source_sha256": self.source_sha256, "video": self.video,
            "language": self.language, "settings": self.settings, "model": self.model, "adapter": self.adapter,
            "episode_ms": self.episode_ms, "cut_ms": self.duration,
            "valid_before_repair": self.valid_before_repair, "issues": self.issues,
            "clips": [{**asdict(c), "cue_ids": c.cue_ids(), "duration": c.duration} for c in self.clips],
            "cues": [asdict(c) for c in self.cues],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Timeline":
        clips = [Clip(c["first_id"], c["last_id"], c["start"], c["end"], c.get("hook", False), c.get("caption", ""))
                 for c in d["clips"]]
        cues = [Cue(**c) for c in d["cues"]]
        return cls(d["source"], d["source_sha256"], d["language"], d["settings"], clips, cues, d.get("video"),
                   d.get("episode_ms", 0), d.get("valid_before_repair", True), d.get("issues", []),
                   d.get("model", ""), d.get("adapter"))

    @classmethod
    def load(cls, path: Path) -> "Timeline":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file,
    and an error leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(timeline: Timeline, folder: Path) -> Path:
    return write_atomic(Path(folder) / "timeline.json",
                        json.dumps(timeline.to_dict(), ensure_ascii=False, indent=1))
