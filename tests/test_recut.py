"""Subtitle recut without an engine: parsing, repair, timeline and exports, video
rendering with the packaged ffmpeg, pair alignment and training rows."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pysubs2
import pytest

from conftest import load_start_script
from inkstone.bench.recut import (first_part, kendall_tau, make_clock_video, random_cues, read_clock, temporal_iou,
                                  video_boundary_errors)
from inkstone.prompting import get_mode
from inkstone.prompting.modes.recut import ClipChoice, RecutAnswerError, answer, parse, schema
from inkstone.recut import align as alignment
from inkstone.recut.exports import ffconcat, mpv_edl, recut_srt, viral_srt
from inkstone.recut.pipeline import RecutError, prepare, write_all
from inkstone.recut.repair import RecutSettings, check, repair
from inkstone.recut.subtitles import SubtitleError, detect_language, load, parse_text, view_text
from inkstone.recut.timeline import Timeline, save, sha256_of
from inkstone.recut.training import build_recut_data

PAIRS = Path(__file__).parent / "data" / "recut"


def srt(*cues: tuple[float, float, str], index: bool = True, nl: str = "\n") -> str:
    def ts(s: float) -> str:
        ms = round(s * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    blocks = [(f"{i}{nl}" if index else "") + f"{ts(a)} --> {ts(b)}{nl}{t.replace(chr(10), nl)}{nl}"
              for i, (a, b, t) in enumerate(cues, 1)]
    return nl.join(blocks)


EPISODE = [(1, 3, "你到底是谁？"), (3.5, 5, "我是你姐姐。"), (5.2, 7, "不可能！"), (8, 10, "你看这块玉佩。"),
           (10.2, 12, "这是我娘的……"), (13, 15, "二十年了，我终于找到你了。"), (16, 18, "姐姐！"),
           (19, 21, "有人来了，快走！")]


def cues_of(rows=EPISODE):
    return parse_text(srt(*rows), "srt").cues


# ---- parsing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,bom,nl", [("utf-8", b"", "\n"), ("utf-8", b"\xef\xbb\xbf", "\r\n"),
                                             ("utf-16-le", b"\xff\xfe", "\r\n"), ("gbk", b"", "\r\n")])
def test_encodings_and_line_ends_give_the_same_cues(tmp_path, encoding, bom, nl):
    path = tmp_path / "ep.srt"
    path.write_bytes(bom + srt(*EPISODE, nl=nl).encode(encoding))
    subs = load(path)
    assert [(c.start, c.end, c.text) for c in subs.cues] == [(round(a * 1000), round(b * 1000), t) for a, b, t in EPISODE]
    assert subs.problems == [] and all(isinstance(c.start, int) for c in subs.cues)


def test_windows_1252_english(tmp_path):
    path = tmp_path / "ep.srt"
    path.write_bytes(srt((1, 2, "Caf\u00e9 au lait, s'il vous pla\u00eet."), (3, 4, "Na\u00efve \u2014 and proud.")
                         ).encode("cp1252"))
    subs = load(path)
    assert [c.text for c in subs.cues] == ["Caf\u00e9 au lait, s'il vous pla\u00eet.", "Na\u00efve \u2014 and proud."]
    assert detect_language(subs.cues) == "en"


def test_bad_cues_are_reported_by_line_and_skipped(tmp_path):
    text = ("1\n00:00:01,000 --> 00:00:02,000\n第一句\n\n"
            "00:00:03,000 --> 00:00:04,500\n没有编号的一句\n\n空行之后还是这一句\n\n"  # no index, blank line inside
            "3\n00:00:05,000 -> 00:00:06\n时间坏了\n\n"  # line 11: timing does not parse
            "4\n00:00:07,000 --> 00:00:07,000\n零长度\n\n"  # line 14
            "5\n00:00:09,000 --> 00:00:08,000\n倒着的\n\n"  # line 18
            "6\n00:00:10,000 --> 00:00:12,000\n<i>重叠一</i>\n\n"
            "7\n00:00:11,000 --> 00:00:13,000\n重叠二\n")  # line 27: overlaps the cue before
    path = tmp_path / "bad.srt"
    path.write_text(text, encoding="utf-8")
    subs = load(path)
    assert [c.text for c in subs.cues] == ["第一句", "没有编号的一句\n空行之后还是这一句", "重叠一", "重叠二"]
    assert [c.line for c in subs.cues] == [2, 5, 23, 27]
    problems = {p.line: p.message for p in subs.problems}
    assert "does not parse" in problems[11] and "zero length" in problems[15]
    assert "ends before it starts" in problems[19] and "overlaps cue 3 by 1000 ms" in problems[27]


def test_no_valid_cue_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "empty.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:01,000\n零\n", encoding="utf-8")
    with pytest.raises(SubtitleError, match=r"empty\.srt: no valid subtitle cue \(line 2: cue has zero length"):
        load(path)
    with pytest.raises(RecutError, match="empty.srt"):
        prepare(path)


def test_webvtt_and_ass(tmp_path):
    vtt = tmp_path / "ep.vtt"
    vtt.write_text("WEBVTT\n\nNOTE a note\n\nintro\n00:01.000 --> 00:02.500 align:left\n<b>Who are you?</b>\n\n"
                   "00:03.000 --> 00:04.000\nYour sister.\n", encoding="utf-8")
    assert [(c.start, c.end, c.text) for c in load(vtt).cues] == [(1000, 2500, "Who are you?"), (3000, 4000, "Your sister.")]
    subs = pysubs2.SSAFile()
    subs.append(pysubs2.SSAEvent(start=1000, end=2000, text="{\\an8}你好\\NHello"))
    subs.append(pysubs2.SSAEvent(start=2500, end=4000, text="再见"))
    ass = tmp_path / "ep.ass"
    subs.save(str(ass))
    text = ass.read_text(encoding="utf-8").replace("Dialogue: 0,0:00:02.50", "Dialogue: 0,0:0x:02.50")
    ass.write_text(text, encoding="utf-8")
    parsed = load(ass)
    bad_line = text.splitlines().index(next(x for x in text.splitlines() if "0:0x:" in x)) + 1
    assert [(c.start, c.text) for c in parsed.cues] == [(1000, "你好\nHello")]
    assert parsed.problems[0].line == bad_line and "does not parse" in parsed.problems[0].message


def test_bilingual_cues_show_the_target_language():
    cue = parse_text(srt((1, 2, "我们离婚吧。\nLet's get divorced.")), "srt").cues[0]
    assert view_text(cue, "zh") == "我们离婚吧。" and view_text(cue, "en") == "Let's get divorced."
    assert detect_language([cue]) == "zh"


# ---- the mode: schema and parser ----------------------------------------------------------------
def test_schema_constrains_ids_and_parser_checks_them():
    s = schema([3, 1, 2], max_clips=4)
    item = s["properties"]["clips"]["items"]
    assert item["properties"]["first_id"]["enum"] == [1, 2, 3] and s["properties"]["clips"]["maxItems"] == 4
    assert "start" not in json.dumps(s)  # the model never writes a time
    out = answer([ClipChoice(3, 3, "钩子"), ClipChoice(1, 2)])
    assert parse(out, [1, 2, 3]) == [ClipChoice(3, 3, "钩子"), ClipChoice(1, 2)]
    with pytest.raises(RecutAnswerError, match="does not exist"):
        parse('{"clips":[{"first_id":1,"last_id":9}]}', [1, 2, 3])
    with pytest.raises(RecutAnswerError, match="cut off"):
        parse('{"clips":[{"first_id":1,', [1, 2, 3])
    mode = get_mode("recut")
    assert not mode.for_writers and mode.json_schema is schema


# ---- repair -----------------------------------------------------------------------------------------
def test_repair_keeps_a_valid_choice_and_copies_times():
    cues = cues_of()
    s = RecutSettings(target=0.6, min_clip_ms=1000, merge_gap_ms=300)
    fixed = repair([ClipChoice(6, 6, "hook"), ClipChoice(1, 2), ClipChoice(4, 5)], cues, s)
    assert fixed.valid_before_repair and fixed.issues == []
    assert [(c.first_id, c.last_id, c.start, c.end, c.hook) for c in fixed.clips] == [
        (6, 6, 13000, 15000, True), (1, 2, 1000, 5000, False), (4, 5, 8000, 12000, False)]


def test_repair_orders_merges_lengthens_and_fits_the_budget():
    cues = cues_of()
    s = RecutSettings(target=0.5, min_clip_ms=2500, merge_gap_ms=300, hook=False)
    choices = [ClipChoice(5, 4), ClipChoice(1, 2), ClipChoice(2, 3), ClipChoice(7, 7), ClipChoice(99, 99)]
    issues = check(choices, cues, s)
    fixed = repair(choices, cues, s)
    assert not fixed.valid_before_repair and issues == fixed.issues
    assert issues == ["clip 1: first_id 5 after last_id 4", "clip 5: unknown cue id"]
    ids = [i for c in fixed.clips for i in c.cue_ids()]
    assert ids == sorted(set(ids))  # in order, no cue twice
    assert fixed.duration <= fixed.budget_ms == 10000
    assert all(c.duration >= 2500 for c in fixed.clips)
    # 1-3 and 4-5 were adjacent with a 1 s pause: not merged at 300 ms; merged at 1.5 s
    merged = repair([ClipChoice(1, 2), ClipChoice(3, 3)], cues, RecutSettings(target=1.0, merge_gap_ms=1500))
    assert [(c.first_id, c.last_id) for c in merged.clips] == [(1, 3)]


def test_hook_setting_and_overlap_with_the_hook():
    cues = cues_of()
    choices = [ClipChoice(6, 7), ClipChoice(1, 2), ClipChoice(5, 6)]
    with_hook = repair(choices, cues, RecutSettings(target=1.0, min_clip_ms=500))
    assert "the hook repeats cues of a later clip" in with_hook.issues
    assert [(c.first_id, c.last_id, c.hook) for c in with_hook.clips] == [(6, 7, True), (1, 2, False), (5, 5, False)]
    without = repair(choices, cues, RecutSettings(target=1.0, min_clip_ms=500, hook=False))
    assert [(c.first_id, c.last_id, c.hook) for c in without.clips] == [(1, 2, False), (5, 7, False)]


@pytest.mark.parametrize("target", [0, -0.1, 1.5])
def test_target_outside_0_1_is_refused_naming_the_file(tmp_path, target):
    path = tmp_path / "ep.srt"
    path.write_text(srt(*EPISODE), encoding="utf-8")
    with pytest.raises(RecutError, match=r"ep\.srt: target must be a share .* in \(0, 1\]"):
        prepare(path, target=target)


# ---- timeline, exports, video ---------------------------------------------------------------------------
def _timeline(tmp_path, video=None) -> Timeline:
    path = tmp_path / "ep.srt"
    path.write_text(srt(*EPISODE), encoding="utf-8")
    ep = prepare(path, target=0.5, video=video, min_clip_ms=1000)
    fixed = repair([ClipChoice(6, 6), ClipChoice(1, 2), ClipChoice(4, 4)], ep.subtitles.cues, ep.settings)
    return Timeline(str(path), sha256_of(path), ep.language, ep.settings.to_dict(), fixed.clips, ep.subtitles.cues,
                    video=str(video) if video else None, episode_ms=20000)


def test_exports_keep_original_times_and_retime_from_zero(tmp_path):
    tl = _timeline(tmp_path)
    viral = pysubs2.SSAFile.from_string(viral_srt(tl))
    assert [(e.start, e.end, e.plaintext) for e in viral] == [
        (13000, 15000, "二十年了，我终于找到你了。"), (1000, 3000, "你到底是谁？"), (3500, 5000, "我是你姐姐。"),
        (8000, 10000, "你看这块玉佩。")]
    recut = pysubs2.SSAFile.from_string(recut_srt(tl))
    assert [(e.start, e.end) for e in recut] == [(0, 2000), (2000, 4000), (4500, 6000), (6000, 8000)]
    assert mpv_edl(tl, "ep.mp4").splitlines() == ["# mpv EDL v0", "%6%ep.mp4,13.000,2.000", "%6%ep.mp4,1.000,4.000",
                                                  "%6%ep.mp4,8.000,2.000"]
    assert ffconcat(tl, "ep.mp4").count("inpoint") == 3
    out = tmp_path / "out"
    write_all(tl, out)
    assert sorted(p.name for p in out.iterdir()) == ["cut.edl", "cut.ffconcat", "cut.otio", "recut.srt",
                                                     "render.sh", "timeline.json", "viral.srt"]
    import opentimelineio as otio

    clips = list(otio.adapters.read_from_file(str(out / "cut.otio")).find_clips())
    assert [(c.source_range.start_time.to_seconds(), c.source_range.duration.to_seconds()) for c in clips] == [
        (13.0, 2.0), (1.0, 4.0), (8.0, 2.0)]
    again = Timeline.load(out / "timeline.json")
    assert again.clips == tl.clips and again.source_sha256 == sha256_of(tmp_path / "ep.srt")
    data = json.loads((out / "timeline.json").read_text(encoding="utf-8"))
    assert data["clips"][0]["cue_ids"] == [6] and data["clips"][0]["start"] == 13000


def test_a_failed_write_leaves_the_old_timeline(tmp_path):
    tl = _timeline(tmp_path)
    out = tmp_path / "out"
    save(tl, out)
    before = (out / "timeline.json").read_bytes()
    tl.clips[0].caption = object()  # not JSON: fails while the new timeline is being written
    with pytest.raises(TypeError):
        save(tl, out)
    assert (out / "timeline.json").read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["timeline.json"]  # no temporary file left


def test_video_shorter_than_its_subtitles_is_refused(tmp_path):
    video = make_clock_video(tmp_path / "short.mp4", 5, audio=False)
    path = tmp_path / "ep.srt"
    path.write_text(srt(*EPISODE), encoding="utf-8")
    with pytest.raises(RecutError, match=r"short\.mp4: the video lasts 5\.\d+ s, shorter than its subtitles .*ep\.srt"):
        prepare(path, video=video)
    with pytest.raises(RecutError, match=r"nothing\.mp4: no such video"):
        prepare(path, video=tmp_path / "nothing.mp4")


def test_rendered_cut_is_frame_accurate(tmp_path):
    video = make_clock_video(tmp_path / "clock.mp4", 22)
    tl = _timeline(tmp_path, video)
    out = tmp_path / "out"
    write_all(tl, out, has_audio=True)
    shown = read_clock(out / "recut.mp4")
    assert len(shown) == pytest.approx(tl.duration * 25 / 1000, abs=len(tl.clips))
    errors = video_boundary_errors(tl.clips, shown)
    assert len(errors) == 2 * len(tl.clips) and max(errors) <= 40  # within one frame at 25 fps
    assert (out / "timeline.json").is_file() and not list(out.glob(".*partial*"))


# ---- metrics --------------------------------------------------------------------------------------------
def test_metrics_and_baselines():
    cues = cues_of()
    by = {c.id: c for c in cues}
    from inkstone.recut.repair import span

    ref = [span(by, 6, 6), span(by, 1, 2)]
    assert temporal_iou(ref, ref) == 1.0 and kendall_tau(ref, ref) == 1.0
    assert kendall_tau(list(reversed(ref)), ref) == -1.0
    assert temporal_iou([span(by, 8, 8)], ref) == 0.0
    head = first_part(cues, 6000)
    assert [(c.first_id, c.last_id) for c in head] == [(1, 3)]
    rand = random_cues(cues, 6000, seed=1)
    assert sum(c.duration for c in rand) <= 6000 and rand


# ---- training pairs ---------------------------------------------------------------------------------------
def test_hand_made_pairs_align_with_their_hook():
    pairs = alignment.read_pairs(PAIRS)
    assert len(pairs) == 12 and {detect_language(p.original) for p in pairs} == {"zh", "en"}
    got = {p.name: alignment.align(p) for p in pairs}
    assert got["zh01_divorce"].method == "time" and got["zh04_doctor"].method == "text"
    assert [(c.first_id, c.last_id) for c in got["zh01_divorce"].clips][0] == (15, 16)  # the hook first
    assert [(c.first_id, c.last_id) for c in got["en06_swap"].clips] == [(16, 18), (1, 10), (12, 15)]
    assert all(a.confidence > 0.9 for a in got.values())


def test_unrelated_viral_cut_has_low_confidence(tmp_path):
    data = json.loads((PAIRS / "en01_ceo.json").read_text(encoding="utf-8"))
    data["viral_subtitles"] = [{"start": i * 2.0, "end": i * 2.0 + 1.5, "text": t} for i, t in
                               enumerate(["Completely different words here.", "Nothing from the episode.",
                                          "Who wrote this?"])]
    (tmp_path / "odd.json").write_text(json.dumps(data), encoding="utf-8")
    shutil.copy(PAIRS / "zh05_boss.json", tmp_path)
    al = alignment.align(next(p for p in alignment.read_pairs(tmp_path) if p.name == "odd"))
    assert al.confidence < alignment.LOW_CONFIDENCE


def test_bad_pair_file_is_named(tmp_path):
    (tmp_path / "broken.json").write_text('{"original_subtitles": [{"start": 1}]', encoding="utf-8")
    with pytest.raises(alignment.PairError, match="broken.json"):
        alignment.read_pairs(tmp_path)
    (tmp_path / "broken.json").write_text('{"original_subtitles": [{"start": 1}], "viral_subtitles": []}',
                                          encoding="utf-8")
    with pytest.raises(alignment.PairError, match=r"broken\.json: original_subtitles\[0\]: needs start, end and text"):
        alignment.read_pairs(tmp_path)


def test_recut_data_rows_are_what_the_trainer_reads(tmp_path, tiny_tokenizer, tiny_model):
    from inkstone.prompting.service import PromptService, PromptSettings
    from inkstone.train.qlora import read_examples

    prompts = PromptService(tiny_tokenizer, PromptSettings(model_name="tiny", max_model_len=4096))
    shutil.copy(PAIRS / "zh05_boss.json", tmp_path)
    shutil.copy(PAIRS / "en06_swap.original.srt", tmp_path)
    shutil.copy(PAIRS / "en06_swap.viral.srt", tmp_path)
    data = json.loads((PAIRS / "en01_ceo.json").read_text(encoding="utf-8"))
    data["viral_subtitles"] = [{"start": 0.0, "end": 1.0, "text": "Not in the episode at all."}]
    (tmp_path / "odd.json").write_text(json.dumps(data), encoding="utf-8")
    report = build_recut_data(tmp_path, tmp_path / "out", prompts)
    assert report.rows == {"zh": 1, "en": 1} and [p["name"] for p in report.low_confidence] == ["odd"]
    rows = [json.loads(x) for x in (tmp_path / "out" / "zh" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert parse(rows[0]["completion"])[0] == ClipChoice(14, 15)
    assert "1 新来的，把这些文件复印二十份。" in rows[0]["prompt"] and "保留约" in rows[0]["prompt"]
    examples = read_examples(tmp_path / "out" / "en")
    assert len(examples) == 1 and examples[0].prompt and examples[0].text.startswith('{"clips":')


# ---- command line: bad input fails before any engine starts -----------------------------------------------
def test_cli_refuses_bad_input_naming_the_file(tmp_path, capsys):
    start = load_start_script()
    ep = tmp_path / "ep.srt"
    ep.write_text(srt(*EPISODE), encoding="utf-8")
    out = tmp_path / "out"
    assert start.main(["recut", "--input", str(ep), "--target", "1.2", "--output", str(out)]) == 2
    assert "ep.srt: target must be" in capsys.readouterr().err
    empty = tmp_path / "none.vtt"
    empty.write_text("WEBVTT\n\nnothing here\n", encoding="utf-8")
    assert start.main(["recut", "--input", str(empty), "--output", str(out)]) == 2
    assert "none.vtt: no valid subtitle cue" in capsys.readouterr().err
    assert start.main(["recut", "--input", str(ep), "--adapter", str(tmp_path / "no-adapter"), "--output", str(out)]) == 2
    assert "no-adapter" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_of_episodes_resumes_where_it_stopped(tmp_path):
    from inkstone.recut.pipeline import episodes

    eps, out = tmp_path / "eps", tmp_path / "out"
    eps.mkdir()
    for name in ("a.srt", "b.srt", "c.viral.srt"):
        (eps / name).write_text(srt(*EPISODE), encoding="utf-8")
    (eps / "b.mp4").write_bytes(b"")  # the video of the same name goes with it
    todo, done = episodes(eps, out)
    assert [(s.name, v.name if v else None, o.name) for s, v, o in todo] == [("a.srt", None, "a"), ("b.srt", "b.mp4", "b")]
    ep = prepare(eps / "a.srt", min_clip_ms=1000)
    fixed = repair([ClipChoice(1, 2)], ep.subtitles.cues, ep.settings)
    write_all(Timeline(str(eps / "a.srt"), sha256_of(eps / "a.srt"), "zh", {}, fixed.clips, ep.subtitles.cues), out / "a")
    todo, done = episodes(eps, out)
    assert [s.name for s, _, _ in todo] == ["b.srt"] and [p.name for p in done] == ["a.srt"]
    (eps / "a.srt").write_text(srt(*EPISODE[:4]), encoding="utf-8")  # changed since: cut again
    assert [s.name for s, _, _ in episodes(eps, out)[0]] == ["a.srt", "b.srt"]


def test_render_script_renders_the_same_cut_from_its_folder(tmp_path):
    import os
    import subprocess

    from inkstone.recut.video import ffmpeg_exe

    video = make_clock_video(tmp_path / "clock.mp4", 22, audio=False)
    tl = _timeline(tmp_path, video)
    out = tmp_path / "out"
    write_all(tl, out, has_audio=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").symlink_to(ffmpeg_exe())  # the script calls whatever ffmpeg is on PATH
    (out / "recut.mp4").rename(tmp_path / "rendered.mp4")
    subprocess.run(["sh", str(out / "render.sh")], check=True, cwd=tmp_path,
                   env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert list(read_clock(out / "recut.mp4")) == list(read_clock(tmp_path / "rendered.mp4"))
