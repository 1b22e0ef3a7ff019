"""Find what to export: an adapter folder, or the best adapter in a training run.

A run folder (`checkpoints/<run>/`) holds `adapter/` once training finished and
`checkpoint-N/` folders while it runs. Trainer writes a checkpoint's weights
first and `trainer_state.json` last, so a checkpoint without that file (or
without its weights) is still being written and is skipped. Folders starting
with "tmp" or "." are temporary (partial saves) and never picked.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .errors import ExportError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINER_STATE = "trainer_state.json"  # written last by Trainer: marks a complete checkpoint
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _weights(folder: Path) -> Optional[Path]:
    for name in ADAPTER_WEIGHTS:
        f = folder / name
        if f.is_file() and f.stat().st_size > 0:
            return f
    return None


def is_adapter_dir(folder: Path) -> bool:
    """A PEFT adapter folder: adapter_config.json plus non-empty adapter weights."""
    folder = Path(folder)
    return folder.is_dir() and (folder / ADAPTER_CONFIG).is_file() and _weights(folder) is not None


def _is_complete_checkpoint(folder: Path) -> bool:
    from ..train.checkpoints import is_complete_checkpoint

    return is_adapter_dir(folder) and is_complete_checkpoint(folder)


def checkpoints(run: Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every checkpoint-N folder of a run, oldest first."""
    found = []
    for child in Path(run).iterdir():
        m = _CHECKPOINT.match(child.name)  # "tmp-checkpoint-5", ".checkpoint-5" never match
        if m and child.is_dir():
            found.append((int(m.group(1)), child, _is_complete_checkpoint(child)))
    return sorted(found)


def resolve_adapter(path) -> Path:
    """The adapter folder to export from `path`.

    `path` may be an adapter folder (or a file inside one), or a training run
    folder: then its finished `adapter/`, else its latest complete checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ExportError(f"adapter not found: {p} does not exist")
    if p.is_file():
        if p.name == ADAPTER_CONFIG or p.name in ADAPTER_WEIGHTS:
            p = p.parent
        else:
            raise ExportError(f"{p} is a file; give the adapter folder (with {ADAPTER_CONFIG}) "
                              "or a training run folder")
    if is_adapter_dir(p):
        return p
    if (p / ADAPTER_CONFIG).is_file():
        raise ExportError(f"{p} has {ADAPTER_CONFIG} but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}): "
                          "the adapter is incomplete")
    final = p / "adapter"
    if is_adapter_dir(final):
        return final
    ckpts = checkpoints(p)
    complete = [c for c in ckpts if c[2]]
    if complete:
        return complete[-1][1]
    detail = ""
    if ckpts:
        detail = " (incomplete, still being written: " + ", ".join(c[1].name for c in ckpts) + ")"
    raise ExportError(f"{p} is neither a LoRA adapter folder (no {ADAPTER_CONFIG}) nor a training run with a "
                      f"finished adapter/ or a complete checkpoint-N/{detail}")


def run_dir_of(adapter: Path) -> Optional[Path]:
    """The training run folder an adapter belongs to (for the model card), if any."""
    parent = Path(adapter).resolve().parent
    if (parent / "run.json").is_file() or (parent / "progress.jsonl").is_file():
        return parent
    return None
