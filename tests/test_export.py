"""Export: merge a LoRA into the tiny Qwen2, write HF and GGUF, reload, compare.

The expensive exports run once per module (fixtures below); every check that
reloads a model computes its own reference (the adapter on the base, via peft)
rather than trusting the export's own verification figures.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inkstone.export import ExportError, VerificationError, resolve_adapter

PROBE = "第一回　甄士隐梦幻识通灵　贾雨村风尘怀闺秀。此开卷第一回也，作者自云"


def _logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].double()


@pytest.fixture(scope="module")
def reference(tiny_model, tiny_lora, tiny_tokenizer):
    """(probe ids, logits of the adapter on the fp32 base) computed with peft directly."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tiny_lora).eval()
    ids = tiny_tokenizer(PROBE).input_ids
    logits = _logits(model, ids)
    with model.disable_adapter():
        plain = _logits(model, ids)
    return ids, logits, plain


def _copy_adapter(src: Path, dst: Path, complete: bool = True) -> Path:
    shutil.copytree(src, dst)
    if complete:
        (dst / "trainer_state.json").write_text(json.dumps({"global_step": int(dst.name.split("-")[-1])}))
    return dst


@pytest.fixture(scope="module")
def running_run(tmp_path_factory, tiny_lora) -> Path:
    """A training run still in progress: checkpoints, one half-written, no adapter/ yet; logs and a prepare report."""
    work = tmp_path_factory.mktemp("export-work")
    run = work / "checkpoints" / "novel"
    run.mkdir(parents=True)
    _copy_adapter(tiny_lora, run / "checkpoint-2")
    _copy_adapter(tiny_lora, run / "checkpoint-4")
    _copy_adapter(tiny_lora, run / "checkpoint-6", complete=False)  # weights written, trainer_state not yet
    _copy_adapter(tiny_lora, run / "tmp-checkpoint-8")
    (run / "run.json").write_text(json.dumps({
        "data": str(work / "data" / "train"), "epochs": 3, "max_steps": -1, "lr": 0.0002, "batch_size": 2,
        "grad_accum": 8, "max_seq_length": 2048, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
        "load_in_4bit": True, "seed": 42}))
    rows = [{"event": "start", "max_steps": 10, "step": 0},
            {"event": "log", "step": 2, "loss": 3.25, "eval_loss": 2.5},
            {"event": "log", "step": 4, "loss": 2.75, "eval_loss": 2.0},
            {"event": "log", "step": 6, "loss": 2.5, "eval_loss": 1.5}]  # after checkpoint-4: not its figures
    (run / "progress.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"event\": \"lo")  # torn line
    prepared = work / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "report.json").write_text(json.dumps({
        "files": [{"file": "novels/hongloumeng.txt", "encoding": "gb18030", "chapters": 80, "bytes": 1}],
        "skipped": [], "books": 1, "chapters": 80, "train_chunks": 321, "val_chunks": 17,
        "train_tokens": 654321, "val_tokens": 34567}, ensure_ascii=False))
    return run


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory, running_run, tiny_model):
    """An HF export of the running run, asked to push while the Hub is offline: (report, error)."""
    from inkstone.export import run_export

    out = tmp_path_factory.mktemp("exports") / "novel-hf"
    with pytest.raises(ExportError) as info:
        run_export(running_run, tiny_model, out, "hf", push_to_hub="someone/novel-writer", private=True,
                   progress=lambda *_: None)
    assert info.value.report is not None, "a failed push must still hand back the finished export's report"
    return info.value.report, str(info.value)


@pytest.fixture(scope="module", params=["f16", "q8_0"])
def gguf_export(request, tmp_path_factory, tiny_lora, tiny_model):
    from inkstone.export import run_export

    out = tmp_path_factory.mktemp("exports") / f"tiny-{request.param}"
    return run_export(tiny_lora, tiny_model, out, "gguf", quant=request.param, progress=lambda *_: None)


# ----------------------------------------------------------------------------- resolve_adapter


def test_resolve_adapter_picks_latest_complete_checkpoint(running_run, tiny_lora):
    assert resolve_adapter(running_run) == running_run / "checkpoint-4"
    assert resolve_adapter(tiny_lora) == tiny_lora  # an adapter folder as is
    assert resolve_adapter(tiny_lora / "adapter_config.json") == tiny_lora


def test_resolve_adapter_prefers_finished_adapter(tmp_path, tiny_lora):
    run = tmp_path / "run"
    run.mkdir()
    _copy_adapter(tiny_lora, run / "checkpoint-10")
    shutil.copytree(tiny_lora, run / "adapter")
    shutil.copytree(tiny_lora, run / ".adapter-partial")
    assert resolve_adapter(run) == run / "adapter"


def test_resolve_adapter_explains_what_is_missing(tmp_path, tiny_lora):
    with pytest.raises(ExportError, match="does not exist"):
        resolve_adapter(tmp_path / "no-such-run")
    run = tmp_path / "run"
    run.mkdir()
    _copy_adapter(tiny_lora, run / "checkpoint-3", complete=False)
    with pytest.raises(ExportError, match=r"incomplete.*checkpoint-3"):
        resolve_adapter(run)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    with pytest.raises(ExportError, match="no adapter weights"):
        resolve_adapter(broken)


