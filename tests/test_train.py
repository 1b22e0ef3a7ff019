"""A few real QLoRA steps (bitsandbytes 4-bit on the CPU) on the tiny model."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, env_for, tiny_settings
from inkstone.train.jobs import start_training, summarize
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
    adapter = run_training(TrainArgs(data=train_data, val_data=train_data, base_model=tiny_model, output_dir=out,
                                     max_steps=4, batch_size=2, grad_accum=1, max_seq_length=64, lora_r=8,
                                     lora_alpha=16, save_steps=2, max_eval_blocks=4))
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    rows = progress(out)
    logs = [r for r in rows if r["event"] == "log" and "loss" in r]
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert any("eval_loss" in r for r in rows)
    assert rows[-1]["event"] == "done"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_resume_continues_from_the_latest_checkpoint(tiny_model, train_data, tmp_path):
    out = tmp_path / "run"
    common = dict(data=train_data, base_model=tiny_model, output_dir=out, batch_size=2, grad_accum=1,
                  max_seq_length=64, lora_r=8, lora_alpha=16, save_steps=2)
    run_training(TrainArgs(max_steps=2, **common))
    run_training(TrainArgs(max_steps=4, resume="latest", **common))
    steps = [r["step"] for r in progress(out) if r["event"] == "log" and "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_bad_training_data_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"bad.jsonl:2"):
        read_texts(f)
    with pytest.raises(TrainingDataError, match="prepare"):
        read_texts(tmp_path / "missing")


def test_stop_saves_a_checkpoint_and_the_adapter(tiny_model, train_data, tmp_path):
    from config import build_config

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
    from config import build_config

    cfg = build_config(**tiny_settings(tiny_model, tmp_path))
    job = start_training(cfg, "crash", {"data": tmp_path / "missing.jsonl"})
    job.proc.wait(timeout=120)
    st = job.status()
    assert st.state == "failed" and "prepare" in st.message
