"""Check an export against the adapter on its base model before calling it done.

Three checks, each failing loudly with what differs:
- the reloaded file holds exactly the intended tensors (the merged weights
  after the same rounding or quantisation), tensor by tensor: this catches a
  wrong name, layout, rotary permutation or norm offset, and names the tensor;
- its tokenizer splits fixed probes (Chinese and English prose, plus a chat
  turn when there is a chat template) like the adapter's tokenizer;
- next-token logits at every probe position stay within the storage format's
  tolerance of the unmerged adapter on the full-precision base (the reference),
  and greedy continuations are compared. With llama-cpp-python installed, a
  GGUF is also run in llama.cpp itself and held to the same tolerance.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .errors import VerificationError

PROBES = (
    "第一回　甄士隐梦幻识通灵　贾雨村风尘怀闺秀\n　　此开卷第一回也。作者自云：因曾历过一番梦幻之后，故将真事隐去，",
    "The rain had not stopped for three days when the letter finally arrived. She opened it by the window and read",
    "黛玉听了，冷笑道：“我就知道，别人不挑剩下的也不给我。”宝玉听了，",
)
CHAT_PROBE = "写一段黛玉初进荣国府的情景。"
MAX_PROBE_TOKENS = 48
WEIGHT_TOLERANCE = 1e-5  # reloaded tensor vs intended tensor, relative to its largest value
GREEDY_TOKENS = 16

# Per storage format: (max relative RMS logit error, max mean KL(ref || export) in nats)
# against the adapter on the base. That the file holds exactly the intended
# (rounded / quantised) tensors is checked separately, tensor by tensor; these
# bound how much the rounding itself may change the output. Measured on the
# tiny test model and Gemma-3-270M (bf16 5e-3 / 4e-5, f16 7e-4 / 7e-7,
# q8_0 0.02 / 9e-4, q4_0 0.34 / 0.19), with headroom.
TOLERANCES = {
    "float32": (1e-3, 1e-5),
    "float16": (2e-2, 1e-3),
    "bfloat16": (5e-2, 1e-2),
    "q8_0": (0.1, 2e-2),
    "q4_0": (0.8, 0.75),  # Gemma-3-270M: 0.34 / 0.19 -- Q4_0 costs a small model a lot
}


@dataclass
class Reference:
    ids: list[list[int]]
    logits: list  # one float32 tensor [tokens, vocab] per probe
    greedy: list[list[int]] = field(default_factory=list)
    plain_ids: list[list[int]] = field(default_factory=list)  # the probe texts without added special tokens


def probe_texts(tokenizer) -> list[str]:
    texts = list(PROBES)
    if getattr(tokenizer, "chat_template", None):
        try:
            texts.append(tokenizer.apply_chat_template([{"role": "user", "content": CHAT_PROBE}],
                                                       tokenize=False, add_generation_prompt=True))
        except Exception:  # a template that needs more than one user turn: the prose probes still run
            pass
    return texts


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    out = []
    for t in texts:
        # A chat probe already carries its special tokens (bos included) as text.
        special = not (tokenizer.bos_token and t.startswith(tokenizer.bos_token))
        out.append(list(tokenizer(t, add_special_tokens=special).input_ids)[:MAX_PROBE_TOKENS])
    return out


def encode_plain(tokenizer, texts: list[str]) -> list[list[int]]:
    """How the vocabulary itself splits each text: whether BOS is added is a separate setting, which
    GGUF keeps as metadata (tokenizer.ggml.add_bos_token) that transformers' GGUF reader ignores."""
    return [list(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]


def _logits(model, ids: list[list[int]]) -> list:
    import torch

    out = []
    with torch.inference_mode():
        for seq in ids:
            x = torch.tensor([seq])
            out.append(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float())
    return out


def _greedy(model, ids: list[list[int]], n: int, eos_id) -> list[list[int]]:
    import torch
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=n, do_sample=False, pad_token_id=eos_id, eos_token_id=None)
    out = []
    with torch.inference_mode():
        for seq in ids:
            x = torch.tensor([seq])
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=cfg)
            out.append(y[0, len(seq):].tolist())
    return out


