"""prepare's building blocks on real files: encodings, formats, chapters, cleaning, duplicates, chunk packing."""
import json
from pathlib import Path

import pytest

from inkstone.data.chapters import HeadingMatcher, cn_to_int, split_chapters
from inkstone.data.chunking import pack, span_tokens
from inkstone.data.cleaning import Cleaner
from inkstone.data.dedup import NOISE_RANGES, Deduper, paragraph_keys
from inkstone.data.encoding import UndecodableError, detect, iter_lines, validate
from inkstone.data.readers import FileIssues, discover, read_documents

# Common simplified -> traditional pairs, enough to turn a corpus excerpt into Big5-encodable text.
S2T = str.maketrans(
    "说这们个来时为会国对后过还里么从见问开关头听话将进样与边间当发经现点无动儿长门马东两给让几宝贾凤钗梦红楼书记读"
    "却爷亲妈环众实处虽带谁请闻难乐陈张刘袭贵认识随归欢应该觉观买卖写岁钱银语误许谢让轻车辞离罢",
    "說這們個來時為會國對後過還裏麼從見問開關頭聽話將進樣與邊間當發經現點無動兒長門馬東兩給讓幾寶賈鳳釵夢紅樓書記讀"
    "卻爺親媽環眾實處雖帶誰請聞難樂陳張劉襲貴認識隨歸歡應該覺觀買賣寫歲錢銀語誤許謝讓輕車辭離罷",
)


def excerpt(corpus, start=0, chars=20000) -> str:
    return corpus.read_text(encoding="utf-8")[start:start + chars]


def to_big5_text(text: str) -> str:
    out = []
    for ch in text.translate(S2T):
        try:
            ch.encode("big5")
            out.append(ch)
        except UnicodeEncodeError:
            pass
    return "".join(out)


# -- encodings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("codec,expected", [
    ("utf-8", {"utf-8"}), ("utf-8-sig", {"utf-8-sig"}), ("gbk", {"gb18030"}), ("gb18030", {"gb18030"}),
    ("utf-16", {"utf-16"}), ("utf-16-le", {"utf-16-le"}), ("utf-16-be", {"utf-16-be"}),
])
def test_chinese_text_encodings_are_detected(tmp_path, corpus, codec, expected):
    text = excerpt(corpus)
    f = tmp_path / f"book-{codec}.txt"
    f.write_bytes(text.encode(codec))
    det = detect(f)
    assert det.encoding in expected, det
    validate(f, det.encoding)
    assert f.read_bytes().decode(det.encoding).lstrip("\ufeff") == text


def test_big5_is_told_apart_from_gbk(tmp_path, corpus):
    """Big5 bytes also decode as GB18030 (to nonsense): the text-like decoding must win."""
    trad = to_big5_text(excerpt(corpus))
    f = tmp_path / "big5.txt"
    f.write_bytes(trad.encode("big5"))
    det = detect(f)
    assert det.encoding in ("big5", "cp950"), det
    assert f.read_bytes().decode(det.encoding) == trad
    g = tmp_path / "gbk.txt"
    g.write_bytes(excerpt(corpus).encode("gbk"))
    assert detect(g).encoding == "gb18030"


def test_undecodable_byte_is_reported_with_its_offset(tmp_path, corpus):
    good = corpus.read_bytes()[:600_000]
    good = good[:good.rfind(b"\n") + 1]
    for near in (1000, 400_000):  # inside the detection sample, and past it (found by validate)
        where = good.index(b"\n", near) + 1  # on a character boundary
        bad = good[:where] + b"\xff\xfe" + good[where:]
        f = tmp_path / f"bad{where}.txt"
        f.write_bytes(bad)
        with pytest.raises(UndecodableError) as err:
            validate(f, detect(f).encoding)
        assert err.value.offset == where and f"byte offset {where}" in str(err.value) and str(f) in str(err.value)


