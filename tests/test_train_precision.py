"""Training computes the right gradients on every CPU, in bf16 and float32.

On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for inference the
first time a layer runs without gradients (an evaluation), and backpropagating
through that packing gives wrong gradients or crashes. These tests evaluate
before the first step and compare the LoRA gradients with a run that did not.
"""
import pytest
import torch

from inkstone.train.model_setup import add_lora, load_base, training_dtype
from tiny_model import build_tiny_llama


@pytest.fixture(scope="module")
def tiny_llama(tiny_model, tmp_path_factory):
    return build_tiny_llama(tiny_model, tmp_path_factory.mktemp("tiny-llama"))


def lora_grads(model_dir, *, dtype, evaluate_first: bool, four_bit: bool = True) -> dict:
    torch.manual_seed(0)
    model = add_lora(load_base(model_dir, dtype=dtype, load_in_4bit=four_bit), r=8, alpha=16, dropout=0.0)
    ids = torch.randint(10, 2000, (2, 48), generator=torch.Generator().manual_seed(1))
    if evaluate_first:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    model.train()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("arch", ["qwen2-with-biases", "llama-without-biases"])
def test_lora_gradients_after_an_evaluation_equal_those_without(arch, dtype, tiny_model, tiny_llama):
    model_dir = tiny_model if arch.startswith("qwen2") else tiny_llama
    plain = lora_grads(model_dir, dtype=dtype, evaluate_first=False)
    after_eval = lora_grads(model_dir, dtype=dtype, evaluate_first=True)
    assert plain.keys() == after_eval.keys() and len(plain) > 0
    assert any(g.abs().sum() > 0 for g in plain.values())  # LoRA B gets a real gradient at step 0
    for name in plain:
        torch.testing.assert_close(after_eval[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_dtype_follows_the_machine():
    from inkstone.hardware import cpu_has_fast_bf16, fast_bf16

    assert training_dtype("float32") == torch.float32 and training_dtype("bfloat16") == torch.bfloat16
    expected = torch.bfloat16 if fast_bf16() else torch.float32
    assert training_dtype("auto") == expected
    if not torch.cuda.is_available():
        assert fast_bf16() == cpu_has_fast_bf16()


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_sliced_loss_equals_the_plain_loss_and_gradients(softcap, monkeypatch):
    import torch.nn.functional as F

    from inkstone.train import fused_loss

    monkeypatch.setattr(fused_loss, "SLICE_ELEMENTS", 7 * 500)  # many slices, the last one short
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(500, 32, generator=g) * 0.3
    labels = torch.randint(0, 500, (50,), generator=g)
    labels[::7] = fused_loss.IGNORE
    h1 = torch.randn(50, 32, generator=g, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_(True)

    logits = h1 @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    plain = F.cross_entropy(logits, labels, ignore_index=fused_loss.IGNORE, reduction="sum")
    sliced = fused_loss.linear_cross_entropy_sum(h2, weight, labels, softcap)
    (plain * 0.5).backward()
    (sliced * 0.5).backward()
    torch.testing.assert_close(sliced, plain, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(h2.grad, h1.grad, rtol=1e-4, atol=1e-6)


def test_sliced_loss_through_the_model_matches_the_model_loss(tiny_model):
    from inkstone.train.fused_loss import causal_lm_loss_sum, supports_fused_loss

    model = add_lora(load_base(tiny_model, dtype=torch.float32, load_in_4bit=False), r=8, alpha=16, dropout=0.0)
    assert supports_fused_loss(model)
    ids = torch.randint(10, 2000, (2, 40), generator=torch.Generator().manual_seed(3))
    labels = ids.clone()
    labels[:, :5] = -100
    expected = model(input_ids=ids, labels=labels).loss
    total, count = causal_lm_loss_sum(model, ids, None, labels)
    assert count == 2 * 35  # labels 1..39 are predicted; 1..4 are ignored
    torch.testing.assert_close(total / count, expected, rtol=1e-5, atol=1e-5)
