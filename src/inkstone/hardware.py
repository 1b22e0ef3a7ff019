"""What this machine computes fast: the one place that decides bf16 or float32.

bf16 halves memory traffic and is native on GPUs that support it and on CPUs
with AVX512-BF16 or AMX. Elsewhere PyTorch emulates it and it runs several
times slower than float32, so there `auto` means float32. Training and the
engine both ask here, so they never disagree about a machine.
"""
from __future__ import annotations

from functools import lru_cache

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def on_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def fast_bf16() -> bool:
    """bf16 runs at full speed here (a bf16-capable GPU, or such a CPU)."""
    if on_gpu():
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def resolve_dtype(requested: str) -> str:
    """`auto` -> "bfloat16" where bf16 is fast, else "float32"; anything else as given."""
    if requested != "auto":
        return requested
    return "bfloat16" if fast_bf16() else "float32"
