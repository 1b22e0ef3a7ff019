"""`bench recut`: how good and how exact the recut is, on a folder of pairs.

For each pair the model cuts the original episode through the normal path
(prompt service, structured outputs, repair, exports). Reported: compression by
duration and by cue count; the share of answers valid before repair; boundary
error, on the timeline and on a rendered video whose frames carry their own frame
number as a barcode (read back with numpy at every cut); against the reference
viral cut: cue-id precision/recall/F1, duration-weighted temporal IoU and
Kendall's tau of clip order; and the same for two baselines at the same
compression: random cues, and the first part of the episode.
"""
from __future__ import annotations

import random
import subprocess
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Optional, Sequence

import numpy as np

from ..recut.align import align, read_pairs
from ..recut.exports import srt_text
from ..recut.pipeline import prepare, run
from ..recut.repair import Clip, span
from ..recut.subtitles import Cue
from ..recut.video import ffmpeg_exe, render

FPS = 25
BITS = 16  # frame numbers up to 65535: 43 minutes at 25 fps
BAR_PX = 8
MAX_BOUNDARY_ERROR_MS = 500


# ---- a video that shows its own time ------------------------------------------------------
def make_clock_video(path: Path, seconds: float, audio: bool = True) -> Path:
    """Each frame shows its frame number as BITS black/white bars (bit k in bar k)."""
    bars = f"geq=lum='255*mod(floor(N/pow(2\\,floor(X/{BAR_PX})))\\,2)'"
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
            "-i", f"color=c=black:s={BITS * BAR_PX}x16:r={FPS}:d={seconds:.3f},format=gray,{bars}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={seconds:.3f}", "-c:a", "aac", "-shortest"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(args, check=True, capture_output=True)
    return path


