"""`start.py bench memory`: memory search latency at 1k/10k/100k entries, retrieval
quality (recall@1 and recall@5 of dense, lexical and hybrid search) on facts
from 红楼梦 hidden among distractor memories cut from the book, and retrieval's
share of time to first token.

Latency is measured through MemoryStore itself. The bulk entries carry random
unit vectors (embedding 100k texts with the numpy encoder would take far longer
than the search being measured, and HNSW search time does not depend on what
the vectors mean) and texts cut from the book, so the BM25 side has a real
vocabulary to search; each query is embedded for real, so its time is in the
figure. Quality uses real embeddings of real facts and distractors, with
questions phrased differently from the facts.

The questions are split: the first two of every three are the development set
the search was looked at with, the third is held out. Scores on both are
reported; a method fitted to the development questions would show a gap.
"""
from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent.parent / "data" / "hongloumeng_001-080.txt"

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
    ("plot", "正照风月鉴", "贾瑞对王熙凤起了淫心，被凤姐设相思局捉弄，病中正照风月宝鉴而死。"),
    ("plot", "协理宁国府", "秦可卿病逝，贾珍不惜重金为她办丧事，请王熙凤协理宁国府。"),
    ("plot", "二进荣国府", "刘姥姥二进荣国府，在大观园宴席上被凤姐和鸳鸯捉弄，逗得众人大笑。"),
    ("plot", "海棠诗社", "探春发起诗社，众姐妹以白海棠为题作诗，李纨评薛宝钗为第一。"),
    ("plot", "晴雯撕扇", "晴雯跌折了扇子与宝玉拌嘴，宝玉为博她一笑，任她把扇子撕了。"),
    ("plot", "抄检大观园", "绣春囊事发，王夫人命王善保家的带人连夜抄检大观园，探春当众打了王善保家的一巴掌。"),
    ("plot", "尤二姐吞金", "贾琏偷娶尤二姐，凤姐借剑杀人，尤二姐被秋桐欺辱，吞金自尽。"),
    ("plot", "尤三姐自刎", "柳湘莲疑心尤三姐不贞，索回鸳鸯剑退婚，尤三姐用剑自刎。"),
    ("character", "史湘云", "史湘云是贾母娘家的侄孙女，性格豪爽，醉卧芍药裀。"),
    ("character", "妙玉", "妙玉是带发修行的尼姑，住在栊翠庵，孤傲洁癖，用梅花上的雪烹茶。"),
    ("character", "香菱", "香菱本名甄英莲，被拐后卖给薛蟠为妾，跟黛玉学作诗。"),
    ("character", "平儿", "平儿是王熙凤的陪嫁丫鬟，贾琏之妾，心地善良，常替人周全。"),
    ("plot", "鸳鸯抗婚", "贾赦想讨鸳鸯做妾，鸳鸯当着贾母发誓不嫁，剪发明志。"),
    ("plot", "晴雯补裘", "宝玉的雀金裘烧了个洞，晴雯抱病连夜把它织补好。"),
    ("plot", "金钏投井", "金钏因与宝玉说笑被王夫人打了一巴掌撵出去，含羞投井而死。"),
    ("world", "怡红院", "怡红院是宝玉在大观园中的住处，院中种着芭蕉和海棠。"),
    ("world", "潇湘馆", "潇湘馆是黛玉的住处，千百竿翠竹遮映，环境清幽。"),
    ("world", "宁荣二府", "宁国公和荣国公是兄弟，宁国府在东，荣国府在西，两府同在京城一条街上。"),
    ("dialogue", "食量大似牛", "刘姥姥笑道：“老刘，老刘，食量大似牛，吃一个老母猪不抬头。”"),
    ("dialogue", "柳絮词", "宝钗填词道：“好风凭借力，送我上青云。”"),
    ("plot", "凹晶馆联诗", "中秋夜黛玉与湘云在凹晶馆联诗，湘云吟出寒塘渡鹤影，黛玉对以冷月葬花魂。"),
    ("character", "贾探春", "贾探春是赵姨娘所生的庶出女儿，精明能干，曾与李纨、宝钗一同理家。"),
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
    ("那个迷恋凤姐、最后照着镜子送了命的人是谁？", 20),
    ("宁府办丧事的时候请了谁去帮忙料理？", 21),
    ("乡下老太太在园子里吃饭出洋相，是谁安排的玩笑？", 22),
    ("姐妹们头一回结社写诗，谁的诗被评为最好？", 23),
    ("哪个丫鬟喜欢听东西撕破的声音，宝玉还由着她？", 24),
    ("夜里搜查姐妹们住处的时候，谁动手打了那个婆子？", 25),
    ("贾琏在外面偷偷娶的那个女子后来是怎么死的？", 26),
    ("被退了亲之后用定情的宝剑自杀的姑娘", 27),
    ("哪位小姐喝醉了酒，躺在石凳上的花瓣里睡着了？", 28),
    ("在园子里修行、拿收来的雪水泡茶的女子是谁？", 29),
    ("向林姑娘拜师学写诗的是谁？", 30),
    ("凤姐身边那个厚道、常帮别人说好话的通房丫头", 31),
    ("大老爷想纳老太太的贴身丫头做小，她是怎么拒绝的？", 32),
    ("病着还熬夜替宝玉缝补衣裳的是谁？", 33),
    ("被太太赶出去以后跳井的丫头是谁？", 34),
    ("宝玉在园子里住的院子叫什么名字？", 35),
    ("种满竹子的那个院子是谁住的？", 36),
    ("贾家东西两座府邸是哪两位祖先传下来的？", 37),
    ("乡下老太太在饭桌上怎么夸自己饭量大？", 38),
    ("哪句词说要借着风力飞上高空？", 39),
    ("中秋晚上两个姑娘在水边对诗，最后对出了哪两句？", 40),
    ("姨娘生的那位能干小姐，后来帮着管过家的是谁？", 41),
]
DISTRACTOR_SIZES = (2_000, 10_000)
SEARCH_MODES = ("dense", "lexical", "hybrid")


