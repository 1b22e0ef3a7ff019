"""LoRA on vLLM's CPU build, one matrix product per run of tokens (engine/cpu_lora.py):
the same numbers as vLLM's per-token ops, base-model tokens left alone."""
import pytest
import torch

from inkstone.engine import cpu_lora

# A step's tokens: two requests on adapter slots 0 and 2, a base-model request (-1) between.
SLOTS = [0, 0, 0, -1, -1, 2, 2, 2, 2, 0]
RANK, D_IN, D_OUT = 4, 16, 24


def stacked(rows: int, cols: int, slots: int = 3) -> torch.Tensor:
    """Weights laid out as vLLM stacks them: (slots, 1, rows, cols)."""
    return torch.randn(slots, 1, rows, cols, dtype=torch.bfloat16)


def per_token_reference(x, a_all, b_all, scale):
    """What a LoRA adds to each token: scale * x @ A^T @ B^T with the token's own slot; 0 without one."""
    out = torch.zeros(len(SLOTS), b_all.shape[2])
    for t, slot in enumerate(SLOTS):
        if slot >= 0:
            out[t] = scale * (x[t].float() @ a_all[slot, 0].float().T) @ b_all[slot, 0].float().T
    return out


def wrapper_for(slots):
    """vLLM's CPU punica wrapper with its prefill metadata computed for `slots`, as a step sets it."""
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    w = PunicaWrapperCPU(max_num_batched_tokens=64, max_batches=8, device="cpu")
    w._update_prefill_metadata(torch.tensor(slots, dtype=torch.long))
    w.is_prefill = True
    return w


def test_runs_are_the_stretches_of_tokens_sharing_an_adapter():
    w = wrapper_for(SLOTS)
    assert cpu_lora.adapter_runs(*w.prefill_metadata[:3]) == [(0, 3, 0), (5, 9, 2), (9, 10, 0)]


def test_the_hook_is_installed_on_this_vllm_and_resolves_by_name():
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
    from vllm.utils.import_utils import resolve_obj_by_qualname

    assert cpu_lora.install()  # False would mean vLLM changed and the slow per-token ops are back
    assert PunicaWrapperCPU._shrink_prefill is cpu_lora._shrink_prefill
    assert resolve_obj_by_qualname(cpu_lora.WORKER_HOOK) is cpu_lora.WorkerHook


def test_lora_linear_matches_the_per_token_sums_and_leaves_base_tokens_alone():
    torch.manual_seed(0)
    x, y0 = torch.randn(len(SLOTS), D_IN, dtype=torch.bfloat16), torch.randn(len(SLOTS), D_OUT, dtype=torch.bfloat16)
    a_all, b_all = stacked(RANK, D_IN), stacked(D_OUT, RANK)
    y = y0.clone()
    wrapper_for(SLOTS).add_lora_linear(y, x, (a_all,), (b_all,), 0.5, (D_OUT,))
    want = y0.float() + per_token_reference(x, a_all, b_all, 0.5)
    torch.testing.assert_close(y.float(), want, rtol=2e-2, atol=5e-2)
    assert torch.equal(y[3:5], y0[3:5])  # the base-model request is untouched


def test_agrees_with_vllms_own_per_token_ops():
    from vllm.lora.ops.torch_ops import bgmv_expand_slice, bgmv_shrink

    torch.manual_seed(1)
    x = torch.randn(len(SLOTS), D_IN, dtype=torch.bfloat16)
    a_all, b_all = stacked(RANK, D_IN), stacked(D_OUT, RANK)
    adapter_rows = torch.tensor([s >= 0 for s in SLOTS])
    idx = torch.tensor(SLOTS)[adapter_rows]
    runs = cpu_lora.adapter_runs(*wrapper_for(SLOTS).prefill_metadata[:3])

    ours_mid, theirs_mid = torch.zeros(len(SLOTS), RANK), torch.zeros(int(adapter_rows.sum()), RANK)
    cpu_lora.shrink(ours_mid, x, a_all, runs, 0.5)
    bgmv_shrink(x[adapter_rows], a_all, theirs_mid, idx, 0.5)
    torch.testing.assert_close(ours_mid[adapter_rows], theirs_mid)

    ours, theirs = torch.zeros(len(SLOTS), 2 * D_OUT, dtype=torch.bfloat16), torch.zeros(
        int(adapter_rows.sum()), 2 * D_OUT, dtype=torch.bfloat16)
    cpu_lora.expand(ours, ours_mid, b_all, runs, D_OUT, D_OUT, add_inputs=True)
    bgmv_expand_slice(theirs_mid, b_all, theirs, idx, D_OUT, D_OUT, True)
    torch.testing.assert_close(ours[adapter_rows], theirs, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("width", [D_OUT - 4, D_OUT + 4])
def test_expand_without_a_slice_covers_what_both_sides_have(width):
    """An adapter and the model may pad an output differently; vLLM's op writes the common width."""
    torch.manual_seed(2)
    mid = torch.randn(len(SLOTS), RANK)
    b_all = stacked(D_OUT, RANK)
    y = torch.zeros(len(SLOTS), width, dtype=torch.bfloat16)
    cpu_lora.expand(y, mid, b_all, [(0, 3, 0)], 0, None, add_inputs=False)
    common = min(width, D_OUT)
    torch.testing.assert_close(y[:3, :common], (mid[:3].to(torch.bfloat16) @ b_all[0, 0].T)[:, :common])
    assert not y[3:].any()
