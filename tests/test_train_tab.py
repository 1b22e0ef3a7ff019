"""The Train tab: its fields come from the config schema, and a run it starts gets its values
and the validation split."""
import subprocess
from types import SimpleNamespace

import gradio as gr
import pytest

from conftest import ROOT, load_start_script
from inkstone.config import TrainConfig, build_config
from inkstone.webui.i18n import EN
from inkstone.webui.train_tab import TAB_FIELDS, create_train_tab, start_run


class CapturedPopen:
    """Stands in for the training process: keeps its command line, runs nothing."""
    argv = None
    pid = 424242

    def __init__(self, argv, **_kwargs):
        CapturedPopen.argv = argv

    def poll(self):
        return None


@pytest.fixture
def ctx(tmp_path):
    cfg = build_config(data={"train_dir": tmp_path / "data" / "train", "val_dir": tmp_path / "data" / "val"},
                       train={"output_dir": tmp_path / "checkpoints", "lr": 5e-4})
    for split in ("train", "val"):
        folder = tmp_path / "data" / split
        folder.mkdir(parents=True)
        (folder / f"{split}.jsonl").write_text('{"text": "宝玉"}\n', encoding="utf-8")
    return SimpleNamespace(cfg=cfg, train_job=None)


@pytest.fixture
def started(ctx, monkeypatch):
    """Start a run from the tab; returns the training process's parsed command line and its Config."""
    monkeypatch.setattr(subprocess, "Popen", CapturedPopen)
    start = load_start_script()

    def run(values):
        start_run(ctx, str(ctx.cfg.data.train_dir), "tab-run", *values)
        argv = CapturedPopen.argv
        assert argv[1] == str(ROOT / "start.py")
        args = start._parser().parse_args(argv[2:])
        return args, start.build(args)

    return run


def test_a_run_from_the_tab_evaluates_on_the_prepared_split(ctx, started):
    args, _ = started([1, 2, 1, 2e-4, 8, 64, 3, True])
    assert args.data == ctx.cfg.data.train_dir and args.val_data == ctx.cfg.data.val_dir


def test_the_tab_values_reach_the_run_and_the_rest_comes_from_the_config(ctx, started):
    _, cfg = started([1.5, 4, 2, 3e-4, 16, 128, 7, False])
    t = cfg.train
    assert (t.epochs, t.batch_size, t.grad_accum, t.lr, t.lora_r, t.max_seq_length, t.max_steps) == (
        1.5, 4, 2, 3e-4, 16, 128, 7)
    assert cfg.model.load_in_4bit is False
    assert cfg.train.output_dir == ctx.cfg.train.output_dir  # not on the tab: the app's config (frozen to JSON)


def test_a_bad_value_is_refused_before_a_process_starts(ctx, started):
    with pytest.raises(gr.Error, match="lr"):
        started([1, 2, 1, -1, 8, 64, 3, True])
    assert ctx.train_job is None


def test_the_fields_come_from_the_schema(ctx):
    with gr.Blocks() as demo:
        create_train_tab(ctx)
    names = {key.split(".")[1] for key in TAB_FIELDS}  # the vision section below has inputs of its own
    inputs = [b for b in demo.blocks.values()
              if isinstance(b, (gr.Number, gr.Checkbox)) and getattr(b.label, "key", None) in names]
    assert len(inputs) == len(TAB_FIELDS)
    by_key = dict(zip(TAB_FIELDS, inputs))
    lr, max_seq = by_key["train.lr"], by_key["train.max_seq_length"]
    assert lr.value == 5e-4 and lr.minimum == 0 and lr.info.key == "lr_info"  # translated help
    assert EN["lr_info"] == TrainConfig.model_fields["lr"].description
    assert max_seq.minimum == 16 and max_seq.precision == 0 and max_seq.label.key == "max_seq_length"
    assert isinstance(by_key["model.load_in_4bit"], gr.Checkbox) and by_key["model.load_in_4bit"].value is True


@pytest.fixture
def tab_client(tiny_model, tmp_path):
    """The Train tab alone in a real Gradio app on a free port, driven through gradio_client; yields
    (client, ctx). The training process it starts is real: start.py on the tiny model."""
    from gradio_client import Client

    from conftest import tiny_settings
    from inkstone.adapter_catalog import AdapterCatalog
    from inkstone.webui.i18n import i18n

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    ctx = SimpleNamespace(cfg=cfg, train_job=None,
                          adapters=AdapterCatalog(cfg.model.adapter_dirs, cfg.model.max_lora_rank))
    with gr.Blocks() as demo:
        create_train_tab(ctx)
    demo.launch(server_name="127.0.0.1", server_port=cfg.webui.port, prevent_thread_lock=True, i18n=i18n)
    try:
        yield Client(f"http://127.0.0.1:{cfg.webui.port}/", verbose=False), ctx
    finally:
        if ctx.train_job is not None and ctx.train_job.running:
            ctx.train_job.stop()
        demo.close()


def write_split(folder, texts):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{folder.name}.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)


@pytest.mark.slow
def test_a_run_started_in_the_tab_reports_eval_loss_from_the_validation_split(tab_client, corpus):
    from conftest import wait_until
    from inkstone.train.jobs import read_progress

    client, ctx = tab_client
    text = corpus.read_text(encoding="utf-8")
    write_split(ctx.cfg.data.train_dir, [text[i:i + 1000] for i in range(0, 12000, 1000)])
    write_split(ctx.cfg.data.val_dir, [text[i:i + 1000] for i in range(12000, 16000, 1000)])
    # epochs, batch, grad_accum, lr, lora_r, max_seq_length, max_steps, 4-bit; the config evaluates every 2 steps.
    client.predict(str(ctx.cfg.data.train_dir), "tab-eval", 1, 2, 1, 2e-4, 8, 64, 2, True, api_name="/train_start")

    def finished():
        html, plot = client.predict(api_name="/train_status")
        return (html, plot) if ("done" in html or "failed" in html) else None

    html, plot = wait_until(finished, timeout=300, interval=2)
    rows = read_progress(ctx.cfg.train.output_dir / "tab-eval")
    assert "done" in html, (ctx.cfg.train.output_dir / "tab-eval" / "train.log").read_text()[-3000:]
    evals = [r for r in rows if r["event"] == "log" and "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 2]  # the base model, then the end of the run: once
    assert all(r["eval_loss"] > 0 and r["eval_ppl"] > 1 for r in evals)
    assert rows[-1]["event"] == "done" and rows[-1]["eval_loss"] == evals[-1]["eval_loss"]
    # The eval series is plotted beside the training loss.
    assert [(step, series) for step, _, series in plot["data"] if series == "eval"] == [(0, "eval"), (2, "eval")]
