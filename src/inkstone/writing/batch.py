"""Batch writing: a file of prompts (or outline lines) in, one generated passage each out.

Input: `.txt` (one prompt per non-empty line) or `.jsonl` (one object per line
with a "prompt" string, and optionally "story_text": the story so far to
continue, "mode": a writing mode (continue, rewrite, outline; see
prompting/modes), "passage": the passage a rewrite works on, and "id"). Each
item is a request to the prompt service, the same as the Write tab's (style,
story memory and chapter summaries when asked for, story so far), so a batch
writes exactly what the Write tab would, and every item is kept in the story's
history. All items are submitted to the engine at once (up to
`max_in_flight`) and vLLM batches them.

Output: `.jsonl` (one record per item), `.txt` or `.md`, in input order.
Resumable: each finished item is recorded as it finishes, keyed by its line
number and a hash of its prompt, and is not generated again when the batch is
rerun; an edited line is redone. For JSONL the output file itself is the
record; for TXT/MD the records go to a sidecar `<output>.done.jsonl` and the
text file is rewritten from it at the end of every run. A broken input line is
reported by its line number and the rest are generated.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

from ..data.encoding import LONE_SURROGATE
from ..engine.contract import Finished, GenerationParams, Text
from ..prompting import PreparedPrompt, PromptRequest, list_modes
from .studio import Studio

log = logging.getLogger(__name__)

Format = Literal["jsonl", "txt", "md"]
FORMATS = ("jsonl", "txt", "md")


class BatchError(ValueError):
    """An input or output the batch cannot use at all; the message names the file."""


@dataclass
class BatchItem:
    line: int  # 1-based line number in the input file
    prompt: str
    story_text: str = ""
    id: Optional[str] = None
    mode: str = "continue"
    passage: str = ""

    @property
    def key(self) -> str:
        parts = [self.prompt, self.story_text] + ([self.mode, self.passage] if self.mode != "continue" else [])
        data = json.dumps(parts, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class BatchReport:
    output: Path
    total: int  # usable input items
    generated: int = 0  # done in this run
    skipped: int = 0  # already done by an earlier run
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line, message): items that could not be generated
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, message): input lines not read
    elapsed_s: float = 0.0
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.bad_lines

    def summary(self) -> str:
        parts = [f"{self.generated} generated", f"{self.skipped} already done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.bad_lines:
            parts.append(f"{len(self.bad_lines)} unreadable input lines")
        rate = self.output_tokens / self.elapsed_s if self.elapsed_s else 0.0
        return f"{self.output}: {', '.join(parts)} ({self.output_tokens} tokens, {rate:.1f} tok/s)"


# ---- input ----------------------------------------------------------------------------------
def read_items(path: Union[str, Path]) -> tuple[list[BatchItem], list[tuple[int, str]]]:
    """Items of a .txt or .jsonl file, and the (line, problem) of every line that could not be read."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("txt", "jsonl"):
        raise BatchError(f"{path}: batch input must be .txt (one prompt per line) or .jsonl ({{\"prompt\": ...}})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BatchError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BatchError(f"{path}, line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    items: list[BatchItem] = []
    bad: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if kind == "txt":
            items.append(BatchItem(n, line.strip()))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append((n, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        except RecursionError:
            bad.append((n, "JSON nested too deeply to read"))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
            bad.append((n, 'needs an object with a non-empty "prompt" string'))
            continue
        problem = _item_problem(obj)
        if problem:
            bad.append((n, problem))
            continue
        item_id = obj.get("id")
        items.append(BatchItem(n, obj["prompt"].strip(), obj.get("story_text", ""),
                               None if item_id is None else str(item_id), obj.get("mode", "continue"),
                               obj.get("passage", "")))
    for n, problem in bad:
        log.warning("%s, line %d: %s; skipped", path, n, problem)
    if not items:
        first = f" (line {bad[0][0]}: {bad[0][1]})" if bad else ""
        raise BatchError(f"{path}: no prompts to write from{first}")
    return items, bad


WRITING_MODES = tuple(m.name for m in list_modes(for_writers=True))


def _item_problem(obj: dict) -> Optional[str]:
    """What is wrong with a JSONL item's optional fields, if anything."""
    for name in ("story_text", "passage"):
        if not isinstance(obj.get(name, ""), str):
            return f'"{name}" must be a string'
    if obj.get("mode", "continue") not in WRITING_MODES:
        return f'"mode" must be one of {", ".join(WRITING_MODES)}'
    if LONE_SURROGATE.search(obj["prompt"] + obj.get("story_text", "") + obj.get("passage", "")):
        return "holds an unpaired UTF-16 surrogate escape (such as \\ud800), which no tokenizer takes"
    return None


# ---- records of finished items --------------------------------------------------------------
def _record_path(output: Path, fmt: Format) -> Path:
    return output if fmt == "jsonl" else output.with_name(output.name + ".done.jsonl")


def _load_records(path: Path) -> dict[tuple[int, str], dict]:
    """Records already written, keyed by (line, prompt hash). A last line cut short by a
    crash is dropped from the file so appending goes on cleanly."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a record cut short by a crash: drop it
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    done: dict[tuple[int, str], dict] = {}
    for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            done[(int(rec["line"]), str(rec["key"]))] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BatchError(f"{path}, line {n}: not a batch record ({exc}); move the file away to start over") \
                from exc
    return done


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _render(records: Sequence[dict], fmt: Format) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if fmt == "txt":
        return "\n\n".join(r["output"].strip("\n") for r in records) + ("\n" if records else "")
    blocks = [f"## {r.get('id') or r['line']}. {r['prompt']}\n\n{r['output'].strip()}\n" for r in records]
    return "\n".join(blocks)


# ---- generation -----------------------------------------------------------------------------
@dataclass
class _Job:
    item: BatchItem
    request: PromptRequest
    prepared: PreparedPrompt


async def _generate(studio: Studio, jobs: Sequence[_Job], params: GenerationParams, adapter: Optional[str],
                    max_in_flight: int, on_done) -> None:
    """Generate all jobs concurrently on the caller's loop; `on_done(job, text, finished | exception)`."""
    gate = asyncio.Semaphore(max(1, max_in_flight))

    async def one(job: _Job) -> None:
        async with gate:
            parts: list[str] = []
            fin: Optional[Finished] = None
            try:
                async for ev in studio.astream(job.prepared, job.request, params, adapter, source="batch"):
                    if isinstance(ev, Text):
                        parts.append(ev.text)
                    elif isinstance(ev, Finished):
                        fin = ev
            except Exception as exc:  # this item fails (too long, bad adapter...); the rest go on
                on_done(job, "", exc)
                return
            on_done(job, "".join(parts), fin)

    await asyncio.gather(*(one(j) for j in jobs))


def _prepare_jobs(studio: Studio, items: Sequence[BatchItem], params: GenerationParams, story: Optional[str],
                  use_memory: bool, failed: list[tuple[int, str]]) -> list[_Job]:
    """Each item's prompt from the prompt service; an item that cannot be prepared fails alone."""
    jobs = []
    for item in items:
        req = PromptRequest(mode=item.mode, story=story, instruction=item.prompt, story_text=item.story_text,
                            passage=item.passage, use_memory=use_memory, max_tokens=params.max_tokens)
        try:
            jobs.append(_Job(item, req, studio.prepare(req)))
        except ValueError as exc:  # PromptTooLong, a rewrite without its passage...
            failed.append((item.line, str(exc)))
    return jobs


def run_batch(studio: Studio, input_path: Union[str, Path], output_path: Union[str, Path], *,
              params: Optional[GenerationParams] = None, fmt: Optional[Format] = None, story: Optional[str] = None,
              use_memory: bool = False, adapter: Optional[str] = None, progress: Any = None,
              max_in_flight: int = 256) -> BatchReport:
    """Generate one passage per input item and write them to `output_path`.

    fmt: "jsonl" | "txt" | "md"; by default from the output's suffix (else jsonl).
    story: the story the items belong to (memories, chapter summaries, history; see story_name).
    use_memory: remind the model of that story's memories and earlier chapters, per item.
    adapter: an adapter name or folder (None: the base model).
    progress: a tqdm-like object; its `total` is set to the items left and `update(1)`
    is called as each finishes.
    Items already recorded by an earlier run (same line, same prompt) are skipped.
    """
    t0 = time.perf_counter()
    params = params or GenerationParams()
    input_path, output_path = Path(input_path), Path(output_path)
    fmt = fmt or (output_path.suffix.lower().lstrip(".") if output_path.suffix.lower().lstrip(".") in FORMATS
                  else "jsonl")
    if fmt not in FORMATS:
        raise BatchError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")
    if output_path.resolve() == input_path.resolve():
        raise BatchError(f"{output_path}: the output would overwrite the input")
    items, bad = read_items(input_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    record_path = _record_path(output_path, fmt)
    done = _load_records(record_path)
    report = BatchReport(output=output_path, total=len(items), bad_lines=bad)
    todo = [it for it in items if (it.line, it.key) not in done]
    report.skipped = len(items) - len(todo)

    jobs = _prepare_jobs(studio, todo, params, story, use_memory, report.failed)
    if progress is not None:
        if hasattr(progress, "total"):
            progress.total = len(jobs)
            if hasattr(progress, "refresh"):
                progress.refresh()

    with open(record_path, "a", encoding="utf-8") as out:
        def on_done(job: _Job, text: str, result) -> None:
            if isinstance(result, BaseException):
                report.failed.append((job.item.line, str(result)))
                log.warning("%s, line %d: %s", input_path, job.item.line, result)
            else:
                it = job.item
                rec = {"line": it.line, "key": it.key, "prompt": it.prompt, "output": text,
                       "finish_reason": result.finish_reason if result else None,
                       "prompt_tokens": len(job.prepared.token_ids), "output_tokens": result.output_tokens if result else 0}
                if it.id is not None:
                    rec["id"] = it.id
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out.flush()  # a finished item survives a crash of the rest
                done[(it.line, it.key)] = rec
                report.generated += 1
                report.output_tokens += rec["output_tokens"]
            if progress is not None:
                progress.update(1)

        if jobs:
            asyncio.run(_generate(studio, jobs, params, adapter, max_in_flight, on_done))

    # Final file in input order, holding only records of the current input's items.
    current = [done[(it.line, it.key)] for it in items if (it.line, it.key) in done]
    _write_atomic(output_path, _render(current, fmt))
    report.failed.sort()
    report.elapsed_s = time.perf_counter() - t0
    return report


# ---- measurement ----------------------------------------------------------------------------
BENCH_PROMPTS = ("写宝玉初见黛玉", "写凤姐协理宁国府", "写刘姥姥进大观园", "写晴雯撕扇", "写黛玉葬花",
                 "写宝钗扑蝶", "写元妃省亲", "写湘云醉卧芍药")


def bench_batch(studio: Studio, n: int = 64, max_tokens: int = 32) -> dict:
    """Wall time for `n` prompts submitted together vs one at a time (greedy, no memory),
    through the same path run_batch uses. ratio = sequential / concurrent."""
    params = GenerationParams(temperature=0.0, max_tokens=max_tokens, repetition_penalty=1.0)
    items = [BatchItem(i + 1, f"{BENCH_PROMPTS[i % len(BENCH_PROMPTS)]}（第{i + 1}稿）") for i in range(n)]
    failed: list[tuple[int, str]] = []
    jobs = _prepare_jobs(studio, items, params, None, False, failed)
    if failed:
        raise BatchError(f"bench prompts do not fit: {failed[0][1]}")
    tokens = {"warmup": 0, "concurrent": 0, "sequential": 0}

    def run(label: str, some: Sequence[_Job], in_flight: int) -> float:
        def on_done(job, text, result):
            if isinstance(result, BaseException):
                raise result
            tokens[label] += result.output_tokens

        start = time.perf_counter()
        asyncio.run(_generate(studio, some, params, None, in_flight, on_done))
        return time.perf_counter() - start

    run("warmup", jobs[:4], 4)  # first requests pay one-off costs; keep them out of both timings
    sequential = run("sequential", jobs, 1)
    concurrent = run("concurrent", jobs, n)
    del tokens["warmup"]
    return {
        "n": n, "max_tokens": max_tokens, "sequential_s": round(sequential, 3), "concurrent_s": round(concurrent, 3),
        "ratio": round(sequential / concurrent, 2) if concurrent else None,
        "sequential_tok_s": round(tokens["sequential"] / sequential, 1) if sequential else None,
        "concurrent_tok_s": round(tokens["concurrent"] / concurrent, 1) if concurrent else None,
        "tokens": tokens,
    }
