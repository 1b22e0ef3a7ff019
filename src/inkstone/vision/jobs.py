"""train-vision as a child process: `start.py train-vision`, watched like a text run.

The run folder, its lock, progress.jsonl and train.log are the text trainer's
(train/jobs.py), so `TrainJob.status()` reads a vision run's progress, ETA,
losses and checkpoints the same way; only the command differs.
"""
from __future__ import annotations

from ..train.jobs import TrainJob, start_training


def start_vision_training(cfg, run_name: str, options: dict) -> TrainJob:
    """Start `start.py train-vision` with the parent's effective config; `options` as for start_training."""
    return start_training(cfg, run_name, options, command="train-vision")
