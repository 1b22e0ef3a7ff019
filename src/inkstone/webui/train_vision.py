"""The Train tab's vision section: start `train-vision` as a child process.

The run is the tab's current run (`ctx.train_job`), so the tab's own progress
bar, ETA, loss plot and Stop button follow it as they follow a text run.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

import gradio as gr

from ..train.jobs import new_run_name, read_progress
from ..vision.jobs import start_vision_training
from .i18n import i18n


def _inside(ctx, value: str, what: str, folders: list[Path]) -> Path:
    """A folder the user named, refused outside `folders`: a share link must not read any file here."""
    path = Path(value)
    if not path.is_absolute():
        path = Path(ctx.cfg.root) / path
    if not any(path.resolve().is_relative_to(f.resolve()) for f in folders):
        raise gr.Error(f"{what} must be inside {' or '.join(str(f) for f in folders)}, not {path}")
    if not path.exists():
        raise gr.Error(f"{what} not found: {path}")
    return path


def start_vision_run(ctx, data: str, tower: str, from_model: str, stage: int, epochs: float, lr: float,
                     unfreeze: bool, run_name: str) -> str:
    if ctx.train_job is not None and ctx.train_job.running:
        raise gr.Error("A training run is already going; stop it first.")
    cfg = ctx.cfg
    root, models = Path(cfg.root), Path(cfg.model.models_dir)
    options = {"data": _inside(ctx, data, "image-caption data", [root, Path(cfg.data.train_dir).parent]),
               "stage": int(stage), "epochs": epochs, "lr": lr, "unfreeze-tower": bool(unfreeze) and int(stage) == 2}
    if (from_model or "").strip():
        options["from-model"] = _inside(ctx, from_model, "stage-1 model", [root, Path(cfg.train.output_dir)])
    elif (tower or "").strip():
        options["tower"] = _inside(ctx, tower, "vision tower", [root, models])
    else:
        raise gr.Error("give a vision tower folder (stage 1) or a stage-1 model folder (stage 2)")
    name = (run_name or "").strip() or new_run_name("vision")
    try:
        ctx.train_job = start_vision_training(cfg, name, options)
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc
    return name


def finished_model(ctx) -> str:
    """Where the current vision run put its model, once it is done."""
    job = ctx.train_job
    done: Optional[dict] = None
    if job is not None:
        done = next((r for r in read_progress(job.run_dir) if r.get("event") == "done" and r.get("model")), None)
    if done is None:
        return ""
    path = html.escape(done["model"])
    return f"<div>model: <code>{path}</code> — serve it with <code>python start.py webui --model {path}</code></div>"


def create_vision_section(ctx) -> None:
    with gr.Accordion(i18n("vision_section"), open=False):
        with gr.Row():
            with gr.Column():
                data = gr.Textbox(label=i18n("vision_data"), max_lines=1)
                tower = gr.Textbox(label=i18n("vision_tower"), max_lines=1)
                from_model = gr.Textbox(label=i18n("vision_from_model"), max_lines=1)
            with gr.Column():
                stage = gr.Radio([1, 2], value=1, label=i18n("vision_stage"))
                epochs = gr.Number(3, label=i18n("vision_epochs"), minimum=0.1)
                lr = gr.Number(1e-3, label=i18n("vision_lr"), minimum=0)
                unfreeze = gr.Checkbox(False, label=i18n("vision_unfreeze"))
                run_name = gr.Textbox(label=i18n("run_name"), max_lines=1)
        start = gr.Button(i18n("vision_start"), variant="primary")
        result = gr.HTML(label=i18n("vision_result"))
        start.click(lambda *a: start_vision_run(ctx, *a),
                    [data, tower, from_model, stage, epochs, lr, unfreeze, run_name], run_name,
                    api_name="train_vision_start")
        gr.Button(i18n("refresh"), size="sm").click(lambda: finished_model(ctx), None, result,
                                                    api_name="train_vision_result")
