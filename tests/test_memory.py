"""Memory store: ChromaDB in a temp dir with the bundled multilingual encoders."""
import numpy as np
import pytest

from inkstone.memory.embeddings import E5_NAME, USE_NAME, E5SmallEncoder, UniversalSentenceEncoder, load_embedder
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
    s1.close()
    s2 = MemoryStore(tmp_path / "db", embedder)  # reopen: persisted on disk
    assert [e.text for e in s2.list(story="a")] == ["甲故事的事件"]
    assert all(h.entry.story == "b" for h in s2.search("事件", k=5, story="b"))


def test_unavailable_embedding_model_falls_back_with_a_note():
    emb, note = load_embedder("no-such-org/no-such-model", offline_fallback=True)
    assert emb.name == E5_NAME and "no-such-model" in note and E5_NAME in note
    with pytest.raises(RuntimeError, match="could not be loaded"):
        load_embedder("no-such-org/no-such-model", offline_fallback=False)


class RenamedEncoder(UniversalSentenceEncoder):
    """The same real encoder under another name: stands for switching embedding models."""

    name = "another-encoder"

    def __init__(self, inner):
        self._model = inner._model


def test_search_each_kind_returns_every_kind_of_the_story_only(store):
    store.add("character", "林黛玉体弱多病。", title="林黛玉", story="红楼梦")
    store.add("plot", "黛玉进府，初见宝玉。", story="红楼梦")
    store.add("world", "大观园是省亲别墅。", story="红楼梦")
    store.add("dialogue", "这个妹妹我曾见过的。", story="红楼梦")
    store.add("character", "孙悟空是石猴。", title="孙悟空", story="西游记")
    hits = store.search_each_kind("黛玉", k_per_kind=1, story="红楼梦")
    assert sorted(h.entry.kind for h in hits) == ["character", "dialogue", "plot", "world"]
    assert all(h.entry.story == "红楼梦" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.search("石猴", k=5, kind="character", story="红楼梦")[0].entry.title == "林黛玉"
    assert store.stories() == ["红楼梦", "西游记"] and store.count("西游记") == 1


def test_changing_kind_moves_the_entry_and_keeps_its_id(store):
    e = store.add("plot", "通灵宝玉是女娲补天剩下的石头。", title="通灵宝玉")
    store.update(e.id, kind="world")
    assert store.get(e.id).kind == "world" and store.count() == 1
    assert [x.id for x in store.list(kind="world")] == [e.id] and store.list(kind="plot") == []
    assert store.search("宝玉的来历", k=1, kind="world")[0].entry.id == e.id


def test_delete_story_removes_only_that_story(store):
    store.add("plot", "甲", story="a")
    store.add("world", "乙", story="a")
    keep = store.add("plot", "丙", story="b")
    assert store.delete_story("a") == 2
    assert store.list(story="a") == [] and store.get(keep.id).text == "丙"


def test_upsert_named_updates_the_same_character(store):
    first = store.upsert_named("character", "晴雯", "晴雯是宝玉的丫鬟。", story="s", chapter="第五回")
    again = store.upsert_named("character", "晴雯", "晴雯病补雀金裘。", story="s", chapter="第五十二回")
    assert again.id == first.id and store.count("s") == 1 and store.get(first.id).chapter == "第五十二回"


def test_switching_embedder_reembeds_everything(tmp_path, embedder):
    old = MemoryStore(tmp_path / "db", embedder)
    kept = [old.add("character", "林黛玉体弱多病，常年服药。", title="林黛玉", story="红楼梦"),
            old.add("world", "大观园是为元妃省亲而建的园子。", title="大观园", story="红楼梦")]
    old.close()
    new = MemoryStore(tmp_path / "db", RenamedEncoder(embedder))
    # Opening with another embedder touches nothing: it says what it found and how to move it.
    assert new.list(story="红楼梦") == [] and "migrate-memory" in new.migration_note()
    assert len(new._client.list_collections()) == 2
    assert new.migrate() == 2 and new.migration_note() == ""
    assert sorted(e.id for e in new.list(story="红楼梦")) == sorted(e.id for e in kept)
    assert new.search("黛玉吃药", k=1, story="红楼梦")[0].entry.title == "林黛玉"
    names = [c.name for c in new._client.list_collections()]
    assert names and all("another-encoder" in n for n in names)  # the old vectors are gone, not mixed


def test_the_single_collection_layout_of_older_versions_is_migrated(tmp_path, embedder):
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path / "db"), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("memories-usem3-multilingual-v3", embedding_function=None,
                                   metadata={"hnsw:space": "cosine", "embedder": embedder.name})
    texts = ["林黛玉体弱多病。", "宝玉挨打。", "孙悟空大闹天宫。"]
    col.add(ids=["a", "b", "c"], documents=texts, embeddings=embedder.embed(texts),
            metadatas=[{"kind": "character", "story": "红楼梦", "title": "林黛玉", "chapter": "第三回"},
                       {"kind": "plot", "story": "红楼梦", "title": ""},
                       {"kind": "plot", "story": "西游记", "title": ""}])
    del client
    store = MemoryStore(tmp_path / "db", embedder)
    assert store.count() == 0 and store.pending_migration == ["memories-usem3-multilingual-v3"]
    assert store.migrate() == 3
    assert store.count() == 3 and store.get("a").chapter == "第三回"
    assert [e.id for e in store.list(story="西游记")] == ["c"]
    assert store.search("黛玉", k=1, story="红楼梦")[0].entry.id == "a"
    assert "memories-usem3-multilingual-v3" not in [c.name for c in store._client.list_collections()]


