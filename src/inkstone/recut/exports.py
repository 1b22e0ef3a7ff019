"""Exports made from a timeline: subtitles of the cut (original times, and re-timed
from 0), an mpv EDL, an ffconcat list and an ffmpeg render script. Each file is
written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pysubs2

from .timeline import Timeline, write_atomic
from .video import render_script


def srt_text(events: list[tuple[int, int, str]]) -> str:
    """SRT text of (start ms, end ms, text) events, written by pysubs2."""
    subs = pysubs2.SSAFile()
    for start, end, text in events:
        subs.append(pysubs2.SSAEvent(start=start, end=end, text=text.replace("\n", "\\N")))
    return subs.to_string("srt")


def viral_srt(tl: Timeline) -> str:
    """The chosen cues, in the cut's order, with their original times and text."""
    return srt_text([(c.start, c.end, c.text) for clip in tl.clips for c in tl.cues_of(clip)])


def recut_srt(tl: Timeline) -> str:
    """The same cues re-timed for the cut: clip k starts where clips 0..k-1 end, from 0."""
    events, offset = [], 0
    for clip in tl.clips:
        for c in tl.cues_of(clip):
            # A cue overlapping the clip's edges (cues can overlap) is held inside its clip.
            start, end = max(c.start, clip.start), min(c.end, clip.end)
            events.append((offset + start - clip.start, offset + end - clip.start, c.text))
        offset += clip.duration
    return srt_text(events)


def mpv_edl(tl: Timeline, video: str) -> str:
    """mpv's EDL: one `file,start,length` line per clip (the name length-prefixed, so any name works)."""
    name = f"%{len(video.encode('utf-8'))}%{video}"
    return "# mpv EDL v0\n" + "".join(f"{name},{c.start / 1000:.3f},{c.duration / 1000:.3f}\n" for c in tl.clips)


def ffconcat(tl: Timeline, video: str) -> str:
    """ffmpeg's concat demuxer list with in- and out-points (a quick preview; cuts snap to keyframes
    with stream copy, so the render script re-encodes instead)."""
    quoted = video.replace("'", "'\\''")
    rows = [f"file '{quoted}'\ninpoint {c.start / 1000:.3f}\noutpoint {c.end / 1000:.3f}\n" for c in tl.clips]
    return "ffconcat version 1.0\n" + "".join(rows)


def otio_timeline(tl: Timeline, video: str) -> str:
    """The cut as an OpenTimelineIO timeline (editors such as Resolve import it), times in ms.
    (The CMX3600 EDL adapter is a separate plugin that OpenTimelineIO 0.18 no longer bundles.)"""
    import opentimelineio as otio

    cut = otio.schema.Timeline(name=Path(tl.source).stem)
    track = otio.schema.Track(name="recut", kind=otio.schema.TrackKind.Video)
    for c in tl.clips:
        track.append(otio.schema.Clip(
            name=f"{'hook ' if c.hook else ''}cues {c.first_id}-{c.last_id}",
            media_reference=otio.schema.ExternalReference(target_url=video),
            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(c.start, 1000),
                                                 otio.opentime.RationalTime(c.duration, 1000))))
    cut.tracks.append(track)
    return otio.adapters.write_to_string(cut, "otio_json")


EXPORTS = ("timeline.json", "viral.srt", "recut.srt", "cut.edl", "cut.ffconcat", "cut.otio", "render.sh")


def write_exports(tl: Timeline, folder: Path, has_audio: Optional[bool] = None) -> list[Path]:
    """Every export beside timeline.json. The video is referred to by its path as given, or by the
    name `video.mp4` when there is none, so the lists can be used once the video is put there."""
    folder = Path(folder)
    video = tl.video or "video.mp4"
    files = [write_atomic(folder / "viral.srt", viral_srt(tl)), write_atomic(folder / "recut.srt", recut_srt(tl)),
             write_atomic(folder / "cut.edl", mpv_edl(tl, video)),
             write_atomic(folder / "cut.ffconcat", ffconcat(tl, video)),
             write_atomic(folder / "cut.otio", otio_timeline(tl, video))]
    script = write_atomic(folder / "render.sh", render_script(Path(video), tl.clips, "recut.mp4",
                                                              True if has_audio is None else has_audio))
    script.chmod(0o755)
    return files + [script]
