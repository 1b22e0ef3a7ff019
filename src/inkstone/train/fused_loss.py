"""Cross-entropy over the output layer, a slice of positions at a time.

The plain path computes logits for every position (seq x vocab: 2048 x 262k
floats for Gemma-3 is 2 GiB in float32), upcasts them, takes log-softmax and
keeps all of it for the backward pass. Here each slice of positions gets its
logits, its loss and, at once, the gradient of the loss with respect to its
hidden states; the logits are then dropped. Memory holds one slice of logits,
and no matmul is done twice: the backward pass only scales the stored
gradient. The output layer must be frozen (LoRA does not adapt it).
"""
from __future__ import annotations

import torch

IGNORE = -100
# Logit elements held at once (x4 bytes): ~128 MiB whatever the vocabulary.
SLICE_ELEMENTS = 1 << 25


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                softcap: float | None) -> torch.Tensor:
        n, vocab = hidden.shape[0], weight.shape[0]
        step = max(16, SLICE_ELEMENTS // vocab)
        want_grad = ctx.needs_input_grad[0]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            h_all = hidden.to(weight.dtype)
            for a in range(0, n, step):
                lab = labels[a:a + step]
                logits = h_all[a:a + step] @ weight.T
                if softcap:
                    logits = torch.tanh(logits.float() / softcap) * softcap
                    chain = (1 - (logits / softcap) ** 2) if want_grad else None
                # One fused pass, float32 inside, in the logits' dtype out: the softmax is both the
                # loss (-log p[target]) and, less the one-hot target, the gradient with respect to the logits.
                # A separate float32 logsumexp would cost several passes over seq x vocab floats.
                probs = torch.softmax(logits, dim=-1)
                del logits
                valid = lab != IGNORE
                target = lab.clamp(min=0).unsqueeze(1)
                p_target = probs.gather(1, target).squeeze(1).float()
                total += -(torch.log(p_target.clamp(min=torch.finfo(torch.float32).tiny)) * valid).sum()
                if want_grad:
                    grad = probs.scatter_add_(1, target, torch.full_like(target, -1, dtype=probs.dtype))
                    if not bool(valid.all()):
                        grad[~valid] = 0
                    if softcap:
                        grad = grad * chain
                    grad_hidden[a:a + step] = (grad.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad_hidden if want_grad else None)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_total.to(grad_hidden.dtype), None, None, None


def linear_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                             softcap: float | None = None) -> torch.Tensor:
    """Sum of token losses of `hidden @ weight.T` against `labels` (IGNORE skipped).
    hidden [N, H], weight [V, H] (frozen), labels [N]."""
    if weight.requires_grad:
        raise ValueError("the fused loss needs a frozen output layer")
    return _LinearCrossEntropy.apply(hidden, weight, labels, softcap)


def causal_lm_loss_sum(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Next-token loss sum and the number of scored tokens, for a (peft-wrapped)
    causal LM, without ever materialising all logits."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    # No KV cache: nothing here generates, and filling one copies every layer's keys and values.
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    head = lm.get_output_embeddings()
    softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1).to(h.device)
    return linear_cross_entropy_sum(h, head.weight, y, softcap), int((y != IGNORE).sum())


def supports_fused_loss(model) -> bool:
    """A plain decoder + frozen output layer, with no bias and no extra logit scaling."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        head = lm.get_output_embeddings()
        lm.get_decoder()
    except (AttributeError, NotImplementedError):
        return False
    return (isinstance(head, torch.nn.Linear) and head.bias is None and not head.weight.requires_grad
            and getattr(lm.config, "logit_scale", None) is None)
