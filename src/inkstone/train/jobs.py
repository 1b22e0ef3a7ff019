"""Training runs as child processes, watched through their progress files.

The parent (web UI or CLI) starts `start.py train ...` with an argument list,
never a shell string, and only reads `<run>/progress.jsonl` and `<run>/train.log`.
A crashing run leaves the parent untouched.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..checkpoints import ADAPTER_DIRNAME, checkpoints, finished_adapter
from .progress import PROGRESS_FILE
from .run_lock import running_pid

LOG_FILE = "train.log"
CLAIM_FILE = ".claimed"


def read_progress(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / PROGRESS_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written right now
    return rows


@dataclass
class RunStatus:
    run: str
    state: str  # starting | running | done | stopped | failed
    step: int = 0
    max_steps: int = 0
    loss: Optional[float] = None
    eval_loss: Optional[float] = None
    tokens_per_s: Optional[float] = None
    eta_s: Optional[float] = None
    message: str = ""
    adapter: Optional[str] = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0


def _death_message(exit_code: int) -> str:
    """What a non-zero exit means, in words; a signal is named, SIGKILL with its usual cause."""
    if exit_code >= 0:
        return ""
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    msg = f"the training process was killed by {name}"
    if -exit_code == signal.SIGKILL:
        msg += (" - most likely the system ran out of memory (the kernel's OOM killer sends SIGKILL); "
                "lower --batch-size or --max-seq-length, or close other programs")
    return msg


def summarize(run_dir: Path, exit_code: Optional[int]) -> RunStatus:
    rows = read_progress(run_dir)
    st = RunStatus(run=Path(run_dir).name, state="starting" if exit_code is None else "failed")
    for r in rows:
        ev = r.get("event")
        if ev in ("start", "log"):
            st.step = r.get("step", st.step)
            st.max_steps = r.get("max_steps", st.max_steps)
            if exit_code is None:
                st.state = "running"
        if ev == "log":
            if "loss" in r:
                st.loss = r["loss"]
                st.losses.append((r["step"], r["loss"]))
            if "eval_loss" in r:
                st.eval_loss = r["eval_loss"]
                st.eval_losses.append((r["step"], r["eval_loss"]))
            st.tokens_per_s = r.get("tokens_per_s", st.tokens_per_s)
            st.eta_s = r.get("eta_s", st.eta_s)
        elif ev == "error":
            st.message = r.get("message", "")
        elif ev == "warning":
            st.warnings.append(r.get("message", ""))
        elif ev == "done":
            st.adapter = r.get("adapter")
            st.state = "stopped" if r.get("stopped_early") else "done"
    if exit_code not in (None, 0) and st.state not in ("done", "stopped"):
        st.state = "failed"
        st.message = _death_message(exit_code) or st.message or _last_error(Path(run_dir) / LOG_FILE)
    return st


def _last_error(log: Path) -> str:
    if not log.is_file():
        return "the training process ended without a log"
    lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    # The last exception line says the most; fall back to the last line.
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln):
            return ln
    return lines[-1] if lines else "the training process ended without output"


class TrainJob:
    """A training run in its own process: one this process started (`proc`), or one
    found running after a restart of the web UI (`pid`, through the run's lock)."""

    def __init__(self, run_dir: Path, proc: Optional[subprocess.Popen] = None, pid: Optional[int] = None):
        self.run_dir = Path(run_dir)
        self.proc = proc
        self.pid = proc.pid if proc is not None else pid
        self.started = time.time()

    @classmethod
    def attach(cls, run_dir: Path) -> Optional["TrainJob"]:
        pid = running_pid(run_dir)
        return cls(run_dir, pid=pid) if pid else None

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return running_pid(self.run_dir) is not None

    def exit_code(self) -> Optional[int]:
        if self.proc is not None:
            return self.proc.poll()
        if self.running:
            return None
        # Not our child: the code is unknown, but a run that wrote `done` finished well.
        return 0 if any(r.get("event") == "done" for r in read_progress(self.run_dir)) else 1

    def status(self) -> RunStatus:
        return summarize(self.run_dir, self.exit_code())

    def stop(self, timeout: float = 120) -> None:
        """Ask the run to save a checkpoint and stop; force it only if it does not."""
        if not self.running:
            return
        os.kill(self.pid, signal.SIGINT)
        deadline = time.time() + timeout
        while self.running and time.time() < deadline:
            time.sleep(0.2)
        if self.running:
            os.kill(self.pid, signal.SIGTERM)
        if self.proc is not None:
            self.proc.wait(timeout=30)


def find_running(runs_dir: Path) -> Optional[TrainJob]:
    """A run still training under `runs_dir` (the newest, if several), to reattach to."""
    runs = sorted((p for p in Path(runs_dir).glob("*") if (p / PROGRESS_FILE).is_file()),
                  key=lambda p: (p / PROGRESS_FILE).stat().st_mtime, reverse=True)
    for run_dir in runs:
        job = TrainJob.attach(run_dir)
        if job is not None:
            return job
    return None


def new_run_name(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def start_training(cfg, run_name: str, options: dict, command: str = "train") -> TrainJob:
    """Start `start.py train` (or `command`: train-vision) as a child process with the parent's
    effective config. `options` map flag names to values (True adds a bare flag, False/None leave it out)."""
    from ..config import dump_config

    if not re.fullmatch(r"(?!\.+$)[A-Za-z0-9._-]+", run_name or ""):  # "." and ".." would leave the runs folder
        raise ValueError("run name may hold letters, digits, '.', '_' and '-' only, and not dots alone")
    run_dir = Path(cfg.train.output_dir) / run_name
    if (run_dir / PROGRESS_FILE).exists() or running_pid(run_dir):
        raise ValueError(f"a run named {run_name!r} exists already; choose another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # two starts at the same moment: the first to create this file wins
        os.close(os.open(run_dir / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise ValueError(f"a run named {run_name!r} is being started already") from None
    frozen = dump_config(cfg, run_dir / "config.json")
    project_root = Path(cfg.root)
    argv = [sys.executable, str(project_root / "start.py"), "--config", str(frozen), command, "--run-name", run_name]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        argv.append(f"--{flag}")
        if value is not True:
            argv.append(str(value))
    log = open(run_dir / LOG_FILE, "ab")
    # Its own session: a Ctrl-C or restart of the web UI does not reach the run, which goes on.
    proc = subprocess.Popen(argv, cwd=project_root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()  # the child holds its own handle
    return TrainJob(run_dir, proc)


def compare_runs(runs_dir: Path) -> list[dict]:
    """One row per checkpoint of every run (and its final adapter), side by side:
    training loss and validation loss/perplexity at that step."""
    import math

    rows = []
    for run_dir in sorted(p for p in Path(runs_dir).glob("*") if (p / PROGRESS_FILE).is_file()):
        log = read_progress(run_dir)
        train_loss = {r["step"]: r["loss"] for r in log if r.get("event") == "log" and "loss" in r}
        eval_loss = {r["step"]: r["eval_loss"] for r in log if r.get("event") == "log" and "eval_loss" in r}
        done = next((r for r in log if r.get("event") == "done"), None)
        points = [(step, folder.name) for step, folder, complete in checkpoints(run_dir) if complete]
        if done is not None and finished_adapter(run_dir):
            points.append((done.get("step", 0), ADAPTER_DIRNAME))
        for step, name in sorted(points, key=lambda p: (p[0], p[1] == ADAPTER_DIRNAME)):
            ev = eval_loss.get(step)
            if name == ADAPTER_DIRNAME and done.get("eval_loss") is not None:
                ev = done["eval_loss"]
            rows.append({
                "run": run_dir.name, "checkpoint": name, "step": step,
                "train_loss": round(train_loss[step], 4) if step in train_loss else None,
                "eval_loss": round(ev, 4) if ev is not None else None,
                "eval_ppl": round(math.exp(min(ev, 50)), 2) if ev is not None else None,
            })
    return rows
