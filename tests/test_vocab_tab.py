"""The Vocabulary tab: highlighting, and the tab through the running app (real engine)."""
import json

import pytest

from inkstone.vocab.analysers import analyser_for
from inkstone.vocab.matching import analyse
from inkstone.vocab.wordlists import Word
from inkstone.webui.vocab_tab import batch_file, highlight


def test_target_words_are_marked_where_the_story_uses_them_and_text_is_escaped():
    text = "她<b>很</b>高兴。\n昨天也很高兴，骑了共享单车。"
    words = [Word("高兴"), Word("共享单车"), Word("充电宝")]
    results = analyse(text, words, analyser_for("zh", [w.word for w in words])).results
    page = highlight(text, results)
    assert page.count('<mark title="高兴">高兴</mark>') == 2 and '<mark title="共享单车">共享单车</mark>' in page
    assert "充电宝" not in page and "&lt;b&gt;" in page and "<br>" in page


def test_a_conjugated_use_is_marked_as_written():
    text = "パンを食べた。"
    results = analyse(text, [Word("食べる")], analyser_for("ja")).results
    assert '<mark title="食べる">食べ</mark>た' in highlight(text, results)


@pytest.mark.slow
def test_the_tab_writes_streams_and_rewrites_for_the_missed_words(client, rt):
    settings = ["zh", None, None, "高兴\n充电宝\n高兴", 5, "城市", 16, 2, 3, "(base model)"]
    job = client.submit(*settings, api_name="/vocab")
    page, report, table, *_ = job.result()
    updates = job.outputs()
    assert len(updates) > 2  # streamed: round status and text before the final view
    assert page.startswith('<div class="vocab-story">')
    assert "充电宝" in report and "1 repeated words removed" in report  # missing, and the duplicate said
    assert 1 <= len(table["data"]) <= 2 and all(row[1].startswith("vocab_") for row in table["data"])
    entries = [e for e in rt.studio.history.list(story="default") if e.source == "vocab"]
    assert entries and entries[0].params["seed"] in (3, 4)

    page2, report2, table2, *_ = client.predict("城市", 16, 1, 5, "(base model)", api_name="/vocab_rewrite")
    assert [row[1] for row in table2["data"]] == ["vocab_revise"]
    newest = rt.studio.history.list(story="default")[0]
    assert newest.mode == "vocab_revise" and "充电宝" in newest.instruction.splitlines()[0]


@pytest.mark.slow
def test_compare_and_batch_from_the_tab(app, client, rt):
    ctx, _ = app
    settings = ["zh", None, None, "高兴\n充电宝\n城市\n咖啡", 3, "", 16, 1, 2, "(base model)"]
    table = client.predict(*settings, ["(base model)"], api_name="/vocab_compare")
    assert [row[0] for row in table["data"]] == ["(base model)"] and table["data"][0][3] == 1
    assert table["headers"] == ["model", "first round", "kept", "rounds", "density"]  # this client asks in English

    note, path = client.predict(*settings, 2, 2, "tab batch", api_name="/vocab_batch")
    out = batch_file(ctx, "tab batch")
    assert out.name == "tab-batch.jsonl" and out.is_file() and "2 stories written, 0 already done" in note
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [len(r["words"]) for r in rows] == [3, 3] and all(len(r["candidates"]) == 2 for r in rows)
    note, _ = client.predict(*settings, 2, 2, "tab batch", api_name="/vocab_batch")
    assert "0 stories written, 2 already done" in note
