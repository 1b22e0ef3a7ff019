"""All-or-nothing output files: written under temporary names, renamed together at the end.

Every output folder is created and probed with its temporary file before any
input is read, so a folder that cannot be written is a clear error up front.
On any failure the temporary files are removed and the previous outputs stay
as they were. Intermediate spools are anonymous temporary files that the OS
removes even if the process dies.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Optional

from .errors import PrepareError


def _default_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class AtomicOutputs:
    def __init__(self, targets: dict[str, Path]):
        """`targets`: name -> final path. Opens one temporary file per target in the target's folder."""
        self.targets = {k: Path(v) for k, v in targets.items()}
        self.files: dict[str, BinaryIO] = {}
        self._tmp: dict[str, str] = {}
        self._remove: list[Path] = []
        try:
            for name, path in self.targets.items():
                self._open(name, path)
        except BaseException:
            self.abort()
            raise

    def _open(self, name: str, path: Path) -> None:
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise PrepareError(f"output folder {folder} is not writable ({exc.strerror or exc}); "
                               f"nothing was written") from None
        self._tmp[name] = tmp
        self.files[name] = os.fdopen(fd, "wb", buffering=1 << 20)

    def spool(self, name: str) -> BinaryIO:
        """An anonymous temporary file beside output `name` (gone when closed)."""
        return tempfile.TemporaryFile(dir=self.targets[name].parent, prefix=".prepare-spool.", buffering=1 << 20)

    def remove_on_commit(self, path: Path) -> None:
        """A stale output of an earlier run that this run does not produce (e.g. no validation set)."""
        self._remove.append(Path(path))

    def drop(self, name: str, stale: Path) -> None:
        """Produce no file for `name` after all; an existing `stale` one is removed on commit."""
        self.remove_on_commit(stale)
        if name in self.files:
            self.files.pop(name).close()
            Path(self._tmp.pop(name)).unlink(missing_ok=True)

    def commit(self) -> None:
        try:
            for f in self.files.values():
                f.flush()
                os.fsync(f.fileno())
                f.close()
            mode = _default_mode()
            for name, tmp in self._tmp.items():
                os.chmod(tmp, mode)  # mkstemp makes 0600; give the outputs the usual permissions
                os.replace(tmp, self.targets[name])
        except OSError as exc:
            self.abort()
            raise PrepareError(f"could not write the outputs: {exc}") from None
        self._tmp.clear()
        for p in self._remove:
            if p.is_file():
                p.unlink()

    def abort(self) -> None:
        for f in self.files.values():
            try:
                f.close()
            except OSError:
                pass
        for tmp in self._tmp.values():
            Path(tmp).unlink(missing_ok=True)
        self._tmp.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> Optional[bool]:
        if exc_type is not None:
            self.abort()
        return None