def test_bad_arguments_fail_before_any_work(tmp_path, tiny_model, tiny_lora):
    from inkstone.export import run_export

    with pytest.raises(ExportError, match="adapter not found"):
        run_export(tmp_path / "missing-adapter", tiny_model, tmp_path / "out", "hf")
    with pytest.raises(ExportError, match="--format"):
        run_export(tiny_lora, tiny_model, tmp_path / "out", "onnx")
    with pytest.raises(ExportError, match="--quant"):
        run_export(tiny_lora, tiny_model, tmp_path / "out", "gguf", quant="q3_k")
    with pytest.raises(ExportError, match="not a Hub repo id"):
        run_export(tiny_lora, tiny_model, tmp_path / "out", "hf", push_to_hub="no slash")
    with pytest.raises(ExportError, match="offline"):
        run_export(tiny_lora, "someone/not-cached-model", tmp_path / "out", "hf")
    assert not (tmp_path / "out").exists()


def test_push_offline_names_the_repo(tmp_path):
    from inkstone.export.hub import push_folder

    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ExportError, match=r"'me/my-novel-model'.*offline \(HF_HUB_OFFLINE=1\)"):
        push_folder(tmp_path, "me/my-novel-model", private=True)


# ----------------------------------------------------------------------------- Modelfile, model card


def test_modelfile_turns_the_chat_template_into_an_ollama_template(tiny_tokenizer):
    from inkstone.export.ollama import chat_format, modelfile

    text, info = modelfile("tiny-Q8_0.gguf", tiny_tokenizer, "tiny")
    assert "FROM ./tiny-Q8_0.gguf" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|endoftext|>"' in text
    assert info["template"] == "chat"
    assert 'eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in text
    conv = [{"role": "system", "content": "你是小说家。"}, {"role": "user", "content": "写一段。"},
            {"role": "assistant", "content": "好。"}, {"role": "user", "content": "再写。"}]
    fmt = chat_format(tiny_tokenizer)
    assert fmt.render(conv) == tiny_tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)


def test_modelfile_without_chat_template_continues_raw_text(tiny_model):
    from transformers import AutoTokenizer

    from inkstone.export.ollama import modelfile

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = None
    text, info = modelfile("m.gguf", tok, "m")
    assert info["template"] == "raw" and 'TEMPLATE """{{ .Prompt }}"""' in text
    assert 'PARAMETER stop "<|endoftext|>"' in text


def test_base_license_from_readme_front_matter(tmp_path):
    from inkstone.export.model_card import base_license

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert base_license(tmp_path) is None
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# Model\n")
    assert base_license(tmp_path) == "apache-2.0"
    (tmp_path / "README.md").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    assert base_license(tmp_path) == "gemma"


def test_model_card_links_only_a_hub_base(tmp_path):
    from inkstone.export.model_card import render

    common = dict(base_path=tmp_path, adapter=tmp_path / "adapter", fmt="hf", quant=None, files={"a": 1},
                  training={}, prepare={}, verification={}, license_name="apache-2.0")
    card = render(title="t", base_name="Qwen/Qwen2.5-7B-Instruct", **common)
    assert "base_model: Qwen/Qwen2.5-7B-Instruct\nlicense: apache-2.0\n" in card
    card = render(title="t", base_name="gemma-3-270m", **common)
    assert "base_model:" not in card and "**gemma-3-270m**" in card


