"""train-vision for real on a synthetic set: coloured shapes on plain backgrounds,
captioned in Chinese and English. A tiny random CLIP tower and a tiny language
model that already writes captions (a real base model knows its language);
stage 1 must teach the projector enough to lower the caption loss by 30%;
after stage 2 (LoRA, tower unfrozen) greedy captions of new pictures must name
their colour 80% of the time; runs checkpoint and resume, start as a child
process like text training, and the saved model captions alike in vLLM and
transformers.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from inkstone.train.jobs import read_progress
from inkstone.vision.train import MODEL_DIRNAME, VisionTrainArgs, latest_vision_checkpoint, run_vision_training
from tiny_vision import (BACKGROUNDS, COLOURS, SHAPES, build_caption_lm, build_tiny_clip, caption_texts,
                         colour_accuracy, draw, synthetic_set)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_thread():
    """The tiny models train faster on one thread than on threads that fight over shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, one_thread) -> dict:
    from inkstone.prompting.modes.describe_image import DEFAULT_INSTRUCTION

    root = tmp_path_factory.mktemp("vision")
    truth = synthetic_set(root / "data", 400, seed=0)
    captions = json.loads((root / "data" / "captions.json").read_text(encoding="utf-8"))
    captions["lost.png"] = "a red circle that was never saved."
    (root / "data" / "captions.json").write_text(json.dumps(captions, ensure_ascii=False), encoding="utf-8")
    return {"root": root, "data": root / "data", "tower": build_tiny_clip(root / "tower"),
            "lm": build_caption_lm(caption_texts(truth, DEFAULT_INSTRUCTION), root / "lm", steps=300)}


@pytest.fixture(scope="module")
def stage1(parts) -> Path:
    run = parts["root"] / "runs" / "stage1"
    run_vision_training(VisionTrainArgs(data=parts["data"], output_dir=run, base_model=parts["lm"],
                                        tower=parts["tower"], epochs=8, lr=5e-3, batch_size=16, save_steps=25,
                                        val_share=0.1, seed=0))
    return run


@pytest.fixture(scope="module")
def stage2(parts, stage1) -> Path:
    run = parts["root"] / "runs" / "stage2"
    run_vision_training(VisionTrainArgs(data=parts["data"], output_dir=run, from_model=stage1 / MODEL_DIRNAME,
                                        stage=2, unfreeze_tower=True, epochs=8, lr=2e-3, batch_size=16,
                                        save_steps=40, val_share=0.1, seed=0))
    return run


def test_stage1_lowers_the_caption_loss_by_a_third(stage1):
    rows = read_progress(stage1)
    evals = [r["eval_loss"] for r in rows if r.get("event") == "log" and "eval_loss" in r]
    assert len(evals) >= 3
    assert evals[-1] <= 0.7 * evals[0], evals
    assert any(r.get("event") == "log" and "eta_s" in r for r in rows)
    done = next(r for r in rows if r.get("event") == "done")
    assert Path(done["model"]) == stage1 / MODEL_DIRNAME and (stage1 / MODEL_DIRNAME / "model.safetensors").is_file()
    bad = [r["message"] for r in rows if r.get("event") == "warning" and r.get("kind") == "bad_pair"]
    assert bad == ["left out: lost.png: has a caption but no image in images/"]
    record = json.loads((stage1 / "run.json").read_text())
    assert record["pairs"] == 400 and record["left_out"] == ["lost.png: has a caption but no image in images/"]


def test_stage1_trains_the_projector_alone(stage1, parts):
    """Tower and language model are the ones it started from, bit for bit."""
    from safetensors import safe_open

    with safe_open(str(stage1 / MODEL_DIRNAME / "model.safetensors"), "pt") as saved, \
            safe_open(str(parts["lm"] / "model.safetensors"), "pt") as lm, \
            safe_open(str(parts["tower"] / "model.safetensors"), "pt") as tower:
        assert saved.get_tensor("model.language_model.layers.0.mlp.up_proj.weight").equal(
            lm.get_tensor("model.layers.0.mlp.up_proj.weight"))
        assert saved.get_tensor("model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight").equal(
            tower.get_tensor("encoder.layers.0.mlp.fc1.weight"))
    with safe_open(str(latest_vision_checkpoint(stage1) / "trainable.safetensors"), "pt") as ckpt:
        assert set(ckpt.keys()) == {f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2)
                                    for p in ("weight", "bias")}


