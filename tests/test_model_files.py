"""Offline first run: the configured base model is missing, Gemma-3-270M from its package stands in."""
import pytest

from inkstone.model_files import ModelNotFound, ensure_offline_gemma, find_local_model, resolve_base_model


def test_missing_model_without_fallback_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="not on this machine"):
        resolve_base_model("Some/Missing-Model", tmp_path, offline_fallback=False)


def test_local_folder_is_found_under_models(tiny_model, tmp_path):
    link = tmp_path / "Tiny-Model"
    link.symlink_to(tiny_model, target_is_directory=True)
    assert find_local_model("someone/Tiny-Model", tmp_path) == tiny_model.resolve()
    assert resolve_base_model(str(tiny_model), tmp_path).note is None


@pytest.mark.slow
def test_gemma_fallback_converts_once_and_prepends_bos(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    resolved = resolve_base_model("Qwen/Not-Here", tmp_path, offline_fallback=True)
    assert resolved.is_fallback and "Not-Here" in resolved.note
    tok = AutoTokenizer.from_pretrained(resolved.path)
    ids = tok("话说林黛玉").input_ids
    assert ids[0] == tok.bos_token_id  # without <bos> Gemma writes garbage
    assert AutoConfig.from_pretrained(resolved.path).model_type.startswith("gemma3")
    assert not (resolved.path / "config.json").read_text().count("quantization_config")
    mtime = (resolved.path / "model.safetensors").stat().st_mtime
    assert ensure_offline_gemma(tmp_path) == resolved.path  # second call: no new conversion
    assert (resolved.path / "model.safetensors").stat().st_mtime == mtime
