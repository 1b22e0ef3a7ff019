"""The writing loop: history with provenance, stories, automatic memory proposals."""
import json

import pytest

from inkstone.engine.contract import GenerationParams, Text
from inkstone.memory.io import import_rows
from inkstone.prompting import PreparedPrompt, PromptRequest
from inkstone.prompting.modes import extract_memory as extraction
from inkstone.story.db import StudioDB
from inkstone.writing.studio import Studio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(rt):
    return rt.studio


def write(studio, params=None, **req):
    """The text of one generation through Studio.write."""
    return "".join(e.text for e in studio.write(PromptRequest(**req), params) if isinstance(e, Text))


def test_every_generation_is_kept_and_reproducible(studio):
    params = GenerationParams(temperature=1.0, max_tokens=16)  # no seed: one is drawn and recorded
    text = write(studio, params, story="hist", story_text="宝玉", use_memory=False)
    (entry,) = studio.history.list(story="hist")
    assert entry.output == text and entry.params["seed"] is not None and entry.source == "write"
    assert entry.model == studio.engine.model_name and entry.finish_reason == "length"
    assert entry.prompt.endswith("宝玉")
    assert studio.rerun(entry.id) == text


def test_a_stopped_generation_is_kept_as_stopped(studio):
    stream = studio.write(PromptRequest(story="stop", story_text="黛玉", max_tokens=500))
    for ev in stream:
        if isinstance(ev, Text):
            break
    stream.close()
    (entry,) = studio.history.list(story="stop")
    assert entry.finish_reason == "stopped" and entry.output
    assert entry.output_tokens == len(studio.prompts.tokenizer(entry.output, add_special_tokens=False).input_ids) > 0


def test_the_history_file_is_in_wal_mode(studio):
    with studio.history.db.connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_history_write_keeps_the_text_and_ends_the_stream_cleanly(rt, tmp_path):
    import sqlite3

    studio = Studio(rt.engine, rt.prompts, rt.adapters, StudioDB(tmp_path / "studio.sqlite3"), rt.memory)
    studio.stories.ensure("locked")
    blocker = sqlite3.connect(tmp_path / "studio.sqlite3", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file past the busy timeout
    from inkstone.story import db as studio_db

    old, studio_db.BUSY_TIMEOUT_S = studio_db.BUSY_TIMEOUT_S, 0.2
    try:
        text = write(studio, story="locked", story_text="宝玉", max_tokens=8, use_memory=False)
    finally:
        studio_db.BUSY_TIMEOUT_S = old
        blocker.rollback()
        blocker.close()
    (saved,) = list((tmp_path / "unsaved-history").glob("*.json"))
    entry = json.loads(saved.read_text(encoding="utf-8"))
    assert entry["output"] == text and text and entry["story"] == "locked"


def test_modes_shape_the_instruction(studio):
    ev = next(iter(studio.write(PromptRequest(mode="rewrite", story="modes", instruction="更简洁",
                                              passage="宝玉笑道：好妹妹。", max_tokens=4))))
    assert isinstance(ev, PreparedPrompt) and "改写" in ev.text and "宝玉笑道：好妹妹。" in ev.text
    with pytest.raises(ValueError, match="outline line"):
        next(iter(studio.write(PromptRequest(mode="outline", story="modes", instruction=""))))


def test_structured_extraction_always_parses_and_nothing_is_stored_until_accepted(studio):
    story = "extract"
    accepted = studio.accept_chapter(story, "第一章", "宝玉见了黛玉，笑道：这个妹妹我曾见过的。",
                                     max_items=1, max_chars=8, max_tokens=400)
    proposals = accepted.proposals
    # The tiny random model's summary is whatever it is; stored only when it passes the check.
    assert (accepted.summary == "") == (accepted.summary_problem is not None)
    assert all(p.kind in ("character", "plot", "world", "dialogue") for p in proposals)
    assert studio.memory.call("list", story=story) == []  # proposals only
    kept = [extraction.Proposal("character", "宝玉", "衔玉而生的公子")]
    ids = studio.apply_proposals(story, "第一章", kept)
    (entry,) = studio.memory.call("list", story=story)
    assert entry.id == ids[0] and entry.chapter == "第一章"
    studio.apply_proposals(story, "第二章", [extraction.Proposal("character", "宝玉", "挨了打的公子")])
    (entry,) = studio.memory.call("list", story=story)  # same name: updated, not duplicated
    assert entry.text == "挨了打的公子" and entry.chapter == "第二章"
    # The accepted chapter now enters later prompts as a summary line.
    ev = next(iter(studio.write(PromptRequest(story=story, instruction="继续", max_tokens=4))))
    assert "前情提要" in ev.text and "第一章" in ev.text and ev.summaries


def test_extraction_output_is_parsed_into_proposals():
    summary, props = extraction.parse(json.dumps({
        "summary": "黛玉进府", "characters": [{"name": "黛玉", "description": "林如海之女"}],
        "events": [{"title": "进府", "description": "黛玉到荣国府"}], "world": [],
        "dialogue": [{"speaker": "宝玉", "line": "这个妹妹我曾见过的"}, {"speaker": "x", "line": ""}]}))
    assert summary == "黛玉进府"
    assert [(p.kind, p.title) for p in props] == [("character", "黛玉"), ("plot", "进府"), ("dialogue", "宝玉")]
    with pytest.raises(extraction.ExtractionError, match="max tokens"):
        extraction.parse('{"summary": "cut')


def test_memory_import_reports_bad_rows_and_keeps_good_ones(rt):
    rows = [{"kind": "character", "title": "甲", "text": "好人"}, {"kind": "weather", "text": "晴"},
            "not an object", {"kind": "plot", "text": ""}, {"kind": "world", "text": "太虚幻境"}]
    imported, errors = import_rows(rt.memory.store, rows, story="import")
    assert imported == 2
    assert [e.split(":")[0] for e in errors] == ["row 2 (JSON index 1)", "row 3 (JSON index 2)",
                                                  "row 4 (JSON index 3)"]


def test_deleting_a_story_removes_its_memories_and_history_only(studio):
    write(studio, story="doomed", story_text="宝玉", max_tokens=4, use_memory=False)
    studio.memory.call("add", "plot", "要删掉的", story="doomed")
    studio.memory.call("add", "plot", "要留下的", story="kept")
    counts = studio.delete_story("doomed")
    assert counts == {"memories": 1, "history": 1}
    assert studio.memory.call("list", story="kept") and not studio.history.list(story="doomed")
    assert "doomed" not in studio.stories.names()
