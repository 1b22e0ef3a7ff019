"""Write a merged model as one GGUF file with the `gguf` package.

Tensor names come from gguf's own HF->GGUF name map (the one llama.cpp's
converter and transformers' GGUF loader share). Per architecture we apply what
llama.cpp's converter does: llama/mistral permute the q/k rows for its rotary
layout; Gemma stores RMSNorm weights as (1 + w). 1-D tensors stay F32; 2-D
tensors are F16, Q8_0 or Q4_0 (rows not divisible by the 32-value block fall
back to F16; with Q4_0 the token embedding, which Gemma also uses as the output
head, is kept at Q8_0). The tokenizer goes in as llama.cpp's metadata: a
byte-level BPE as "gpt2" with its merges, a byte-fallback (sentencepiece-style)
BPE as "llama" with scores; plus special token ids, add-bos/eos and the chat
template.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import ExportError

QUANTS = ("f16", "q8_0", "q4_0")
QK = 32  # block size of Q8_0 and Q4_0

# model_type -> (gguf architecture, llama-style q/k permutation, RMSNorm stored as 1 + w)
ARCHITECTURES = {
    "llama": ("llama", True, False),
    "mistral": ("llama", True, False),
    "qwen2": ("qwen2", False, False),
    "qwen3": ("qwen3", False, False),
    "gemma3_text": ("gemma3", False, True),
}
_PRE_TOKENIZERS = {  # split regex of a byte-level BPE -> llama.cpp's pre-tokenizer name
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
}


def _known_splits() -> dict[str, str]:
    """Regex -> pre-tokenizer name: ours, plus every one transformers' GGUF reader knows (so it round-trips)."""
    known = dict(_PRE_TOKENIZERS)
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:
        return known
    for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        known.setdefault(regex, name)
    return known


_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def gguf_file_name(name: str, quant: str) -> str:
    safe = re.sub(r"[^\w.-]+", "-", name).strip("-.") or "model"
    return f"{safe}-{quant.upper()}.gguf"


def _rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    params = getattr(config, "rope_parameters", None) or {}
    if theta is None and isinstance(params, dict):
        if "rope_theta" in params:
            theta = params["rope_theta"]
        elif "full_attention" in params:
            theta = params["full_attention"].get("rope_theta")
    return float(theta if theta is not None else 10000.0)


def _check_rope(config, arch: str) -> None:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    groups = params.values() if isinstance(params, dict) and "full_attention" in params else [params]
    for g in groups:
        kind = (g or {}).get("rope_type", (g or {}).get("type", "default")) if isinstance(g, dict) else "default"
        if kind not in (None, "default"):
            raise ExportError(f"rope scaling {kind!r} of this {config.model_type} model is not written by the GGUF "
                              "export yet; export with --format hf instead")
    if arch == "gemma3":
        local = params.get("sliding_attention", {}).get("rope_theta", 10000.0) if isinstance(params, dict) else 10000.0
        problems = []
        if float(local) != 10000.0:
            problems.append(f"sliding-window rope theta {local} (llama.cpp assumes 10000)")
        if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
            problems.append("logit soft-capping")
        scalar = getattr(config, "query_pre_attn_scalar", None)
        if scalar is not None and int(scalar) != _head_dim(config):
            problems.append(f"query scaling 1/sqrt({scalar}) instead of 1/sqrt(head_dim={_head_dim(config)})")
        if problems:
            raise ExportError("this Gemma-3 variant has " + ", ".join(problems) +
                              ", which GGUF metadata cannot express; export with --format hf instead")


def _head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _write_hparams(w, config, arch: str) -> None:
    w.add_context_length(int(config.max_position_embeddings))
    w.add_embedding_length(int(config.hidden_size))
    w.add_block_count(int(config.num_hidden_layers))
    w.add_feed_forward_length(int(config.intermediate_size))
    w.add_head_count(int(config.num_attention_heads))
    w.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_rope_freq_base(_rope_theta(config))
    w.add_vocab_size(int(config.vocab_size))
    head_dim = _head_dim(config)
    if arch == "llama":
        w.add_rope_dimension_count(head_dim)
    if arch in ("gemma3", "qwen3") or head_dim * config.num_attention_heads != config.hidden_size:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if arch == "gemma3" and getattr(config, "sliding_window", None):
        w.add_sliding_window(int(config.sliding_window))


def _permute(weights, n_head: int, n_head_kv: int):
    """llama.cpp's LlamaModel.permute: interleaved rotary halves -> its layout."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _unpermute(weights, n_head: int, n_head_kv: int):
    """The inverse of `_permute` (what GGUF readers do on load)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, weights.shape[0] // n_head // 2, 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_type(gguf, name: str, data, quant: str):
    """The GGML type to store one tensor as."""
    T = gguf.GGMLQuantizationType
    if data.ndim < 2:
        return T.F32
    fits_block = data.shape[-1] % QK == 0
    if quant == "q8_0" and fits_block:
        return T.Q8_0
    if quant == "q4_0" and fits_block:
        return T.Q8_0 if name.startswith(("token_embd.", "output.")) else T.Q4_0
    return T.F16 if float(abs(data).max()) < 65504.0 else T.F32  # f16, or a quant's fallback