def test_binary_files_are_refused(tmp_path):
    png = tmp_path / "cover.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    with pytest.raises(UndecodableError, match="binary file"):
        detect(png)
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UndecodableError, match="binary"):
        detect(blob)
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes((i * 97 + 13) % 128 + 128 for i in range(5000)))
    with pytest.raises(UndecodableError, match="byte offset"):
        detect(noise)


# -- formats ---------------------------------------------------------------------------------------

def _docs(path, fmt):
    issues = FileIssues(path)
    docs = list(read_documents(path, fmt, detect(path).encoding, issues))
    return [(d.book, d.first_title, "\n".join(d.lines), d.meta) for d in docs], issues


def test_jsonl_broken_line_is_reported_and_the_rest_read(tmp_path):
    f = tmp_path / "novel.jsonl"
    rows = [json.dumps({"title": f"第{i}章 标题{i}", "content": f"正文{i}。" * 20, "author": "某人",
                        "tags": "武侠,江湖"}, ensure_ascii=False) for i in range(1, 4)]
    f.write_text("\n".join([rows[0], '{"title": "第9章", "content": "断', rows[1], "", rows[2]]) + "\n",
                 encoding="utf-8")
    docs, issues = _docs(f, "jsonl")
    assert [d[1] for d in docs] == ["第1章 标题1", "第2章 标题2", "第3章 标题3"]
    assert {d[0] for d in docs} == {"novel"}  # chapter-titled records are chapters of the file's book
    assert docs[0][3] == {"author": "某人", "tags": ["武侠", "江湖"]}
    assert len(issues.problems) == 1 and issues.problems[0]["reason"].startswith(f"{f}:2: not valid JSON")


def test_lone_surrogate_escapes_are_replaced_and_reported(tmp_path):
    """JSON may escape half of a surrogate pair (\\ud800): no tokenizer or UTF-8 file takes that."""
    f = tmp_path / "novel.jsonl"
    f.write_text('{"title": "第一章 \\udc00", "content": "正文\\ud800里面。", "tags": ["a\\udfff"]}\n'
                 '{"title": "第二章", "content": "配对的代理 \\ud83d\\ude00 没问题。"}\n', encoding="utf-8")
    docs, issues = _docs(f, "jsonl")
    assert [(d[1], d[2]) for d in docs] == [("第一章 \ufffd", "正文\ufffd里面。"), ("第二章", "配对的代理 😀 没问题。")]
    assert docs[0][3]["tags"] == ["a\ufffd"]
    assert [p["line"] for p in issues.problems] == [1] and "surrogate" in issues.problems[0]["reason"]