def read_clock(path: Path) -> np.ndarray:
    """The source frame number shown by every frame of a video made by make_clock_video (and cut)."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 16, BITS * BAR_PX)
    bits = frames[:, 4:12, :].reshape(len(frames), 8, BITS, BAR_PX).mean(axis=(1, 3)) > 128
    return (bits * (1 << np.arange(BITS))).sum(axis=1)


def video_boundary_errors(clips: Sequence[Clip], shown: np.ndarray) -> list[float]:
    """For each clip, how far (ms) the cut's first frame starts from the clip's source start, and
    its last frame ends from the clip's source end. A clip keeps the source frames whose time lies
    in [start, end); a frame dropped or doubled anywhere shifts every later clip and shows here."""
    errors, k = [], 0
    frame_ms = 1000 / FPS
    for c in clips:
        n = int(np.ceil(c.end / frame_ms - 1e-6) - np.ceil(c.start / frame_ms - 1e-6))
        if n <= 0:
            continue
        first, last = k, k + n - 1
        errors.append(abs(shown[first] * frame_ms - c.start) if first < len(shown) else float("inf"))
        errors.append(abs((shown[last] + 1) * frame_ms - c.end) if last < len(shown) else float("inf"))
        k += n
    if len(shown) != k:  # frames the cut should not have
        errors.append(abs(len(shown) - k) * frame_ms)
    return errors


# ---- scores against the reference cut -------------------------------------------------------
def id_scores(pred: set, ref: set) -> dict:
    tp = len(pred & ref)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(ref) if ref else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _intervals(clips: Sequence[Clip]) -> list[tuple[int, int]]:
    out = []
    for a, b in sorted((c.start, c.end) for c in clips):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def temporal_iou(pred: Sequence[Clip], ref: Sequence[Clip]) -> float:
    """Source time both cuts keep over time either keeps (so longer stretches weigh more)."""
    p, r = _intervals(pred), _intervals(ref)
    inter = sum(max(0, min(b, d) - max(a, c)) for a, b in p for c, d in r)
    union = sum(b - a for a, b in p) + sum(d - c for c, d in r) - inter
    return inter / union if union else 0.0


def kendall_tau(pred: Sequence[Clip], ref: Sequence[Clip]) -> Optional[float]:
    """Order agreement: each predicted clip stands for the reference clip it overlaps most;
    tau over the pairs of those (None with fewer than two)."""
    ranks = []
    for c in pred:
        overlaps = [(min(c.end, r.end) - max(c.start, r.start), k) for k, r in enumerate(ref)]
        best, k = max(overlaps) if overlaps else (0, -1)
        if best > 0:
            ranks.append(k)
    pairs = [(i, j) for i in range(len(ranks)) for j in range(i + 1, len(ranks)) if ranks[i] != ranks[j]]
    if not pairs:
        return None
    return sum(1 if ranks[i] < ranks[j] else -1 for i, j in pairs) / len(pairs)


def compare(pred: Sequence[Clip], ref: Sequence[Clip]) -> dict:
    ids = lambda cs: {i for c in cs for i in c.cue_ids()}
    return {**id_scores(ids(pred), ids(ref)), "temporal_iou": temporal_iou(pred, ref),
            "kendall_tau": kendall_tau(pred, ref)}


# ---- baselines at the same compression ----------------------------------------------------------
def _runs(by_id: dict, ids: list[int]) -> list[Clip]:
    clips: list[list[int]] = []
    for i in sorted(ids):
        if clips and i == clips[-1][1] + 1:
            clips[-1][1] = i
        else:
            clips.append([i, i])
    return [span(by_id, a, b) for a, b in clips]


def first_part(cues: Sequence[Cue], budget_ms: int) -> list[Clip]:
    ids, total = [], 0
    for c in cues:
        if ids and total + c.duration > budget_ms:
            break
        ids.append(c.id)
        total += c.duration
    return _runs({c.id: c for c in cues}, ids)


def random_cues(cues: Sequence[Cue], budget_ms: int, seed: int) -> list[Clip]:
    rng = random.Random(seed)
    ids, total = [], 0
    for c in rng.sample(list(cues), len(cues)):
        if ids and total + c.duration > budget_ms:
            continue
        ids.append(c.id)
        total += c.duration
    return _runs({c.id: c for c in cues}, ids)


# ---- the bench --------------------------------------------------------------------------------
def _write_srt(cues: Sequence[Cue], path: Path) -> Path:
    path.write_text(srt_text([(c.start, c.end, c.text) for c in cues]), encoding="utf-8")
    return path


def bench_pairs(studio, pairs_dir: Path, work: Path, adapter=None, render_video: bool = True,
                max_clips: int = 12) -> dict:
    pairs = read_pairs(pairs_dir)
    if not pairs:
        raise ValueError(f"{pairs_dir}: no pairs")
    rows = []
    for n, pair in enumerate(pairs):
        by_id = {c.id: c for c in pair.original}
        ref = [span(by_id, c.first_id, c.last_id) for c in align(pair).clips]
        ref_share = sum(c.duration for c in ref) / (max(c.end for c in pair.original) - pair.original[0].start)
        target = min(1.0, max(0.05, round(ref_share * 20) / 20))
        src = _write_srt(pair.original, work / f"{pair.name}.srt")
        video = None
        if render_video and n == 0:  # one rendered check per bench keeps it short; every clip's cuts are read
            video = make_clock_video(work / f"{pair.name}.mp4", max(c.end for c in pair.original) / 1000 + 1)
        ep = prepare(src, target=target, video=video, max_clips=max_clips)
        t0 = time.perf_counter()
        tl = run(studio, ep, work / pair.name, adapter)
        seconds = time.perf_counter() - t0
        cut = tl.clips
        budget = sum(c.duration for c in cut)
        timeline_err = max(max(abs(c.start - by_id[c.first_id].start),
                               abs(c.end - max(x.end for x in pair.original if c.first_id <= x.id <= c.last_id)))
                           for c in cut)
        row = {"pair": pair.name, "language": tl.language, "target": target, "seconds": round(seconds, 2),
               "valid_before_repair": tl.valid_before_repair, "issues": tl.issues,
               "attempts": tl.settings.get("attempts"), "clips": len(cut),
               "compression_duration": tl.duration / tl.episode_ms,
               "compression_cues": sum(len(c.cue_ids()) for c in cut) / len(pair.original),
               "timeline_boundary_error_ms": timeline_err,
               "model": compare(cut, ref), "first_part": compare(first_part(pair.original, budget), ref),
               "random": compare(random_cues(pair.original, budget, seed=n), ref)}
        if video is not None:
            errs = video_boundary_errors(cut, read_clock(work / pair.name / "recut.mp4"))
            row["video_boundary_error_ms"] = max(errs)
        rows.append(row)

    def avg(key, side=None):
        vals = [(r[side][key] if side else r[key]) for r in rows]
        vals = [v for v in vals if v is not None]
        return round(mean(vals), 4) if vals else None

    video_errs = [r["video_boundary_error_ms"] for r in rows if "video_boundary_error_ms" in r]
    summary = {
        "pairs": len(rows), "compression_duration": avg("compression_duration"),
        "compression_cues": avg("compression_cues"),
        "valid_before_repair_rate": round(mean(1.0 if r["valid_before_repair"] else 0.0 for r in rows), 4),
        "timeline_boundary_error_ms_max": max(r["timeline_boundary_error_ms"] for r in rows),
        "video_boundary_error_ms_max": max(video_errs) if video_errs else None,
        "boundary_ok": max(r["timeline_boundary_error_ms"] for r in rows) <= MAX_BOUNDARY_ERROR_MS
        and all(e <= MAX_BOUNDARY_ERROR_MS for e in video_errs),
        **{side: {k: avg(k, side) for k in ("precision", "recall", "f1", "temporal_iou", "kendall_tau")}
           for side in ("model", "first_part", "random")},
    }
    return {"summary": summary, "pairs": rows}


def run_recut_bench(cfg, pairs_dir: Path) -> dict:
    from ..runtime import open_runtime

    rt = open_runtime(cfg, memory=False)
    try:
        with tempfile.TemporaryDirectory(prefix="recut-bench-") as tmp:
            result = bench_pairs(rt.studio, Path(pairs_dir), Path(tmp))
    finally:
        rt.stop()
    result["summary"]["model_name"] = rt.engine.model_name if rt.engine else None
    return result
