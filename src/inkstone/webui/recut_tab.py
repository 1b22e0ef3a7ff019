"""Recut tab: an episode's subtitles (and video) in, a hook-first cut out; the clips
in an editable table with their original timecodes, a preview and every export."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import gradio as gr
import pandas as pd

from ..checkpoints import AdapterError
from ..recut.exports import EXPORTS
from ..recut.pipeline import LANGUAGES, RecutError, prepare, run, write_all
from ..recut.repair import span
from ..recut.timeline import Timeline
from ..recut.video import VideoError, probe
from .i18n import headers, i18n

COLUMNS = ["hook", "first_id", "last_id", "start", "end", "cue_text"]  # header keys (i18n MESSAGES col_*)


def _ts(ms: int) -> str:
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def clip_table(tl: Timeline, request=None) -> pd.DataFrame:
    rows = [[c.hook, c.first_id, c.last_id, _ts(c.start), _ts(c.end),
             " / ".join(x.text.replace("\n", " ") for x in tl.cues_of(c))] for c in tl.clips]
    return pd.DataFrame(rows, columns=headers(request, *COLUMNS))


def _outputs(tl: Timeline, folder: Path, status: str, request=None):
    files = [str(folder / n) for n in (*EXPORTS, "recut.mp4") if (folder / n).is_file()]
    video = str(folder / "recut.mp4") if (folder / "recut.mp4").is_file() else None
    srt = (folder / "recut.srt").read_text(encoding="utf-8")
    return status, clip_table(tl, request), video, srt, files, str(folder)


def cut_episode(ctx, subtitles: Optional[str], video: Optional[str], target: float, lang: str, hook: bool,
                request=None):
    """Run a recut; yields (status, table, preview video, preview subtitles, export files, folder)."""
    if not subtitles:
        raise gr.Error("upload the episode's subtitles first / 请先上传字幕")
    src = Path(subtitles)
    try:
        ep = prepare(src, target=float(target), lang=lang, video=Path(video) if video else None, hook=bool(hook))
    except RecutError as exc:
        raise gr.Error(str(exc)) from exc
    data = Path(ctx.cfg.data.prepared_dir)  # cuts live beside the other data: data/recuts/EPISODE-TIME
    folder = (data if data.is_absolute() else Path(ctx.cfg.root) / data).parent / "recuts" / \
        f"{src.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    steps: list[str] = [f"{src.name}: {len(ep.subtitles.cues)} cues, {ep.language}"
                        + "".join(f"\n{p}" for p in ep.subtitles.problems[:20])]
    yield "\n".join(steps), None, None, "", [], str(folder)
    name = ctx.cfg.inference.recut_adapters.get(ep.language) or None
    try:
        adapter = ctx.adapters.register(Path(name), trusted=True) if name else None
    except AdapterError as exc:
        raise gr.Error(f"inference.recut_adapters.{ep.language}: {exc}") from exc
    try:
        tl = run(ctx.studio, ep, folder, adapter, name, progress=steps.append)
    except RecutError as exc:
        raise gr.Error(str(exc)) from exc
    validity = "valid before repair" if tl.valid_before_repair else "repaired: " + "; ".join(tl.issues)
    yield _outputs(tl, folder, "\n".join(steps + [validity]), request)


def apply_edits(folder: str, table: pd.DataFrame, request=None):
    """The edited table as the cut: rows in order, the ticked hook first, times copied from the cues
    again (never from the table), then every export written anew."""
    path = Path(folder or "") / "timeline.json"
    if not folder or not path.is_file():
        raise gr.Error("cut an episode first / 请先剪辑")
    tl = Timeline.load(path)
    by_id = {c.id: c for c in tl.cues}
    clips = []
    for n, (hook, first_id, last_id, *_) in enumerate(table.values.tolist(), 1):  # by position: headers are translated
        try:
            a, b = int(first_id), int(last_id)
        except (TypeError, ValueError):
            raise gr.Error(f"row {n}: first_id and last_id must be cue numbers") from None
        if a not in by_id or b not in by_id or a > b:
            raise gr.Error(f"row {n}: cues {a}-{b} do not exist in {tl.source} (1-{len(tl.cues)})")
        clips.append(span(by_id, a, b, str(hook).lower() in ("true", "1"), ""))
    if not clips:
        raise gr.Error("keep at least one clip / 至少保留一个片段")
    hooks = [c for c in clips if c.hook]
    if len(hooks) > 1:
        raise gr.Error("tick at most one hook / 最多一个钩子")
    tl.clips = hooks + [c for c in clips if not c.hook]
    tl.settings = {**tl.settings, "edited": True}
    has_audio = False
    if tl.video:
        try:
            has_audio = probe(Path(tl.video)).has_audio
        except VideoError as exc:
            raise gr.Error(str(exc)) from exc
    try:
        write_all(tl, Path(folder), has_audio)
    except RecutError as exc:
        raise gr.Error(str(exc)) from exc
    return _outputs(tl, Path(folder), f"{len(tl.clips)} clips, {tl.duration / 1000:.1f} s (edited)", request)


def create_recut_tab(ctx) -> tuple:
    """Returns the loader the app runs when a page opens: the empty clip table in the page's language."""
    with gr.Row():
        subtitles = gr.File(label=i18n("recut_subtitles"), file_types=[".srt", ".vtt", ".ass", ".ssa"],
                            type="filepath")
        video = gr.File(label=i18n("recut_video"), file_types=["video"], type="filepath")
    with gr.Row():
        target = gr.Slider(0.05, 1.0, value=0.25, step=0.05, label=i18n("recut_target"))
        lang = gr.Radio(list(LANGUAGES), value="auto", label=i18n("recut_lang"))
        hook = gr.Checkbox(True, label=i18n("recut_hook"))
        go = gr.Button(i18n("recut_run"), variant="primary")
    status = gr.Textbox(label=i18n("recut_status"), lines=3, interactive=False)
    table = gr.Dataframe(headers=headers(None, *COLUMNS), datatype=["bool", "number", "number", "str", "str", "str"],
                         interactive=True, wrap=True, label=i18n("recut_clips"))
    apply = gr.Button(i18n("recut_apply"))
    with gr.Row():
        preview = gr.Video(label=i18n("recut_preview"), interactive=False)
        preview_srt = gr.Code(label=i18n("recut_preview_srt"), interactive=False)
    downloads = gr.File(label=i18n("recut_downloads"), file_count="multiple", interactive=False)
    folder = gr.Textbox(label=i18n("recut_folder"), interactive=False)
    outputs = [status, table, preview, preview_srt, downloads, folder]

    def cut(request: gr.Request, *inputs):
        yield from cut_episode(ctx, *inputs, request=request)

    def apply_them(chosen_folder, rows, request: gr.Request):
        return apply_edits(chosen_folder, rows, request)

    go.click(cut, [subtitles, video, target, lang, hook], outputs, api_name="recut")
    apply.click(apply_them, [folder, table], outputs, api_name="recut_apply")

    def empty_table(request: gr.Request) -> pd.DataFrame:
        return pd.DataFrame(columns=headers(request, *COLUMNS))

    return empty_table, [table]
