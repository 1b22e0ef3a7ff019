"""An exclusive lock held by one process for as long as it runs, with its pid inside.

Used for what one process at a time may own: a training run, the memory store's
folder. The kernel drops the lock when the process ends however it ends, so a
crash or a kill never leaves something looking owned.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional


class Busy(RuntimeError):
    """Someone else holds the lock; the message says who and what to do."""


class ProcessLock:
    def __init__(self, path: Path, busy_message: str):
        self.path = Path(path)
        self.busy_message = busy_message  # may use {pid}
        self._fh = None

    def acquire(self) -> "ProcessLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="ascii")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise Busy(self.busy_message.format(pid=pid)) from None
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

    def __enter__(self) -> "ProcessLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_pid(path: Path) -> Optional[int]:
    """The pid of the process holding the lock at `path` now, or None."""
    path = Path(path)
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
