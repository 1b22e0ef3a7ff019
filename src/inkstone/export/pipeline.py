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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..checkpoints import run_dir_of
from . import verify
from .errors import ExportError
from .hub import check_repo_id, push_folder, resolve_base
from .locate import resolve_adapter
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


@dataclass
class _Export:
    """One export under way: what goes in, where it goes, and the report it fills."""
    adapter: Path
    base: Path
    base_name: str
    fmt: str
    quant: str
    out_dir: Path
    progress: Callable[[str], None]
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    @property
    def staging(self) -> Path:
        return self.out_dir.with_name(f".{self.out_dir.name}.partial-{os.getpid()}")

    @contextmanager
    def timed(self, step: str):
        """Add the time the block takes to `timings[step]` (steps may repeat, e.g. verify)."""
        t = time.perf_counter()
        yield
        self.timings[step] = round(self.timings.get(step, 0.0) + time.perf_counter() - t, 2)

    def stop_clock(self) -> None:
        self.timings["total"] = round(time.perf_counter() - self.started, 2)


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
    started = time.perf_counter()
    _check_options(fmt, quant, push_to_hub)
    adapter = resolve_adapter(adapter)
    base_spec, base = _base_of(adapter, base_model)
    base_name = str(base_spec) if not Path(str(base_spec)).is_dir() else Path(str(base_spec)).resolve().name
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(adapter)
    job = _Export(adapter, base, base_name, fmt, quant, _output_folder(out_dir, overwrite), progress, started)
    shutil.rmtree(job.staging, ignore_errors=True)
    job.report = {"format": fmt, "quant": quant if fmt == "gguf" else None, "adapter": str(adapter),
                  "base_model": base_name, "base_path": str(base), "run_dir": str(run_dir) if run_dir else None,
                  "out_dir": str(job.out_dir), "timings_s": job.timings, "verification": {}}
    _build_and_place(job, run_dir, prepare_report)
    _announce_agreement(job)
    if push_to_hub:
        _push(job, push_to_hub, private)
    job.stop_clock()
    progress(f"[export] done in {job.timings['total']:.1f} s: {job.out_dir} "
             f"({job.report['total_bytes'] / 2**20:.1f} MiB)")
    return job.report


def _check_options(fmt: str, quant: str, push_to_hub: Optional[str]) -> None:
    """Refuse bad arguments before any work."""
    from .gguf_export import QUANTS

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "gguf" and quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if push_to_hub:
        check_repo_id(push_to_hub)


def _base_of(adapter: Path, base_model) -> tuple[str | Path, Path]:
    """(the base as given or recorded in the adapter, its local folder)."""
    base_spec = base_model if base_model is not None else adapter_base_name(adapter)
    if not base_spec:
        raise ExportError(f"adapter {adapter} does not record its base model; pass it with --base")
    return base_spec, resolve_base(base_spec)


