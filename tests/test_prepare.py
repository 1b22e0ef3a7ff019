"""The prepare stage end to end on real files, with the tiny model's real BPE tokenizer."""
import json
import zipfile
from pathlib import Path

import pytest

from inkstone.data.instruct import DEFAULT_SYSTEM, PromptMaker
from inkstone.data.prepare import SAMPLE_TEXT, PrepareError, prepare
from inkstone.prompt_format import render

GEMMA = Path(__file__).resolve().parents[1] / "models" / "gemma-3-270m"


def chapters_of(corpus, first: int, last: int) -> str:
    """Chapters first..last (1-based) of the corpus, headings included."""
    text = corpus.read_text(encoding="utf-8")
    marks = [i for i, line in enumerate(text.splitlines(keepends=True)) if line.startswith("第") and "回" in line[:8]]
    lines = text.splitlines(keepends=True)
    end = marks[last] if last < len(marks) else len(lines)
    return "".join(lines[marks[first - 1]:end])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def run(tmp_path, inputs, tok, **kw):
    out = tmp_path / "out"
    kw.setdefault("progress", None)
    kw.setdefault("progress_bar", False)
    report = prepare(inputs, tok, train_dir=out / "train", val_dir=out / "val", report_dir=out / "prepared", **kw)
    rows = {name: read_jsonl(out / sub / f"{name.split('_')[-1]}.jsonl") for name, sub in
            [("train", "train"), ("val", "val"), ("train_instruct", "train"), ("val_instruct", "val")]}
    return report, rows, out