def reference(model, tokenizer, greedy_tokens: int = GREEDY_TOKENS) -> Reference:
    texts = probe_texts(tokenizer)
    ids = encode(tokenizer, texts)
    return Reference(ids=ids, logits=_logits(model, ids), plain_ids=encode_plain(tokenizer, texts),
                     greedy=_greedy(model, ids, greedy_tokens, tokenizer.eos_token_id))


def compare_logits(ref: list, got: list) -> dict:
    import torch

    sq_err = sq_ref = 0.0
    max_abs, kls, top1, n = 0.0, [], 0, 0
    for r, g in zip(ref, got):
        r, g = r.double(), g.double()
        if r.shape != g.shape:
            raise VerificationError(f"logit shapes differ: reference {tuple(r.shape)}, export {tuple(g.shape)}")
        d = g - r
        max_abs = max(max_abs, d.abs().max().item())
        sq_err += d.pow(2).sum().item()
        sq_ref += (r - r.mean(dim=-1, keepdim=True)).pow(2).sum().item()
        lp, lq = torch.log_softmax(r, -1), torch.log_softmax(g, -1)
        kls += (lp.exp() * (lp - lq)).sum(-1).tolist()
        top1 += (r.argmax(-1) == g.argmax(-1)).sum().item()
        n += r.shape[0]
    return {
        "positions": n,
        "rel_rms_error": math.sqrt(sq_err / max(sq_ref, 1e-30)),
        "max_abs_logit_diff": max_abs,
        "kl_mean": sum(kls) / max(len(kls), 1),
        "kl_max": max(kls) if kls else 0.0,
        "top1_agreement": top1 / max(n, 1),
    }


def greedy_match(ref: list[list[int]], got: list[list[int]]) -> float:
    """Share of greedy tokens produced identically before the first divergence, over all probes."""
    same = total = 0
    for r, g in zip(ref, got):
        total += len(r)
        for a, b in zip(r, g):
            if a != b:
                break
            same += 1
    return same / max(total, 1)


def check(label: str, model, tokenizer, ref: Reference, storage: str, greedy_tokens: int = GREEDY_TOKENS) -> dict:
    """Compare `model` (and its reloaded `tokenizer`) with the reference; raise when beyond tolerance."""
    texts_ids = encode_plain(tokenizer, probe_texts(tokenizer)) if tokenizer is not None else ref.plain_ids
    tokenizer_ok = texts_ids == ref.plain_ids
    figures = compare_logits(ref.logits, _logits(model, ref.ids))
    if greedy_tokens:
        eos = tokenizer.eos_token_id if tokenizer is not None else None
        got = _greedy(model, ref.ids, greedy_tokens, eos)
        figures["greedy_match"] = greedy_match(ref.greedy, got)
        if tokenizer is not None:
            figures["greedy_sample"] = tokenizer.decode(got[0])
    figures["tokenizer_matches"] = tokenizer_ok
    max_rel, max_kl = TOLERANCES[storage]
    figures["tolerance"] = {"rel_rms_error": max_rel, "kl_mean": max_kl, "storage": storage}
    problems = []
    if not tokenizer_ok:
        if len(texts_ids) != len(ref.plain_ids):
            problems.append("its tokenizer has no chat template" if len(texts_ids) < len(ref.plain_ids)
                            else "its tokenizer gained a chat template")
        else:
            bad = next(i for i, (a, b) in enumerate(zip(texts_ids, ref.plain_ids)) if a != b)
            problems.append(f"its tokenizer encodes probe {bad} differently from the adapter's tokenizer")
    if not figures["rel_rms_error"] <= max_rel:  # `not <=` also catches NaN
        problems.append(f"relative logit error {figures['rel_rms_error']:.3g} > {max_rel:g}")
    if not figures["kl_mean"] <= max_kl:
        problems.append(f"mean KL divergence {figures['kl_mean']:.3g} > {max_kl:g}")
    if problems:
        raise VerificationError(f"{label} does not match the adapter on its base model ({storage} tolerance): "
                                + "; ".join(problems) + f". Figures: {_short(figures)}")
    return figures