def test_one_process_writes_a_store_folder_at_a_time(tmp_path, embedder):
    import subprocess
    import sys

    from conftest import ROOT

    store = MemoryStore(tmp_path / "db", embedder)
    store.add("character", "林黛玉体弱多病。", title="林黛玉", story="s")
    code = ("import sys; sys.path[:0] = [sys.argv[1]]\n"
            "from inkstone.memory.store import MemoryStore\n"
            "from inkstone.memory.embeddings import load_embedder\n"
            "from inkstone.process_lock import Busy\n"
            "try:\n    MemoryStore(sys.argv[2], load_embedder('usem3-multilingual-v3', True)[0])\n"
            "except Busy as e:\n    print('BUSY', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "src"), str(tmp_path / "db")],
                         capture_output=True, text=True, timeout=120)
    assert "BUSY" in out.stdout and "another Inkstone process" in out.stdout, out.stderr[-2000:]
    store.close()
    again = subprocess.run([sys.executable, "-c", code, str(ROOT / "src"), str(tmp_path / "db")],
                           capture_output=True, text=True, timeout=120)
    assert "BUSY" not in again.stdout and again.returncode == 0, again.stderr[-2000:]


def test_bundled_e5_embeds_questions_and_passages_differently():
    e5 = load_embedder(E5_NAME)[0]
    assert isinstance(e5, E5SmallEncoder) and load_embedder("")[0].name == E5_NAME
    texts = ["刘姥姥是乡下穷苦老妇，因王家旧亲关系三进荣国府。", "潇湘馆是黛玉的住处，千百竿翠竹遮映。"]
    docs, qs = e5.embed(texts), e5.embed_query(texts)
    assert docs.shape == qs.shape == (2, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    assert not np.allclose(docs, qs)  # the "query: " / "passage: " prefixes
    asked = e5.embed_query(["从乡下来攀亲戚的老太太是谁？"])[0]
    assert asked @ docs[0] > asked @ docs[1]
    assert e5.embed([]).shape == (0, 384)


def _config(tmp_path, model):
    from inkstone.config import Config

    return Config().model_copy(update={"memory": Config().memory.model_copy(update={
        "db_dir": tmp_path / "db", "embedding_model": model})})


def test_entries_of_the_older_bundled_encoder_follow_the_new_fallback(tmp_path, embedder):
    from inkstone.runtime import open_memory

    old = MemoryStore(tmp_path / "db", embedder)
    kept = old.add("character", "刘姥姥是乡下穷苦老妇。", title="刘姥姥", story="红楼梦")
    old.close()
    notes: list[str] = []
    mem = open_memory(_config(tmp_path, "no-such-org/no-such-model"), notes)  # not available: the fallback
    try:
        store = mem.store
        assert store.embedder.name == E5_NAME and store.pending_migration == []
        assert any("1 memories re-embedded" in n for n in notes), notes
        assert store.search("乡下来的老太太", k=1, story="红楼梦")[0].entry.id == kept.id
    finally:
        mem.close()


def test_entries_of_a_configured_model_wait_for_the_migrate_command(tmp_path, embedder):
    from inkstone.runtime import open_memory

    old = MemoryStore(tmp_path / "db", RenamedEncoder(embedder))  # stands for a configured model
    old.add("character", "刘姥姥是乡下穷苦老妇。", title="刘姥姥", story="红楼梦")
    old.close()
    notes: list[str] = []
    mem = open_memory(_config(tmp_path, "no-such-org/no-such-model"), notes)
    try:
        assert mem.store.count() == 0 and len(mem.store.pending_migration) == 1
        assert any("migrate-memory" in n for n in notes), notes
    finally:
        mem.close()


def _tiny_sentence_transformer(folder):
    """A one-layer random BERT as a sentence-transformers folder, with query and
    document prompts in its config, as a configured model would have."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    chars = sorted(set("刘姥姥是乡下穷苦老妇潇湘馆黛玉的住处从来攀亲戚太谁querypasg: ？，。"))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder / "hf")
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder / "hf")
    word = Transformer(str(folder / "hf"), max_seq_length=60)
    SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")],
                        prompts={"query": "query: ", "document": "passage: "}).save(str(folder / "st"))
    return folder / "st"


def test_a_configured_local_model_embeds_with_its_own_prompts(tmp_path):
    emb, note = load_embedder(str(_tiny_sentence_transformer(tmp_path)), offline_fallback=False)
    assert note is None and emb.name == "st" and emb.dim == 32
    text = ["刘姥姥是乡下穷苦老妇。"]
    assert not np.allclose(emb.embed(text), emb.embed_query(text))  # "passage: " and "query: "
    store = MemoryStore(tmp_path / "db", emb)
    e = store.add("character", text[0], title="刘姥姥")
    assert store.search("刘姥姥是谁？", k=1)[0].entry.id == e.id
    store.close()
