"""`start.py bench memory`: memory search latency at 1k/10k/100k entries, retrieval
quality (recall@5) on facts from 红楼梦, and retrieval's share of time to first token.

Latency is measured through MemoryStore itself. The bulk entries carry random
unit vectors (embedding 100k texts with the numpy encoder would take far longer
than the search being measured, and HNSW search time does not depend on what
the vectors mean); each query is embedded for real, so its time is in the figure. Quality uses real embeddings
of real facts, with questions phrased differently from the facts.
"""
from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

# (kind, title, fact) entered as memories; (question, index of the fact that answers it).
FACTS = [
    ("character", "林黛玉", "林黛玉是林如海与贾敏之女，自幼体弱多病，母亲去世后投奔外祖母贾母。"),
    ("character", "贾宝玉", "贾宝玉衔玉而生，是贾政与王夫人之子，厌恶仕途经济。"),
    ("character", "薛宝钗", "薛宝钗是薛姨妈之女，佩戴金锁，端庄稳重，常服冷香丸。"),
    ("character", "王熙凤", "王熙凤是贾琏之妻，管理荣国府家务，精明强干，人称凤辣子。"),
    ("character", "贾母", "贾母史太君是荣国府辈分最高的老祖宗，最疼爱宝玉和黛玉。"),
    ("character", "刘姥姥", "刘姥姥是乡下穷苦老妇，因王家旧亲关系三进荣国府。"),
    ("character", "甄士隐", "甄士隐是姑苏乡宦，女儿英莲被拐，家遭火灾后随跛足道人出家。"),
    ("character", "贾雨村", "贾雨村是寄居葫芦庙的穷儒，得甄士隐资助进京赶考，后来做官。"),
    ("plot", "黛玉进府", "林黛玉抛父进京，初到荣国府，与宝玉初次相见，宝玉摔玉。"),
    ("plot", "宝玉梦游", "贾宝玉在秦可卿房中午睡，梦游太虚幻境，听警幻仙姑演红楼梦曲。"),
    ("plot", "葫芦案", "贾雨村审理薛蟠打死冯渊一案，听门子之言徇情枉法，胡乱判案。"),
    ("plot", "元妃省亲", "贾元春被封为贤德妃，贾府为迎接她回家省亲修建了大观园。"),
    ("plot", "宝玉挨打", "贾政听信谗言，又闻宝玉与金钏之事，将宝玉狠狠打了一顿。"),
    ("plot", "黛玉葬花", "暮春时节花落满地，林黛玉荷锄葬花，吟出葬花吟。"),
    ("world", "大观园", "大观园是贾府为元妃省亲而建的园林，后来宝玉和众姐妹搬进去居住。"),
    ("world", "通灵宝玉", "通灵宝玉是女娲补天剩下的一块顽石，幻化为宝玉出生时口中所衔之玉。"),
    ("world", "太虚幻境", "太虚幻境是警幻仙姑所居的仙境，有薄命司，藏着众女子命运的判词。"),
    ("world", "四大家族", "贾史王薛四大家族互相联姻，荣辱与共，护官符上写着他们的名号。"),
    ("dialogue", "初见", "宝玉看罢黛玉，笑道：“这个妹妹我曾见过的。”"),
    ("dialogue", "好了歌", "跛足道人唱道：“世人都晓神仙好，惟有功名忘不了。”"),
]
QUESTIONS = [
    ("黛玉的父母是谁？她为什么要去外婆家？", 0),
    ("哪个人物出生时嘴里含着一块玉？", 1),
    ("谁戴着金锁，还要吃一种冷香丸？", 2),
    ("荣国府的家务是谁在管？", 3),
    ("府里地位最高的老太太是谁？", 4),
    ("从乡下来攀亲戚的老太太是谁？", 5),
    ("女儿被人拐走、后来出家的人是谁？", 6),
    ("谁得到资助进京考试后当了官？", 7),
    ("宝玉和黛玉第一次见面是什么情形？", 8),
    ("宝玉在梦里去了什么地方？", 9),
    ("薛蟠打死人的案子是怎么判的？", 10),
    ("贾家为什么要建一座新园子？", 11),
    ("宝玉为什么被他父亲打？", 12),
    ("黛玉把落花埋起来那一段", 13),
    ("姐妹们后来住在哪个园子里？", 14),
    ("宝玉那块玉是从哪里来的？", 15),
    ("记载女子命运判词的仙境叫什么？", 16),
    ("贾、史、王、薛几家是什么关系？", 17),
    ("宝玉见到黛玉时说了什么？", 18),
    ("道士唱的那首讽刺功名的歌", 19),
]


