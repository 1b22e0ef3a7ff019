"""Config: seed defaults, and the priority file < environment < flags."""
import pytest
from pydantic import ValidationError

from inkstone.config import build_config


def test_defaults_match_the_seed():
    cfg = build_config()
    assert cfg.model.base == "Qwen/Qwen2.5-7B-Instruct"
    assert cfg.model.load_in_4bit is True
    assert cfg.model.gpu_memory_utilization == 0.85
    assert (cfg.train.lora_r, cfg.train.epochs, cfg.train.batch_size, cfg.train.grad_accum) == (64, 3, 2, 8)
    assert cfg.train.lr == 2e-4
    assert (cfg.webui.host, cfg.webui.port) == ("127.0.0.1", 7860)  # loopback unless a login is set
    assert cfg.memory.db_dir == cfg.root / "data" / "chroma_db"


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    f = tmp_path / "inkstone.toml"
    f.write_text('[train]\nepochs = 5\nlr = 1e-4\n[webui]\nport = 9000\n', encoding="utf-8")
    cfg = build_config(f)
    assert (cfg.train.epochs, cfg.train.lr, cfg.webui.port) == (5, 1e-4, 9000)

    monkeypatch.setenv("INKSTONE_TRAIN__EPOCHS", "7")
    cfg = build_config(f)
    assert cfg.train.epochs == 7 and cfg.train.lr == 1e-4  # env wins, file still fills the rest

    cfg = build_config(f, train={"epochs": 9, "lr": None})
    assert cfg.train.epochs == 9 and cfg.train.lr == 1e-4  # an unset flag hides nothing


def test_bad_value_names_the_field():
    with pytest.raises(ValidationError) as err:
        build_config(train={"lr": -1})
    assert "lr" in str(err.value)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        build_config(tmp_path / "nope.toml")


def test_relative_paths_are_relative_to_the_project(tmp_path):
    cfg = build_config(memory={"db_dir": "elsewhere/db"})
    assert cfg.memory.db_dir == cfg.root / "elsewhere" / "db"


def test_a_training_run_takes_the_train_section_whole(tmp_path):
    from inkstone.train.qlora import TrainArgs

    cfg = build_config(train={"lr": 1e-3, "max_steps": 9})
    args = TrainArgs(data=tmp_path / "train.jsonl", base_model=tmp_path / "model", output_dir=tmp_path / "run-1",
                     train=cfg.train, load_in_4bit=False)
    record = args.record()  # what run.json holds, and the model card reads
    settings = cfg.train.model_dump()
    del settings["output_dir"]  # the folder of all runs; the record names this run's folder
    assert {name: record[name] for name in settings} == settings
    assert record["output_dir"] == tmp_path / "run-1" and record["load_in_4bit"] is False
    assert (record["lr"], record["max_steps"]) == (1e-3, 9)