def test_weight_check_names_a_wrong_tensor(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from inkstone.export.verify import check_weights

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    assert check_weights("x", expected, model, "float32")["max_rel_weight_diff"] == 0.0
    expected["model.layers.1.self_attn.k_proj.weight"] *= 1.01
    with pytest.raises(VerificationError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight"):
        check_weights("the GGUF x.gguf", expected, model, "q8_0")


# ----------------------------------------------------------------------------- HF export (slow)


@pytest.mark.slow
def test_hf_export_matches_adapter_on_base(hf_export, reference, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    report, _ = hf_export
    ids, ref_logits, plain_logits = reference
    out = Path(report["out_dir"])
    assert report["adapter"].endswith("checkpoint-4")  # the running run's latest complete checkpoint
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    got = _logits(merged, ids)
    assert (got - ref_logits).abs().max().item() < 1e-4
    assert (plain_logits - ref_logits).abs().max().item() > 1e-2, "the adapter must visibly change the model"
    assert not any(".lora_" in k for k in merged.state_dict())
    fig = report["verification"]["export"]
    assert fig["rel_rms_error"] < 1e-4 and fig["top1_agreement"] == 1.0 and fig["tokenizer_matches"]
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert name in report["files"] and (out / name).is_file()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in tok.chat_template
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    assert not list(out.parent.glob(f".{out.name}.*")), "no staging folder may be left behind"


@pytest.mark.slow
def test_push_offline_after_export_keeps_the_export(hf_export):
    report, message = hf_export
    assert "'someone/novel-writer'" in message and "HF_HUB_OFFLINE=1" in message
    assert report["out_dir"] in message  # says where the finished export is
    assert (Path(report["out_dir"]) / "model.safetensors").is_file()


@pytest.mark.slow
def test_model_card_summarises_base_data_training_and_checks(hf_export):
    report, _ = hf_export
    card = (Path(report["out_dir"]) / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: other") and "library_name: transformers" in card
    assert "A LoRA fine-tune of **" in card
    assert "chapters: 80" in card and "321 (654321 tokens)" in card and "hongloumeng.txt" in card
    assert "| LoRA rank | 8 |" in card and "| learning rate | 0.0002 |" in card
    assert "4-bit nf4 base (QLoRA) | True" in card
    # checkpoint-4's validation loss, not the later step-6 figure
    assert "validation loss: 2.0000 (perplexity 7.39) at step 4" in card
    assert "steps trained: 4" in card
    assert "license:" in card and "## License" in card
    assert "| exported HF |" in card
    assert report["model_card"]["eval_loss"] == 2.0


# ----------------------------------------------------------------------------- GGUF export (slow)


@pytest.mark.slow
def test_gguf_export_reloads_and_agrees(gguf_export, reference):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = gguf_export
    ids, ref_logits, _ = reference
    out = Path(report["out_dir"])
    gguf_name = next(n for n in report["files"] if n.endswith(".gguf"))
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=gguf_name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out, gguf_file=gguf_name)
    assert tok(PROBE).input_ids == ids
    got = _logits(model, ids)
    centred = ref_logits - ref_logits.mean(-1, keepdim=True)
    rel = ((got - ref_logits).pow(2).mean().sqrt() / centred.pow(2).mean().sqrt()).item()
    assert rel < {"f16": 1e-2, "q8_0": 0.1}[report["quant"]]
    assert (got.argmax(-1) == ref_logits.argmax(-1)).double().mean().item() >= 0.8
    assert report["verification"]["weights"]["max_rel_weight_diff"] < 1e-6


@pytest.mark.slow
def test_gguf_metadata_and_modelfile(gguf_export, tiny_tokenizer):
    from gguf import GGUFReader

    report = gguf_export
    out = Path(report["out_dir"])
    gguf_name = next(n for n in report["files"] if n.endswith(".gguf"))
    fields = GGUFReader(out / gguf_name).fields
    value = lambda key: fields[key].contents()  # noqa: E731
    assert value("general.architecture") == "qwen2"
    assert value("tokenizer.chat_template") == tiny_tokenizer.chat_template
    # llama.cpp's names: the loaded Qwen2 tokenizer splits text with Qwen2's regex
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "qwen2"
    tokens = value("tokenizer.ggml.tokens")
    assert tokens[value("tokenizer.ggml.eos_token_id")] == "<|endoftext|>"
    assert "<|im_end|>" in tokens and len(value("tokenizer.ggml.merges")) > 1000
    modelfile = (out / "Modelfile").read_text(encoding="utf-8")
    assert f"FROM ./{gguf_name}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "TEMPLATE" in modelfile
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "library_name: gguf" in card and gguf_name in card
    expected_type = {"f16": "F16", "q8_0": "Q8_0"}[report["quant"]]
    assert report["gguf"]["tensor_types"].get(expected_type, 0) > 0


def _tiny_variant(tiny_model: Path, out: Path, arch: str) -> Path:
    """The tiny model's tokenizer on a random llama (grouped KV heads) or Gemma-3 body, for the GGUF layouts."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True)
    for f in tiny_model.iterdir():
        if f.name.startswith("tokenizer") or f.suffix == ".jinja":
            shutil.copy(f, out / f.name)
    qwen = json.loads((tiny_model / "config.json").read_text())
    common = dict(vocab_size=qwen["vocab_size"], hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                  eos_token_id=qwen["eos_token_id"], bos_token_id=qwen["eos_token_id"], pad_token_id=qwen["eos_token_id"])
    if arch == "llama":
        config = AutoConfig.for_model("llama", head_dim=64, tie_word_embeddings=False, **common)
    else:  # head_dim == query_pre_attn_scalar, as in the released Gemma-3 sizes that llama.cpp reads
        config = AutoConfig.for_model("gemma3_text", head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
                                      **common)
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    with torch.no_grad():  # norms away from their init so a wrong norm offset shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(-0.5, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_gguf_layout_of_other_architectures(arch, tmp_path, tiny_model):
    """llama permutes q/k rows for its rotary layout; Gemma stores norms as 1 + w: both must reload exactly."""
    from tiny_model import build_random_lora

    from inkstone.export import run_export

    base = _tiny_variant(tiny_model, tmp_path / arch, arch)
    lora = build_random_lora(base, tmp_path / "lora", r=4)
    report = run_export(lora, base, tmp_path / "out", "gguf", quant="f16", progress=lambda *_: None)
    assert report["gguf"]["architecture"] == {"llama": "llama", "gemma3_text": "gemma3"}[arch]
    assert report["verification"]["weights"]["max_rel_weight_diff"] < 1e-6
    fig = report["verification"]["export"]
    assert fig["rel_rms_error"] < 2e-2 and fig["tokenizer_matches"]