def test_json_nested_too_deeply_is_reported_not_raised(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    good = json.dumps({"title": "第1章 一", "content": "正文。"}, ensure_ascii=False)
    f = tmp_path / "deep.jsonl"
    f.write_text(f"{deep}\n{good}\n", encoding="utf-8")
    docs, issues = _docs(f, "jsonl")
    assert [d[1] for d in docs] == ["第1章 一"] and [p["line"] for p in issues.problems] == [1]
    assert "nested too deeply" in issues.problems[0]["reason"]
    g = tmp_path / "deep.json"
    g.write_text(f"[\n{good},\n{{\"content\": {deep}}},\n{good.replace('1', '2')}\n]", encoding="utf-8")
    docs, issues = _docs(g, "json")
    assert [d[1] for d in docs] == ["第1章 一", "第2章 一"] and [p["line"] for p in issues.problems] == [3]
    h = tmp_path / "one.json"
    h.write_text(deep, encoding="utf-8")
    docs, issues = _docs(h, "json")
    assert docs == [] and "nested too deeply" in issues.problems[0]["reason"]


def test_json_array_is_streamed_and_a_broken_record_skipped(tmp_path):
    f = tmp_path / "books.json"
    recs = [{"title": "书甲", "content": "第一章 开端\n甲的正文。\n第二章 后来\n甲的后文。", "genre": "仙侠"},
            {"title": "书乙", "content": "乙的正文。", "author": "作者乙"}]
    body = json.dumps(recs, ensure_ascii=False, indent=1)
    broken = body.replace('"title": "书乙"', '"title": "书乙" "oops"', 1)
    f.write_text(body[:-1] + ',\n {"title": "书丙", "content": "丙的正文。"}\n]', encoding="utf-8")
    docs, issues = _docs(f, "json")
    assert [d[0] for d in docs] == ["书甲", "书乙", "书丙"] and not issues.problems
    assert docs[0][3] == {"genre": "仙侠"}
    g = tmp_path / "broken.json"
    g.write_text(broken[:-1] + ',\n {"title": "书丙", "content": "丙的正文。"}\n]', encoding="utf-8")
    docs, issues = _docs(g, "json")
    assert [d[0] for d in docs] == ["书甲", "书丙"]
    assert len(issues.problems) == 1 and f"{g}:" in issues.problems[0]["reason"]


def test_csv_with_multiline_cells(tmp_path):
    f = tmp_path / "chapters.csv"
    f.write_text('title,content,author\n"第1章 起","第一段。\n第二段，有逗号。",甲\n"第2章 承","又一段。",甲\n',
                 encoding="gbk")
    docs, issues = _docs(f, "csv")
    assert [(d[1], d[2]) for d in docs] == [("第1章 起", "第一段。\n第二段，有逗号。"), ("第2章 承", "又一段。")]
    assert docs[0][3] == {"author": "甲"} and not issues.problems


def test_excel_workbook_rows_are_records(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "章节"
    ws.append([])  # a blank row before the header
    ws.append(["Title", "Content", "Author", "字数"])
    ws.append(["第1章 起", "第一段。\n第二段。", "甲", 8])
    ws.append([None, None, None, None])
    ws.append(["第2章 承", "又一段。", "甲", 4])
    ws.append(["第3章 转", None, "甲", 0])  # a row without its text
    notes = wb.create_sheet("备注")
    notes.append(["说明", "日期"])
    notes.append(["这一页没有正文列", "2024-01-01"])
    f = tmp_path / "book.xlsx"
    wb.save(f)
    issues = FileIssues(f)
    docs = list(read_documents(f, "xlsx", "utf-8", issues))
    assert [(d.first_title, "\n".join(d.lines), d.meta) for d in docs] == [
        ("第1章 起", "第一段。\n第二段。", {"author": "甲"}), ("第2章 承", "又一段。", {"author": "甲"})]
    assert issues.records == 3 and issues.no_text == 2
    assert [p["line"] for p in issues.problems] == ["章节!6", "备注!1"]
    assert issues.problems[0]["reason"].startswith(f"{f}:章节!6: no text field")


SRT = """1
00:00:01,000 --> 00:00:03,500
<i>宝玉笑道：</i>
“这个妹妹我曾见过的。”

2
00:00:04,000 --> 00:00:06,000
{\\an8}贾母笑道：“又胡说了。”

3
第三句没有时间轴。

4
00:00:09,000 -> 00:00:10,000
箭头写错了。

5
00:00:11,000 --> 00:00:12,000 X1:40
黛玉道：“我也这样想。”

6
00:00:13 --> 00:00:14
少了毫秒。
"""


def test_srt_cues_become_paragraphs_and_malformed_cues_are_reported(tmp_path):
    f = tmp_path / "红楼梦第一集.srt"
    f.write_text(SRT, encoding="gbk")
    docs, issues = _docs(f, "srt")
    assert docs == [("红楼梦第一集", None, "宝玉笑道： “这个妹妹我曾见过的。”\n贾母笑道：“又胡说了。”\n"
                                           "黛玉道：“我也这样想。”", {})]
    assert issues.records == 3 and [p["line"] for p in issues.problems] == [11, 14, 22]
    assert "found '第三句没有时间轴。'" in issues.problems[0]["reason"]
    assert "found '00:00:09,000 -> 00:00:10,000'" in issues.problems[1]["reason"]
    assert "does not parse" in issues.problems[2]["reason"]


def test_webvtt_and_ass_subtitles(tmp_path):
    vtt = tmp_path / "a.vtt"
    vtt.write_text("WEBVTT\n\nNOTE 这是注释\n\nintro\n00:01.000 --> 00:02.000 align:start\n<c.yellow>第一句。</c>\n\n"
                   "00:03.000 --> 00:04.500\n第二句，\n接着说。\n", encoding="utf-8")
    docs, issues = _docs(vtt, "srt")
    assert docs[0][2] == "第一句。\n第二句， 接着说。" and not issues.problems
    ass = tmp_path / "b.ass"
    ass.write_text("[Script Info]\nTitle: x\n\n[V4+ Styles]\nFormat: Name, Fontname\nStyle: Default,Arial\n\n"
                   "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
                   "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\i1}你好，世界{\\i0}\\N第二行\n"
                   "Comment: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,不读注释\n"
                   "Dialogue: 0,0:00:05.00,坏掉的一行\n", encoding="utf-16")
    docs, issues = _docs(ass, "ass")
    assert docs[0][2] == "你好，世界 第二行" and issues.records == 1
    assert [p["line"] for p in issues.problems] == [12] and "fields" in issues.problems[0]["reason"]


def test_record_metadata_gets_one_type_per_field(tmp_path):
    f = tmp_path / "mixed.jsonl"
    rows = [{"content": "一。", "author": 123, "tags": ["a", 1], "genre": ["仙侠", "言情"]},
            {"content": "二。", "author": "某人", "tags": "x，y z", "genre": {"main": "武侠"}}]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    docs, _ = _docs(f, "jsonl")
    assert [d[3] for d in docs] == [{"author": "123", "tags": ["a", "1"], "genre": "仙侠, 言情"},
                                    {"author": "某人", "tags": ["x", "y", "z"], "genre": '{"main": "武侠"}'}]


def test_records_without_text_field_are_counted(tmp_path):
    f = tmp_path / "meta.jsonl"
    f.write_text('{"title": "a", "author": "b"}\n{"name": "c"}\n', encoding="utf-8")
    docs, issues = _docs(f, "jsonl")
    assert docs == [] and issues.records == 2 and issues.no_text == 2


def test_discover_recurses_and_skips_unsupported(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.txt", "a/b/two.jsonl", "a/b/three.JSON", "a/four.xlsx", "cover.jpg", "old.xls", ".hidden.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    files, skipped = discover([tmp_path])
    assert [(f.name, fmt) for f, fmt in files] == [("three.JSON", "json"), ("two.jsonl", "jsonl"),
                                                   ("four.xlsx", "xlsx"), ("one.txt", "txt")]
    reasons = {Path(s["file"]).name: s["reason"] for s in skipped}
    assert set(reasons) == {"cover.jpg", "old.xls"} and "unsupported" in reasons["cover.jpg"]
    assert "save it as .xlsx or .csv" in reasons["old.xls"]


# -- chapters -------------------------------------------------------------------------------------

def test_chapter_headings():
    h = HeadingMatcher()
    for line in ["第一回 甄士隐梦幻识通灵", "第12章", "第一百零五章 大结局", "第３节 夜", "第二卷", "Chapter 7: Home",
                 "CHAPTER XII", "序章", "楔子", "番外 旧事"]:
        assert h(line), line
    for line in ["第二回了，他说。", "第三回合", "此开卷第一回也。", "后来他走了", "十分好看", "Chapters of life are long and winding."]:
        assert not h(line), line
    numbered = HeadingMatcher()
    assert [numbered(x) for x in ["1. 开始", "2、继续", "5. 跳号", "3 ", "三、列表"]] == [True, True, False, True, False]
    assert [cn_to_int(x) for x in ["十二", "一百零五", "两千", "１２"]] == [12, 105, 2000, 12]


def test_split_chapters_keeps_titles_and_merges_volume_headings():
    lines = ["书名：测试", "第一卷 风起", "", "第一章 少年", "　　正文一。", "第二章 离家", "　　正文二。", "　　正文三。"]
    chs = list(split_chapters(lines, "测试书"))
    assert [c.title for c in chs] == ["测试书", "第一卷 风起 第一章 少年", "第二章 离家"]
    assert [len([x for x in c.lines if x.strip()]) for c in chs] == [1, 1, 2]
    assert [c.title for c in split_chapters(["没有标题的一段。", "又一段。"], "无题")] == ["无题"]
    md = ["# 第一章 开端", "正文一。", "## Chapter 2: Home", "正文二。", "#话题标签不是标题。"]
    assert [(c.title, c.lines) for c in split_chapters(md, "md")] == [
        ("第一章 开端", ["正文一。"]), ("Chapter 2: Home", ["正文二。", "#话题标签不是标题。"])]


def test_long_heading_less_book_is_cut_into_sections():
    lines = ["这是一段没有标题的正文。"] * 1000  # 12 characters each
    chs = list(split_chapters(lines, "长书", max_chars=3000))
    assert {c.title for c in chs} == {"长书"} and [c.section for c in chs] == [0, 1, 2, 3]
    assert sum(len(c.lines) for c in chs) == 1000


# -- cleaning and duplicates -------------------------------------------------------------------------

def test_cleaning_normalises_whitespace_and_cuts_boilerplate():
    c = Cleaner(extra_patterns=[r"广告位招租[^。]*。?"])
    paras = c.paragraphs([
        "　　第一段。", "    第二段  有  空格。", "\u3000\u3000甲说。\u3000\u3000乙说。", "",
        "天才一秒记住本站地址：www.biquge.com 最快更新！", "他笑道：“你看http://x.cn/a就懂了。”",
        "（本章完）", "求月票！求推荐票！", "广告位招租，联系站长。", "正文\u200b里的零宽字符。",
    ])
    assert paras == ["第一段。", "第二段 有 空格。", "甲说。", "乙说。", "他笑道：“你看就懂了。”", "正文里的零宽字符。"]
    assert c.stats.boilerplate_lines == 4 and c.stats.boilerplate_cuts == 1
    # Each rule's cheap pre-test lets through every text that its expression would cut.
    lines = ["本章结束", "全文完", "未完待續", "跪求订阅", "拜求打賞！", "正文里夹着  双空格", "全角\u2003空格"]
    assert Cleaner().paragraphs(lines) == ["正文里夹着 双空格", "全角 空格"]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Cleaner(["(unclosed"])


def test_duplicates_exact_and_near():
    d = Deduper(min_chars=10)
    a = [f"这是第{i}段相当长的正文内容，用来测试重复段落的检测。" for i in range(10)]
    assert d.filter(a) == a
    assert d.filter(list(a)) is None  # the same chapter again
    near = [p.replace("，", ",") for p in a[:9]] + ["新写的一段完全不同的话，长度也足够长了。"]
    assert d.filter(near) is None  # 90% seen, punctuation aside
    mixed = ["全新的段落一，内容足够长，不会被误判。", a[3], "短句。", "短句。"]
    assert d.filter(mixed) == ["全新的段落一，内容足够长，不会被误判。", "短句。", "短句。"]
    assert (d.stats.chapters_exact, d.stats.chapters_near, d.stats.paragraphs) == (1, 1, 1)


def test_paragraph_keys_drop_spacing_and_punctuation_and_lower_case():
    assert paragraph_keys("“你好，World！”\n  Ａｂｃ ÄÖ…\n\n第三段") == ["你好world", "ａｂｃäö", "", "第三段"]
    # The table agrees with a plain character-by-character definition on the whole BMP.
    noise = {c for first, last in NOISE_RANGES for c in range(first, last + 1)}
    bmp = "".join(chr(c) for c in range(0x10000) if c != 0x0A)
    expected = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in bmp if ord(ch) not in noise)
    assert paragraph_keys(bmp) == [expected]
    assert paragraph_keys("a\ud800b 😀") == ["a\ud800b😀"]  # a lone surrogate from JSON does not break it


def test_iter_lines_reads_blocks_with_any_newline_and_caps_long_lines(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_bytes(("甲\r\n乙\r丙\n\n" + "长" * 2500 + "\r\n末").encode("utf-8"))
    seen = []
    lines = list(iter_lines(f, "utf-8", on_bytes=seen.append, max_line=1000))
    assert lines[:4] == ["甲", "乙", "丙", ""] and lines[-1] == "末"
    assert "".join(lines[4:-1]) == "长" * 2500 and max(map(len, lines)) <= 1000
    assert sum(seen) == f.stat().st_size  # the progress bar hears of every byte
    g = tmp_path / "g.txt"
    g.write_text("一\n二\n", encoding="utf-8")
    assert list(iter_lines(g, "utf-8")) == ["一", "二"]  # no empty line after the last newline
    # Lines of every length around the block size come back whole, however blocks cut them.
    rows = ["x" * n for n in (0, 1, 63, 64, 65, 127, 128, 129, 300, 1000)] * 3
    h = tmp_path / "h.txt"
    h.write_text("\n".join(rows), encoding="utf-8")
    assert list(iter_lines(h, "utf-8", max_line=10_000, block_chars=64)) == rows


def test_jsonl_record_longer_than_a_read_block_is_read_whole(tmp_path):
    book = "　　" + "宝玉笑道：“这个妹妹我曾见过的。”" * 70_000  # 1.2 M characters on one line
    f = tmp_path / "books.jsonl"
    f.write_text(json.dumps({"title": "红楼梦", "content": book}, ensure_ascii=False) + "\n"
                 + json.dumps({"title": "短篇", "content": "正文。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    docs, issues = _docs(f, "jsonl")
    assert [d[0] for d in docs] == ["红楼梦", "短篇"] and not issues.problems
    assert docs[0][2] == book


# -- chunk packing ---------------------------------------------------------------------------------------

def test_pack_respects_size_overlap_and_title():
    counts = [30, 50, 20, 40, 60, 10, 70, 25]
    spans = pack(counts, chunk_size=100, overlap=30, newline=1, head=12)
    assert spans[0].start == 0 and spans[0].end >= 1  # the title's chunk holds text
    for i, s in enumerate(spans):
        assert span_tokens(s, counts, 1, 12 if i == 0 else 0) <= 100
        assert s.start <= s.new < s.end
    assert spans[-1].end == len(counts)
    assert [s.new for s in spans[1:]] == [s.end for s in spans[:-1]]  # every paragraph once as new text
    assert any(s.start < s.new for s in spans[1:])  # and some overlap
    assert pack([500], chunk_size=100, overlap=0, newline=1, head=5)[0].end == 1  # never an empty chunk


def test_json_array_across_many_small_reads(tmp_path, monkeypatch):
    """Records straddling read boundaries, a long record, and a broken one in the middle."""
    import inkstone.data.readers as readers

    monkeypatch.setattr(readers, "READ_CHARS", 64)
    recs = [json.dumps({"title": f"书{i}", "content": f"第{i}本书的正文。" * (200 if i == 7 else 3)},
                       ensure_ascii=False, indent=2) for i in range(30)]
    recs[12] = recs[12].replace('"content"', '"content" "broken"')
    f = tmp_path / "many.json"
    f.write_text("[\n" + ",\n".join(recs) + "\n]\n", encoding="utf-8")
    docs, issues = _docs(f, "json")
    assert [d[0] for d in docs] == [f"书{i}" for i in range(30) if i != 12]
    assert len(docs[7][2]) == len("第7本书的正文。") * 200
    line_of_12 = 2 + sum(r.count("\n") + 1 for r in recs[:12])
    assert len(issues.problems) == 1 and issues.problems[0]["line"] in (line_of_12, line_of_12 + 1, line_of_12 + 2)
