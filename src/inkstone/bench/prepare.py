"""Benchmark P6: `prepare` throughput on real novel text, and its peak memory on a big input.

1. MB/s of the whole pipeline (read, detect, clean, dedup, count, chunk, pairs,
   write) on the real corpus, against the tokenizer alone counting the same
   paragraphs in the same process (the ceiling: tokenizing is the hot spot).
2. Peak RSS of a child process preparing a generated input of `big_mb` MB,
   made in a temp dir from the corpus (sentences reshuffled per copy so the
   de-duplication does not simply drop it) and deleted afterwards.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

_SENTENCE = re.compile(r"[^。！？]*[。！？]+[”’」』]*|[^。！？]+$")
_HEADING = re.compile(r"^第[零〇一二三四五六七八九十百千\d]+回\s*(.*)$")


def make_big_input(corpus: Path, out: Path, mb: float, seed: int = 0) -> int:
    """Write about `mb` MB of novel-like text (GB-free UTF-8) made from the corpus; returns bytes written."""
    text = Path(corpus).read_text(encoding="utf-8")
    chapters: list[tuple[str, list[list[str]]]] = []
    pool: list[str] = []
    for line in text.splitlines():
        line = line.strip().strip("\u3000")
        if not line:
            continue
        m = _HEADING.match(line)
        if m:
            chapters.append((m.group(1), []))
            continue
        if not chapters:
            chapters.append(("", []))
        sentences = [s for s in _SENTENCE.findall(line) if s]
        chapters[-1][1].append(sentences)
        pool += sentences
    rng = random.Random(seed)
    target, written, n = int(mb * 1e6), 0, 0
    with open(out, "w", encoding="utf-8") as fh:
        while written < target:
            for name, paragraphs in chapters:
                n += 1
                lines = [f"第{n}回 {name}".strip()]
                for sentences in paragraphs:
                    s = list(sentences)
                    rng.shuffle(s)
                    if len(s) < 2:
                        s.append(rng.choice(pool))
                    lines.append("\u3000\u3000" + "".join(s))
                block = "\n".join(lines) + "\n\n"
                fh.write(block)
                written += len(block.encode("utf-8"))
                if written >= target:
                    break
    return written


def tokenizer_only(corpus: Path, tokenizer, reference: bool = False) -> float:
    """MB/s of counting the corpus paragraphs alone: with prepare's counter (the ceiling),
    or with `reference`, the Hugging Face tokenizers library's batch encoder (the baseline)."""
    from inkstone.data.tokens import TokenCounter

    raw = Path(corpus).read_bytes()
    paragraphs = [p.strip("\u3000 ") for p in raw.decode("utf-8").splitlines() if p.strip()]
    counter = TokenCounter(tokenizer, use_fast=not reference)  # as prepare counts: batched, BPE cache off
    counter.wait_fast()
    try:
        counter.count(paragraphs[:50])  # warm up the thread pool
        t = time.perf_counter()
        counter.count(paragraphs)
        return len(raw) / 1e6 / (time.perf_counter() - t)
    finally:
        counter.close()


