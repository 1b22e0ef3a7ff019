"""Subtitle recut with the real engine: the tiny model answers under the schema's
id enum (vLLM structured outputs), through the Studio, into a repaired, exported
and rendered cut; and the bench over hand-made pairs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pysubs2
import pytest

from inkstone.bench.recut import bench_pairs, make_clock_video, read_clock, video_boundary_errors
from inkstone.recut.pipeline import RecutError, prepare, run
from inkstone.recut.select import SchemaFailure, choose_clips
from inkstone.recut.repair import RecutSettings
from inkstone.recut.subtitles import load
from inkstone.recut.timeline import Timeline

pytestmark = pytest.mark.slow

PAIRS = Path(__file__).parent / "data" / "recut"


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    """The hand-made zh06 original, as an episode file (UTF-8 with BOM, CRLF)."""
    folder = tmp_path_factory.mktemp("recut-episode")
    return Path(shutil.copy(PAIRS / "zh06_twins.original.srt", folder / "ep06.srt"))


def test_the_answer_is_constrained_to_cue_ids_that_exist(rt, episode):
    subs = load(episode)
    s = RecutSettings(target=0.3, max_clips=4)
    chosen = choose_clips(rt.studio, subs.cues, "zh", s)
    ids = {c.id for c in subs.cues}
    assert chosen.attempts in (1, 2) and 1 <= len(chosen.choices) <= 4
    assert all(c.first_id in ids and c.last_id in ids for c in chosen.choices)
    entry = rt.studio.history.list(story="recut")[0]  # kept in the history like every generation
    assert entry.mode == "recut" and entry.source == "recut" and entry.output == chosen.outputs[-1]
    assert "1 姐姐，你真的要替我去相亲吗？" in entry.prompt and entry.params["json_schema"]["required"] == ["clips"]


def test_an_answer_cut_off_twice_is_reported_and_nothing_is_written(rt, episode, tmp_path):
    before = len(rt.studio.history.list(story="recut"))
    with pytest.raises(SchemaFailure, match="failed the clip schema 2 times"):
        choose_clips(rt.studio, load(episode).cues, "zh", RecutSettings(max_clips=4), max_tokens=3)
    assert len(rt.studio.history.list(story="recut")) == before + 2  # the answer and its retry
    out = tmp_path / "out"
    with pytest.raises(RecutError, match=r"ep06\.srt: the model's answer failed the clip schema"):
        run(rt.studio, prepare(episode, max_clips=4), out, max_answer_tokens=3)
    assert not (out / "timeline.json").exists()


def test_episode_to_rendered_cut(rt, episode, tmp_path):
    video = make_clock_video(tmp_path / "ep06.mp4", load(episode).end / 1000 + 1)
    out = tmp_path / "cut"
    ep = prepare(episode, target=0.4, video=video, max_clips=4)
    tl = run(rt.studio, ep, out)
    assert tl.language == "zh" and tl.clips and tl.duration <= round(0.4 * tl.episode_ms)
    saved = Timeline.load(out / "timeline.json")
    assert saved.clips == tl.clips and saved.video == str(video)
    cues = {c.id: c for c in load(episode).cues}
    for clip in saved.clips:  # every clip traceable to its original timecodes
        assert clip.start == cues[clip.first_id].start
        assert clip.end == max(cues[i].end for i in clip.cue_ids())
    viral = pysubs2.load(str(out / "viral.srt"))
    assert [e.start for e in viral] == [cues[i].start for c in saved.clips for i in c.cue_ids()]
    errors = video_boundary_errors(saved.clips, read_clock(out / "recut.mp4"))
    assert max(errors) <= 500
    data = json.loads((out / "timeline.json").read_text(encoding="utf-8"))
    assert data["valid_before_repair"] in (True, False) and data["settings"]["target"] == 0.4


def test_bench_over_two_pairs(rt, tmp_path):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("zh01_divorce.json", "zh02_heiress.json"):  # the tiny model reads 1,024 tokens
        shutil.copy(PAIRS / name, pairs)
    work = tmp_path / "work"
    work.mkdir()
    result = bench_pairs(rt.studio, pairs, work, max_clips=4)
    s = result["summary"]
    assert s["pairs"] == 2 and 0 < s["compression_duration"] <= 1 and 0 <= s["valid_before_repair_rate"] <= 1
    assert s["timeline_boundary_error_ms_max"] == 0 and s["video_boundary_error_ms_max"] <= 500 and s["boundary_ok"]
    for side in ("model", "first_part", "random"):
        assert 0 <= s[side]["f1"] <= 1 and 0 <= s[side]["temporal_iou"] <= 1


def test_recut_tab_cut_then_edit(rt, cfg, episode, tmp_path):
    """The tab's journey: cut an uploaded episode, then drop a clip, add one and move the hook."""
    import gradio as gr

    from inkstone.webui.app import AppContext
    from inkstone.webui.recut_tab import apply_edits, cut_episode

    ctx = AppContext(cfg=cfg, rt=rt)
    updates = list(cut_episode(ctx, str(episode), None, 0.5, "auto", True))
    status, table, video, srt_text, files, folder = updates[-1]
    assert len(updates) == 2 and "ep06.srt: 18 cues, zh" in updates[0][0]
    assert Path(folder).parent == Path(cfg.data.prepared_dir).parent / "recuts"  # beside the data, not the code
    assert video is None and {Path(f).name for f in files} >= {"timeline.json", "viral.srt", "recut.srt", "cut.edl"}
    assert list(table.columns) == ["hook", "first_id", "last_id", "start", "end", "text"] and len(table) >= 1
    edited = table.iloc[:1].copy()
    edited.loc[0, ["hook", "first_id", "last_id"]] = [False, 2, 3]
    edited.loc[1] = [True, 17, 18, "", "", ""]  # a new clip, ticked as the hook: it moves first
    status, table2, _, srt_text, _, _ = apply_edits(folder, edited)
    tl = Timeline.load(Path(folder) / "timeline.json")
    assert [(c.first_id, c.last_id, c.hook) for c in tl.clips] == [(17, 18, True), (2, 3, False)]
    assert table2.iloc[0]["start"] == "00:00:" + table2.iloc[0]["start"][6:] and "edited" in status
    assert pysubs2.SSAFile.from_string(srt_text)[0].start == 0
    edited.loc[1, "last_id"] = 99
    with pytest.raises(gr.Error, match="row 2: cues 17-99 do not exist"):
        apply_edits(folder, edited)
    assert Timeline.load(Path(folder) / "timeline.json").clips == tl.clips  # the last good cut is kept
    with pytest.raises(gr.Error, match="ep06.srt: target must be"):
        list(cut_episode(ctx, str(episode), None, 0.0, "auto", True))


def test_recut_through_the_running_app(client, episode, tmp_path):
    """The same journey as a browser makes it: upload, cut, download the timeline."""
    from gradio_client import handle_file

    status, table, _, srt_text, files, folder = client.predict(
        handle_file(str(episode)), None, 0.5, "zh", True, api_name="/recut")
    assert "ep06.srt: 18 cues, zh" in status and table["data"] and srt_text.startswith("1\n00:00:00,000")
    timeline = next(f for f in files if Path(f).name == "timeline.json")
    assert json.loads(Path(timeline).read_text(encoding="utf-8"))["source_sha256"] == \
        __import__("hashlib").sha256(episode.read_bytes()).hexdigest()
