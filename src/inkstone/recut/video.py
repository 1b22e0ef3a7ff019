"""The video side of a cut, with the ffmpeg binary the imageio-ffmpeg package ships
(no system install needed): probe a video, and render a cut re-encoded, so every
cut falls on the exact frame its time names (stream copy could only cut at
keyframes)."""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .repair import Clip


class VideoError(ValueError):
    """A video that cannot be used for this cut; the message names the file."""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration_ms: int
    has_audio: bool


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


def probe(path: Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                         errors="replace").stderr
    m = _DURATION.search(out)
    if not m or "Video:" not in out:
        raise VideoError(f"{path}: not a video ffmpeg can read")
    h, mi, s = m.groups()
    ms = round((int(h) * 3600 + int(mi) * 60 + float(s)) * 1000)
    return VideoInfo(path, ms, "Audio:" in out)


def check_covers(info: VideoInfo, subtitles_end_ms: int, subtitles: Path, tolerance_ms: int = 500) -> None:
    """The video must last as long as its subtitles (within a frame or so)."""
    if info.duration_ms + tolerance_ms < subtitles_end_ms:
        raise VideoError(f"{info.path}: the video lasts {info.duration_ms / 1000:.2f} s, shorter than its "
                         f"subtitles {subtitles} ({subtitles_end_ms / 1000:.2f} s)")


def render_args(video: Path, clips: Sequence[Clip], out: Path, has_audio: bool) -> list[str]:
    """One ffmpeg command: trim each clip from the source, concatenate, re-encode."""
    parts, labels = [], []
    for k, c in enumerate(clips):
        a, b = c.start / 1000, c.end / 1000
        parts.append(f"[0:v]trim=start={a:.3f}:end={b:.3f},setpts=PTS-STARTPTS[v{k}]")
        labels.append(f"[v{k}]")
        if has_audio:
            parts.append(f"[0:a]atrim=start={a:.3f}:end={b:.3f},asetpts=PTS-STARTPTS[a{k}]")
            labels.append(f"[a{k}]")
    audio = 1 if has_audio else 0
    parts.append(f"{''.join(labels)}concat=n={len(clips)}:v=1:a={audio}[v]" + ("[a]" if has_audio else ""))
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
            "-filter_complex", ";".join(parts), "-map", "[v]"]
    if has_audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "128k"]
    return args + ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart", str(out)]


def render_script(video: Path, clips: Sequence[Clip], out_name: str = "recut.mp4", has_audio: bool = True) -> str:
    """A shell script that renders the cut with any ffmpeg on PATH (the same command `render` runs)."""
    args = render_args(video, clips, Path(out_name), has_audio)
    args[0] = "ffmpeg"
    return "#!/bin/sh\n# Renders the cut described by timeline.json, re-encoded for frame-accurate cuts.\n" \
           "set -e\ncd \"$(dirname \"$0\")\"\n" + shlex.join(args) + "\n"


def render(video: Path, clips: Sequence[Clip], out: Path, has_audio: bool) -> Path:
    """Render to a temporary name, then rename: no half-written video is left on failure."""
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    proc = subprocess.run(render_args(video, clips, tmp, has_audio), capture_output=True, text=True,
                          errors="replace")
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"{video}: rendering the cut failed: {proc.stderr.strip()[-500:]}")
    tmp.replace(out)
    return out
