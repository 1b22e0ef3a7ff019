"""One process per training run, and a way to find it again.

A training process holds an exclusive lock on `<run>/.lock` (with its pid in
it) for as long as it runs. A second start of the same run fails at once, and
a web UI that restarts finds the run still going by the held lock. The kernel
drops the lock when the process ends however it ends, so a crash or a kill
never leaves a run looking alive.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

LOCK_FILE = ".lock"


class RunBusy(RuntimeError):
    pass


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fh = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="ascii")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise RunBusy(f"training run {self.path.parent.name!r} is already running (pid {pid})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def running_pid(run_dir: Path) -> Optional[int]:
    """The pid of the process training this run now, or None."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path, encoding="ascii") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
