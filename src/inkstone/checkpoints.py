"""What adapters and checkpoints exist, and which are complete: the one rule that
training (resume), export, the engine and the UI all use.

A training run folder (`checkpoints/<run>/`) holds `checkpoint-N/` folders while
it trains and `adapter/` once it finished. A folder is a usable adapter when it
has adapter_config.json and non-empty adapter weights, and no `.incomplete`
marker. A `checkpoint-N/` folder must also have trainer_state.json: Trainer
writes it last, and our marker (see train/qlora.py) is removed only after that,
so a checkpoint without it is still being written, or its save was cut off.
Folders whose name starts with "." or "tmp" are partial saves and never offered.

Light on purpose (no torch, no transformers): the engine and the UI import it
to decide what to offer.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Optional, Union

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINER_STATE = "trainer_state.json"  # written last by Trainer
INCOMPLETE_MARKER = ".incomplete"  # present while our Trainer saves a checkpoint
ADAPTER_DIRNAME = "adapter"  # a run's finished adapter
# Where the previous adapter sits while a new one is swapped in (train/qlora.py save_adapter_atomically).
PREVIOUS_ADAPTER_DIRNAME = f".{ADAPTER_DIRNAME}-old"
TEMPORARY_PREFIXES = (".", "tmp")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

PathLike = Union[str, Path]


class AdapterError(ValueError):
    """An adapter path that cannot be used; the message is for the user."""


def adapter_weights(folder: PathLike) -> Optional[Path]:
    """The folder's adapter weights file, if there is one with content."""
    for name in ADAPTER_WEIGHTS:
        f = Path(folder) / name
        if f.is_file() and f.stat().st_size > 0:
            return f
    return None


def is_adapter_dir(folder: PathLike) -> bool:
    """A PEFT adapter folder: adapter_config.json plus non-empty adapter weights."""
    folder = Path(folder)
    return folder.is_dir() and (folder / ADAPTER_CONFIG).is_file() and adapter_weights(folder) is not None


def checkpoint_step(folder: PathLike) -> Optional[int]:
    """N for a `checkpoint-N` folder; None for any other name ("tmp-checkpoint-5" too)."""
    m = _CHECKPOINT.match(Path(folder).name)
    return int(m.group(1)) if m else None


def unusable_reason(folder: PathLike) -> Optional[str]:
    """Why `folder` is not a complete adapter, in words that name it; None when it is one."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not (folder / ADAPTER_CONFIG).is_file():
        return f"{folder} is not a LoRA adapter folder (no {ADAPTER_CONFIG})"
    if adapter_weights(folder) is None:
        return (f"{folder} has {ADAPTER_CONFIG} but no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}): "
                "the adapter is incomplete")
    if (folder / INCOMPLETE_MARKER).exists():
        return f"{folder} is incomplete: its save was interrupted ({INCOMPLETE_MARKER} is still there)"
    if checkpoint_step(folder) is not None and not (folder / TRAINER_STATE).is_file():
        return f"checkpoint {folder} is incomplete: no {TRAINER_STATE} yet (still being written, or cut off)"
    return None


def is_complete_checkpoint(folder: PathLike) -> bool:
    """Every file of a checkpoint is written: adapter weights, trainer state, and no marker.
    Any folder name: resume may be pointed at a checkpoint copied elsewhere."""
    folder = Path(folder)
    return is_adapter_dir(folder) and (folder / TRAINER_STATE).is_file() and not (folder / INCOMPLETE_MARKER).exists()


def checkpoints(run_dir: PathLike) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every checkpoint-N folder of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        step = checkpoint_step(child)
        if step is not None and child.is_dir():
            found.append((step, child, is_complete_checkpoint(child)))
    return sorted(found)


def latest_checkpoint(run_dir: PathLike) -> Optional[Path]:
    """The newest complete `checkpoint-N` folder of a run, or None."""
    complete = [folder for _, folder, done in checkpoints(run_dir) if done]
    return complete[-1] if complete else None


def finished_adapter(run_dir: PathLike) -> Optional[Path]:
    """The run's final adapter; the previous one if a kill came mid-swap."""
    for name in (ADAPTER_DIRNAME, PREVIOUS_ADAPTER_DIRNAME):
        folder = Path(run_dir) / name
        if is_adapter_dir(folder):
            return folder
    return None


