"""A tiny random CLIP vision tower and a synthetic image-caption set.

The tower is a real `CLIPVisionModel` (32 px images, 8 px patches: 16 image
features) with 32-wide attention heads, a size vLLM's CPU attention accepts.
The pictures are coloured shapes on plain backgrounds, captioned in Chinese
and English, so what a model learned can be checked word by word.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

# colour: (RGB, Chinese, English)
COLOURS = {
    "red": ((220, 30, 30), "红色"), "green": ((30, 170, 40), "绿色"), "blue": ((30, 60, 220), "蓝色"),
    "yellow": ((240, 220, 20), "黄色"),
}
SHAPES = {"circle": "圆形", "square": "方块"}
BACKGROUNDS = {"white": ((250, 250, 250), "白色"), "black": ((10, 10, 10), "黑色")}


def build_tiny_clip(out: Path, seed: int = 0, image_size: int = 32) -> Path:
    import torch
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    out = Path(out)
    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8, projection_dim=64)
    torch.manual_seed(seed)
    CLIPVisionModel(cfg).save_pretrained(out, safe_serialization=True)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(out)
    return out


def draw(colour: str, shape: str, background: str, size: int, rng: random.Random):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), BACKGROUNDS[background][0])
    d = ImageDraw.Draw(img)
    r = rng.randint(size // 4, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour][0])
    return img


def caption(colour: str, shape: str, background: str, lang: str) -> str:
    if lang == "zh":
        return f"{COLOURS[colour][1]}的{SHAPES[shape]}，{BACKGROUNDS[background][1]}背景。"
    return f"a {colour} {shape} on a {background} background."


def synthetic_set(folder: Path, n: int, seed: int = 0, size: int = 48) -> list[dict]:
    """`folder/images/*.png` and `folder/captions.json`; returns what each picture shows."""
    rng = random.Random(seed)
    images = Path(folder) / "images"
    images.mkdir(parents=True, exist_ok=True)
    captions, truth = {}, []
    for i in range(n):
        colour, shape, background = rng.choice(list(COLOURS)), rng.choice(list(SHAPES)), rng.choice(list(BACKGROUNDS))
        name = f"{i:04d}.png"
        draw(colour, shape, background, size, rng).save(images / name)
        captions[name] = caption(colour, shape, background, "zh" if i % 2 else "en")
        truth.append({"file": name, "colour": colour, "shape": shape, "background": background,
                      "caption": captions[name]})
    (Path(folder) / "captions.json").write_text(json.dumps(captions, ensure_ascii=False, indent=1), encoding="utf-8")
    return truth


def colour_named(text: str) -> set[str]:
    """The colours a caption names, in either language."""
    return {c for c, (_, zh) in COLOURS.items() if c in text.lower() or zh in text}



def build_caption_lm(texts: list[str], out: Path, steps: int = 300, seed: int = 0) -> Path:
    """A tiny Qwen2 with its own small vocabulary, trained briefly on `texts`
    (each caption after its prompt).

    A real base model knows its language before it learns to see; a random one
    gives every token about the same odds whatever comes before, so no
    projector could steer it. This one writes captions of the right form, and
    the picture is what decides their colours, shapes and backgrounds."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tiny_model import build_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(texts), encoding="utf-8")
    tok = build_tokenizer(corpus, out, vocab_size=400)
    corpus.unlink()
    cfg = Qwen2Config(vocab_size=((len(tok) + 63) // 64) * 64 + 64, hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                      max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tok.eos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).to(torch.float32)
    rows = [tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tok.eos_token_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(rows), (32,), generator=gen)
        model(input_ids=ids[batch], labels=labels[batch]).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    return out


def caption_texts(truth: list[dict], instruction: str) -> list[str]:
    """What the tiny language model learns from: each caption after the describe prompt."""
    from inkstone.prompt_format import render

    return [render(None, "plain", "", [], "", instruction) + "\n" + t["caption"] for t in truth]


def colour_accuracy(model_dir: Path, n: int = 60, seed: int = 99) -> float:
    """Share of greedy captions of `n` new pictures that name their colour, and only it."""
    from inkstone.vision.reference import greedy_captions

    rng = random.Random(seed)
    shown = [(rng.choice(list(COLOURS)), rng.choice(list(SHAPES)), rng.choice(list(BACKGROUNDS))) for _ in range(n)]
    images = [draw(c, s, b, 48, rng) for c, s, b in shown]
    captions = greedy_captions(model_dir, images)
    return sum(colour_named(cap) == {c} for cap, (c, _, _) in zip(captions, shown)) / n


def measure(out: Path, pictures: int = 400, epochs: float = 8.0) -> dict:
    """The measured run behind the numbers in the README: stage 1, then stage 2, on a larger set."""
    import torch

    from inkstone.prompting.modes.describe_image import DEFAULT_INSTRUCTION
    from inkstone.train.jobs import read_progress
    from inkstone.vision.train import MODEL_DIRNAME, VisionTrainArgs, run_vision_training

    torch.set_num_threads(1)
    out = Path(out)
    truth = synthetic_set(out / "data", pictures, seed=0)
    lm = build_caption_lm(caption_texts(truth, DEFAULT_INSTRUCTION), out / "lm", steps=300)
    tower = build_tiny_clip(out / "tower")
    result = {}
    common = dict(data=out / "data", epochs=epochs, batch_size=16, save_steps=25, val_share=0.1, seed=0)
    for stage, extra in ((1, dict(base_model=lm, tower=tower, lr=5e-3)),
                         (2, dict(from_model=out / "stage1" / MODEL_DIRNAME, stage=2, unfreeze_tower=True, lr=2e-3))):
        run = out / f"stage{stage}"
        run_vision_training(VisionTrainArgs(output_dir=run, **common, **extra))
        evals = [r["eval_loss"] for r in read_progress(run) if "eval_loss" in r]
        result[f"stage{stage}"] = {"eval_loss_first": evals[0], "eval_loss_last": evals[-1],
                                   "colour_accuracy": colour_accuracy(run / MODEL_DIRNAME)}
        print(stage, result[f"stage{stage}"], flush=True)
    return result


if __name__ == "__main__":  # python tests/tiny_vision.py OUT_DIR [pictures] [epochs]
    import sys

    print(json.dumps(measure(Path(sys.argv[1]), *(int(x) if i == 0 else float(x)
                                                   for i, x in enumerate(sys.argv[2:]))), indent=2))