def _file_type(gguf, quant: str):
    F = gguf.LlamaFileType
    return {"f16": F.MOSTLY_F16, "q8_0": F.MOSTLY_Q8_0, "q4_0": F.MOSTLY_Q4_0}[quant]


# ----------------------------------------------------------------------------- tokenizer


def _added_tokens(tokenizer) -> dict[int, bool]:
    """id -> special? for every added token."""
    return {int(i): bool(getattr(t, "special", False)) for i, t in tokenizer.added_tokens_decoder.items()}


def _pre_tokenizer_name(tok_json: dict) -> str:
    pre = tok_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for p in parts:
        if p.get("type") == "Split":
            regex = (p.get("pattern") or {}).get("Regex")
            known = _known_splits()
            if regex in known:
                return known[regex]
            if regex:
                raise ExportError("the tokenizer's pre-tokenizer split pattern is not one llama.cpp knows; "
                                  "export with --format hf instead")
    if any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
        return "gpt-2"  # llama.cpp's name for the GPT-2 split
    return "default"


def _adds_space_prefix(tok_json: dict) -> bool:
    """Whether a sentencepiece-style tokenizer.json puts "\u2581" before the text (Llama 2 does, Gemma not)."""
    def parts(node):
        node = node or {}
        for key in ("normalizers", "pretokenizers"):
            if key in node:
                return [p for sub in node[key] for p in parts(sub)]
        return [node]

    for p in parts(tok_json.get("normalizer")):
        if p.get("type") == "Prepend" and p.get("prepend") == "\u2581":
            return True
    for p in parts(tok_json.get("pre_tokenizer")):
        if p.get("type") == "Metaspace":
            return bool(p.get("prepend_scheme", "always") != "never" and p.get("add_prefix_space", True))
    return False


def _write_tokenizer(gguf, w, tokenizer, tok_dir: Path, n_vocab: int, arch: str) -> dict:
    tok_file = tok_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise ExportError("the tokenizer has no tokenizer.json (fast tokenizer); the GGUF export needs one")
    tok_json = json.loads(tok_file.read_text(encoding="utf-8"))
    model = tok_json.get("model", {})
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise ExportError(f"the tokenizer has {len(vocab)} tokens but the model's embedding only {n_vocab} rows")
    by_id = {i: t for t, i in vocab.items()}
    added = _added_tokens(tokenizer)
    TT = gguf.TokenType
    tokens, types, scores = [], [], []
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        kind, pre = "llama", "default"
        rank = 0
        for i in range(n_vocab):
            tok = by_id.get(i)
            if tok is None:
                tokens.append(f"[PAD{i}]"), types.append(TT.UNUSED), scores.append(-1000.0)
            elif i in added:
                tokens.append(tok), types.append(TT.CONTROL if added[i] else TT.USER_DEFINED), scores.append(-1000.0)
            elif _BYTE_TOKEN.match(tok):
                tokens.append(tok), types.append(TT.BYTE), scores.append(0.0)
            elif arch == "gemma3" and len(tok) > 1 and set(tok) == {"\u2581"}:
                # Gemma keeps runs of spaces as user-defined tokens spelled with real spaces
                # (transformers' GGUF reader turns them back into "\u2581\u2581").
                tokens.append(" " * len(tok)), types.append(TT.USER_DEFINED), scores.append(-1000.0)
            else:
                # Sentencepiece-BPE vocabularies are ordered by merge priority: score by position.
                tokens.append(tok), types.append(TT.NORMAL), scores.append(-float(rank))
                rank += 1
    elif model.get("type") == "BPE":
        kind, pre = "gpt2", _pre_tokenizer_name(tok_json)
        for i in range(n_vocab):
            tok = by_id.get(i)
            if tok is None:
                tokens.append(f"[PAD{i}]"), types.append(TT.UNUSED)
            elif i in added:
                tokens.append(tok), types.append(TT.CONTROL if added[i] else TT.USER_DEFINED)
            else:
                tokens.append(tok), types.append(TT.NORMAL)
    else:
        raise ExportError(f"tokenizer model {model.get('type')!r} is not supported by the GGUF export "
                          "(byte-level or byte-fallback BPE only); export with --format hf instead")
    w.add_tokenizer_model(kind)
    w.add_tokenizer_pre(pre)
    if kind == "llama":  # llama.cpp prepends "\u2581" to sentencepiece input unless told not to
        w.add_add_space_prefix(_adds_space_prefix(tok_json))
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores:
        w.add_token_scores(scores)
    if kind == "gpt2":
        merges = gguf.SpecialVocab(tok_dir, load_merges=True).merges
        if not merges:
            raise ExportError("the byte-level BPE tokenizer has no merges in tokenizer.json")
        w.add_token_merges(merges)
    ids = {}
    for role in ("bos", "eos", "unk", "pad"):
        tid = getattr(tokenizer, f"{role}_token_id", None)
        if tid is not None:
            getattr(w, f"add_{role}_token_id")(int(tid))
            ids[role] = int(tid)
    probe = tokenizer("a", add_special_tokens=True).input_ids
    bare = tokenizer("a", add_special_tokens=False).input_ids
    add_bos = "bos" in ids and len(probe) > len(bare) and probe[0] == ids["bos"]
    add_eos = "eos" in ids and len(probe) > len(bare) and probe[-1] == ids["eos"]
    w.add_add_bos_token(bool(add_bos))
    w.add_add_eos_token(bool(add_eos))
    template = getattr(tokenizer, "chat_template", None)
    if template:
        w.add_chat_template(template)
    return {"tokenizer_model": kind, "pre_tokenizer": pre, "tokens": len(tokens), "add_bos": add_bos,
            "chat_template": bool(template), **{f"{k}_id": v for k, v in ids.items()}}


