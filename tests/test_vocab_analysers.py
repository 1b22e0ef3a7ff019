"""Word lists and the real analysers (Sudachi, jieba, lemminflect): which target words a text
uses and how, conjugations, words the analyser splits, and bad lists."""
import jieba
import pytest

from inkstone.vocab.analysers import analyser_for
from inkstone.vocab.loop import plan
from inkstone.vocab.matching import analyse
from inkstone.vocab.metrics import story_metrics
from inkstone.vocab.wordlists import VocabError, Word, choose_words, load_level, read_word_file


def report(text, words, lang):
    ws = [Word(w) for w in words]
    analysis = analyse(text, ws, analyser_for(lang, [f for w in ws for f in w.forms]))
    return analysis, {r.word: r.match for r in analysis.results}


# ---- Japanese -------------------------------------------------------------------------------------
def test_japanese_conjugated_forms_count_by_lemma():
    _, found = report("昨日はパンを食べた。友だちは来なかったが、たべましたよ。駅まで走っていった。",
                      ["食べる", "来る", "走る", "泳ぐ"], "ja")
    assert found == {"食べる": "lemma", "来る": "lemma", "走る": "lemma", "泳ぐ": None}


def test_japanese_kana_word_written_in_kanji_counts_by_reading_but_a_homophone_does_not():
    _, found = report("彼は相変わらず忙しい。箸を落とした。", ["あいかわらず", "橋", "忙しい"], "ja")
    assert found == {"あいかわらず": "reading", "橋": None, "忙しい": "lemma"}


def test_japanese_split_word_is_matched_by_surface_and_said_so():
    analysis, found = report("一昨日、図書館で勉強した。", ["一昨日", "勉強する", "国際連合"], "ja")
    assert found == {"一昨日": "surface", "勉強する": "lemma", "国際連合": None}
    split = {r.word: r.units for r in analysis.results if r.split}
    assert split == {"一昨日": ["一昨", "日"], "勉強する": ["勉強", "する"]}
    assert any(n.startswith("一昨日: the analyser splits it into 一昨 | 日") for n in analysis.notes())
    assert analysis.results[0].as_json() == {"word": "一昨日", "used": True, "match": "surface",
                                             "split": ["一昨", "日"]}


def test_listed_spellings_all_count():
    _, found = report("いいアイディアだ。", ["アイデア/アイディア", "丸い/円い"], "ja")
    assert found == {"アイデア/アイディア": "lemma", "丸い/円い": None}


# ---- Chinese --------------------------------------------------------------------------------------
def test_chinese_targets_join_a_private_dictionary_before_segmenting():
    text = "他出门前带上充电宝，骑共享单车去学校。我们是学生。"
    analysis, found = report(text, ["充电宝", "共享单车", "学", "学校"], "zh")
    # 学 inside 学生 is another word; the added words are cut out whole, so they match by lemma.
    assert found == {"充电宝": "lemma", "共享单车": "lemma", "学": None, "学校": "lemma"}
    assert not any(r.split for r in analysis.results)
    assert "充电宝" not in jieba.lcut(text)  # the global tokenizer is left as it was


def test_chinese_word_jieba_cannot_keep_whole_is_matched_by_surface():
    # jieba cuts at the middle dot even after the word is added to its dictionary.
    analysis, found = report("她在读哈利·波特。", ["哈利·波特", "再见"], "zh")
    assert found == {"哈利·波特": "surface", "再见": None}
    assert analysis.results[0].units == ["哈利", "·", "波特"]


# ---- English --------------------------------------------------------------------------------------
def test_english_inflections_count_and_a_listed_word_is_its_own_lemma():
    _, found = report("The children ran home. She gave up at last. It was good.",
                      ["run", "child", "give up", "better", "home", "mouse"], "en")
    assert found == {"run": "lemma", "child": "lemma", "give up": "lemma", "better": None, "home": "lemma",
                     "mouse": None}
    _, found = report("Never give up.", ["give up"], "en")
    assert found == {"give up": "surface"}


# ---- metrics --------------------------------------------------------------------------------------
def test_metrics_count_hits_per_content_token_and_words_above_the_level():
    text = "我今天很高兴。我们一丝不苟地工作。"
    analysis, _ = report(text, ["高兴", "今天"], "zh")
    m = story_metrics(text, analysis, "zh", "1")
    assert (m["coverage"], m["used"], m["targets"]) == (1.0, 2, 2)
    content = [t for t in analysis.tokens if t.content]
    assert m["content_tokens"] == len(content) and m["density"] == round(200 / len(content), 2)
    assert m["length"] == len(text) and m["length_unit"] == "characters"
    assert "一丝不苟" in m["above_level"] and "高兴" not in m["above_level"] and "我" not in m["above_level"]


