"""Vision pieces that need no training or engine: pairs and their reports, pictures,
data URLs, caption languages, the image modes and the assembled model's layout."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from inkstone.prompting.request import IMAGE_PLACEHOLDER, PromptRequest
from inkstone.vision.images import ImageError, image_from_url, open_image, prompt_image
from inkstone.vision.language import caption_language
from inkstone.vision.pairs import PairDataError, read_pairs
from tiny_vision import build_tiny_clip, draw, synthetic_set


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def messy_folder(tmp_path) -> Path:
    """Four good pairs and one of each kind of bad one."""
    synthetic_set(tmp_path, 4, size=32)
    images = tmp_path / "images"
    captions = json.loads((tmp_path / "captions.json").read_text(encoding="utf-8"))
    Image.new("P", (32, 32), 3).save(images / "palette.png")
    captions["palette.png"] = "调色板图片，红色。"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(images / "cmyk.jpg")
    captions["cmyk.jpg"] = "a red picture in CMYK."
    Image.new("RGB", (3000, 1500), (0, 0, 255)).save(images / "huge.png")
    captions["huge.png"] = "a huge blue picture."
    good = png_bytes(Image.new("RGB", (64, 64), (0, 255, 0)))
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    captions["truncated.png"] = "a green picture, cut short."
    (images / "noise.png").write_bytes(b"not a picture at all")
    captions["noise.png"] = "no picture here."
    captions["missing.png"] = "a picture that is not there."
    Image.new("RGB", (32, 32)).save(images / "uncaptioned.png")
    Image.new("RGB", (32, 32)).save(images / "empty.png")
    captions["empty.png"] = "   "
    Image.new("RGB", (32, 32)).save(images / "russian.png")
    captions["russian.png"] = "красный круг на белом фоне"
    Image.new("RGB", (32, 32)).save(images / "japanese.png")
    captions["japanese.png"] = "あかいまるとしろいはいけい"
    (tmp_path / "captions.json").write_text(json.dumps(captions, ensure_ascii=False), encoding="utf-8")
    return tmp_path


def test_each_bad_pair_is_reported_by_name_and_the_rest_used(messy_folder):
    pairs = read_pairs(messy_folder, max_side=512)
    used = {p.name for p in pairs.pairs}
    assert used == {"0000.png", "0001.png", "0002.png", "0003.png", "palette.png", "cmyk.jpg", "huge.png"}
    report = "\n".join(pairs.problems)
    for name, why in [("missing.png", "no image"), ("truncated.png", "unreadable"), ("noise.png", "not an image"),
                      ("uncaptioned.png", "without a caption"), ("empty.png", "empty caption"),
                      ("russian.png", "not in zh or en"), ("japanese.png", "not in zh or en")]:
        line = next((p for p in pairs.problems if p.startswith(name)), None)
        assert line is not None and why in line, (name, report)
    assert len(pairs.problems) == 7
    notes = "\n".join(pairs.notes)
    assert "palette.png: converted from P to RGB" in notes and "cmyk.jpg: converted from CMYK" in notes
    assert "huge.png: resized from 3000x1500" in notes
    huge = next(p for p in pairs.pairs if p.name == "huge.png").load()
    assert huge.mode == "RGB" and max(huge.size) == 512
    assert next(p for p in pairs.pairs if p.name == "cmyk.jpg").load().mode == "RGB"


def test_a_broken_captions_file_names_file_and_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "captions.json").write_text('{\n  "a.png": "fine",\n  "b.png": oops\n}', encoding="utf-8")
    with pytest.raises(PairDataError, match=r"captions\.json:3: not valid JSON"):
        read_pairs(tmp_path)
    (tmp_path / "captions.json").write_text('["a list"]', encoding="utf-8")
    with pytest.raises(PairDataError, match=r"captions\.json:1: expected an object"):
        read_pairs(tmp_path)


def test_no_usable_pair_is_an_error_with_the_report(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "captions.json").write_text('{"gone.png": "a caption"}', encoding="utf-8")
    with pytest.raises(PairDataError, match="gone.png: has a caption but no image"):
        read_pairs(tmp_path)
    with pytest.raises(PairDataError, match="neither captions.json"):
        read_pairs(tmp_path / "images")


def test_a_saved_dataset_is_read_and_its_bad_rows_reported(tmp_path):
    from datasets import Dataset, Image as ImageFeature

    import random

    rng = random.Random(0)
    good = [png_bytes(draw("red", "circle", "white", 32, rng)), png_bytes(draw("blue", "square", "black", 32, rng))]
    ds = Dataset.from_dict({
        "image": [{"bytes": good[0], "path": None}, {"bytes": good[1], "path": None},
                  {"bytes": good[0][:len(good[0]) // 2], "path": None}, {"bytes": good[1], "path": None}],
        "caption": ["红色的圆形，白色背景。", "a blue square on a black background.", "cut short", ""],
    }).cast_column("image", ImageFeature())
    ds.save_to_disk(str(tmp_path / "ds"))
    pairs = read_pairs(tmp_path / "ds")
    assert [p.name for p in pairs.pairs] == ["row 0", "row 1"]
    assert pairs.pairs[1].load().size == (32, 32)
    assert any(p.startswith("row 2") and "unreadable" in p for p in pairs.problems)
    assert any(p.startswith("row 3") and "empty caption" in p for p in pairs.problems)


def test_caption_language_by_script():
    assert caption_language("红色的圆形，白色背景。") == "zh"
    assert caption_language("a red circle on a white background.") == "en"
    assert caption_language("красный круг") == "other"
    assert caption_language("1234 !!") == ""


def test_data_urls_are_read_and_remote_urls_refused():
    img = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    url = "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()
    got = image_from_url(url)
    assert got.mode == "RGB" and got.size == (20, 10) and got.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageError, match="remote image URLs are not fetched"):
        image_from_url("https://example.com/cat.png")
    with pytest.raises(ImageError, match="not valid base64"):
        image_from_url("data:image/png;base64,@@@")
    with pytest.raises(ImageError, match="not an image"):
        image_from_url("data:image/png;base64," + base64.b64encode(b"hello").decode())
    with pytest.raises(ImageError, match="missing.png: file not found"):
        open_image(Path("missing.png"))


def test_a_writers_picture_is_made_rgb_and_bounded():
    grey = prompt_image(Image.new("L", (4000, 1000), 128))
    assert grey.mode == "RGB" and grey.size == (1024, 256)
    assert prompt_image(png_bytes(Image.new("RGB", (5, 5), (9, 9, 9)))).getpixel((2, 2)) == (9, 9, 9)


@pytest.fixture(scope="module")
def llava_dir(tiny_model, tmp_path_factory) -> Path:
    from inkstone.vision.assemble import assemble, save_model

    root = tmp_path_factory.mktemp("llava")
    model, processor = assemble(build_tiny_clip(root / "tower"), tiny_model)
    return save_model(model, processor, root / "model")


def test_the_assembled_model_loads_in_transformers_in_the_llava_layout(llava_dir, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, info = LlavaForConditionalGeneration.from_pretrained(llava_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((llava_dir / "config.json").read_text())["architectures"] == ["LlavaForConditionalGeneration"]
    with safe_open(str(llava_dir / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    # The names vLLM's loader maps: the tower under vision_model, the projector's two layers.
    assert any(n.startswith("model.vision_tower.vision_model.encoder.") for n in names)
    assert {"model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_2.weight"} <= set(names)
    processor = AutoProcessor.from_pretrained(llava_dir)
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"  # no torchvision
    pixels = processor.image_processor(images=Image.new("RGB", (50, 40)), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 32, 32)
    ids = torch.tensor([[model.config.image_token_index] * model.config.image_seq_length + [5, 6]])
    assert model(input_ids=ids, pixel_values=pixels).logits.shape[1] == ids.shape[1]


def test_image_modes_put_one_image_token_and_refuse_a_stray_one(llava_dir):
    from transformers import AutoTokenizer

    from inkstone.prompting.service import PromptService, PromptSettings

    tok = AutoTokenizer.from_pretrained(llava_dir)
    image_id = tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    service = PromptService(tok, PromptSettings(model_name="model", max_model_len=512, max_tokens=32))
    picture = Image.new("RGB", (8, 8))
    try:
        for mode in ("describe", "scene"):
            prepared = service.prepare(PromptRequest(mode=mode, image=picture, story_text="前文。", use_memory=False))
            assert prepared.token_ids.count(image_id) == 1 and prepared.image is picture
            with pytest.raises(ValueError, match=f"{mode} mode needs an image"):
                service.prepare(PromptRequest(mode=mode, use_memory=False))
        with pytest.raises(ValueError, match="remove <image> from the text"):
            service.prepare(PromptRequest(mode="continue", story_text="他写下 <image> 两字。", use_memory=False))
        with pytest.raises(ValueError, match="does not take a picture"):
            service.prepare(PromptRequest(mode="continue", image=picture, use_memory=False))
    finally:
        service.close()


def test_a_text_model_refuses_a_picture(tiny_tokenizer):
    from inkstone.prompting.service import PromptService, PromptSettings

    service = PromptService(tiny_tokenizer, PromptSettings(model_name="tiny", max_model_len=512))
    try:
        with pytest.raises(ValueError, match="tiny does not read images"):
            service.prepare(PromptRequest(mode="describe", image=Image.new("RGB", (8, 8)), use_memory=False))
    finally:
        service.close()


def test_chat_api_reads_data_url_images_and_refuses_remote_ones():
    from inkstone.api.errors import ApiError
    from inkstone.api.openai_compat import _chat_image
    from inkstone.api.schemas import ChatRequest

    url = "data:image/png;base64," + base64.b64encode(png_bytes(Image.new("RGB", (9, 9), (1, 2, 3)))).decode()
    req = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "看这张图："}, {"type": "image_url", "image_url": {"url": url}}]}]})
    assert req.messages[0].text() == "看这张图：" + IMAGE_PLACEHOLDER
    assert _chat_image(req).getpixel((0, 0)) == (1, 2, 3)
    remote = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})
    with pytest.raises(ApiError, match="remote image URLs are not fetched"):
        _chat_image(remote)


def test_train_tab_vision_section_refuses_folders_outside_the_project(cfg, tmp_path):
    import gradio as gr
    from types import SimpleNamespace

    from inkstone.webui.train_vision import create_vision_section, start_vision_run

    with gr.Blocks():
        create_vision_section(SimpleNamespace(cfg=cfg, train_job=None))
    ctx = SimpleNamespace(cfg=cfg, train_job=None)
    with pytest.raises(gr.Error, match="image-caption data must be inside"):
        start_vision_run(ctx, str(tmp_path), "", "", 1, 1.0, 1e-3, False, "")
    data = Path(cfg.data.train_dir).parent / "pictures"
    data.mkdir(parents=True, exist_ok=True)
    with pytest.raises(gr.Error, match="vision tower must be inside"):
        start_vision_run(ctx, str(data), str(tmp_path), "", 1, 1.0, 1e-3, False, "")
    with pytest.raises(gr.Error, match="give a vision tower folder"):
        start_vision_run(ctx, str(data), "", "", 1, 1.0, 1e-3, False, "")
    assert ctx.train_job is None


def test_train_vision_command_names_bad_data_or_tower_before_making_a_run(tmp_path, tiny_model, capsys):
    from conftest import ROOT, load_start_script

    start = load_start_script()
    name = "vision-refused-run"
    argv = ["train-vision", "--model", str(tiny_model), "--run-name", name]
    assert start.main(argv + ["--data", str(tmp_path / "none"), "--tower", str(tmp_path)]) == 2
    assert "none: neither captions.json with images/ nor a dataset" in capsys.readouterr().err
    (tmp_path / "captions.json").write_text("{}", encoding="utf-8")
    assert start.main(argv + ["--data", str(tmp_path), "--tower", str(tmp_path)]) == 2
    assert f"{tmp_path}: no config.json; give a local CLIP or SigLIP model folder" in capsys.readouterr().err
    assert not (ROOT / "checkpoints" / name).exists()
