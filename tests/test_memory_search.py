"""Hybrid memory search: BM25 beside Chroma, kept consistent, rebuilt when stale;
and the optional rerank by the running model. Real ChromaDB in a temp dir, the
bundled encoder, real bm25s."""
import sqlite3

import pytest

from inkstone.memory.embeddings import UniversalSentenceEncoder
from inkstone.memory.store import MemoryError_, MemoryStore
from inkstone.memory.tokens import tokenize


@pytest.fixture(scope="module")
def embedder():
    return UniversalSentenceEncoder()


def open_store(path, embedder, mode="lexical"):
    return MemoryStore(path, embedder, search_mode=mode)


def lexical_ids(store, query, **kw):
    store.search_mode = "lexical"
    return [h.entry.id for h in store.search(query, k=5, **kw)]


def lexical_file(db_dir):
    (f,) = db_dir.glob("lexical-*.sqlite3")
    return f


def test_tokens_cover_chinese_japanese_and_english():
    zh = tokenize("林黛玉葬花")
    assert {"林黛", "黛玉", "葬花", "黛", "花"} <= set(zh)
    assert "谁" not in tokenize("是谁葬花") and "什么" not in tokenize("什么")  # stop words
    assert {"東京", "京の"} <= set(tokenize("東京の大学"))
    assert tokenize("Heathcliff visits the Grange") == ["heathcliff", "visit", "grang"]
    assert tokenize("ＡＢＣ") == ["abc"]  # full-width letters fold