def question_split(i: int) -> str:
    return "held_out" if i % 3 == 2 else "dev"


def corpus_sentences(min_chars: int = 12, max_chars: int = 80) -> list[str]:
    """The book cut into sentences, as distractor memories (chapter headings left out)."""
    text = CORPUS.read_text(encoding="utf-8")
    parts = re.split(r"(?<=[。！？])[”’]?|\n", text)
    out = []
    for part in parts:
        part = part.strip().lstrip("　").strip("”’ ")
        if min_chars <= len(part) <= max_chars and not part.startswith("第"):
            out.append(part)
    return out


def recall_among_distractors(embedder, sizes=DISTRACTOR_SIZES, modes=SEARCH_MODES, rerank=None) -> list[dict]:
    """Recall@1 and @5 of each search mode with FACTS hidden among `sizes` distractors,
    on the development and held-out questions. `rerank(question, entries)` (optional)
    reorders the hybrid top 10, to measure the LLM rerank."""
    from ..memory.store import KINDS, MemoryStore

    sentences = corpus_sentences()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(sentences))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp), embedder)
        ids = [store.add(kind, text, title=title, story="bench").id for kind, title, text in FACTS]
        have = 0
        for size in sizes:
            chunk = [sentences[j] for j in order[have:size]]
            kinds = rng.choice(KINDS, len(chunk))
            for start in range(0, len(chunk), 1000):
                store.add_many([{"kind": str(k), "text": t} for k, t in
                                zip(kinds[start:start + 1000], chunk[start:start + 1000])], story="bench")
            have = size
            row = {"distractors": size, "questions": {"dev": 0, "held_out": 0}}
            for i, _ in enumerate(QUESTIONS):
                row["questions"][question_split(i)] += 1
            methods = list(modes) + (["hybrid+rerank"] if rerank else [])
            for method in methods:
                store.search_mode = method.split("+")[0]
                found = {"dev": [0, 0], "held_out": [0, 0]}
                for i, (q, answer) in enumerate(QUESTIONS):
                    got = [h.entry for h in store.search(q, k=10 if method == "hybrid+rerank" else 5, story="bench")]
                    if method == "hybrid+rerank":
                        got = rerank(q, got)
                    got = [e.id for e in got[:5]]
                    split = found[question_split(i)]
                    split[0] += got[:1] == [ids[answer]]
                    split[1] += ids[answer] in got
                row[method] = {split: {"recall_at_1": round(r1 / row["questions"][split], 3),
                                       "recall_at_5": round(r5 / row["questions"][split], 3)}
                               for split, (r1, r5) in found.items()}
            out.append(row)
        store.close()
    return out


