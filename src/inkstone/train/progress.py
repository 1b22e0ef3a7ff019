"""What a training run tells the world: `<run>/progress.jsonl`, one JSON object a line.

Events: start, log (step, loss, eval loss, rate, ETA), warning, checkpoint,
error, done. The web UI and the CLI only ever read this file. The callback
here also guards the run: a NaN/inf loss stops it before anything is saved,
and a loss that keeps rising is reported with a likely remedy.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

PROGRESS_FILE = "progress.jsonl"
# No training step takes less: a rate over less time measures the clock, not the run (a step-0 row
# once reported 1.28e11 tokens/s), so it is left out.
MIN_TIMED_S = 1e-3


def rate(amount: float, seconds: float) -> Optional[float]:
    """`amount` per second, or None over a zero or near-zero time."""
    return amount / seconds if seconds >= MIN_TIMED_S else None


class ProgressLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def emit(self, event: str, **fields) -> None:
        row = {"event": event, "time": time.time(), **fields}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()


class LossGuard:
    """Notices a training loss that rises well above its early level and stays there.

    The loss is smoothed (exponential average); its early level is the lowest
    smoothed value over the first `warmup` logged steps. When the smoothed loss
    stays `margin` nats above that level for `patience` steps in a row, the
    guard fires once. A rise of 0.3 nats is perplexity up by a third: not noise."""

    def __init__(self, warmup: int = 5, patience: int = 10, margin: float = 0.3, beta: float = 0.8):
        self.warmup, self.patience, self.margin, self.beta = warmup, patience, margin, beta
        self.smoothed: Optional[float] = None
        self.early: Optional[float] = None
        self.seen = 0
        self.above = 0
        self.fired = False

    def update(self, loss: float) -> bool:
        """Feed one logged loss; True the first time the rise is confirmed."""
        self.seen += 1
        self.smoothed = loss if self.smoothed is None else self.beta * self.smoothed + (1 - self.beta) * loss
        if self.seen <= self.warmup:
            self.early = self.smoothed if self.early is None else min(self.early, self.smoothed)
            return False
        self.above = self.above + 1 if self.smoothed > self.early + self.margin else 0
        if self.above >= self.patience and not self.fired:
            self.fired = True
            return True
        return False


def make_progress_callback(log: ProgressLog, *, tokens_per_step: int, train_blocks: int, val_blocks: int,
                           lr: float, stop_on_loss_rise: bool, stop_flag: dict):
    """The Trainer callback that writes progress rows and applies the guards."""
    import psutil
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self):
            self.t0 = time.time()
            self.start_step = 0
            self.train_s = 0.0  # time in training steps only, evaluation excluded
            self.eval_s = 0.0
            self.step_t = 0.0
            self.guard = LossGuard()
            self.evals: dict[int, dict] = {}  # step -> eval metrics

        def on_train_begin(self, targs, state, control, **kw):
            self.t0, self.start_step = time.time(), state.global_step
            log.emit("start", max_steps=state.max_steps, step=state.global_step,
                     train_blocks=train_blocks, val_blocks=val_blocks)

        def on_step_begin(self, targs, state, control, **kw):
            self.step_t = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            self.train_s += time.perf_counter() - self.step_t
            if stop_flag.get("flag"):
                control.should_save = True
                control.should_training_stop = True

        def on_evaluate(self, targs, state, control, metrics=None, **kw):
            if metrics:
                self.evals[state.global_step] = dict(metrics)
                self.eval_s += float(metrics.get("eval_runtime", 0.0))

        def training_rate(self, state) -> dict:
            """Tokens per second and ETA from the timed training steps; nothing before a step was timed."""
            done = state.global_step - self.start_step
            tokens_per_s = rate(tokens_per_step * done, self.train_s) if done > 0 else None
            if tokens_per_s is None:
                return {}
            eta_s = self.train_s / done * max(state.max_steps - state.global_step, 0)
            return {"tokens_per_s": round(tokens_per_s, 1), "eta_s": round(eta_s, 1)}

        def on_log(self, targs, state, control, logs=None, **kw):
            logs = logs or {}
            row = dict(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch,
                       elapsed_s=round(time.time() - self.t0, 2), memory_mb=round(psutil.Process().memory_info().rss / 2**20, 1))
            row.update(self.training_rate(state))
            for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                if key in logs:
                    row[key] = float(logs[key])
            if "eval_loss" in logs:
                row["eval_ppl"] = math.exp(min(float(logs["eval_loss"]), 50))
                row["eval_s"] = round(float(logs.get("eval_runtime", 0.0)), 2)
            loss = row.get("loss")
            bad = next((row[k] for k in ("loss", "grad_norm") if k in row and not math.isfinite(row[k])), None)
            if bad is not None:
                # Before the Trainer's save of this step: no checkpoint may hold these weights.
                control.should_save = False
                control.should_training_stop = True
                stop_flag["nan_step"] = state.global_step
                log.emit("error", step=state.global_step,
                         message=f"the loss or its gradient became {bad} at step {state.global_step}; stopped, the last good "
                                 "checkpoint is kept. Lower the learning rate.")
                return
            if "loss" in row or "eval_loss" in row:
                log.emit("log", **row)
            if loss is not None and self.guard.update(loss):
                message = (f"training loss is rising: smoothed {self.guard.smoothed:.3f} against "
                           f"{self.guard.early:.3f} early on, for {self.guard.patience} steps. The learning "
                           f"rate ({lr:g}) is likely too high; try {lr / 4:g}.")
                log.emit("warning", kind="loss_rising", step=state.global_step, message=message)
                if stop_on_loss_rise:
                    control.should_save = True
                    control.should_training_stop = True
                    stop_flag["flag"] = True

        def on_save(self, targs, state, control, **kw):
            log.emit("checkpoint", step=state.global_step, path=str(Path(targs.output_dir) / f"checkpoint-{state.global_step}"))

    return Progress()