def test_rare_names_and_places_are_found_in_every_language(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    store.add("plot", "宝玉在园中闲逛，看见众人都在。")
    place = store.add("plot", "黛玉在潇湘馆独坐，窗外竹影摇动。")
    eng = store.add("plot", "Heathcliff visited Thrushcross Grange at night.")
    jp = store.add("world", "主人公は札幌の時計台の近くに住んでいる。")
    name = store.add("character", "一个跛足道人，唱着好了歌。", title="跛足道人")
    assert lexical_ids(store, "潇湘馆里的人")[0] == place.id
    assert lexical_ids(store, "who visits the grange")[0] == eng.id
    assert lexical_ids(store, "札幌の時計台")[0] == jp.id
    assert lexical_ids(store, "跛足道人是谁")[0] == name.id  # the title counts
    assert lexical_ids(store, "完全无关的词语") == []
    store.search_mode = "hybrid"
    assert eng.id in [h.entry.id for h in store.search("Thrushcross Grange", k=3)]


def test_hybrid_ranks_by_reciprocal_rank_and_keeps_kinds_apart(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder, mode="hybrid")
    target = store.add("world", "栊翠庵是妙玉修行的地方。", title="栊翠庵", story="s")
    store.add("world", "大观园里有很多院落。", story="s")
    store.add("character", "妙玉孤傲洁癖。", title="妙玉", story="s")
    hits = store.search("栊翠庵", k=5, kind="world", story="s")
    assert hits[0].entry.id == target.id and all(h.entry.kind == "world" for h in hits)
    assert all(0 < h.score <= 1 for h in hits) and hits[0].score > 0.5  # 1: first on both sides
    each = store.search_each_kind("妙玉", k_per_kind=1, story="s")
    assert sorted(h.entry.kind for h in each) == ["character", "world"]
    assert [h.score for h in each] == sorted((h.score for h in each), reverse=True)


def test_unknown_search_mode_is_refused(tmp_path, embedder):
    with pytest.raises(MemoryError_, match="unknown memory search 'fuzzy'"):
        MemoryStore(tmp_path / "db", embedder, search_mode="fuzzy")


def test_add_update_delete_and_kind_change_keep_the_index_in_step(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    e = store.add("plot", "晴雯撕扇，宝玉一笑。", story="s")
    assert lexical_ids(store, "撕扇", story="s") == [e.id]
    store.update(e.id, text="晴雯病补雀金裘。")
    assert lexical_ids(store, "撕扇", story="s") == [] and lexical_ids(store, "雀金裘", story="s") == [e.id]
    store.update(e.id, kind="world")
    assert lexical_ids(store, "雀金裘", kind="plot", story="s") == []
    assert lexical_ids(store, "雀金裘", kind="world", story="s") == [e.id]
    store.delete(e.id)
    assert lexical_ids(store, "雀金裘", story="s") == []
    store.close()
    again = open_store(tmp_path / "db", embedder)
    assert again.rebuilt_parts == []  # what was written on disk matched Chroma


def test_many_writes_after_a_search_are_scored_like_the_rest(tmp_path, embedder):
    # The first search builds the part's matrix; later writes go to its delta until it is rebuilt.
    store = open_store(tmp_path / "db", embedder)
    store.add_many([{"kind": "plot", "text": f"第{i}回的一件小事。"} for i in range(50)])
    assert lexical_ids(store, "大观园") == []
    late = [store.add("plot", f"第{i}次游大观园。") for i in range(100)]  # past the rebuild threshold
    found = lexical_ids(store, "大观园")
    assert len(found) == 5 and set(found) <= {e.id for e in late}
    store.delete(late[0].id)
    assert late[0].id not in [h.entry.id for h in store.search("第0次游大观园", k=100)]


def test_story_delete_forgets_its_index(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    store.add("plot", "甲故事里的栊翠庵。", story="a")
    keep = store.add("plot", "乙故事里的栊翠庵。", story="b")
    lexical_ids(store, "栊翠庵", story="a")
    assert store.delete_story("a") == 1
    assert lexical_ids(store, "栊翠庵") == [keep.id]
    store.close()
    rows = sqlite3.connect(lexical_file(tmp_path / "db")).execute("SELECT DISTINCT story FROM docs").fetchall()
    assert rows == [("b",)]


def test_missing_or_damaged_index_is_rebuilt_on_open(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    e = store.add("world", "潇湘馆有千百竿翠竹。", story="s")
    store.close()
    lexical_file(tmp_path / "db").unlink()
    again = open_store(tmp_path / "db", embedder)
    assert again.rebuilt_parts == [("s", "world")] and lexical_ids(again, "翠竹") == [e.id]
    again.close()
    lexical_file(tmp_path / "db").write_bytes(b"this is not a database" * 100)
    third = open_store(tmp_path / "db", embedder)
    assert third.rebuilt_parts == [("s", "world")] and lexical_ids(third, "翠竹") == [e.id]
    assert third.get(e.id).text == "潇湘馆有千百竿翠竹。"  # nothing stored was lost
    assert list((tmp_path / "db").glob("*.damaged"))


def test_a_crash_between_the_chroma_write_and_the_index_write_is_repaired_on_open(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    e = store.add("plot", "贾瑞正照风月鉴。", story="s")
    lexical_ids(store, "风月鉴")
    col = store._cols[("s", "plot")]
    # An update that reaches Chroma and then dies before the index is written: same count, new text.
    with pytest.raises(KeyboardInterrupt):
        with store._lex.writing(("s", "plot")):
            col.upsert(ids=[e.id], documents=["贾瑞病重，跛足道人送来宝镜。"], metadatas=[{"kind": "plot", "story": "s"}],
                       embeddings=embedder.embed(["贾瑞病重，跛足道人送来宝镜。"]))
            raise KeyboardInterrupt
    store.close()
    again = open_store(tmp_path / "db", embedder)
    assert again.rebuilt_parts == [("s", "plot")]
    assert lexical_ids(again, "风月鉴") == [] and lexical_ids(again, "宝镜") == [e.id]


def test_entries_written_to_chroma_behind_the_index_are_noticed_by_their_count(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    store.add("plot", "元妃省亲。", story="s")
    store._cols[("s", "plot")].add(ids=["x"], documents=["宝玉题对额。"], metadatas=[{"kind": "plot", "story": "s"}],
                                   embeddings=embedder.embed(["宝玉题对额。"]))
    store.search_mode = "dense"  # found by its vector, its entry read from Chroma: the index lacks it
    assert "宝玉题对额。" in [h.entry.text for h in store.search("宝玉题对额", k=2, story="s")]
    store.close()
    again = open_store(tmp_path / "db", embedder)
    assert again.rebuilt_parts == [("s", "plot")] and lexical_ids(again, "题对额") == ["x"]


def test_an_index_of_another_tokenizer_version_is_rebuilt(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    e = store.add("plot", "刘姥姥进大观园。", story="s")
    store.close()
    db = sqlite3.connect(lexical_file(tmp_path / "db"))
    db.execute("UPDATE meta SET value = 'docs-1/older-tokens' WHERE key = 'format'")
    db.commit()
    db.close()
    again = open_store(tmp_path / "db", embedder)
    assert again.rebuilt_parts == [("s", "plot")] and lexical_ids(again, "刘姥姥") == [e.id]


def test_migration_fills_the_new_embedders_index(tmp_path, embedder):
    from test_memory import RenamedEncoder

    old = open_store(tmp_path / "db", embedder)
    e = old.add("world", "栊翠庵在大观园东边。", story="s")
    old.close()
    new = open_store(tmp_path / "db", RenamedEncoder(embedder))
    assert lexical_ids(new, "栊翠庵") == []  # not searched before it is moved
    assert new.migrate() == 1
    assert lexical_ids(new, "栊翠庵") == [e.id]
    new.close()
    assert open_store(tmp_path / "db", RenamedEncoder(embedder)).rebuilt_parts == []


def test_the_word_index_is_saved_and_opened_with_the_writes_since(tmp_path, embedder, monkeypatch):
    from inkstone.memory import lexical

    store = open_store(tmp_path / "db", embedder)
    rows = store.add_many([{"kind": "plot", "text": f"第{i}回，众人在大观园里闲话。"} for i in range(200)], story="s")
    assert len(lexical_ids(store, "大观园", story="s")) == 5  # builds the base and saves it
    late = store.add("plot", "刘姥姥醉卧怡红院。", story="s")  # written after the save
    store.update(rows[0].id, text="宝玉梦游太虚幻境。")
    store.delete(rows[1].id)
    store.close()

    builds = []
    real_init = lexical._LoadedPart.__init__
    monkeypatch.setattr(lexical._LoadedPart, "__init__", lambda self, ids, tokens, *a, **kw: (
        builds.append(tokens is not None), real_init(self, ids, tokens, *a, **kw))[1])
    again = open_store(tmp_path / "db", embedder)
    assert lexical_ids(again, "怡红院", story="s") == [late.id]
    assert lexical_ids(again, "太虚幻境", story="s") == [rows[0].id]
    assert rows[1].id not in lexical_ids(again, "第1回", story="s")
    assert rows[0].id not in [h.entry.id for h in again.search("第0回", k=200, story="s")]
    assert builds == [False]  # opened from the save, the three changes scored beside it


def test_a_damaged_saved_word_index_is_rebuilt_from_the_rows(tmp_path, embedder):
    store = open_store(tmp_path / "db", embedder)
    e = store.add("world", "栊翠庵在大观园东边。", story="s")
    lexical_ids(store, "栊翠庵", story="s")
    store.close()
    (saved,) = (tmp_path / "db").glob("lexical-*.bm25/*/ids.json")
    saved.write_text("not json")
    again = open_store(tmp_path / "db", embedder)
    assert lexical_ids(again, "栊翠庵", story="s") == [e.id]
    assert (saved.parent / "ids.json").read_text().startswith("[")  # saved again, whole


def test_rerank_answer_is_parsed_and_bad_answers_are_refused():
    from inkstone.prompting.modes import get_mode
    from inkstone.prompting.modes.rerank_memory import RerankError

    mode = get_mode("rerank_memory")
    assert not mode.for_writers
    assert mode.parse('{"order": [2, 1, 2, 0, 9]}') == [1, 0, 8]
    with pytest.raises(RerankError, match="not JSON"):
        mode.parse('{"order": [2, ')
    with pytest.raises(RerankError, match="no list named order"):
        mode.parse('{"best": 1}')
    assert mode.json_schema(3)["properties"]["order"]["items"]["maximum"] == 3


@pytest.mark.slow
def test_the_running_model_reranks_the_memories_a_prompt_uses(rt):
    from inkstone.prompting import PromptRequest
    from inkstone.prompting.memory_rerank import MemoryReranker

    entries = [rt.memory.call("add", kind, text, title=title, story="rerank") for kind, title, text in (
        ("character", "林黛玉", "林黛玉体弱多病。"), ("world", "大观园", "大观园为省亲而建。"),
        ("plot", "葬花", "黛玉荷锄葬花。"), ("dialogue", "初见", "这个妹妹我曾见过的。"))]
    reranker = MemoryReranker(rt.engine, rt.prompts.prepare)
    order = reranker.rerank("黛玉葬花", entries)
    assert sorted(e.id for e in order) == sorted(e.id for e in entries) and reranker.failures == 0
    req = PromptRequest(story="rerank", instruction="写黛玉葬花", max_tokens=8)
    plain = rt.prompts.prepare(req)
    rt.prompts.reranker = reranker
    try:
        reranked = rt.prompts.prepare(req)
    finally:
        rt.prompts.reranker = None
    assert sorted(m.entry.id for m in reranked.memories) == sorted(m.entry.id for m in plain.memories)


def test_search_setting_comes_from_the_config_file_and_bad_values_are_named(tmp_path):
    from pydantic import ValidationError

    from inkstone.config import build_config

    good = tmp_path / "good.toml"
    good.write_text('[memory]\nsearch = "dense"\nrerank = true\n', encoding="utf-8")
    cfg = build_config(good)
    assert (cfg.memory.search, cfg.memory.rerank) == ("dense", True)
    assert build_config(tmp_path / "good.toml", memory={"search": None}).memory.search == "dense"
    bad = tmp_path / "bad.toml"
    bad.write_text('[memory]\nsearch = "fuzzy"\n', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"memory\.search[\s\S]*'hybrid', 'dense' or 'lexical'"):
        build_config(bad)