def test_a_stopped_run_resumes_from_its_last_checkpoint(parts):
    run = parts["root"] / "runs" / "resumed"
    common = dict(data=parts["data"], output_dir=run, base_model=parts["lm"], tower=parts["tower"], lr=5e-3,
                  batch_size=8, save_steps=2, val_share=0.0, seed=0)
    run_vision_training(VisionTrainArgs(max_steps=4, **common))
    assert latest_vision_checkpoint(run).name == "checkpoint-4"
    run_vision_training(VisionTrainArgs(max_steps=6, resume="latest", **common))
    starts = [r for r in read_progress(run) if r.get("event") == "start"]
    assert [s["step"] for s in starts] == [0, 4]
    assert latest_vision_checkpoint(run).name == "checkpoint-6"


def test_stage2_runs_as_a_child_process_and_writes_a_servable_model(cfg, stage1, parts):
    from transformers import LlavaForConditionalGeneration

    from inkstone.vision.jobs import start_vision_training

    job = start_vision_training(cfg, "vision-stage2", {"data": parts["data"], "from-model": stage1 / MODEL_DIRNAME,
                                                       "stage": 2, "unfreeze-tower": True, "max-steps": 3,
                                                       "save-steps": 2, "batch-size": 8, "lr": 1e-3})
    assert job.proc.wait(timeout=600) == 0, (job.run_dir / "train.log").read_text()[-2000:]
    st = job.status()
    assert st.state == "done" and st.step == 3 and st.losses
    model = LlavaForConditionalGeneration.from_pretrained(job.run_dir / MODEL_DIRNAME)
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged


def test_after_stage2_captions_of_new_pictures_name_their_colour(stage2):
    accuracy = colour_accuracy(stage2 / MODEL_DIRNAME, n=30)
    assert accuracy >= 0.8, accuracy


def held_out(n: int, seed: int = 99) -> list:
    rng = random.Random(seed)
    return [draw(rng.choice(list(COLOURS)), rng.choice(list(SHAPES)), rng.choice(list(BACKGROUNDS)), 48, rng)
            for _ in range(n)]


@pytest.fixture(scope="module")
def vision_engine(stage2):
    from inkstone.engine.vllm_engine import EngineSettings, VllmEngine

    engine = VllmEngine(EngineSettings(model_path=stage2 / MODEL_DIRNAME, model_name=MODEL_DIRNAME,
                                       max_model_len=256, dtype="float32", cpu_kv_cache_gib=0.1, max_lora_rank=8,
                                       max_num_batched_tokens=256)).start()
    yield engine
    engine.stop()


def test_vllm_captions_as_transformers_does(stage2, vision_engine):
    from transformers import AutoTokenizer

    from inkstone.engine.contract import GenerationParams
    from inkstone.prompting.request import PromptRequest
    from inkstone.prompting.service import PromptService, PromptSettings
    from inkstone.adapter_catalog import AdapterCatalog
    from inkstone.engine.contract import Text
    from inkstone.story.db import StudioDB
    from inkstone.vision.reference import greedy_captions
    from inkstone.writing.studio import Studio

    model_dir = stage2 / MODEL_DIRNAME  # LoRA merged, tower trained: every part differs from its start
    images = held_out(6)
    expected = greedy_captions(model_dir, images, max_new_tokens=20)
    service = PromptService(AutoTokenizer.from_pretrained(model_dir),
                            PromptSettings(model_name=MODEL_DIRNAME, max_model_len=256, max_tokens=20))
    params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_tokens=20, repetition_penalty=1.0)
    # Through the Studio, as the Write tab and the API ask: prompt service -> engine (with the picture) -> History.
    studio = Studio(vision_engine, service, AdapterCatalog((), 8), StudioDB(stage2 / "studio.sqlite3"))
    try:
        got = ["".join(ev.text for ev in studio.write(PromptRequest(mode="describe", image=image, use_memory=False),
                                                      params, source="write") if isinstance(ev, Text))
               for image in images]
    finally:
        service.close()
    assert all(e.strip() for e in expected)
    assert got == expected
    assert [e.output for e in reversed(studio.history.list())] == got