def search_latency(embedder, sizes=(1_000, 10_000, 100_000), queries: int = 50) -> list[dict]:
    """Latency of the store's own searches on one story holding `size` entries:
    `search_each_kind` (what every generation runs) and a plain top-5 `search`, dense
    alone and hybrid."""
    from ..memory.store import KINDS, MemoryStore

    rng = np.random.default_rng(0)
    out = []
    qs = [q for q, _ in QUESTIONS]
    sentences = corpus_sentences()
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
                store.add_many([{"kind": str(k), "text": sentences[(count + i) % len(sentences)]}
                                for i, k in enumerate(kinds)],
                               story="bench", embeddings=vecs)
                count += n
            load_s = time.perf_counter() - t0
            row = {"entries": size, "insert_s": round(load_s, 1)}
            for mode, label, search in (
                    (mode, f"{mode}_{what}", fn) for mode in ("dense", "hybrid") for what, fn in (
                        ("each_kind", lambda q: store.search_each_kind(q, k_per_kind=2, story="bench")),
                        ("top5", lambda q: store.search(q, k=5, story="bench")))):
                store.search_mode = mode
                t = time.perf_counter()
                search(qs[0])  # warm-up: the first hybrid search builds the BM25 matrices
                row[f"{label}_first_ms"] = round((time.perf_counter() - t) * 1000, 1)
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
                embedder.embed_query([qs[i % len(qs)]])
                embed_lat.append(time.perf_counter() - t)
            row["embed_p50_ms"] = round(statistics.median(embed_lat) * 1000, 2)
            # A writer reopening the studio: the store opens, and its first search finds
            # the saved word index rather than building it.
            store.close()
            t = time.perf_counter()
            store = MemoryStore(Path(tmp), embedder)
            row["reopen_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            store.search_each_kind(qs[1], k_per_kind=2, story="bench")
            row["hybrid_each_kind_first_after_reopen_ms"] = round((time.perf_counter() - t) * 1000, 1)
            out.append(row)
        store.close()
    return out


def with_engine(cfg, embedder, rerank_sizes=DISTRACTOR_SIZES) -> dict:
    """The measures that need the running model: time to first token, and the rerank."""
    from ..runtime import open_runtime

    scratch = Path(tempfile.mkdtemp(prefix="inkstone-bench-mem-"))
    rt = open_runtime(cfg.model_copy(update={"memory": cfg.memory.model_copy(update={
        "db_dir": scratch / "chroma", "studio_db": scratch / "studio.sqlite3"})}))
    try:
        return {"ttft": retrieval_share_of_ttft(rt),
                "rerank": rerank_recall(rt, embedder, rerank_sizes) if rerank_sizes else None}
    finally:
        rt.stop()


def rerank_recall(rt, embedder, sizes=DISTRACTOR_SIZES) -> dict:
    """Recall of hybrid search with and without the running model's rerank of its top 10."""
    from ..prompting.memory_rerank import MemoryReranker

    reranker = MemoryReranker(rt.engine, rt.prompts.prepare)
    took: list[float] = []

    def timed(query, entries):
        t = time.perf_counter()
        out = reranker.rerank(query, entries)
        took.append(time.perf_counter() - t)
        return out

    rows = recall_among_distractors(embedder, sizes, modes=("hybrid",), rerank=timed)
    return {"model": rt.engine.model_name, "recall": rows, "reranks": len(took), "failures": reranker.failures,
            "rerank_ms_p50": round(statistics.median(took) * 1000, 1) if took else None}


def retrieval_share_of_ttft(rt, runs: int = 5) -> dict:
    """Time to first token with memory on, and the part of it spent retrieving and assembling."""
    from ..engine.contract import Finished, GenerationParams
    from ..prompting import PreparedPrompt, PromptRequest

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
    return {"runs": runs, "ttft_ms_p50": round(statistics.median(ttfts) * 1000, 1),
            "retrieval_and_assembly_ms_p50": round(statistics.median(prep) * 1000, 1),
            "retrieval_share_of_ttft_p50": round(statistics.median(shares), 3)}


def run_memory_bench(cfg, sizes=(1_000, 10_000, 100_000)) -> dict:
    from ..memory.embeddings import load_embedder

    embedder, note = load_embedder(cfg.memory.embedding_model, cfg.memory.offline_fallback)
    result = {"embedder": embedder.name, "note": note,
              "latency": search_latency(embedder, sizes), "recall": recall_among_distractors(embedder)}
    result.update(with_engine(cfg, embedder))
    return result
