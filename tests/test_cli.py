"""start.py as a user runs it: subprocesses with settings from the environment."""
import json
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, env_for, tiny_settings

START = [sys.executable, str(ROOT / "start.py")]


@pytest.fixture(scope="module")
def cli_env(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    return env_for(tiny_settings(tiny_model, work)), work


def run(args, env, timeout=300, stdin=None):
    return subprocess.run(START + args, env=env, capture_output=True, text=True, timeout=timeout, input=stdin)


def test_doctor_reports_versions_and_models(cli_env):
    env, _ = cli_env
    r = run(["doctor"], env, timeout=60)
    assert "transformers" in r.stdout and "Models:" in r.stdout
    assert r.returncode in (0, 1)


@pytest.mark.slow
def test_inference_streams_to_stdout_from_argument_and_stdin(cli_env):
    env, _ = cli_env
    r = run(["inference", "写下去", "--max-tokens", "16", "--temperature", "0", "--no-memory"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() and "16 tokens" in r.stderr


@pytest.mark.slow
def test_inference_uses_the_story_and_keeps_history(cli_env):
    env, work = cli_env
    r = run(["inference", "写下去", "--story", "cli-story", "--max-tokens", "8", "--seed", "3"], env)
    assert r.returncode == 0, r.stderr[-2000:]
    from inkstone.story.db import StudioDB
    from inkstone.story.history import History

    (entry,) = History(StudioDB(work / "studio.sqlite3")).list(story="cli-story")
    assert entry.params["seed"] == 3 and entry.output.strip() in r.stdout


def test_inference_refuses_an_unknown_adapter_before_starting_the_engine(cli_env, tmp_path):
    env, _ = cli_env
    r = run(["inference", "--lora", str(tmp_path / "nope"), "--max-tokens", "4"], env, stdin="宝玉", timeout=60)
    assert r.returncode == 2 and "adapter folder not found" in r.stderr


def test_webui_port_in_use_is_reported_before_the_engine_starts(cli_env):
    env, _ = cli_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run(["webui", "--host", "127.0.0.1", "--port", str(port)], env, timeout=60)
    assert r.returncode == 2 and f"port {port}" in r.stderr and "in use" in r.stderr


def test_webui_share_needs_a_login(cli_env):
    env, _ = cli_env
    r = run(["webui", "--share"], env, timeout=60)
    assert r.returncode == 2 and "USERNAME" in r.stderr


def test_prepare_sample_writes_train_and_val(cli_env):
    env, work = cli_env
    r = run(["prepare", "--sample", "--val-split", "0.2"], env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((work / "prepared" / "report.json").read_text(encoding="utf-8"))
    assert report["chapters"] == 5 and report["train_chunks"] > 0 and report["val_chunks"] > 0
    train = [json.loads(l) for l in (work / "train" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(row["text"] for row in train)


def test_invalid_flag_value_is_a_clear_error(cli_env):
    env, _ = cli_env
    r = run(["train", "--lr", "-1"], env, timeout=60)
    assert r.returncode == 2 and "lr" in r.stderr


def test_batch_refuses_a_bad_file_before_starting_the_engine(cli_env, tmp_path):
    env, _ = cli_env
    bad = tmp_path / "prompts.csv"
    bad.write_text("a,b\n", encoding="utf-8")
    r = run(["batch", "--input", str(bad), "--output", str(tmp_path / "out.jsonl")], env, timeout=60)
    assert r.returncode == 2 and "prompts.csv" in r.stderr


@pytest.mark.slow
def test_batch_generates_every_line_and_reports_broken_ones(cli_env, tmp_path):
    env, _ = cli_env
    src = tmp_path / "prompts.jsonl"
    src.write_text('{"prompt": "宝玉"}\n{broken\n{"prompt": "黛玉"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = run(["batch", "--input", str(src), "--output", str(out), "--max-tokens", "8"], env)
    assert r.returncode == 1 and "line 2" in (r.stdout + r.stderr)
    rows = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and all(row.get("output") for row in rows), rows


def test_export_names_a_missing_adapter(cli_env, tmp_path):
    env, _ = cli_env
    r = run(["export", "--adapter", str(tmp_path / "no-run")], env, timeout=60)
    assert r.returncode == 2 and "no-run" in r.stderr
