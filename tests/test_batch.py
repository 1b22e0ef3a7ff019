"""Batch writing through the real engine: formats, broken lines, resuming, the bench."""
import io
import json

import pytest
from tqdm import tqdm

from inkstone.engine.contract import GenerationParams, Text
from inkstone.prompting import PromptRequest
from inkstone.writing.batch import BatchError, bench_batch, read_items, run_batch

# Seeded sampling is reproducible; greedy, the random tiny model writes only newlines after this prompt.
SEEDED = GenerationParams(temperature=1.0, seed=1, max_tokens=8, repetition_penalty=1.0)
OUTLINE = ["写宝玉初见黛玉", "写凤姐协理宁国府", "写刘姥姥进大观园", "写晴雯撕扇", "写黛玉葬花"]


# ---- input reading (no engine) ----------------------------------------------------------------
def test_jsonl_problems_are_reported_by_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "写宝玉"}\n\n{"prompt": \n{"text": "x"}\n{"prompt": "写黛玉", "id": 7}\n',
                   encoding="utf-8")
    items, bad = read_items(src)
    assert [(i.line, i.prompt, i.id) for i in items] == [(1, "写宝玉", None), (5, "写黛玉", "7")]
    assert [n for n, _ in bad] == [3, 4] and "JSON" in bad[0][1] and '"prompt"' in bad[1][1]


def test_unusable_inputs_name_the_file(tmp_path):
    with pytest.raises(BatchError, match=r"\.csv"):
        read_items(tmp_path / "prompts.csv")
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("写宝玉\n写黛玉\n".encode("utf-8") + "写晴雯".encode("gbk"))
    with pytest.raises(BatchError, match=r"gbk.txt, line 3: not UTF-8"):
        read_items(gbk)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"empty.txt: no prompts"):
        read_items(empty)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"prompt": "写\\ud800宝玉"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"odd.jsonl: no prompts to write from \(line 1: holds an unpaired"):
        read_items(odd)


# ---- generation ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_txt_to_markdown_in_order_then_rerun_skips_everything(rt, tmp_path):
    src = tmp_path / "outline.txt"
    src.write_text("\n".join(OUTLINE[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out.md"
    bar = tqdm(file=io.StringIO())
    report = run_batch(rt.studio, src, out, params=SEEDED, progress=bar)
    assert (report.generated, report.skipped, report.ok) == (3, 0, True) and bar.n == 3 and bar.total == 3
    md = out.read_text(encoding="utf-8")
    assert [md.index(f"## {n}. {p}") for n, p in enumerate(OUTLINE[:3], 1)] == sorted(
        md.index(f"## {n}. {p}") for n, p in enumerate(OUTLINE[:3], 1))
    # the same text the Write tab's path gives for that instruction
    expected = "".join(e.text for e in rt.studio.write(PromptRequest(instruction=OUTLINE[1], use_memory=False,
                                                                     max_tokens=SEEDED.max_tokens),
                                                       SEEDED) if isinstance(e, Text)).strip()
    assert expected and expected in md

    again = run_batch(rt.studio, src, out, params=SEEDED)
    assert (again.generated, again.skipped) == (0, 3) and out.read_text(encoding="utf-8") == md


@pytest.mark.slow
def test_jsonl_broken_line_is_reported_and_the_rest_generated(rt, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"prompt": p, "id": f"c{i}"}, ensure_ascii=False) for i, p in enumerate(OUTLINE[:4])]
    lines.insert(2, '{"prompt": "写宝钗扑蝶"')  # line 3: cut short
    lines.append(json.dumps({"prompt": "写下去", "story_text": "字" * 3000}, ensure_ascii=False))  # line 6: too long
    lines.append(json.dumps({"prompt": "字" * 5000}, ensure_ascii=False))  # line 7: an instruction that cannot fit
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    report = run_batch(rt.studio, src, out, params=SEEDED)
    assert [n for n, _ in report.bad_lines] == [3]
    assert [n for n, _ in report.failed] == [7] and "tokens" in report.failed[0][1]
    assert report.generated == 5  # the long story on line 6 is cut to fit, as in Write
    recs = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 4, 5, 6]
    assert [r.get("id") for r in recs[:4]] == ["c0", "c1", "c2", "c3"]
    assert all(r["output_tokens"] > 0 and r["output"] for r in recs)


@pytest.mark.slow
def test_resume_after_a_crash_and_an_edited_line(rt, tmp_path):
    src = tmp_path / "outline.txt"
    src.write_text("\n".join(OUTLINE) + "\n", encoding="utf-8")
    out = tmp_path / "book.txt"
    first = run_batch(rt.studio, src, out, params=SEEDED)
    assert first.generated == 5
    sidecar = tmp_path / "book.txt.done.jsonl"
    recs = sidecar.read_text(encoding="utf-8").splitlines()
    # as if the run had died: two records, the second cut mid-write
    sidecar.write_text(recs[0] + "\n" + recs[1][:20], encoding="utf-8")
    edited = OUTLINE[:]
    edited[4] = "写宝钗扑蝶"
    src.write_text("\n".join(edited) + "\n", encoding="utf-8")
    second = run_batch(rt.studio, src, out, params=SEEDED)
    assert (second.generated, second.skipped) == (4, 1)
    keys = {(json.loads(l)["line"], json.loads(l)["prompt"]) for l in sidecar.read_text(encoding="utf-8").splitlines()}
    assert (5, "写宝钗扑蝶") in keys
    text = out.read_text(encoding="utf-8")
    assert all(json.loads(r)["output"].strip() in text for r in sidecar.read_text(encoding="utf-8").splitlines())
    assert run_batch(rt.studio, src, out, params=SEEDED).generated == 0


@pytest.mark.slow
def test_bench_reports_concurrent_vs_sequential(rt):
    result = bench_batch(rt.studio, n=8, max_tokens=8)
    assert result["n"] == 8 and result["ratio"] > 0
    assert 0 < result["tokens"]["concurrent"] <= 64 and 0 < result["tokens"]["sequential"] <= 64
