"""One process per training run, and a way to find it again.

A training process holds `<run>/.lock` for as long as it runs: a second start
of the same run fails at once, and a web UI that restarts finds the run still
going by the held lock.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..process_lock import Busy, ProcessLock, holder_pid

LOCK_FILE = ".lock"
RunBusy = Busy


def RunLock(run_dir: Path) -> ProcessLock:
    return ProcessLock(Path(run_dir) / LOCK_FILE,
                       f"training run {Path(run_dir).name!r} is already running (pid {{pid}})")


def running_pid(run_dir: Path) -> Optional[int]:
    """The pid of the process training this run now, or None."""
    return holder_pid(Path(run_dir) / LOCK_FILE)
