"""`run_export`: adapter + base -> verified export folder (-> Hub).

Everything is written into a hidden staging folder beside `out_dir` and only
renamed into place after the export matched the adapter on its base model, so
a failed or interrupted export never looks like a finished one, and an
existing folder is replaced only by a verified export.
"""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from . import verify
from .errors import ExportError
from .hub import check_repo_id, push_folder, resolve_base
from .locate import resolve_adapter, run_dir_of
from .merge import (
    adapter_base_name, base_dtype_name, load_adapter_model, load_tokenizer, merge, save_hf_folder, work_dtype,
)

FORMATS = ("hf", "gguf")
_GGUF_STORAGE = {"f16": "float16", "q8_0": "q8_0", "q4_0": "q4_0"}


def _folder_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def _place(staging: Path, out_dir: Path) -> None:
    """Move the verified staging folder to out_dir, replacing what was there only now."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_export(adapter, base_model=None, out_dir: Path = Path("exports/model"), fmt: str = "hf",
               quant: str = "q8_0", push_to_hub: Optional[str] = None, private: bool = False,
               run_dir: Optional[Path] = None, progress=print, *, prepare_report: Optional[Path] = None,
               overwrite: bool = False) -> dict:
    """Merge `adapter` into `base_model`, write `fmt` ("hf" or "gguf" with `quant`), verify, optionally push.

    `adapter` may be an adapter folder or a training run folder (its adapter/ or
    latest complete checkpoint). `base_model` is a local folder or a Hub id; None
    takes the base recorded in adapter_config.json. Returns a report dict: paths,
    file sizes, timings and agreement figures. Raises ExportError (VerificationError
    when the export disagrees with the adapter on the base beyond tolerance).
    """
    from .gguf_export import QUANTS

    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    @contextmanager
    def timed(step: str):
        t = time.perf_counter()
        yield
        timings[step] = round(timings.get(step, 0.0) + time.perf_counter() - t, 2)

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "gguf" and quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if push_to_hub:
        check_repo_id(push_to_hub)
    adapter = resolve_adapter(adapter)
    base_spec = base_model if base_model is not None else adapter_base_name(adapter)
    if not base_spec:
        raise ExportError(f"adapter {adapter} does not record its base model; pass it with --base")
    base = resolve_base(base_spec)
    base_name = str(base_spec) if not Path(str(base_spec)).is_dir() else Path(str(base_spec)).resolve().name
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(adapter)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ExportError(f"output folder {out_dir} already exists and is not empty; choose another or allow overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)

    report: dict = {"format": fmt, "quant": quant if fmt == "gguf" else None, "adapter": str(adapter),
                    "base_model": base_name, "base_path": str(base), "run_dir": str(run_dir) if run_dir else None,
                    "out_dir": str(out_dir), "timings_s": timings, "verification": {}}
    try:
        import torch

        dtype = work_dtype(base)
        saved = base_dtype_name(base)
        report.update(work_dtype=str(dtype).replace("torch.", ""), saved_dtype=saved if fmt == "hf" else None)
        progress(f"[export] adapter {adapter}")
        progress(f"[export] base {base_name}: loading in {report['work_dtype']} (full precision, not 4-bit)")
        with timed("load"):
            peft_model = load_adapter_model(base, adapter, dtype)
            tokenizer = load_tokenizer(adapter, base)
        with timed("reference"):
            ref = verify.reference(peft_model, tokenizer)
        report["reference_sample"] = tokenizer.decode(ref.greedy[0]) if ref.greedy else ""
        with timed("merge"):
            merged = merge(peft_model)
        with timed("verify"):
            in_memory = "float32" if dtype == torch.float32 else report["work_dtype"]
            report["verification"]["merged"] = verify.check("the merged model", merged, None, ref, in_memory,
                                                            greedy_tokens=0)
        staging.mkdir(parents=True)
        ollama_info = None
        if fmt == "hf":
            progress(f"[export] saving the merged model ({saved} safetensors) to {out_dir}")
            with timed("write"):
                save_hf_folder(merged, tokenizer, staging, saved)  # casts merged to `saved` in place
            merged_sd = merged.state_dict()  # exactly what the folder holds
            del merged, peft_model
            progress("[export] verifying: reloading the folder with transformers")
            with timed("verify"):
                from transformers import AutoModelForCausalLM, AutoTokenizer

                reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=torch.float32).eval()
                re_tok = AutoTokenizer.from_pretrained(staging)
                report["verification"]["weights"] = verify.check_weights(f"the exported folder {out_dir}", merged_sd,
                                                                         reloaded, saved)
                del merged_sd
                report["verification"]["export"] = verify.check(f"the exported folder {out_dir}", reloaded, re_tok,
                                                                ref, saved)
                if getattr(tokenizer, "chat_template", None) and re_tok.chat_template != tokenizer.chat_template:
                    raise verify.VerificationError(f"the exported folder {out_dir} lost the chat template")
                del reloaded
        else:
            from .gguf_export import gguf_file_name, load_gguf, write_gguf
            from .model_card import base_license
            from .ollama import modelfile

            file_name = gguf_file_name(out_dir.name, quant)
            progress(f"[export] writing GGUF {quant.upper()}: {out_dir / file_name}")
            with timed("write"):
                tok_dir = staging / ".tokenizer"
                tokenizer.save_pretrained(tok_dir)
                report["gguf"] = write_gguf(merged, tokenizer, tok_dir, staging / file_name, quant,
                                            name=out_dir.name, license_name=base_license(base), progress=progress)
                shutil.rmtree(tok_dir)
                text, ollama_info = modelfile(file_name, tokenizer, out_dir.name)
                (staging / "Modelfile").write_text(text, encoding="utf-8")
            report["modelfile"] = ollama_info
            expected = merged.state_dict()  # written back: exactly what the file holds
            del merged, peft_model
            progress("[export] verifying: reloading the GGUF with transformers' GGUF reader")
            with timed("verify"):
                g_model, g_tok = load_gguf(staging, file_name)
                report["verification"]["weights"] = verify.check_weights(f"the GGUF {file_name}", expected, g_model,
                                                                         quant)
                del expected
                report["verification"]["metadata"] = verify.check_gguf_metadata(staging / file_name, tokenizer)
                report["verification"]["export"] = verify.check(f"the GGUF {file_name}", g_model, g_tok, ref,
                                                                _GGUF_STORAGE[quant])
                del g_model
                llama = verify.check_llama_cpp(staging / file_name, tokenizer, ref, _GGUF_STORAGE[quant])
                if llama is not None:  # llama-cpp-python installed: the file also runs in llama.cpp itself
                    report["verification"]["llama_cpp"] = llama
        _write_card(staging, report, base, base_name, adapter, run_dir, fmt, quant, prepare_report, ollama_info)
        report["files"] = _folder_sizes(staging)
        report["total_bytes"] = sum(report["files"].values())
        _place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fig = report["verification"]["export"]
    progress(f"[export] verified: relative logit error {fig['rel_rms_error']:.2e}, mean KL {fig['kl_mean']:.2e}, "
             f"top-1 agreement {fig['top1_agreement']:.3f}, greedy match {fig.get('greedy_match', 0):.3f}")
    if fig["top1_agreement"] < 0.9:
        stored = quant.upper() if fmt == "gguf" else saved
        progress(f"[export] note: {stored} changes this model's next-token choice at "
                 f"{1 - fig['top1_agreement']:.0%} of positions; a finer format (q8_0, f16) keeps it closer")
    if push_to_hub:
        with timed("push"):
            try:
                report["hub_url"] = push_folder(out_dir, push_to_hub, private=private, progress=progress)
            except ExportError as exc:
                exc.report = report
                timings["total"] = round(time.perf_counter() - t_start, 2)
                raise
    timings["total"] = round(time.perf_counter() - t_start, 2)
    progress(f"[export] done in {timings['total']:.1f} s: {out_dir} ({report['total_bytes'] / 2**20:.1f} MiB)")
    return report


def _write_card(folder: Path, report: dict, base: Path, base_name: str, adapter: Path, run_dir, fmt: str,
                quant: str, prepare_report, ollama_info) -> None:
    import json

    from .model_card import base_license, find_prepare_report, render, training_summary

    training = training_summary(run_dir, adapter)
    prep_path = find_prepare_report(training.get("args") or {}, prepare_report)
    prepare = json.loads(prep_path.read_text(encoding="utf-8")) if prep_path else {}
    labels = {"merged": "merged weights (in memory)", "export": f"exported {fmt.upper()}"
              + (f" {quant.upper()}" if fmt == "gguf" else "") + (" (transformers)" if fmt == "gguf" else ""),
              "llama_cpp": f"exported GGUF {quant.upper()} (llama.cpp)"}
    text = render(title=Path(report["out_dir"]).name, base_name=base_name, base_path=base, adapter=adapter,
                  fmt=fmt, quant=quant if fmt == "gguf" else None, files=_folder_sizes(folder), training=training,
                  prepare=prepare,
                  verification={labels[k]: v for k, v in report["verification"].items() if k in labels},
                  weights=report["verification"].get("weights"), license_name=base_license(base), ollama=ollama_info)
    (folder / "README.md").write_text(text, encoding="utf-8")
    report["model_card"] = {"path": str(Path(report["out_dir"]) / "README.md"),
                            "prepare_report": str(prep_path) if prep_path else None,
                            "eval_loss": training.get("eval_loss"), "eval_ppl": training.get("eval_ppl")}