def test_english_metrics_have_no_level_and_count_words():
    text = "The dog ran. The dog slept."
    analysis, _ = report(text, ["dog", "cat"], "en")
    m = story_metrics(text, analysis, "en")
    assert m["coverage"] == 0.5 and m["length"] == 6 and m["density"] == round(200 / 6, 2)
    assert "above_level" not in m


# ---- lists ----------------------------------------------------------------------------------------
def test_levels_draw_reproducibly_and_hsk_bands_levels_7_to_9():
    a = choose_words("ja", level="n1", n=20, seed=3)
    assert a.source == "JLPT N1" and len(a.words) == 20 and all(w.level == "N1" for w in a.words)
    assert [w.word for w in a.words] == [w.word for w in choose_words("ja", level="N1", n=20, seed=3).words]
    assert [w.word for w in a.words] != [w.word for w in choose_words("ja", level="N1", n=20, seed=4).words]
    assert load_level("zh", 8).level == "7-9" and load_level("zh", "HSK4").level == "4"
    with pytest.raises(VocabError, match="no built-in en levels"):
        choose_words("en", level="3")
    with pytest.raises(VocabError, match="JLPT level must be one of"):
        load_level("ja", "N6")


def test_own_list_txt_and_csv_with_readings_meanings_and_duplicates(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("# my words\n食べる\tたべる\tto eat\n\n飲む\n食べる\n", encoding="utf-8")
    words = read_word_file(txt, "ja")
    assert [(w.word, w.reading, w.meaning) for w in words.words] == [("食べる", "たべる", "to eat"), ("飲む", "", "")]
    assert any("1 repeated words removed (食べる)" in w for w in words.warnings)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("高兴\n今天\n".encode("gb18030"))  # lists saved by Chinese Windows tools
    assert [w.word for w in read_word_file(gbk, "zh").words] == ["高兴", "今天"]
    csv = tmp_path / "mine.csv"
    csv.write_text("word,reading,meaning\n高兴,gāoxìng,glad\n\"今天\",,today\n", encoding="utf-8")
    assert [(w.word, w.meaning) for w in read_word_file(csv, "zh").words] == [("高兴", "glad"), ("今天", "today")]
    picked = choose_words("ja", words_file=txt, wanted=["飲む"])
    assert [w.word for w in picked.words] == ["飲む"]
    with pytest.raises(VocabError, match="not in the list: 寝る"):
        choose_words("ja", words_file=txt, wanted=["寝る"])


def test_bad_lists_are_clear_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n  \n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"empty.txt: the word list is empty"):
        read_word_file(empty, "en")
    binary = tmp_path / "words.txt"
    binary.write_bytes("高兴\n今天\n".encode("utf-8") + b"\x00\x01\x02")
    with pytest.raises(VocabError, match=r"words.txt, line 3: not a text file \(binary file \(NUL byte at byte"):
        read_word_file(binary, "zh")
    with pytest.raises(VocabError, match=r"missing.txt: cannot read"):
        read_word_file(tmp_path / "missing.txt", "zh")


def test_a_list_in_another_language_is_warned_about(tmp_path):
    chinese = tmp_path / "zh.txt"
    chinese.write_text("高兴\n今天\nhello\n", encoding="utf-8")
    words = read_word_file(chinese, "en")
    assert any("2 of 3 words do not look like en" in w and "is --lang right?" in w for w in words.warnings)
    assert not read_word_file(chinese, "zh").warnings  # one stray word is not a wrong list


def test_plan_groups_words_by_paragraph():
    assert [len(g) for g in plan([str(i) for i in range(20)])] == [10, 10]
    assert [len(g) for g in plan([str(i) for i in range(25)])] == [9, 8, 8]
    assert [len(g) for g in plan(["a", "b", "c"])] == [3]
    assert sum(plan([str(i) for i in range(31)]), []) == [str(i) for i in range(31)]


def test_a_copy_of_the_word_list_is_not_a_use():
    text = "第1段：九、休息、他们、星期、吃\n他们星期天休息。"
    analysis, found = report(text, ["九", "休息", "他们", "星期", "吃"], "zh")
    assert found == {"九": None, "休息": "lemma", "他们": "lemma", "星期": None, "吃": None}
    assert analysis.echoes == [(4, 16)] and "copies the word list 1 time(s)" in analysis.notes()[0]
    assert [r.hits for r in analysis.results if r.used] == [1, 1]  # the list's copies are not hits either
    _, found = report("I bought coffee, books, and a rain coat.", ["coffee", "book", "rain", "coat"], "en")
    assert all(found.values())  # a short list in a sentence is prose