def _child(tokenizer_dir: str, big: str, work: str) -> dict:
    """Runs in a fresh process (python -m inkstone.bench.prepare ...): its peak RSS is prepare's."""
    import psutil
    from transformers import AutoTokenizer

    from inkstone.data.prepare import prepare

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    proc = psutil.Process()
    # Loading a big tokenizer has its own transient peak: reset the kernel's high-water mark
    # (Linux >= 4.0) so that it holds prepare's peak alone, and sample RSS as well.
    hwm_reset = _reset_peak_rss()
    base = proc.memory_info().rss
    sampled, done = [base], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            sampled.append(proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    try:
        r = prepare([Path(big)], tok, train_dir=Path(work) / "train", val_dir=Path(work) / "val",
                    report_dir=Path(work) / "prepared", progress=None, progress_bar=False)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - t
    peak = max(max(sampled), proc.memory_info().rss)
    if hwm_reset:
        peak = max(peak, _peak_rss())
    return {"seconds": round(seconds, 2), "baseline_rss_mb": round(base / 2**20, 1),
            "peak_rss_mb": round(peak / 2**20, 1), "chapters": r.chapters,
            "chunks": r.train_chunks + r.val_chunks, "tokens": r.train_tokens + r.val_tokens,
            "duplicates": r.duplicates}


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _run_child(tokenizer_dir: Path, big: Path, work: Path) -> dict:
    """A separate interpreter, so its peak memory is prepare's alone (not this process's history)."""
    from .child import run_json

    return run_json("inkstone.bench.prepare", tokenizer_dir, big, work, what="the prepare child process")


def bench_prepare(corpus_path: Path, tokenizer, out_json: Optional[Path] = None, big_mb: float = 200,
                  repeats: int = 7) -> dict:
    """Run benchmark P6; write the result to `out_json` (when given) and return it."""
    from inkstone.data.prepare import prepare

    corpus = Path(corpus_path)
    size = corpus.stat().st_size
    result: dict = {"what": "prepare", "corpus": corpus.name, "corpus_mb": round(size / 1e6, 3),
                    "tokenizer": str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
                    "cpu_count": os.cpu_count(), "goal_mb_per_s": 20}
    with tempfile.TemporaryDirectory(prefix="inkstone-bench-prepare-") as tmp:
        tmp = Path(tmp)
        # The fast encoder loads once per process (seconds for a big vocabulary), in the
        # background of the first run; it is timed apart so the runs show the steady speed.
        from inkstone.data.tokens import TokenCounter

        t = time.perf_counter()
        warm = TokenCounter(tokenizer)
        warm.wait_fast()
        result["fast_encoder_load_s"] = round(time.perf_counter() - t, 2)
        warm.close()
        runs, ceilings, references = [], [], []
        # Run 0 is the process's first prepare (cold caches, first imports): reported
        # apart; the median of the next `repeats` runs is the steady speed.
        for i in range(repeats + 1):  # interleaved with the ceilings, so all see the same load
            work = tmp / f"run{i}"
            t = time.perf_counter()
            r = prepare([corpus], tokenizer, train_dir=work / "train", val_dir=work / "val",
                        report_dir=work / "prepared", progress=None, progress_bar=False)
            speed = size / 1e6 / (time.perf_counter() - t)
            shutil.rmtree(work)
            if i == 0:
                result["first_run_mb_per_s"] = round(speed, 2)
                continue
            runs.append(speed)
            ceilings.append(tokenizer_only(corpus, tokenizer))
            references.append(tokenizer_only(corpus, tokenizer, reference=True))
        speed, ceiling = statistics.median(runs), statistics.median(ceilings)
        reference = statistics.median(references)
        result.update(mb_per_s=round(speed, 2), runs_mb_per_s=[round(x, 2) for x in runs],
                      token_counter=r.token_counter,
                      counting_only_mb_per_s=round(ceiling, 2), ratio_vs_counting_only=round(speed / ceiling, 3),
                      tokenizers_library_only_mb_per_s=round(reference, 2),
                      ratio_vs_tokenizers_library_only=round(speed / reference, 3),
                      chapters=r.chapters, chunks=r.train_chunks + r.val_chunks,
                      tokens=r.train_tokens + r.val_tokens)

        if big_mb:
            big = tmp / "big.txt"
            written = make_big_input(corpus, big, big_mb)
            tok_dir = tmp / "tokenizer"
            tokenizer.save_pretrained(tok_dir)
            try:
                child = _run_child(tok_dir, big, tmp / "big-out")
            finally:
                big.unlink()
            child.update(input_mb=round(written / 1e6, 1), mb_per_s=round(written / 1e6 / child["seconds"], 2),
                         peak_over_baseline_mb=round(child["peak_rss_mb"] - child["baseline_rss_mb"], 1))
            result["big"] = child
    if out_json:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":  # the measured child of bench_prepare
    print(json.dumps(_child(*sys.argv[1:4])))
