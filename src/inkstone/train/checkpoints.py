"""Which checkpoint folders are complete. Light on purpose: the engine and the UI
import it to decide what to offer, without importing torch."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

INCOMPLETE_MARKER = ".incomplete"


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint counts only once everything is written: trainer_state.json is
    written last, and our marker is removed after that."""
    folder = Path(folder)
    return (folder / "trainer_state.json").is_file() and not (folder / INCOMPLETE_MARKER).exists()


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    """The newest complete `checkpoint-N` folder, or None."""
    found = []
    for p in Path(output_dir).glob("checkpoint-*"):
        step = p.name.rsplit("-", 1)[-1]
        if step.isdigit() and is_complete_checkpoint(p):
            found.append((int(step), p))
    return max(found)[1] if found else None