def _output_folder(out_dir, overwrite: bool) -> Path:
    """The absolute output folder; an existing non-empty one only with `overwrite`."""
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ExportError(f"output folder {out_dir} already exists and is not empty; choose another or allow overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir


def _build_and_place(job: _Export, run_dir: Optional[Path], prepare_report: Optional[Path]) -> None:
    """Export and verify into the staging folder, add the model card, then move it into place.
    Whatever fails, the staging folder goes, so nothing half-done is left."""
    try:
        _export_model(job)
        _write_card(job.staging, job.report, job.base, job.base_name, job.adapter, run_dir, job.fmt, job.quant,
                    prepare_report, job.report.get("modelfile"))
        job.report["files"] = _folder_sizes(job.staging)
        job.report["total_bytes"] = sum(job.report["files"].values())
        _place(job.staging, job.out_dir)
    except BaseException:
        shutil.rmtree(job.staging, ignore_errors=True)
        raise


def _export_model(job: _Export) -> None:
    dtype = work_dtype(job.base)
    saved = base_dtype_name(job.base)
    job.report.update(work_dtype=str(dtype).replace("torch.", ""), saved_dtype=saved if job.fmt == "hf" else None)
    job.progress(f"[export] adapter {job.adapter}")
    job.progress(f"[export] base {job.base_name}: loading in {job.report['work_dtype']} (full precision, not 4-bit)")
    if job.fmt == "hf":
        _export_hf(job, dtype, saved)
    else:
        _export_gguf(job, dtype)


def _merged_model(job: _Export, dtype):
    """(merged model, tokenizer, reference): the adapter on its base, merged and checked
    against the unmerged model's reference outputs."""
    import torch

    with job.timed("load"):
        peft_model = load_adapter_model(job.base, job.adapter, dtype)
        tokenizer = load_tokenizer(job.adapter, job.base)
    with job.timed("reference"):
        ref = verify.reference(peft_model, tokenizer)
    job.report["reference_sample"] = tokenizer.decode(ref.greedy[0]) if ref.greedy else ""
    with job.timed("merge"):
        merged = merge(peft_model)
    with job.timed("verify"):
        in_memory = "float32" if dtype == torch.float32 else job.report["work_dtype"]
        job.report["verification"]["merged"] = verify.check("the merged model", merged, None, ref, in_memory,
                                                            greedy_tokens=0)
    return merged, tokenizer, ref


def _export_hf(job: _Export, dtype, saved: str) -> None:
    """Write the merged model as a safetensors folder, then reload it and compare."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged, tokenizer, ref = _merged_model(job, dtype)
    job.staging.mkdir(parents=True)
    job.progress(f"[export] saving the merged model ({saved} safetensors) to {job.out_dir}")
    with job.timed("write"):
        save_hf_folder(merged, tokenizer, job.staging, saved)  # casts merged to `saved` in place
    merged_sd = merged.state_dict()  # exactly what the folder holds
    del merged  # only the weights stay in memory beside the reloaded model
    job.progress("[export] verifying: reloading the folder with transformers")
    what = f"the exported folder {job.out_dir}"
    with job.timed("verify"):
        reloaded = AutoModelForCausalLM.from_pretrained(job.staging, dtype=torch.float32).eval()
        re_tok = AutoTokenizer.from_pretrained(job.staging)
        job.report["verification"]["weights"] = verify.check_weights(what, merged_sd, reloaded, saved)
        del merged_sd
        job.report["verification"]["export"] = verify.check(what, reloaded, re_tok, ref, saved)
        if getattr(tokenizer, "chat_template", None) and re_tok.chat_template != tokenizer.chat_template:
            raise verify.VerificationError(f"{what} lost the chat template")
        del reloaded


def _export_gguf(job: _Export, dtype) -> None:
    """Write the merged model as one GGUF file with its Modelfile, then reload it and compare."""
    from .gguf_export import gguf_file_name, load_gguf

    merged, tokenizer, ref = _merged_model(job, dtype)
    job.staging.mkdir(parents=True)
    file_name = gguf_file_name(job.out_dir.name, job.quant)
    job.progress(f"[export] writing GGUF {job.quant.upper()}: {job.out_dir / file_name}")
    with job.timed("write"):
        _write_gguf_files(job, merged, tokenizer, file_name)
    expected = merged.state_dict()  # written back: exactly what the file holds
    del merged  # only the weights stay in memory beside the reloaded model
    job.progress("[export] verifying: reloading the GGUF with transformers' GGUF reader")
    gguf_path, storage = job.staging / file_name, _GGUF_STORAGE[job.quant]
    with job.timed("verify"):
        g_model, g_tok = load_gguf(job.staging, file_name)
        job.report["verification"]["weights"] = verify.check_weights(f"the GGUF {file_name}", expected, g_model,
                                                                     job.quant)
        del expected
        job.report["verification"]["metadata"] = verify.check_gguf_metadata(gguf_path, tokenizer)
        job.report["verification"]["export"] = verify.check(f"the GGUF {file_name}", g_model, g_tok, ref, storage)
        del g_model
        llama = verify.check_llama_cpp(gguf_path, tokenizer, ref, storage)
        if llama is not None:  # llama-cpp-python installed: the file also runs in llama.cpp itself
            job.report["verification"]["llama_cpp"] = llama


def _write_gguf_files(job: _Export, merged, tokenizer, file_name: str) -> None:
    """The GGUF file and an Ollama Modelfile for it, into the staging folder."""
    from .gguf_export import write_gguf
    from .model_card import base_license
    from .ollama import modelfile

    tok_dir = job.staging / ".tokenizer"
    tokenizer.save_pretrained(tok_dir)
    job.report["gguf"] = write_gguf(merged, tokenizer, tok_dir, job.staging / file_name, job.quant,
                                    name=job.out_dir.name, license_name=base_license(job.base), progress=job.progress)
    shutil.rmtree(tok_dir)
    text, ollama_info = modelfile(file_name, tokenizer, job.out_dir.name)
    (job.staging / "Modelfile").write_text(text, encoding="utf-8")
    job.report["modelfile"] = ollama_info


def _announce_agreement(job: _Export) -> None:
    """Say how closely the export follows the adapter, and when a finer format would help."""
    fig = job.report["verification"]["export"]
    job.progress(f"[export] verified: relative logit error {fig['rel_rms_error']:.2e}, mean KL {fig['kl_mean']:.2e}, "
                 f"top-1 agreement {fig['top1_agreement']:.3f}, greedy match {fig.get('greedy_match', 0):.3f}")
    if fig["top1_agreement"] < 0.9:
        stored = job.quant.upper() if job.fmt == "gguf" else job.report["saved_dtype"]
        job.progress(f"[export] note: {stored} changes this model's next-token choice at "
                     f"{1 - fig['top1_agreement']:.0%} of positions; a finer format (q8_0, f16) keeps it closer")


def _push(job: _Export, repo_id: str, private: bool) -> None:
    """Upload the finished export; a failed push still hands back the export's report."""
    with job.timed("push"):
        try:
            job.report["hub_url"] = push_folder(job.out_dir, repo_id, private=private, progress=job.progress)
        except ExportError as exc:
            exc.report = job.report
            job.stop_clock()
            raise


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
