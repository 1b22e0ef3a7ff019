"""The one rule for 'is this checkpoint/adapter complete and usable?', on plain folders."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from inkstone.checkpoints import (
    INCOMPLETE_MARKER, AdapterError, check_adapter_dir, checkpoints, find_adapters, finished_adapter,
    is_adapter_dir, is_complete_checkpoint, latest_checkpoint, resolve_adapter, run_dir_of,
)


def adapter(folder: Path, rank: int = 8, weights: bytes = b"weights") -> Path:
    """An adapter folder as PEFT writes it (the weights' content does not matter here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "base_model_name_or_path": "base"}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint-N folder; incomplete = weights written, trainer_state.json not yet."""
    folder = adapter(run / f"checkpoint-{step}")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


# ----------------------------------------------------------------------------- completeness


def test_a_checkpoint_is_complete_only_with_weights_trainer_state_and_no_marker(tmp_path):
    done = checkpoint(tmp_path, 2)
    assert is_complete_checkpoint(done)
    assert not is_complete_checkpoint(checkpoint(tmp_path, 4, complete=False))  # no trainer_state.json
    marked = checkpoint(tmp_path, 6)
    (marked / INCOMPLETE_MARKER).touch()  # a save cut off after trainer_state.json
    assert not is_complete_checkpoint(marked)
    no_weights = checkpoint(tmp_path, 8)
    (no_weights / "adapter_model.safetensors").unlink()
    assert not is_complete_checkpoint(no_weights)
    empty = checkpoint(tmp_path, 10)
    (empty / "adapter_model.safetensors").write_bytes(b"")
    assert not is_complete_checkpoint(empty)


def test_an_adapter_folder_needs_its_config_and_non_empty_weights(tmp_path):
    assert is_adapter_dir(adapter(tmp_path / "ok"))
    assert not is_adapter_dir(adapter(tmp_path / "empty", weights=b""))
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "adapter_config.json").write_text("{}")
    assert not is_adapter_dir(tmp_path / "config-only")
    assert not is_adapter_dir(tmp_path / "missing")
    bin_only = tmp_path / "bin"
    bin_only.mkdir()
    (bin_only / "adapter_config.json").write_text("{}")
    (bin_only / "adapter_model.bin").write_bytes(b"w")  # the older PEFT format counts too
    assert is_adapter_dir(bin_only)


def test_checkpoints_lists_every_step_oldest_first_and_latest_is_the_newest_complete(tmp_path):
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 12, complete=False)
    adapter(tmp_path / "tmp-checkpoint-14")  # a temporary save: not a checkpoint
    (tmp_path / "checkpoint-x").mkdir()
    assert [(step, folder.name, done) for step, folder, done in checkpoints(tmp_path)] == [
        (2, "checkpoint-2", True), (10, "checkpoint-10", True), (12, "checkpoint-12", False)]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"  # numeric order, not by name
    assert latest_checkpoint(tmp_path / "no-run") is None and checkpoints(tmp_path / "no-run") == []


def test_finished_adapter_falls_back_to_the_previous_one_during_a_swap(tmp_path):
    assert finished_adapter(tmp_path) is None
    old = adapter(tmp_path / ".adapter-old")
    assert finished_adapter(tmp_path) == old
    adapter(tmp_path / "adapter", weights=b"")  # the new one half-written: not taken yet
    assert finished_adapter(tmp_path) == old
    final = adapter(tmp_path / "adapter")
    assert finished_adapter(tmp_path) == final


# ----------------------------------------------------------------------------- resolve_adapter (export)


def test_a_run_folder_resolves_to_its_adapter_then_its_latest_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 2)
    checkpoint(run, 4)
    checkpoint(run, 6, complete=False)
    assert resolve_adapter(run) == run / "checkpoint-4"
    adapter(run / ".adapter-partial")  # a save in progress is never taken
    assert resolve_adapter(run) == run / "checkpoint-4"
    adapter(run / "adapter")
    assert resolve_adapter(run) == run / "adapter"


def test_an_adapter_folder_or_a_file_in_it_resolves_to_itself(tmp_path):
    folder = adapter(tmp_path / "mine")
    assert resolve_adapter(folder) == folder
    assert resolve_adapter(folder / "adapter_config.json") == folder
    assert resolve_adapter(folder / "adapter_model.safetensors") == folder


