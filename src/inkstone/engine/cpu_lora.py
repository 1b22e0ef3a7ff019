"""LoRA on vLLM's CPU build: one matrix product per run of tokens, not one weight copy per token.

vLLM's CPU platform computes LoRA with its PyTorch fallback ops
(`vllm/lora/ops/torch_ops`), which gather a full copy of the adapter's A and B
matrices for every token (`weights[token_indices]`) and then multiply token by
token. A prompt's prefill therefore copies the adapter once per prompt token in
every layer: for Gemma-3-270M with all linear layers that is ~30 MB per token
(adapters are padded to `max_lora_rank`, so rank 8 costs as much as rank 64).
The first token of every new 1,000-token prompt with an adapter came after
35-57 s (base model 0.85 s); per run it comes after about 1.1 s. vLLM already
groups a step's tokens into runs that share one adapter slot
(`prefill_metadata`); each run needs one matrix product.

Tokens without an adapter (slot -1) are left alone, as vLLM's GPU kernels
do; the fallback ops index the weights with -1 and so applied the last slot's
adapter to base-model tokens batched beside adapter tokens.

The replacement runs in vLLM's worker process: the engine names `WorkerHook`
as vLLM's `worker_extension_cls`, vLLM imports it there, and importing this
module patches `PunicaWrapperCPU`. Only that class changes, so the GPU build
(Triton kernels) is untouched.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch

log = logging.getLogger(__name__)

# The methods of vLLM's PunicaWrapperCPU this module replaces, each checked for before patching.
PATCHED = ("_shrink_prefill", "_expand_prefill", "_expand_slice_prefill")


def adapter_runs(starts: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor) -> list[tuple[int, int, int]]:
    """(first token, end, slot) of every run of tokens that uses an adapter."""
    return [(s, s + n, k) for s, n, k in zip(starts.tolist(), lengths.tolist(), slots.tolist()) if k >= 0]


def _slot_weights(stacked: torch.Tensor, slot: int, dtype: torch.dtype) -> torch.Tensor:
    """One slot's matrix (out x in) from vLLM's stacked (slots, 1, out, in) weights, in `dtype`:
    the dtype vLLM's ops compute in (float32 for A, the model's for B)."""
    w = stacked[slot]
    return (w.squeeze(0) if w.dim() == 3 else w).to(dtype)


def shrink(y: torch.Tensor, x: torch.Tensor, a_all: torch.Tensor, runs, scale: float) -> None:
    """y[run] = scale * x[run] @ A[slot]^T: the input projected to the adapter's rank."""
    for start, end, slot in runs:
        a = _slot_weights(a_all, slot, y.dtype)
        y[start:end, : a.shape[0]] = scale * (x[start:end].to(y.dtype) @ a.T)


def expand(y: torch.Tensor, x: torch.Tensor, b_all: torch.Tensor, runs, offset: int, size: Optional[int],
           add_inputs: bool) -> None:
    """y[run, offset:offset+size] (+)= x[run] @ B[slot]^T; `size` None: as wide as both allow
    (an adapter and the model may pad the output differently, as vLLM's op allows)."""
    for start, end, slot in runs:
        b = _slot_weights(b_all, slot, y.dtype)
        width = size if size is not None else min(b.shape[0], y.shape[1] - offset)
        out = x[start:end].to(y.dtype) @ b[:width].T
        target = y[start:end, offset: offset + width]
        if add_inputs:
            target += out
        else:
            target.copy_(out)


# ---- the methods put on PunicaWrapperCPU (self is the wrapper) ----------------------
def _runs(wrapper) -> list[tuple[int, int, int]]:
    starts, lengths, slots = wrapper.prefill_metadata[:3]
    return adapter_runs(starts, lengths, slots)


def _shrink_prefill(self, y, x, w_t_all, scale):
    if not self.no_lora:
        shrink(y, x, w_t_all, _runs(self), scale)


def _expand_prefill(self, y, x, w_t_all, add_inputs):
    if not self.no_lora:
        expand(y, x, w_t_all, _runs(self), 0, None, add_inputs)


def _expand_slice_prefill(self, y, x, w_t_all, y_offset, y_slice_size, add_inputs):
    if not self.no_lora:
        expand(y, x, w_t_all, _runs(self), y_offset, y_slice_size, add_inputs)


def install() -> bool:
    """Replace PunicaWrapperCPU's per-token prefill ops (used for every step on CPU: vLLM
    marks CPU batches as prefill). False, with vLLM's ops kept, if vLLM's class changed shape."""
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    if getattr(PunicaWrapperCPU, "_inkstone_runs", False):
        return True
    if not all(callable(getattr(PunicaWrapperCPU, name, None)) for name in PATCHED) or not hasattr(
            PunicaWrapperCPU, "prefill_metadata"):
        log.warning("vLLM's CPU LoRA wrapper is not the expected one; keeping its per-token LoRA ops (slow prefill)")
        return False
    for name in PATCHED:
        setattr(PunicaWrapperCPU, name, globals()[name])
    PunicaWrapperCPU._inkstone_runs = True
    return True


class WorkerHook:
    """Named as vLLM's `worker_extension_cls`: vLLM imports it in the worker process, which
    runs `install()` below there, and makes it a base of its worker class."""

    def inkstone_lora_runs_installed(self) -> bool:
        """Whether this worker uses the per-run ops: `collective_rpc` reaches it, for checks."""
        from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

        return bool(getattr(PunicaWrapperCPU, "_inkstone_runs", False))


WORKER_HOOK = f"{__name__}.{WorkerHook.__qualname__}"

install()
