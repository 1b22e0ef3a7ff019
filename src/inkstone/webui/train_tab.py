"""Train tab: start a QLoRA run as a child process, watch its progress, stop it."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import pandas as pd
from pydantic import ValidationError

from ..config_flags import by_section, flag_options
from ..train.jobs import RunStatus, compare_runs, new_run_name, start_training
from ..train.qlora import prepared_split
from .config_inputs import config_rows
from .i18n import i18n, say
from .train_vision import create_vision_section

# The config fields the tab offers, in this order: the train_start API takes their values in it too.
TAB_FIELDS = ["train.epochs", "train.batch_size", "train.grad_accum", "train.lr", "train.lora_r",
              "train.max_seq_length", "train.max_steps", "model.load_in_4bit"]


def _bar(st: RunStatus) -> str:
    pct = st.fraction * 100
    eta = f"{st.eta_s:.0f} s" if st.eta_s is not None else "—"
    loss = f"{st.loss:.4f}" if st.loss is not None else "—"
    rate = f"{st.tokens_per_s:.0f}" if st.tokens_per_s else "—"
    msg = f"<br><b>{html.escape(st.message)}</b>" if st.message else ""
    msg += "".join(f"<br><span style='color:#b60'>⚠ {html.escape(w)}</span>" for w in st.warnings)
    adapter = f"<br>adapter: <code>{st.adapter}</code> (now offered in Write)" if st.adapter else ""
    return (
        f"<div><b>{st.run}</b>: {st.state} · step {st.step}/{st.max_steps} · loss {loss} · "
        f"{rate} tok/s · ETA {eta}{msg}{adapter}</div>"
        f"<div style='background:#ddd;border-radius:4px;height:14px;width:100%'>"
        f"<div style='background:#4a7;height:14px;border-radius:4px;width:{pct:.1f}%'></div></div>"
    )


def loss_frame(st: RunStatus) -> pd.DataFrame:
    """Training and evaluation loss in one long table, one line per series in the plot."""
    rows = [(step, loss, "train") for step, loss in st.losses]
    rows += [(step, loss, "eval") for step, loss in st.eval_losses]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])


def train_status(ctx, request=None) -> tuple[str, pd.DataFrame]:
    job = ctx.train_job
    if job is None:
        return say(request, "no_run"), pd.DataFrame({"step": [], "loss": [], "series": []})
    st = job.status()
    if st.adapter:
        ctx.adapters.register(st.adapter, name=f"{st.run}/adapter", trusted=True)  # our own run
    return _bar(st), loss_frame(st)


def start_run(ctx, data: str, run_name: str, *values) -> str:
    """Start a run on `data` with the tab's `values` of TAB_FIELDS as flags over the app's config."""
    if ctx.train_job is not None and ctx.train_job.running:
        raise gr.Error("A training run is already going; stop it first.")
    data_path = training_data(ctx, data)
    name = (run_name or "").strip() or new_run_name()
    options = {"data": data_path, "val-data": validation_data(ctx, data_path)}
    for section, fields in checked_overrides(ctx.cfg, dict(zip(TAB_FIELDS, values))).items():
        options.update(flag_options(section, fields))
    try:
        ctx.train_job = start_training(ctx.cfg, name, options)
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc
    return name


def training_data(ctx, data: str) -> Path:
    """The training data the user named, refused outside the project and data folders."""
    data_path = Path(data or ctx.cfg.data.train_dir)
    if not data_path.is_absolute():
        data_path = ctx.cfg.root / data_path
    # Whoever reaches the app (a share link, say) must not make it read any file on this machine.
    allowed = [Path(ctx.cfg.root).resolve(), Path(ctx.cfg.data.train_dir).resolve().parent]
    if not any(data_path.resolve().is_relative_to(folder) for folder in allowed):
        raise gr.Error(f"training data must be inside the project folder ({allowed[0]}) or the data folder "
                       f"({allowed[1]}), not {data_path}")
    if not data_path.exists():
        raise gr.Error(f"training data not found: {data_path}. Run `python start.py prepare` first.")
    return data_path


def validation_data(ctx, data_path: Path) -> Optional[Path]:
    """The prepared validation split, when there is one: without it a run has no eval loss and no
    perplexity. Passed explicitly because `start.py train --data` leaves it out."""
    val_dir = Path(ctx.cfg.data.val_dir)
    return prepared_split(val_dir) if data_path.resolve() != val_dir.resolve() else None


def checked_overrides(cfg, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tab's values ("section.field" -> value) by section, validated as the config validates
    them: a bad value is refused here rather than by the training process a moment later."""
    checked = {}
    for section_name, fields in by_section(values).items():
        section = getattr(cfg, section_name)
        try:
            valid = type(section).model_validate({**section.model_dump(), **fields})
        except ValidationError as exc:
            raise gr.Error(str(exc)) from exc
        checked[section_name] = {name: getattr(valid, name) for name in fields}
    return checked


def stop_run(ctx) -> str:
    if ctx.train_job is None or not ctx.train_job.running:
        return "No training run is going."
    ctx.train_job.stop()
    return "Stopped; a checkpoint was saved."


def create_train_tab(ctx) -> None:
    with gr.Row():
        with gr.Column():
            data = gr.Textbox(label=i18n("train_data"), value=str(ctx.cfg.data.train_dir))
            run_name = gr.Textbox(label=i18n("run_name"), max_lines=1)
            settings = config_rows(ctx.cfg, TAB_FIELDS)
            with gr.Row():
                start = gr.Button(i18n("start_train"), variant="primary")
                stop = gr.Button(i18n("stop_train"), variant="stop")
        with gr.Column():
            status = gr.HTML()
            # Hidden until there is a run: an empty plot shows a stray "-Infinity" legend.
            plot = gr.LinePlot(x="step", y="loss", color="series", label=i18n("loss"), visible=False)

    def tick(request: gr.Request):
        text, losses = train_status(ctx, request)
        return text, gr.LinePlot(value=losses, visible=True) if ctx.train_job is not None else gr.skip()

    timer = gr.Timer(2.0)
    timer.tick(tick, None, [status, plot], api_name=False, show_progress="hidden")
    start.click(lambda *a: start_run(ctx, *a), [data, run_name, *settings], run_name, api_name="train_start")
    stop.click(lambda: stop_run(ctx), None, status, api_name="train_stop")
    gr.Button(i18n("refresh"), size="sm").click(lambda: train_status(ctx), None, [status, plot], api_name="train_status")
    create_vision_section(ctx)
    with gr.Accordion(i18n("compare_runs"), open=False):
        runs = gr.Dataframe(value=lambda: runs_table(ctx), interactive=False)
        gr.Button(i18n("refresh"), size="sm").click(lambda: runs_table(ctx), None, runs, api_name="train_compare")


def runs_table(ctx) -> pd.DataFrame:
    cols = ["run", "checkpoint", "step", "train_loss", "eval_loss", "eval_ppl"]
    return pd.DataFrame(compare_runs(ctx.cfg.train.output_dir), columns=cols)