def test_resolve_errors_name_the_path_and_what_is_missing(tmp_path):
    with pytest.raises(AdapterError, match=r"adapter not found: .*nothing-here does not exist"):
        resolve_adapter(tmp_path / "nothing-here")
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    with pytest.raises(AdapterError, match=r"notes\.txt is a file"):
        resolve_adapter(stray)
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterError, match=r"no-weights has adapter_config.json but no adapter weights"):
        resolve_adapter(no_weights)
    run = tmp_path / "run"
    checkpoint(run, 3, complete=False)
    with pytest.raises(AdapterError, match=r"run is neither .*incomplete, still being written: checkpoint-3"):
        resolve_adapter(run)
    with pytest.raises(AdapterError, match=r"checkpoint-3 is incomplete: no trainer_state.json"):
        resolve_adapter(run / "checkpoint-3")  # named directly, an unfinished checkpoint is still refused
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(AdapterError, match=r"empty-run is neither a LoRA adapter folder") as err:
        resolve_adapter(tmp_path / "empty-run")
    assert "still being written" not in str(err.value)


def test_export_reports_the_rule_as_an_export_error(tmp_path):
    from inkstone.export import ExportError, resolve_adapter as export_resolve

    with pytest.raises(ExportError, match="does not exist") as err:
        export_resolve(tmp_path / "missing")
    assert isinstance(err.value.__cause__, AdapterError)


def test_run_dir_of_is_the_training_run_holding_the_adapter(tmp_path):
    run = tmp_path / "run"
    ck = checkpoint(run, 2)
    assert run_dir_of(ck) is None
    (run / "progress.jsonl").write_text("")
    assert run_dir_of(ck) == run.resolve()


# ----------------------------------------------------------------------------- engine and UI


def test_check_adapter_dir_refuses_a_rank_above_the_engine_limit(tmp_path):
    folder = adapter(tmp_path / "big", rank=128)
    with pytest.raises(AdapterError, match=r"big has rank 128, above the engine's max_lora_rank 64"):
        check_adapter_dir(folder, 64)
    assert check_adapter_dir(folder, 128) == folder.resolve()


def test_check_adapter_dir_says_what_is_wrong(tmp_path):
    with pytest.raises(AdapterError, match=r"adapter folder not found: .*gone"):
        check_adapter_dir(tmp_path / "gone", 64)
    (tmp_path / "plain").mkdir()
    with pytest.raises(AdapterError, match=r"plain is not a LoRA adapter folder \(no adapter_config.json\)"):
        check_adapter_dir(tmp_path / "plain", 64)
    with pytest.raises(AdapterError, match="no adapter weights"):
        check_adapter_dir(adapter(tmp_path / "hollow", weights=b""), 64)
    bad = adapter(tmp_path / "bad")
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match=r"bad/adapter_config.json: unreadable adapter config"):
        check_adapter_dir(bad, 64)
    marked = checkpoint(tmp_path / "run", 5)
    (marked / INCOMPLETE_MARKER).touch()
    with pytest.raises(AdapterError, match=r"checkpoint-5 is incomplete: its save was interrupted"):
        check_adapter_dir(marked, 64)


def test_find_adapters_offers_complete_adapters_named_relative_to_their_root(tmp_path):
    runs, more = tmp_path / "checkpoints", tmp_path / "adapters"
    adapter(runs / "novel" / "adapter")
    checkpoint(runs / "novel", 2)
    checkpoint(runs / "novel", 4, complete=False)
    adapter(runs / "group" / "nested-run" / "adapter")  # runs in sub-folders are found too
    adapter(runs / "novel" / ".adapter-partial")  # being written
    adapter(runs / "novel" / ".adapter-old")
    adapter(runs / "novel" / "tmp-checkpoint-6")
    adapter(runs / "tmp" / "adapter")  # inside a temporary folder
    adapter(runs / "half", weights=b"")
    adapter(more / "style")
    adapter(more / "novel" / "adapter")  # the same name as under the first root: the first root wins
    found = find_adapters([runs, more, tmp_path / "not-there"])
    assert found == {
        "novel/adapter": runs / "novel" / "adapter",
        "novel/checkpoint-2": runs / "novel" / "checkpoint-2",
        "group/nested-run/adapter": runs / "group" / "nested-run" / "adapter",
        "style": more / "style",
    }


def test_find_adapters_names_a_root_that_is_itself_an_adapter_by_its_folder_name(tmp_path):
    folder = adapter(tmp_path / "tiny-lora")
    assert find_adapters([folder]) == {"tiny-lora": folder}
