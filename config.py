"""User-editable defaults for Inkstone: one typed, validated Config.

Priority, lowest to highest: the defaults below < `inkstone.toml` (or the
TOML/JSON file named by --config / INKSTONE_CONFIG) < environment variables such as
`INKSTONE_TRAIN__EPOCHS=5` < command-line flags. start.py builds the Config
once and passes it down; nothing else reads the environment for settings.
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

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "inkstone.toml"


class ModelConfig(BaseModel):
    base: str = "Qwen/Qwen2.5-7B-Instruct"  # hub id or local folder
    models_dir: Path = Path("models")
    load_in_4bit: bool = True
    # When `base` is neither a local folder nor in models_dir, use the offline
    # Gemma-3-270M that a Python package ships (converted once into models_dir).
    offline_fallback: bool = True
    max_model_len: int = Field(4096, ge=128)
    gpu_memory_utilization: float = Field(0.85, gt=0.05, le=1.0)
    # vLLM's CPU build reserves this many GiB for the KV cache.
    cpu_kv_cache_gib: float = Field(2.0, gt=0)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_loras: int = Field(4, ge=1)
    max_lora_rank: int = Field(64, ge=1)
    # Where the web UI and the API may load adapters from, besides train.output_dir and models_dir.
    adapter_dirs: list[Path] = []
    # Tokens the engine computes per step, prompts included (None: vLLM's default). On CPUs a
    # prompt's prefill is never split, so there it is at least max_model_len (see engine.py).
    max_num_batched_tokens: Optional[int] = Field(None, ge=16)


class DataConfig(BaseModel):
    raw_dir: Path = Path("data/raw")
    train_dir: Path = Path("data/train")
    val_dir: Path = Path("data/val")
    prepared_dir: Path = Path("data/prepared")
    chunk_size: int = Field(2048, ge=32)
    chunk_overlap: int = Field(128, ge=0)
    # Regular expressions for site boilerplate lines to drop, on top of the built-in ones.
    extra_boilerplate_patterns: list[str] = []
    split_by: Literal["chapter", "book"] = "chapter"  # unit kept whole on one side of the split
    instruct_pairs: bool = True  # also write prompt/completion pairs in the Write tab's template
    # Count tokens with fastokens (~10x faster, same counts; holds ~400 MB for a 262k vocabulary).
    fast_token_counter: bool = True
    val_split: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42
    # 红楼梦 chapters 1-80 (public domain), shipped with Inkstone for benchmarks and tests.
    sample_corpus: Path = Path("src/inkstone/data/hongloumeng_001-080.txt")


class TrainConfig(BaseModel):
    output_dir: Path = Path("checkpoints")
    lora_r: int = Field(64, ge=1)
    lora_alpha: int = Field(128, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    epochs: float = Field(3, gt=0)
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    max_seq_length: int = Field(2048, ge=16)
    max_steps: int = -1  # > 0 overrides epochs
    # None: recompute activations only when keeping them would crowd memory (it costs a forward pass).
    gradient_checkpointing: Optional[bool] = None
    # auto: bf16 where the machine computes it natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else float32.
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    fused_loss: bool = True  # loss over the output layer a slice of positions at a time
    # Evaluation on a fixed, seeded sample of validation blocks sized to cost about this share of training.
    eval_share: float = Field(0.1, gt=0.0, lt=1.0)
    max_eval_blocks: int = Field(64, ge=1)
    stop_on_loss_rise: bool = False  # the loss guard always warns; this also stops the run
    save_steps: int = Field(100, ge=1)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    seed: int = 42


class InferenceConfig(BaseModel):
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=-1)
    max_tokens: int = Field(512, ge=1)
    repetition_penalty: float = Field(1.1, gt=0.0)
    seed: Optional[int] = None
    # UI updates are coalesced to about this interval instead of one per token.
    stream_interval_ms: int = Field(30, ge=0)
    system_prompt: str = "你是一位擅长长篇小说创作的作家。延续故事的文风与人物，写出连贯、生动的正文。"


class MemoryConfig(BaseModel):
    db_dir: Path = Path("data/chroma_db")
    # Stories, their chapters and the generation history (SQLite).
    studio_db: Path = Path("data/studio.sqlite3")
    embedding_model: str = "BAAI/bge-small-zh-v1.5"  # sentence-transformers id or folder
    offline_fallback: bool = True  # use the bundled multilingual encoder if unavailable
    max_memory_items: int = Field(8, ge=0)  # retrieved per generation, all kinds together
    # Automatic memory: at most this many entries per kind, this many characters each.
    extract_max_items: int = Field(6, ge=1)
    extract_max_chars: int = Field(120, ge=8)
    context_token_budget: int = Field(1024, ge=0)


class WebUIConfig(BaseModel):
    # Loopback by default: another host, or --share, needs a login (see webui/access.py).
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    share: bool = False
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    # Key for the OpenAI-compatible API; required whenever the app is shared.
    api_key: Optional[SecretStr] = None
    # Handlers running at once; all of them feed one vLLM engine, which batches.
    concurrency: int = Field(64, ge=1)
    lora: Optional[Path] = None  # adapter preselected in Write


class LimitsConfig(BaseModel):
    """What one request may ask of the server (the API and the web UI)."""
    max_body_bytes: int = Field(4 << 20, ge=1024)  # a request body (JSON); 413 beyond
    max_prompts: int = Field(16, ge=1)  # prompts in one /v1/completions request
    max_n: int = Field(8, ge=1)  # samples per prompt
    max_stop: int = Field(8, ge=0)  # stop strings per request
    max_stop_chars: int = Field(64, ge=1)  # characters per stop string
    max_prompt_tokens: Optional[int] = Field(None, ge=1)  # None: what the context allows
    max_upload_mb: int = Field(50, ge=1)  # files uploaded in the web UI (memory import, training data)
    max_json_depth: int = Field(32, ge=2)  # nesting of a request body
    # Generations running at once for one client (API key or address) and in all; 429 beyond.
    max_concurrent_per_client: int = Field(16, ge=1)
    max_concurrent: int = Field(64, ge=1)


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