def check_weights(label: str, expected: dict, model, storage: str) -> dict:
    """Every tensor of the reloaded `model` must equal what was meant to be written (`expected`: the merged
    weights after the same rounding/quantisation), up to float arithmetic. Names the tensors that differ."""
    import torch

    got = model.state_dict()
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    worst, bad = 0.0, []
    for name, e in expected.items():
        if name not in got:
            continue
        g = got[name]
        if tuple(g.shape) != tuple(e.shape):
            bad.append(f"{name} shape {tuple(g.shape)} != {tuple(e.shape)}")
            continue
        e32, g32 = e.detach().float(), g.detach().float()
        scale = e32.abs().max().item() + 1e-12
        diff = (g32 - e32).abs().max().item() / scale
        worst = max(worst, diff)
        # `expected` in bf16/fp16 (a model too big for fp32 here) is itself rounded by up to half an ulp
        if not diff <= max(WEIGHT_TOLERANCE, torch.finfo(e.dtype).eps if e.is_floating_point() else 0.0):
            bad.append(f"{name} (max difference {diff:.2g} of its largest value)")
    problems = []
    if missing:
        problems.append("missing tensors: " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if extra:
        problems.append("unexpected tensors: " + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
    if bad:
        problems.append("tensors that differ from the merged weights: " + ", ".join(bad[:5])
                        + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    if problems:
        raise VerificationError(f"{label} was not written as intended ({storage}): " + "; ".join(problems))
    return {"tensors": len(expected), "max_rel_weight_diff": worst}


def check_gguf_metadata(path, tokenizer) -> dict:
    """The special-token settings llama.cpp/Ollama read from the file must match the tokenizer."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def value(key):
        return fields[key].contents() if key in fields else None

    bare = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a", add_special_tokens=True).input_ids
    expected = {
        "tokenizer.ggml.bos_token_id": tokenizer.bos_token_id,
        "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
        "tokenizer.ggml.add_bos_token": bool(tokenizer.bos_token_id is not None and len(full) > len(bare)
                                             and full[0] == tokenizer.bos_token_id),
        "tokenizer.chat_template": getattr(tokenizer, "chat_template", None) or None,
    }
    wrong = [f"{k} is {value(k)!r}, expected {v!r}" for k, v in expected.items() if value(k) != v]
    if wrong:
        raise VerificationError(f"the GGUF {path} has wrong tokenizer metadata: " + "; ".join(wrong))
    return {k.split(".")[-1]: (bool(v) if k.endswith("template") else v) for k, v in expected.items()}


def check_llama_cpp(path, tokenizer, ref: Reference, storage: str) -> dict | None:
    """Run the GGUF in llama.cpp itself (llama-cpp-python, when installed): its tokenizer must split the
    probes like ours and its logits must agree like transformers' do. None when llama_cpp is absent."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return None
    import numpy as np
    import torch
    from llama_cpp import Llama

    n_ctx = max(len(i) for i in ref.ids) + 8
    try:
        llm = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False,
                    n_threads=max(1, min(4, os.cpu_count() or 1)))
    except Exception as exc:
        raise VerificationError(f"llama.cpp cannot load the GGUF {path}: {exc}") from exc
    texts = probe_texts(tokenizer)
    got_ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
    logits = []
    for ids in ref.ids:
        llm.reset()
        llm.eval(ids)
        logits.append(torch.from_numpy(np.array(llm.scores[:len(ids)], dtype=np.float32)))
    del llm
    figures = compare_logits(ref.logits, logits)
    figures["tokenizer_matches"] = got_ids == ref.plain_ids
    max_rel, max_kl = TOLERANCES[storage]
    problems = []
    if not figures["tokenizer_matches"]:
        bad = next((i for i, (a, b) in enumerate(zip(got_ids, ref.plain_ids)) if a != b), 0)
        problems.append(f"llama.cpp's tokenizer splits probe {bad} differently")
    if not figures["rel_rms_error"] <= max_rel:
        problems.append(f"relative logit error {figures['rel_rms_error']:.3g} > {max_rel:g}")
    if not figures["kl_mean"] <= max_kl:
        problems.append(f"mean KL divergence {figures['kl_mean']:.3g} > {max_kl:g}")
    if problems:
        raise VerificationError(f"the GGUF {path} run by llama.cpp does not match the adapter on its base model: "
                                + "; ".join(problems) + f". Figures: {_short(figures)}")
    return figures


def _short(figures: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in figures.items() if k not in ("tolerance", "greedy_sample"))