def test_mixed_folder_of_encodings_and_formats(tmp_path, corpus, tiny_tokenizer):
    raw = tmp_path / "raw"
    (raw / "sub" / "deeper").mkdir(parents=True)
    (raw / "a_gbk.txt").write_bytes(chapters_of(corpus, 1, 2).encode("gbk"))
    (raw / "b_bom.txt").write_bytes(chapters_of(corpus, 3, 4).encode("utf-8-sig"))
    (raw / "sub" / "c_utf16.txt").write_bytes(chapters_of(corpus, 5, 6).encode("utf-16"))
    (raw / "sub" / "deeper" / "d.txt").write_text(chapters_of(corpus, 7, 8), encoding="utf-8")
    records = [{"title": f"第{i}回", "content": chapters_of(corpus, i, i).split("\n", 1)[1], "author": "曹雪芹",
                "genre": "古典", "tags": ["红楼"]} for i in (9, 10)]
    (raw / "e.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    report, rows, out = run(tmp_path, [raw], tiny_tokenizer, chunk_size=256, val_split=0.2)

    enc = {Path(f["file"]).name: f["encoding"] for f in report.files}
    assert enc == {"a_gbk.txt": "gb18030", "b_bom.txt": "utf-8-sig", "c_utf16.txt": "utf-16", "d.txt": "utf-8",
                   "e.jsonl": "utf-8"}
    assert report.chapters == 10 and report.books == 5 and not report.skipped and not report.errors
    assert report.train_chapters + report.val_chapters == 10 and report.val_chapters == 2
    everything = "".join(r["text"] for r in rows["train"] + rows["val"])
    assert "甄士隐" in everything and "贾夫人仙逝扬州城" in everything  # GBK text decoded right
    jsonl_rows = [r for r in rows["train"] + rows["val"] if r["source"].endswith("e.jsonl")]
    assert jsonl_rows and all(r["author"] == "曹雪芹" and r["tags"] == ["红楼"] for r in jsonl_rows)
    from datasets import load_dataset  # the outputs load as plain columns

    train = load_dataset("json", data_files=str(out / "train" / "train.jsonl"), split="train")
    assert {k: str(v) for k, v in train.features.items() if k in ("text", "author", "tags")} == {
        "text": "Value('string')", "author": "Value('string')", "tags": "List(Value('string'))"}
    saved = json.loads((out / "prepared" / "report.json").read_text(encoding="utf-8"))
    assert saved["chapters"] == 10 and saved["files"][0]["encoding"] == "gb18030"
    assert {"paragraphs_dropped", "chapters_exact", "chapters_near"} <= set(saved["duplicates"])
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_read(tmp_path, corpus, tiny_tokenizer):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = chapters_of(corpus, 1, 3).encode("utf-8")
    (raw / "good.txt").write_bytes(good)
    other = chapters_of(corpus, 4, 4).encode("utf-8")
    cut = other.index(b"\n", 3000) + 1
    (raw / "corrupt.txt").write_bytes(other[:cut] + b"\xff\xff" + other[cut:])
    (raw / "empty.txt").write_bytes(b"")
    (raw / "blank.txt").write_text("\n\u3000\u3000\n  \n", encoding="utf-8")
    (raw / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (raw / "nul.txt").write_bytes(bytes(range(256)) * 8)
    (raw / "notext.jsonl").write_text('{"title": "x", "author": "y"}\n', encoding="utf-8")
    (raw / "broken.jsonl").write_text(
        json.dumps({"title": "第1章 一", "content": "第一章的正文内容。" * 10}, ensure_ascii=False) + "\n"
        + '{"title": "第2章", "content": \n'
        + json.dumps({"title": "第3章 三", "content": "第三章的正文内容。" * 10}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (raw / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (raw / "timeless.srt").write_text("1\n没有时间轴的字幕。\n\n2\n也没有。\n", encoding="utf-8")
    (raw / "renamed.xlsx").write_bytes(good)  # text under a workbook's name
    zipfile.ZipFile(raw / "hollow.xlsx", "w").writestr("readme.txt", "a ZIP, but no workbook inside")
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["title", "content"])
    for i in (5, 6):
        wb.active.append([f"第{i}回", chapters_of(corpus, i, i).split("\n", 1)[1]])
    wb.save(raw / "chapters.xlsx")
    report, rows, _ = run(tmp_path, [raw], tiny_tokenizer, chunk_size=256)

    reasons = {Path(s["file"]).name: s for s in report.skipped}
    assert set(reasons) == {"corrupt.txt", "empty.txt", "blank.txt", "image.txt", "nul.txt", "notext.jsonl",
                            "cover.jpg", "renamed.xlsx", "hollow.xlsx", "timeless.srt"}
    assert "no subtitle cues" in reasons["timeless.srt"]["reason"] and "timeless.srt:2" in reasons["timeless.srt"]["reason"]
    assert "not an Excel workbook" in reasons["renamed.xlsx"]["reason"]
    assert "not a readable Excel workbook" in reasons["hollow.xlsx"]["reason"]
    assert reasons["corrupt.txt"]["byte_offset"] == cut and f"byte offset {cut}" in reasons["corrupt.txt"]["reason"]
    assert "empty" in reasons["empty.txt"]["reason"] and "empty" in reasons["blank.txt"]["reason"]
    assert "binary" in reasons["image.txt"]["reason"] and "binary" in reasons["nul.txt"]["reason"]
    assert "no text field" in reasons["notext.jsonl"]["reason"]
    assert "unsupported" in reasons["cover.jpg"]["reason"]
    assert [e["reason"].split(": ")[0] for e in report.errors] == [f"{raw / 'broken.jsonl'}:2"]
    assert {Path(f["file"]).name: f["chapters"] for f in report.files} == {"good.txt": 3, "broken.jsonl": 2,
                                                                           "chapters.xlsx": 2}


def test_a_lone_surrogate_in_a_json_record_does_not_stop_the_run(tmp_path, tiny_tokenizer):
    f = tmp_path / "book.jsonl"
    f.write_text("".join(json.dumps({"title": f"第{i}章", "content": f"这是正文{i}，" + ("\ud800" if i == 2 else "")
                                     + "足够长的一段。"}) + "\n" for i in range(1, 5)), encoding="utf-8")
    report, rows, _ = run(tmp_path, [f], tiny_tokenizer, chunk_size=64, overlap=8, val_split=0)
    assert report.chapters == 4 and [e["line"] for e in report.errors] == [2]
    assert any("\ufffd" in r["text"] for r in rows["train"])


def test_earlier_outputs_under_the_input_folder_are_not_read_again(tmp_path, corpus, tiny_tokenizer):
    """`prepare --input data/` finds data/train and data/val: reading them back would put the
    validation chunks into training."""
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "book.txt").write_text(chapters_of(corpus, 1, 10), encoding="utf-8")
    kw = dict(train_dir=data / "train", val_dir=data / "val", report_dir=data / "prepared", progress=None,
              progress_bar=False, chunk_size=256, val_split=0.2)
    first = prepare([data / "raw"], tiny_tokenizer, **kw)
    again = prepare([data], tiny_tokenizer, **kw)
    assert (again.chapters, again.train_chunks, again.val_chunks) == (first.chapters, first.train_chunks,
                                                                       first.val_chunks)
    assert sorted(Path(s["file"]).name for s in again.skipped) == ["instruct.jsonl", "instruct.jsonl",
                                                                   "report.json", "train.jsonl", "val.jsonl"]


def test_nothing_usable_is_a_clear_error(tmp_path, tiny_tokenizer):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(PrepareError, match="(?s)no usable text.*empty file"):
        run(tmp_path, [tmp_path / "empty.txt"], tiny_tokenizer)
    with pytest.raises(PrepareError, match="input not found"):
        run(tmp_path, [tmp_path / "missing"], tiny_tokenizer)


def test_unwritable_output_is_a_clear_error_and_nothing_is_half_written(tmp_path, corpus, tiny_tokenizer):
    src = tmp_path / "book.txt"
    src.write_text(chapters_of(corpus, 1, 3), encoding="utf-8")
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "train.jsonl").write_text('{"text": "old"}\n', encoding="utf-8")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(PrepareError, match=f"output folder {blocker / 'val'} is not writable"):
        prepare([src], tiny_tokenizer, train_dir=out / "train", val_dir=blocker / "val", report_dir=out / "prepared",
                progress=None, progress_bar=False)
    assert [p.name for p in (out / "train").iterdir()] == ["train.jsonl"]  # no temp file, old output intact
    assert (out / "train" / "train.jsonl").read_text(encoding="utf-8") == '{"text": "old"}\n'

    class Exploding:  # fails half-way, after reading started
        name_or_path = "exploding"
        chat_template = None

        def __call__(self, texts, **kw):
            if isinstance(texts, list) and len(texts) > 1:
                raise RuntimeError("tokenizer crashed")
            return {"input_ids": [[1]] * (len(texts) if isinstance(texts, list) else 1)}

    with pytest.raises(RuntimeError, match="crashed"):
        prepare([src], Exploding(), train_dir=out / "train", val_dir=out / "val", report_dir=out / "prepared",
                progress=None, progress_bar=False)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "prepared", "train", "train/train.jsonl", "val"]
    assert (out / "train" / "train.jsonl").read_text(encoding="utf-8") == '{"text": "old"}\n'


def test_chunks_fit_overlap_and_keep_titles_with_text(tmp_path, corpus, tiny_tokenizer):
    src = tmp_path / "book.txt"
    src.write_text(chapters_of(corpus, 1, 6), encoding="utf-8")
    report, rows, _ = run(tmp_path, [src], tiny_tokenizer, chunk_size=128, overlap=32, val_split=0)
    assert report.val_chunks == 0 and rows["val"] == []
    by_chapter: dict = {}
    for r in rows["train"]:
        true = len(tiny_tokenizer(r["text"], add_special_tokens=False).input_ids)
        assert true <= 128 and abs(true - r["tokens"]) <= 2, (true, r)
        by_chapter.setdefault(r["chapter"], []).append(r)
    assert len(by_chapter) == 6
    overlapping = 0
    for title, parts in by_chapter.items():
        assert [p["part"] for p in parts] == list(range(len(parts)))
        head, *body = parts[0]["text"].split("\n")
        assert head == title and body and body[0]  # the title heads its chunk, with text under it
        assert title.startswith("第") and all(title not in p["text"] for p in parts[1:])
        for a, b in zip(parts, parts[1:]):
            overlapping += b["text"].split("\n")[0] in a["text"].split("\n")
    assert overlapping > 0
    assert report.train_tokens == sum(r["tokens"] for r in rows["train"])
    no_overlap, rows0, _ = run(tmp_path / "b", [src], tiny_tokenizer, chunk_size=128, overlap=0, val_split=0)
    assert no_overlap.train_tokens < report.train_tokens


def test_validation_is_whole_chapters_seeded_and_never_leaks(tmp_path, corpus, tiny_tokenizer):
    src = tmp_path / "book.txt"
    src.write_text(chapters_of(corpus, 1, 20), encoding="utf-8")
    report, rows, _ = run(tmp_path / "a", [src], tiny_tokenizer, chunk_size=256, val_split=0.2, seed=7)
    train_ch = {r["chapter"] for r in rows["train"]}
    val_ch = {r["chapter"] for r in rows["val"]}
    assert len(val_ch) == 4 and len(train_ch) == 16 and not train_ch & val_ch
    assert {r["chapter"] for r in rows["train_instruct"]} == train_ch
    assert {r["chapter"] for r in rows["val_instruct"]} == val_ch
    train_text = "\n".join(r["text"] for r in rows["train"]) + "".join(
        r["prompt"] + r["completion"] for r in rows["train_instruct"])
    for r in rows["val"]:
        for para in r["text"].split("\n"):
            assert len(para) < 30 or para not in train_text
    again, rows2, _ = run(tmp_path / "b", [src], tiny_tokenizer, chunk_size=256, val_split=0.2, seed=7)
    assert {r["chapter"] for r in rows2["val"]} == val_ch
    other, rows3, _ = run(tmp_path / "c", [src], tiny_tokenizer, chunk_size=256, val_split=0.2, seed=8)
    assert {r["chapter"] for r in rows3["val"]} != val_ch


def test_split_by_book(tmp_path, corpus, tiny_tokenizer):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(5):
        (raw / f"book{i}.txt").write_text(chapters_of(corpus, 2 * i + 1, 2 * i + 2), encoding="utf-8")
    report, rows, _ = run(tmp_path, [raw], tiny_tokenizer, chunk_size=256, val_split=0.2, split_by="book")
    assert report.split_by == "book" and report.books == 5
    assert len({r["book"] for r in rows["val"]}) == 1 and not {r["book"] for r in rows["val"]} & {
        r["book"] for r in rows["train"]}


def test_duplicates_and_boilerplate_are_dropped_and_counted(tmp_path, corpus, tiny_tokenizer):
    raw = tmp_path / "raw"
    raw.mkdir()
    text = chapters_of(corpus, 1, 3)
    (raw / "a.txt").write_text(text, encoding="utf-8")
    (raw / "a_copy_gbk.txt").write_bytes(text.encode("gbk"))  # the same book, another encoding
    ads = "\n".join(["第四回 薄命女偏逢薄命郎 葫芦僧乱判葫芦案", "　　天才一秒记住本站地址：www.example.com",
                     chapters_of(corpus, 4, 4).split("\n", 1)[1].replace("。", "。\n广告：加群领福利\n", 3),
                     "（本章完）", "求月票！"])
    (raw / "b.txt").write_text(ads, encoding="utf-8")
    report, rows, _ = run(tmp_path, [raw], tiny_tokenizer, chunk_size=256, val_split=0,
                          extra_boilerplate_patterns=[r"广告：加群领福利"])
    assert report.chapters == 4 and report.duplicates["chapters_exact"] == 3
    assert report.boilerplate["lines_dropped"] >= 5
    text_out = "".join(r["text"] for r in rows["train"])
    for junk in ("www.", "本章完", "求月票", "广告"):
        assert junk not in text_out
    assert {Path(f["file"]).name: f["chapters"] for f in report.files} == {"a.txt": 3, "a_copy_gbk.txt": 0,
                                                                          "b.txt": 1}


def test_instruction_pairs_use_the_write_tab_template(tmp_path, corpus, tiny_tokenizer):
    src = tmp_path / "book.txt"
    src.write_text(chapters_of(corpus, 1, 2), encoding="utf-8")
    auto, _, _ = run(tmp_path / "auto", [src], tiny_tokenizer, chunk_size=200, val_split=0)
    assert auto.prompt_format == "plain"  # as the engine decides: not an instruct model's name
    report, rows, _ = run(tmp_path, [src], tiny_tokenizer, chunk_size=200, val_split=0, model_name="tiny-instruct")
    pairs = rows["train_instruct"]
    assert report.prompt_format == "chat" and report.train_instruct == len(pairs) == report.train_chunks
    first = pairs[0]
    assert first["prompt"] == render(tiny_tokenizer, "chat", DEFAULT_SYSTEM, [], "", first["chapter"])
    later = pairs[1]
    assert "【前文】" in later["prompt"] and "续写下文" in later["prompt"]
    story = later["prompt"].split("【前文】\n", 1)[1].split("\n\n【要求】", 1)[0]
    assert later["prompt"] == render(tiny_tokenizer, "chat", DEFAULT_SYSTEM, [], story, "续写下文")
    assert story in first["completion"] and later["completion"] and later["completion"] not in first["completion"]

    plain, prow, _ = run(tmp_path / "plain", [src], tiny_tokenizer, chunk_size=200, val_split=0,
                         prompt_format="plain", system="写小说。")
    p = prow["train_instruct"][1]
    assert p["prompt"].startswith("写小说。\n\n【要求】\n续写下文\n\n【正文】\n") and p["completion"].startswith("\n")
    _, none, out = run(tmp_path / "plain", [src], tiny_tokenizer, chunk_size=200, val_split=0, instructions=False)
    assert not (out / "train" / "instruct.jsonl").exists()  # the earlier run's pairs are gone too


def test_prompt_maker_matches_render_for_any_text(tiny_tokenizer):
    for fmt in ("chat", "plain"):
        make = PromptMaker(tiny_tokenizer, fmt, "系统")
        for story, instr in [("", "第一回"), ("前文\n两行", "续写下文"), ("含{{花括号}}与\\反斜杠", "要求 $1"), ("", "")]:
            assert make(story, instr) == render(tiny_tokenizer, fmt, "系统", [], story, instr)


def test_bundled_sample_and_progress_output(tmp_path, tiny_tokenizer, capsys):
    messages = []
    report, rows, _ = run(tmp_path, [SAMPLE_TEXT], tiny_tokenizer, chunk_size=256, val_split=0.2,
                          progress=messages.append, progress_bar=True)
    assert report.chapters == 5 and report.val_chapters == 1 and report.train_chunks and report.val_chunks
    assert any("sample_hongloumeng" in m and "utf-8" in m for m in messages)
    assert "prepare" in capsys.readouterr().err  # the tqdm bar over bytes


def test_fast_counter_agrees_with_the_tokenizer_on_the_whole_corpus(corpus, tiny_tokenizer, monkeypatch):
    import sys

    from inkstone.data.tokens import TokenCounter

    paragraphs = [p for p in corpus.read_text(encoding="utf-8").splitlines() if p.strip()]
    reference = [len(e) for e in tiny_tokenizer.backend_tokenizer.encode_batch(paragraphs, add_special_tokens=False)]
    counter = TokenCounter(tiny_tokenizer)
    assert counter.wait_fast(60)
    assert counter.count(paragraphs) == reference and counter.used["fastokens"] == len(paragraphs)
    assert counter.count_here(paragraphs[:50]) == reference[:50]
    monkeypatch.setitem(sys.modules, "fastokens", None)  # not installed: the tokenizers library counts
    from inkstone.data import tokens

    monkeypatch.setattr(tokens, "_FAST", {})
    small_job = TokenCounter(tiny_tokenizer, load_fast=False)  # a short job does not pay for loading it
    assert not small_job.wait_fast(0) and small_job.count(paragraphs[:20]) == reference[:20]
    assert small_job.engine == "tokenizers" and tokens._FAST == {}
    small_job.close()
    plain = TokenCounter(tiny_tokenizer)
    assert not plain.wait_fast(60)
    assert plain.count(paragraphs[:200]) == reference[:200] and plain.engine == "tokenizers"
    plain.close()


def test_bench_prepare_reports_speed_and_memory(tmp_path, corpus, tiny_tokenizer):
    from inkstone.bench.prepare import _child, bench_prepare, make_big_input

    small = tmp_path / "small.txt"
    small.write_text(chapters_of(corpus, 1, 5), encoding="utf-8")
    result = bench_prepare(small, tiny_tokenizer, tmp_path / "bench.json", big_mb=0, repeats=1)
    assert result["mb_per_s"] > 0 and result["counting_only_mb_per_s"] > 0 and result["chapters"] == 5
    assert result["tokenizers_library_only_mb_per_s"] > 0 and result["token_counter"] == "fastokens"
    assert json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["mb_per_s"] == result["mb_per_s"]
    # The big-input half, in this process (bench_prepare runs it in a child so the peak is prepare's own).
    big = tmp_path / "big.txt"
    assert make_big_input(corpus, big, 0.3) >= 300_000 and big.read_text(encoding="utf-8").startswith("第1回")
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    child = _child(str(tmp_path / "tok"), str(big), str(tmp_path / "big-out"))
    assert child["peak_rss_mb"] >= child["baseline_rss_mb"] > 0 and child["chapters"] > 5


@pytest.mark.skipif(not (GEMMA / "tokenizer.json").is_file(), reason="no local Gemma tokenizer")
def test_with_a_real_gemma_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(GEMMA)
    report, rows, _ = run(tmp_path, [SAMPLE_TEXT], tok, chunk_size=512, val_split=0.2)
    assert report.chapters == 5
    for r in rows["train"] + rows["val"]:
        true = len(tok(r["text"], add_special_tokens=False).input_ids)
        assert true <= 512 + 8 and abs(true - r["tokens"]) <= max(8, true // 50)
