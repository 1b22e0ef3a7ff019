"""A few real QLoRA steps (bitsandbytes 4-bit on the CPU) on the tiny model."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, env_for, tiny_settings
from inkstone.train.jobs import start_training, summarize
from inkstone.config import TrainConfig
from inkstone.train.qlora import TrainArgs, TrainingDataError, read_texts, run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_data(tmp_path_factory, corpus):
    d = tmp_path_factory.mktemp("train-data")
    text = corpus.read_text(encoding="utf-8")[:30000]
    with open(d / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(0, len(text), 1000):
            fh.write(json.dumps({"text": text[i:i + 1000]}, ensure_ascii=False) + "\n")
    return d / "train.jsonl"


def progress(run_dir):
    return [json.loads(l) for l in (run_dir / "progress.jsonl").read_text(encoding="utf-8").splitlines()]


def test_qlora_steps_write_progress_and_an_adapter(tiny_model, train_data, tmp_path):
    out = tmp_path / "run"
    settings = TrainConfig(max_steps=4, batch_size=2, grad_accum=1, max_seq_length=64, lora_r=8, lora_alpha=16,
                           save_steps=2, max_eval_blocks=4)
    adapter = run_training(TrainArgs(data=train_data, val_data=train_data, base_model=tiny_model, output_dir=out,
                                     train=settings))
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    rows = progress(out)
    logs = [r for r in rows if r["event"] == "log" and "loss" in r]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert any("eval_loss" in r for r in rows)
    assert rows[-1]["event"] == "done"
    # The step-0 evaluation has no training rate yet (it used to claim 1.28e11 tokens/s).
    step0 = [r for r in rows if r["event"] == "log" and r["step"] == 0]
    assert step0 and all("tokens_per_s" not in r and "eval_loss" in r for r in step0)
    assert all(0 < r["tokens_per_s"] < 1e7 for r in logs)
    # The final evaluation runs once: the step-4 evaluation is reused for `done`.
    final_evals = [r for r in rows if r["event"] == "log" and r["step"] == 4 and "eval_loss" in r]
    assert len(final_evals) == 1 and rows[-1]["eval_loss"] == final_evals[0]["eval_loss"]
    resolved = json.loads((out / "run.json").read_text())["resolved"]
    assert resolved["dtype"] in ("bfloat16", "float32") and resolved["eval_blocks"] <= 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    from inkstone.train.jobs import compare_runs

    table = compare_runs(tmp_path)
    assert [(r["checkpoint"], r["step"]) for r in table] == [("checkpoint-2", 2), ("checkpoint-4", 4), ("adapter", 4)]
    assert all(r["eval_loss"] and r["eval_ppl"] > 1 for r in table)


def test_resume_matches_an_uninterrupted_run(tiny_model, train_data, tmp_path):
    """N steps straight vs N/2, stop, resume, N/2: the same loss curve."""
    import shutil

    common = dict(data=train_data, base_model=tiny_model,
                  train=TrainConfig(batch_size=2, grad_accum=1, max_seq_length=64, lora_r=8, lora_alpha=16,
                                    save_steps=2, max_steps=4, lr=1e-3))
    straight = tmp_path / "straight"
    run_training(TrainArgs(output_dir=straight, **common))
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")  # as if stopped after step 2
    run_training(TrainArgs(output_dir=resumed, resume="latest", **common))

    def losses(d):
        return {r["step"]: r["loss"] for r in progress(d) if r["event"] == "log" and "loss" in r}

    a, b = losses(straight), losses(resumed)
    assert sorted(b) == [3, 4]
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6)


def test_an_incomplete_checkpoint_is_never_picked_up(tmp_path):
    from inkstone.checkpoints import INCOMPLETE_MARKER, latest_checkpoint

    for step in (2, 4, 6):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "adapter_config.json").write_text("{}")
        (d / "adapter_model.safetensors").write_bytes(b"weights")
        (d / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6" / INCOMPLETE_MARKER).touch()  # crashed while saving
    (tmp_path / "checkpoint-8").mkdir()  # no trainer state yet
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"


def test_instruction_pairs_learn_only_the_completion(tiny_tokenizer):
    from inkstone.train.qlora import IGNORE, Example, pack

    blocks = pack([Example(text="宝玉笑道：好妹妹。", prompt="【要求】写宝玉说话\n【正文】\n")], tiny_tokenizer, 1024)
    (block,) = blocks
    n_prompt = len(tiny_tokenizer("【要求】写宝玉说话\n【正文】\n").input_ids)
    assert block["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert block["labels"][n_prompt:] == block["input_ids"][n_prompt:]
    # A block holding only prompt tokens would have a NaN loss: it is left out.
    long_prompt = Example(text="好。", prompt="很长的提示" * 50)
    blocks = pack([long_prompt], tiny_tokenizer, 16)
    assert blocks and all(any(x != IGNORE for x in b["labels"]) for b in blocks)


def test_bad_training_data_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:2"):
        read_texts(f)
    with pytest.raises(TrainingDataError, match="prepare"):
        read_texts(tmp_path / "missing")


def test_stop_saves_a_checkpoint_and_the_adapter(tiny_model, train_data, tmp_path):
    from inkstone.config import build_config

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    job = start_training(cfg, "stop-me", {"data": train_data, "max-steps": 500, "max-seq-length": 64,
                                          "save-steps": 1000})
    import time

    deadline = time.time() + 240
    while time.time() < deadline and job.status().step < 2:
        assert job.running, (job.run_dir / "train.log").read_text()[-3000:]
        time.sleep(1)
    job.stop()
    st = summarize(job.run_dir, job.proc.returncode)
    assert st.state == "stopped", st
    assert (job.run_dir / "adapter" / "adapter_config.json").is_file()
    assert list(job.run_dir.glob("checkpoint-*"))


def test_a_crashing_run_leaves_the_parent_alive_with_a_message(tiny_model, tmp_path):
    from inkstone.config import build_config

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    job = start_training(cfg, "crash", {"data": tmp_path / "missing.jsonl"})
    job.proc.wait(timeout=120)
    st = job.status()
    assert st.state == "failed" and "prepare" in st.message


def test_quality_check_trains_on_early_chapters_and_scores_the_last(tiny_model, corpus):
    from inkstone.bench.quality import run_quality_check, split_book

    head = len(split_book(corpus, 1)[0]) + len(split_book(corpus, 1)[1]) - 1  # all chapters but the last
    train, held_out = split_book(corpus, head)
    assert len(held_out) == 1 and held_out[0].title not in [c.title for c in train]
    result = run_quality_check(tiny_model, corpus, train_chapters=head, steps=6, seq=64, lr=5e-3, lora_r=8,
                               eval_blocks=4)
    assert result["base_perplexity"] > 1 and result["tuned_perplexity"] > 1
    assert result["tuned_perplexity"] < result["base_perplexity"]  # held-out text of the same book got likelier
    with pytest.raises(ValueError, match="need more than"):
        split_book(corpus, 10_000)


def test_blocks_start_with_bos_where_the_tokenizer_uses_one(tiny_tokenizer):
    from transformers import PreTrainedTokenizerFast

    from inkstone.train.qlora import IGNORE, Example, leading_bos, pack

    assert leading_bos(tiny_tokenizer) is None  # Qwen-style: no BOS, blocks are plain cuts
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer.backend_tokenizer, bos_token="<|im_start|>",
                                  eos_token=tiny_tokenizer.eos_token)
    from tokenizers.processors import TemplateProcessing

    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A",
                                                              special_tokens=[("<|im_start|>", bos)])
    assert leading_bos(tok) == bos
    text = "宝玉笑道：这个妹妹我曾见过的。" * 20
    blocks = pack([Example(text), Example(text)], tok, 16)
    body = [t for b in blocks for t in b["input_ids"][1:] if t != bos]
    expected = [t for t in (tok(text).input_ids + [tok.eos_token_id]) * 2 if t != bos]
    assert all(b["input_ids"][0] == bos and b["labels"][0] == IGNORE for b in blocks)
    assert body[:len(expected)] == expected  # every text token kept once, in order
    assert all(len(b["input_ids"]) == 16 for b in blocks)


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_only_finite_checkpoints(tiny_model, train_data, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="step"):
        run_training(TrainArgs(data=train_data, base_model=tiny_model, output_dir=out,
                               train=TrainConfig(max_steps=40, batch_size=2, grad_accum=1, max_seq_length=64,
                                                 lora_r=8, lora_alpha=16, save_steps=1, lr=1e25, warmup_ratio=0.0,
                                                 dtype="float32")))
    rows = progress(out)
    (error,) = [r for r in rows if r["event"] == "error"]
    assert f"step {error['step']}" in error["message"]
    assert not (out / "adapter").exists()
    assert list(out.glob("checkpoint-*"))  # the last good one is kept
    for ck in out.glob("checkpoint-*"):
        weights = load_file(ck / "adapter_model.safetensors")
        assert all(t.isfinite().all() for t in weights.values()), ck.name
        assert int(ck.name.split("-")[1]) < error["step"]


def test_loss_guard_fires_once_on_a_sustained_rise_and_not_on_noise():
    from inkstone.train.progress import LossGuard

    falling = [5.0 - 0.02 * i + (0.2 if i % 3 == 0 else -0.1) for i in range(60)]
    g = LossGuard()
    assert not any(g.update(x) for x in falling)
    rising = [5.2, 5.1, 5.0, 5.0, 5.05] + [5.2 + 0.05 * i for i in range(40)]
    g = LossGuard()
    fired = [i for i, x in enumerate(rising) if g.update(x)]
    assert len(fired) == 1 and fired[0] < 30


def test_adapter_swap_never_leaves_the_run_without_an_adapter(tiny_model, tmp_path):
    from inkstone.checkpoints import finished_adapter
    from inkstone.train.model_setup import add_lora, load_base, load_tokenizer
    from inkstone.train.qlora import save_adapter_atomically

    import torch

    model = add_lora(load_base(tiny_model, dtype=torch.float32, load_in_4bit=False), r=8, alpha=16, dropout=0.0)
    tok = load_tokenizer(tiny_model)
    first = save_adapter_atomically(model, tok, tmp_path)
    assert finished_adapter(tmp_path) == first
    # A kill between "old aside" and "new in": only .adapter-old is there, and it is still found.
    first.rename(tmp_path / ".adapter-old")
    assert finished_adapter(tmp_path) == tmp_path / ".adapter-old"
    again = save_adapter_atomically(model, tok, tmp_path)
    assert finished_adapter(tmp_path) == again and not (tmp_path / ".adapter-old").exists()


def _wait_for_step(job, step: int, timeout: float = 240):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and job.status().step < step:
        assert job.running, (job.run_dir / "train.log").read_text()[-3000:]
        time.sleep(0.5)


def test_a_killed_run_is_reported_with_its_signal(tiny_model, train_data, tmp_path):
    import os
    import signal

    from inkstone.config import build_config

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    job = start_training(cfg, "oom", {"data": train_data, "max-steps": 500, "max-seq-length": 64, "save-steps": 1000})
    _wait_for_step(job, 1)
    os.kill(job.pid, signal.SIGKILL)  # what the kernel's OOM killer does
    job.proc.wait(timeout=60)
    st = job.status()
    assert st.state == "failed" and "SIGKILL" in st.message and "memory" in st.message


def test_one_run_at_a_time_and_a_restarted_ui_reattaches(tiny_model, train_data, tmp_path):
    from inkstone.config import build_config
    from inkstone.train.jobs import TrainJob, find_running
    from inkstone.train.run_lock import RunBusy

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    job = start_training(cfg, "long", {"data": train_data, "max-steps": 500, "max-seq-length": 64,
                                       "save-steps": 1000})
    try:
        _wait_for_step(job, 1)
        with pytest.raises(ValueError, match="exists already"):
            start_training(cfg, "long", {"data": train_data})
        # The same run started by hand while it trains: refused before it touches anything.
        with pytest.raises(RunBusy, match=f"pid {job.pid}"):
            run_training(TrainArgs(data=train_data, base_model=tiny_model, output_dir=job.run_dir,
                                   train=TrainConfig(max_steps=1)))
        # A new web UI process finds the run by its lock, follows it and can stop it.
        again = find_running(cfg.train.output_dir)
        assert isinstance(again, TrainJob) and again.proc is None and again.pid == job.pid
        assert again.running and again.status().state == "running"
        again.stop()
        job.proc.wait(timeout=60)
        assert not again.running and again.status().state == "stopped"
        assert find_running(cfg.train.output_dir) is None
    finally:
        if job.running:
            job.proc.kill()


def test_two_starts_of_one_run_at_the_same_moment_start_one(tiny_model, train_data, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from inkstone.config import build_config

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))

    def start(_):
        try:
            return start_training(cfg, "twice", {"data": train_data, "max-steps": 1, "max-seq-length": 64})
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(start, range(4)))
    jobs = [r for r in results if not isinstance(r, Exception)]
    assert len(jobs) == 1 and all("exists already" in str(r) or "being started" in str(r)
                                  for r in results if isinstance(r, Exception))
    jobs[0].proc.wait(timeout=240)
    assert jobs[0].status().state == "done"


def test_bench_train_reports_every_side_against_the_peer(tiny_model, corpus):
    from inkstone.bench.train import run_train_bench

    result = run_train_bench(tiny_model, corpus, steps=2, batch=1, seq=64, lora_r=4, dtype="float32", repeats=1)
    for side in ("naive", "peer", "ours"):
        assert result[side]["tokens_per_s"] > 0 and result[side]["peak_rss_mb"] > 0
    assert result["peer"]["gradient_checkpointing"] is True
    assert result["ours"]["resolved"]["dtype"] == "float32" and result["ours"]["resolved"]["fused_loss"] is True
    assert result["tokens_per_s_vs_peer"] > 0 and result["tokens_per_s_vs_naive"] > 0


def test_checkpointed_steps_equal_plain_ones(tiny_model, train_data, tmp_path):
    """Recomputing activations saves memory, never changes what is learned."""
    common = dict(batch_size=2, grad_accum=1, max_seq_length=64, lora_r=8, lora_alpha=16, save_steps=100,
                  max_steps=3, lr=1e-3, dtype="float32", lora_dropout=0.0)
    losses = {}
    for checkpointing in (False, True):
        out = tmp_path / f"ckpt-{checkpointing}"
        run_training(TrainArgs(data=train_data, base_model=tiny_model, output_dir=out,
                               train=TrainConfig(gradient_checkpointing=checkpointing, **common)))
        assert json.loads((out / "run.json").read_text())["resolved"]["gradient_checkpointing"] is checkpointing
        losses[checkpointing] = [r["loss"] for r in progress(out) if r["event"] == "log" and "loss" in r]
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-6)  # the same forward pass
    # Later steps follow updates whose float sums run in another order: equal to rounding, not bit for bit.
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