def _adapter_folder_of(path: Path) -> Path:
    """`path` itself, or the folder of an adapter file given by mistake."""
    if not path.is_file():
        return path
    if path.name == ADAPTER_CONFIG or path.name in ADAPTER_WEIGHTS:
        return path.parent
    raise AdapterError(f"{path} is a file; give the adapter folder (with {ADAPTER_CONFIG}) or a training run folder")


def _no_adapter_in_run(run_dir: Path) -> AdapterError:
    """The error for a folder holding neither an adapter nor a usable one of a run."""
    pending = [folder.name for _, folder, done in checkpoints(run_dir) if not done]
    detail = f" (incomplete, still being written: {', '.join(pending)})" if pending else ""
    return AdapterError(f"{run_dir} is neither a LoRA adapter folder (no {ADAPTER_CONFIG}) nor a training run with "
                        f"a finished {ADAPTER_DIRNAME}/ or a complete checkpoint-N/{detail}")


def resolve_adapter(path: PathLike) -> Path:
    """The adapter to use for `path`: an adapter folder (or a file inside one) as is,
    or for a training run folder its finished adapter/, else its latest complete checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise AdapterError(f"adapter not found: {p} does not exist")
    p = _adapter_folder_of(p)
    if (p / ADAPTER_CONFIG).is_file():
        reason = unusable_reason(p)
        if reason:
            raise AdapterError(reason)
        return p
    found = finished_adapter(p) or latest_checkpoint(p)
    if found is None:
        raise _no_adapter_in_run(p)
    return found


def lora_rank(folder: PathLike) -> int:
    """The LoRA rank `r` recorded in the adapter's config (0 when absent)."""
    cfg_file = Path(folder) / ADAPTER_CONFIG
    try:
        return int(json.loads(cfg_file.read_text(encoding="utf-8")).get("r", 0))
    except (ValueError, TypeError, AttributeError) as exc:  # bad JSON, a non-number r, a list
        raise AdapterError(f"{cfg_file}: unreadable adapter config ({exc})") from exc


def check_adapter_dir(path: PathLike, max_lora_rank: int) -> Path:
    """The adapter folder, resolved, when the engine can serve it; AdapterError says what is wrong."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise AdapterError(f"adapter folder not found: {path}")
    reason = unusable_reason(folder)
    if reason:
        raise AdapterError(reason)
    rank = lora_rank(folder)
    if rank > max_lora_rank:
        raise AdapterError(f"adapter {path} has rank {rank}, above the engine's max_lora_rank {max_lora_rank}; "
                           f"raise model.max_lora_rank")
    return folder


def _is_temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_PREFIXES)


def find_adapters(roots: Iterable[PathLike]) -> dict[str, Path]:
    """Every complete adapter under the roots (at any depth), by name: its path relative
    to its root (the root's own name when the root is the adapter). The first root wins a name."""
    found: dict[str, Path] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for cfg in sorted(root.glob(f"**/{ADAPTER_CONFIG}")):
            folder = cfg.parent
            relative = folder.relative_to(root)
            if any(_is_temporary(part) for part in relative.parts) or unusable_reason(folder):
                continue
            found.setdefault(str(relative) if relative.parts else root.name, folder)
    return found


def run_dir_of(adapter: PathLike) -> Optional[Path]:
    """The training run folder an adapter belongs to (for the model card), if any."""
    parent = Path(adapter).resolve().parent
    if (parent / "run.json").is_file() or (parent / "progress.jsonl").is_file():
        return parent
    return None


def replace_folder(final: Path, write) -> Path:
    """Write a folder beside the old one (`write(tmp)`), then swap: rename the old aside as
    `.<name>-old`, rename the new in, delete the old. A kill at any point leaves a whole folder
    (`final`, or `.<name>-old`, which `finished_adapter` falls back to for adapters)."""
    import os
    import shutil

    final = Path(final)
    tmp, old = final.parent / f".{final.name}-partial", final.parent / f".{final.name}-old"
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
