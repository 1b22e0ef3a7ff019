"""One episode in, one cut out: parse, check the video, ask the model, repair, export.

Everything that can fail on bad input (the subtitles, the target, the video's
length) is checked before the model runs. `timeline.json` is written last, after
the exports and the rendered video: a folder holding one holds a complete cut,
and a failed run leaves an earlier timeline as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from .exports import write_exports
from .repair import RecutSettings, episode_duration, repair
from .select import SchemaFailure, choose_clips
from .subtitles import FORMATS, SubtitleError, Subtitles, detect_language, load
from .timeline import Timeline, save, sha256_of
from .video import VideoError, check_covers, probe, render

LANGUAGES = ("auto", "zh", "en")


class RecutError(ValueError):
    """Bad input or a failed answer; the message names the file."""


@dataclass
class Prepared:
    """An episode checked and ready for the model."""
    subtitles: Subtitles
    language: str
    settings: RecutSettings
    video: Optional[Path] = None
    video_has_audio: bool = False


def settings_for(path: Path, target: float, **kw) -> RecutSettings:
    try:
        return RecutSettings(target=target, **kw)
    except ValueError as exc:
        raise RecutError(f"{path}: {exc}") from None


def prepare(subtitles: Path, target: float = 0.25, lang: str = "auto", video: Optional[Path] = None,
            **settings) -> Prepared:
    """Parse and check an episode (and its video); nothing is written and no model runs."""
    s = settings_for(subtitles, target, **settings)
    if lang not in LANGUAGES:
        raise RecutError(f"{subtitles}: language must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    try:
        subs = load(subtitles)
    except SubtitleError as exc:
        raise RecutError(str(exc)) from None
    has_audio = False
    if video is not None:
        try:
            info = probe(video)
            check_covers(info, subs.end, subtitles)
        except VideoError as exc:
            raise RecutError(str(exc)) from None
        has_audio = info.has_audio
    language = detect_language(subs.cues) if lang == "auto" else lang
    # Absolute paths: the exports (render.sh, EDL) are used from the output folder.
    return Prepared(subs, language, s, Path(video).resolve() if video else None, has_audio)


def adapter_for(language: str, per_language: Mapping[str, str], override: Optional[str] = None) -> Optional[str]:
    """The adapter a recut runs with: the one asked for, else the one set for the episode's language."""
    return override or per_language.get(language) or None


def run(studio, ep: Prepared, out_dir: Path, adapter=None, adapter_label: Optional[str] = None,
        progress: Callable[[str], None] = lambda msg: None, render_video: bool = True,
        max_answer_tokens: Optional[int] = None) -> Timeline:
    """Ask the model, repair, write every export and (with a video) the rendered cut, then timeline.json."""
    path = ep.subtitles.path
    progress(f"asking the model for clips among {len(ep.subtitles.cues)} cues")
    try:
        chosen = choose_clips(studio, ep.subtitles.cues, ep.language, ep.settings, adapter,
                              max_tokens=max_answer_tokens)
    except SchemaFailure as exc:
        raise RecutError(f"{path}: {exc}") from None
    except ValueError as exc:  # PromptTooLong: the episode does not fit the model's context
        raise RecutError(f"{path}: {exc}") from None
    fixed = repair(chosen.choices, ep.subtitles.cues, ep.settings)
    tl = Timeline(source=str(Path(path).resolve()), source_sha256=sha256_of(path), language=ep.language,
                  settings={**ep.settings.to_dict(), "attempts": chosen.attempts}, clips=fixed.clips,
                  cues=ep.subtitles.cues, video=str(ep.video) if ep.video else None,
                  episode_ms=episode_duration(ep.subtitles.cues), valid_before_repair=fixed.valid_before_repair,
                  issues=fixed.issues, model=getattr(studio.engine, "model_name", ""), adapter=adapter_label)
    return write_all(tl, out_dir, ep.video_has_audio, render_video, progress)


def write_all(tl: Timeline, out_dir: Path, has_audio: bool = False, render_video: bool = True,
              progress: Callable[[str], None] = lambda msg: None) -> Timeline:
    """The exports, the rendered cut when there is a video, and timeline.json last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_exports(tl, out_dir, has_audio if tl.video else None)  # no video yet: the script maps its audio
    if tl.video and render_video:
        progress("rendering the cut")
        try:
            render(Path(tl.video), tl.clips, out_dir / "recut.mp4", has_audio)
        except VideoError as exc:
            raise RecutError(str(exc)) from None
    save(tl, out_dir)
    progress(f"{len(tl.clips)} clips, {tl.duration / 1000:.1f} s of {tl.episode_ms / 1000:.1f} s")
    return tl


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")


def episodes(input_path: Path, out_dir: Path) -> tuple[list[tuple[Path, Optional[Path], Path]], list[Path]]:
    """What a recut of `input_path` has to do: for a file, itself into `out_dir`; for a folder, each
    subtitle file in it (with the video of the same name beside it, if any) into `out_dir/NAME`,
    leaving out those whose finished timeline.json already names the same file content (so a
    stopped batch resumes). Returns (to do, already done)."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.is_dir():
        return [(input_path, None, out_dir)], []
    todo, done = [], []
    for sub in sorted(p for p in input_path.iterdir() if p.suffix.lower() in FORMATS and ".viral." not in p.name):
        target = out_dir / sub.stem
        finished = target / "timeline.json"
        if finished.is_file() and Timeline.load(finished).source_sha256 == sha256_of(sub):
            done.append(sub)
            continue
        video = next((sub.with_suffix(s) for s in VIDEO_SUFFIXES if sub.with_suffix(s).is_file()), None)
        todo.append((sub, video, target))
    return todo, done
