"""Command-line flags derived from the config sections: every field gets one, and what a
flag says lands in the Config."""
import argparse
import typing
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field, SecretStr

from conftest import load_start_script
from inkstone.config import TrainConfig
from inkstone.config_flags import add_section_flags, config_overrides, flag_options, value_type


@pytest.fixture(scope="module")
def start():
    return load_start_script()


def subcommand_dests(parser: argparse.ArgumentParser, command: str) -> set[str]:
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest for a in subparsers.choices[command]._actions}


def as_argv(options: dict) -> list[str]:
    """Flag options as a command line, the way train/jobs.py start_training writes them."""
    argv = []
    for flag, value in options.items():
        argv.append(f"--{flag}")
        if value is not True:
            argv.append(str(value))
    return argv


def other_value(field, default, tmp_path):
    """A valid value of the field that is not its default."""
    kind = value_type(field)
    if kind is bool:
        return not default
    if typing.get_origin(kind) is Literal:
        return next(choice for choice in typing.get_args(kind) if choice != default)
    if kind is int:
        return default + 1
    if kind is float:
        return default / 2
    return tmp_path / "elsewhere"


def test_every_train_setting_is_a_flag_of_train(start):
    dests = subcommand_dests(start._parser(), "train")
    missing = [name for name in TrainConfig.model_fields if f"train.{name}" not in dests]
    assert not missing


def test_every_train_flag_lands_in_cfg_train(start, tmp_path):
    defaults = TrainConfig()
    wanted = {name: other_value(field, getattr(defaults, name), tmp_path)
              for name, field in TrainConfig.model_fields.items()}
    args = start._parser().parse_args(["train", *as_argv(flag_options("train", wanted))])
    cfg = start.build(args)
    assert {name: getattr(cfg.train, name) for name in wanted} == wanted


def test_flags_users_know_keep_working(start):
    argv = ["--model", "some/model", "train", "--epochs", "2", "--batch-size", "3", "--grad-accum", "4",
            "--lr", "1e-3", "--lora-r", "8", "--lora-alpha", "16", "--max-seq-length", "128", "--max-steps", "5",
            "--save-steps", "7", "--no-4bit", "--dtype", "float32", "--no-checkpointing", "--stop-on-loss-rise",
            "--data", "d.jsonl", "--run-name", "r", "--resume"]
    args = start._parser().parse_args(argv)
    cfg = start.build(args)
    t = cfg.train
    assert (t.epochs, t.batch_size, t.grad_accum, t.lr, t.lora_r, t.lora_alpha) == (2, 3, 4, 1e-3, 8, 16)
    assert (t.max_seq_length, t.max_steps, t.save_steps, t.dtype) == (128, 5, 7, "float32")
    assert t.gradient_checkpointing is False and t.stop_on_loss_rise is True
    assert cfg.model.base == "some/model" and cfg.model.load_in_4bit is False
    assert (str(args.data), args.run_name, args.resume) == ("d.jsonl", "r", "latest")

    cfg = start.build(start._parser().parse_args(["prepare", "--chunk-size", "512", "--val-split", "0.2"]))
    assert (cfg.data.chunk_size, cfg.data.val_split) == (512, 0.2)
    cfg = start.build(start._parser().parse_args(["webui", "--host", "0.0.0.0", "--port", "9000", "--share",
                                                  "--lora", "adapters/a"]))
    assert (cfg.webui.host, cfg.webui.port, cfg.webui.share) == ("0.0.0.0", 9000, True)
    assert cfg.webui.lora == cfg.root / "adapters" / "a"
    for command in ("inference", "batch"):
        extra = ["--input", "in.txt", "--output", "out.jsonl"] if command == "batch" else []
        cfg = start.build(start._parser().parse_args([command, *extra, "--max-tokens", "16", "--temperature", "0",
                                                      "--seed", "3"]))
        assert (cfg.inference.max_tokens, cfg.inference.temperature, cfg.inference.seed) == (16, 0, 3)


def test_a_flag_left_out_hides_neither_the_file_nor_the_environment(start, tmp_path, monkeypatch):
    f = tmp_path / "inkstone.toml"
    f.write_text("[train]\nlr = 1e-5\nfused_loss = false\n", encoding="utf-8")
    monkeypatch.setenv("INKSTONE_TRAIN__EPOCHS", "7")
    cfg = start.build(start._parser().parse_args(["--config", str(f), "train", "--batch-size", "4"]))
    assert (cfg.train.lr, cfg.train.fused_loss, cfg.train.epochs, cfg.train.batch_size) == (1e-5, False, 7, 4)


def test_the_description_is_the_help(start):
    (subparsers,) = [a for a in start._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    help_text = subparsers.choices["train"].format_help()
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"train.{name} has no description"
        assert f"[train.{name}]" in help_text


class Gadget(BaseModel):
    """A section that exists only here: whatever is declared in it must come out as flags."""
    widgets: int = Field(3, ge=1, description="how many widgets")
    ratio: Optional[float] = Field(None, description="widget ratio")
    shape: Literal["round", "square"] = Field("round", description="widget shape")
    shiny: bool = Field(False, description="polish the widgets")
    tags: list[str] = Field([], description="labels for the widgets")
    token: Optional[SecretStr] = Field(None, description="never on a command line")


def test_a_field_declared_in_a_section_becomes_a_flag():
    parser = argparse.ArgumentParser()
    add_section_flags(parser, "gadget", Gadget)
    args = parser.parse_args(["--widgets", "5", "--ratio", "0.5", "--shape", "square", "--shiny",
                              "--tags", "a", "--tags", "b"])
    assert config_overrides(args) == {"gadget": {"widgets": 5, "ratio": 0.5, "shape": "square", "shiny": True,
                                                 "tags": ["a", "b"]}}
    assert config_overrides(parser.parse_args(["--no-shiny"]))["gadget"]["shiny"] is False
    assert set(config_overrides(parser.parse_args([]))["gadget"].values()) == {None}  # unset: nothing overridden
    assert "how many widgets" in parser.format_help() and "--token" not in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--shape", "triangle"])


def test_a_field_without_a_command_line_form_is_refused_loudly():
    class Odd(BaseModel):
        table: dict[str, int] = {}

    with pytest.raises(TypeError, match="odd.table"):
        add_section_flags(argparse.ArgumentParser(), "odd", Odd)


def test_known_names_and_bools_as_flag_options():
    assert flag_options("model", {"load_in_4bit": False}) == {"no-4bit": True}
    assert flag_options("train", {"gradient_checkpointing": True, "max_seq_length": 64}) == {
        "checkpointing": True, "max-seq-length": 64}
