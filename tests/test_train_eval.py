"""Evaluation during training: what it costs and what the progress rows say about it."""
import time
from types import SimpleNamespace

import pytest
import torch

from inkstone.config import TrainConfig
from inkstone.train.progress import ProgressLog, make_progress_callback, rate
from inkstone.train.qlora import eval_sample


def test_a_rate_over_no_time_is_left_out():
    assert rate(128, 0.0) is None and rate(128, 1e-9) is None
    assert rate(128, 2.0) == 64


def callback(tmp_path):
    log = ProgressLog(tmp_path / "progress.jsonl")
    return make_progress_callback(log, tokens_per_step=128, train_blocks=8, val_blocks=4, lr=1e-4,
                                  stop_on_loss_rise=False, stop_flag={"flag": False})


def test_rows_carry_a_rate_only_after_a_timed_step(tmp_path, monkeypatch):
    from inkstone.train import progress as progress_module
    from inkstone.train.jobs import read_progress

    cb = callback(tmp_path)
    state = SimpleNamespace(global_step=0, max_steps=4, epoch=0.0)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    cb.on_train_begin(None, state, control)
    cb.on_log(None, state, control, logs={"eval_loss": 7.0, "eval_runtime": 0.5})  # the step-0 evaluation
    clock = iter([100.0, 100.0 + 1e-9, 200.0, 202.0])
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(time=time.time, perf_counter=lambda: next(clock)))
    for _ in range(2):  # a step timed at a clock tick, then one of 2 s
        cb.on_step_begin(None, state, control)
        state.global_step += 1
        cb.on_step_end(None, state, control)
        cb.on_log(None, state, control, logs={"loss": 6.0})
    rows = [r for r in read_progress(tmp_path) if r["event"] == "log"]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert "tokens_per_s" not in rows[0] and "eta_s" not in rows[0]
    assert "tokens_per_s" not in rows[1]  # 128 tokens over 1e-9 s once read 1.28e11 tokens/s
    assert rows[2]["tokens_per_s"] == pytest.approx(128, rel=1e-6) and rows[2]["eta_s"] == pytest.approx(2, rel=1e-6)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_eval_sample_costs_about_its_share_of_the_run(checkpointing):
    from inkstone.train.qlora import FORWARDS_PER_TRAINING_BLOCK

    blocks = [{"i": i} for i in range(10_000)]
    steps, per_step, evaluations = 200, 16, 3
    sample = eval_sample(blocks, total_steps=steps, blocks_per_step=per_step, evaluations=evaluations, share=0.1,
                         cap=10_000, seed=1, checkpointing=checkpointing)
    # Costs in evaluations of one block: training one is a forward and a backward (without weight
    # gradients: the base is frozen), and a recomputed forward with checkpointing.
    train_cost = steps * per_step * FORWARDS_PER_TRAINING_BLOCK[checkpointing]
    eval_cost = evaluations * len(sample)
    assert eval_cost / (eval_cost + train_cost) == pytest.approx(0.1, abs=0.002)
    again = eval_sample(blocks, total_steps=steps, blocks_per_step=per_step, evaluations=evaluations, share=0.1,
                        cap=10_000, seed=1, checkpointing=checkpointing)
    assert again == sample  # the same sample every time: the loss curve compares like with like
    assert len(eval_sample(blocks, total_steps=steps, blocks_per_step=per_step, evaluations=evaluations,
                           share=0.1, cap=64, seed=1, checkpointing=checkpointing)) == 64


def test_evaluation_keeps_only_the_loss_in_inference_mode_and_training_goes_on(tiny_model, tmp_path):
    """On both loss paths: no autograd record and no logits kept (the Trainer asks for the loss
    alone when there are no metrics to compute); on the sliced one, no KV cache filled. A training
    step after the evaluation still learns: no inference tensor outlives it."""
    from transformers import TrainerCallback

    from inkstone.train.fused_loss import supports_fused_loss
    from inkstone.train.model_setup import add_lora, load_base, load_tokenizer
    from inkstone.train.qlora import Example, TrainingBlocks, build_trainer, pack, training_arguments

    t = TrainConfig(max_steps=1, batch_size=2, grad_accum=1, max_seq_length=32, lora_r=4, lora_alpha=8,
                    save_steps=100, dtype="float32", lora_dropout=0.0, warmup_ratio=0.0)
    tokenizer = load_tokenizer(tiny_model)
    packed = pack([Example("宝玉笑道：这个妹妹我曾见过的。" * 12)], tokenizer, t.max_seq_length)
    blocks = TrainingBlocks(train=packed, val=packed[:4], val_available=4, total_steps=1, eval_on_start=False)
    for fused in (True, False):
        model = add_lora(load_base(tiny_model, dtype=torch.float32, load_in_4bit=False), r=4, alpha=8, dropout=0.0)
        assert supports_fused_loss(model)
        targs = training_arguments(t, tmp_path / f"fused-{fused}", blocks, bf16=False, checkpointing=False)
        trainer = build_trainer(model, targs, blocks, progress=TrainerCallback(), fused=fused)
        steps, caches = [], []
        decoder = model.get_base_model().get_decoder()
        decoder.register_forward_pre_hook(lambda _m, _a, kw: caches.append(kw.get("use_cache")), with_kwargs=True)
        predict = trainer.prediction_step

        def recording(*args, **kwargs):
            out = predict(*args, **kwargs)
            steps.append(out)
            return out

        trainer.prediction_step = recording
        metrics = trainer.evaluate()
        assert torch.isfinite(torch.tensor(metrics["eval_loss"]))
        assert steps and all(loss.is_inference() and logits is None for loss, logits, _ in steps), fused
        if fused:
            assert caches and not any(caches), caches
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        trainer.train()
        after = dict(model.named_parameters())
        assert any(not torch.equal(after[n], p) for n, p in before.items())  # it learned after the evaluation