def recall_at_k(embedder, k: int = 5) -> dict:
    from ..memory.store import MemoryStore

    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp), embedder)
        ids = [store.add(kind, text, title=title, story="bench").id for kind, title, text in FACTS]
        hits = 0
        for q, answer in QUESTIONS:
            found = [h.entry.id for h in store.search(q, k=k, story="bench")]
            hits += ids[answer] in found
    return {"embedder": embedder.name, "questions": len(QUESTIONS), f"recall_at_{k}": round(hits / len(QUESTIONS), 3)}


def search_latency(embedder, sizes=(1_000, 10_000, 100_000), queries: int = 50) -> list[dict]:
    """Latency of the store's own searches on one story holding `size` entries:
    `search_each_kind` (what every generation runs) and a plain top-5 `search`."""
    from ..memory.store import KINDS, MemoryStore

    rng = np.random.default_rng(0)
    out = []
    qs = [q for q, _ in QUESTIONS]
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp), embedder)
        count = 0
        for size in sizes:
            t0 = time.perf_counter()
            while count < size:
                n = min(5000, size - count)
                vecs = rng.standard_normal((n, embedder.dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                kinds = rng.choice(KINDS, n)
                store.add_many([{"kind": str(k), "text": f"entry {count + i}"} for i, k in enumerate(kinds)],
                               story="bench", embeddings=vecs)
                count += n
            load_s = time.perf_counter() - t0
            row = {"entries": size, "insert_s": round(load_s, 1)}
            for label, search in (("each_kind", lambda q: store.search_each_kind(q, k_per_kind=2, story="bench")),
                                  ("top5", lambda q: store.search(q, k=5, story="bench"))):
                search(qs[0])  # warm-up
                lat = []
                for i in range(queries):
                    t = time.perf_counter()
                    search(qs[i % len(qs)])
                    lat.append(time.perf_counter() - t)
                lat.sort()
                row[f"{label}_p50_ms"] = round(statistics.median(lat) * 1000, 2)
                row[f"{label}_p95_ms"] = round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2)
            embed_lat = []
            for i in range(queries):
                t = time.perf_counter()
                embedder.embed([qs[i % len(qs)]])
                embed_lat.append(time.perf_counter() - t)
            row["embed_p50_ms"] = round(statistics.median(embed_lat) * 1000, 2)
            out.append(row)
        store.close()
    return out


def retrieval_share_of_ttft(cfg, runs: int = 5) -> dict:
    """Time to first token with memory on, and the part of it spent retrieving and assembling."""
    from ..engine.contract import Finished, GenerationParams
    from ..prompting import PreparedPrompt, PromptRequest
    from ..runtime import open_runtime

    scratch = Path(tempfile.mkdtemp(prefix="inkstone-bench-mem-"))
    rt = open_runtime(cfg.model_copy(update={"memory": cfg.memory.model_copy(update={
        "db_dir": scratch / "chroma", "studio_db": scratch / "studio.sqlite3"})}))
    try:
        for kind, title, text in FACTS:
            rt.memory.call("add", kind, text, title=title, story="bench")
        shares, ttfts, prep = [], [], []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            t_prep = None
            ttft = None
            req = PromptRequest(story="bench", instruction=QUESTIONS[i % len(QUESTIONS)][0], max_tokens=8)
            for ev in rt.studio.write(req, GenerationParams(max_tokens=8), source="bench"):
                if isinstance(ev, PreparedPrompt):
                    t_prep = time.perf_counter() - t0
                elif isinstance(ev, Finished):
                    ttft = ev.ttft_s
            if i == 0:
                continue  # warm-up
            prep.append(t_prep)
            ttfts.append(ttft)
            shares.append(t_prep / ttft)
    finally:
        rt.stop()
    return {"runs": runs, "ttft_ms_p50": round(statistics.median(ttfts) * 1000, 1),
            "retrieval_and_assembly_ms_p50": round(statistics.median(prep) * 1000, 1),
            "retrieval_share_of_ttft_p50": round(statistics.median(shares), 3)}


def run_memory_bench(cfg, sizes=(1_000, 10_000, 100_000)) -> dict:
    from ..memory.embeddings import load_embedder

    embedder, note = load_embedder(cfg.memory.embedding_model, cfg.memory.offline_fallback)
    result = {"embedder": embedder.name, "note": note,
              "latency": search_latency(embedder, sizes), "quality": [recall_at_k(embedder)]}
    result["ttft"] = retrieval_share_of_ttft(cfg)
    return result