# ----------------------------------------------------------------------------- model


def write_gguf(merged, tokenizer, tok_dir: Path, path: Path, quant: str, name: str,
               license_name: str | None = None, write_back: bool = True, progress=print) -> dict:
    """Write `merged` (a transformers causal LM, fp32 preferred) to `path`; returns what was written.

    With `write_back`, each weight of `merged` is then replaced by the value the
    file holds (rounded or quantised), so a reload can be checked tensor by tensor.
    """
    import gguf
    import numpy as np
    import torch

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    config = merged.config
    if config.model_type not in ARCHITECTURES:
        raise ExportError(f"GGUF export supports {', '.join(sorted(ARCHITECTURES))} models, not "
                          f"{config.model_type!r}; export with --format hf instead")
    arch, permute_qk, norm_plus_one = ARCHITECTURES[config.model_type]
    _check_rope(config, arch)
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    name_map = gguf.get_tensor_name_map(arch_enum, int(config.num_hidden_layers))
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    tied = bool(getattr(config, "tie_word_embeddings", False))

    tmp = path.with_name(f".{path.name}.partial")
    # Big models: spool tensor data to a temporary file instead of holding the whole output in memory too.
    big = sum(p.numel() for p in merged.parameters()) > 1_500_000_000
    w = gguf.GGUFWriter(str(tmp), arch, use_temp_file=big)
    counts: dict[str, int] = {}
    try:
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name)
        if license_name:
            w.add_license(license_name)
        w.add_file_type(_file_type(gguf, quant))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _write_hparams(w, config, arch)
        tok_info = _write_tokenizer(gguf, w, tokenizer, tok_dir, int(config.vocab_size), arch)

        for hf_name, tensor in merged.state_dict().items():
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp and transformers reuse token_embd as the output head
            gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ExportError(f"no GGUF name for tensor {hf_name!r} of this {config.model_type} model")
            data = tensor.detach().float().cpu().numpy().copy()  # never a view of the weights written back below
            if permute_qk and hf_name.endswith("q_proj.weight"):
                data = _permute(data, n_head, n_head)
            elif permute_qk and hf_name.endswith("k_proj.weight"):
                data = _permute(data, n_head, n_kv)
            if norm_plus_one and hf_name.endswith("norm.weight"):
                data = data + 1.0
            qtype = _tensor_type(gguf, gguf_name, data, quant)
            if qtype == gguf.GGMLQuantizationType.F32:
                stored = np.ascontiguousarray(data, dtype=np.float32)
                w.add_tensor(gguf_name, stored)
            elif qtype == gguf.GGMLQuantizationType.F16:
                stored = data.astype(np.float16)
                w.add_tensor(gguf_name, stored)
            else:
                stored = gguf.quants.quantize(data, qtype)
                w.add_tensor(gguf_name, stored, raw_dtype=qtype)
            if write_back:  # the model now holds exactly what the file holds, in its own layout
                held = gguf.quants.dequantize(stored, qtype) if stored.dtype == np.uint8 else stored.astype(np.float32)
                if permute_qk and hf_name.endswith("q_proj.weight"):
                    held = _unpermute(held, n_head, n_head)
                elif permute_qk and hf_name.endswith("k_proj.weight"):
                    held = _unpermute(held, n_head, n_kv)
                if norm_plus_one and hf_name.endswith("norm.weight"):
                    held = held - np.float32(1.0)
                with torch.no_grad():
                    tensor.copy_(torch.from_numpy(np.ascontiguousarray(held)).to(tensor.dtype))
            counts[qtype.name] = counts.get(qtype.name, 0) + 1
            del data
        progress(f"[export] writing {path.name} ({sum(counts.values())} tensors: "
                 + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return {"architecture": arch, "quant": quant, "tensor_types": counts, "tokenizer": tok_info}


def load_gguf(folder: Path, file_name: str):
    """Reload a GGUF with transformers' own GGUF reader (dequantised to fp32): (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)
    except Exception as exc:
        from .errors import VerificationError

        raise VerificationError(f"the written GGUF {Path(folder) / file_name} does not load back: {exc}") from exc
    return model.eval(), tokenizer
