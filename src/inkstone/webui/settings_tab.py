"""Settings tab: what is running, where the models are, which adapters are loaded."""
from __future__ import annotations

import time

import gradio as gr

from ..system_info import device_summary
from .i18n import i18n


def status_markdown(ctx) -> str:
    b = ctx.bridge
    s = b.settings
    uptime = f"{time.time() - b.started_at:.0f} s" if b.started_at else "—"
    adapters = b.available_adapters()
    memory = b.memory_call("count") if b.memory is not None else "—"
    embedder = b.memory.embedder.name if b.memory is not None else "—"
    lines = [
        f"- **Model**: `{s.model_name}` at `{s.model_path}` (prompt format: {b.prompt_format})",
        f"- **Context**: {s.max_model_len} tokens · engine up {uptime}",
        f"- **Engine**: {_engine_state(b)}",
        f"- **Device**: {device_summary()}",
        f"- **Memory store**: {memory} entries · embedder `{embedder}`",
        f"- **Adapters** ({len(adapters)}): " + (", ".join(f"`{n}`" for n in sorted(adapters)) or "none yet"),
    ]
    lines += [f"- ⚠️ {n}" for n in ctx.notes]
    return "\n".join(lines)


def _engine_state(bridge) -> str:
    h = bridge.health()
    text = {"ready": "ready", "restarting": "⚠ engine restarting after a crash",
            "failed": "⚠ the engine could not be restarted; see the server log"}.get(h["state"], h["state"])
    done = [r for r in h["restarts"] if "restart_s" in r]
    if done:
        text += f" · restarted {len(done)}× (last took {done[-1]['restart_s']} s)"
    return text


def create_settings_tab(ctx) -> None:
    status = gr.Markdown(value=lambda: status_markdown(ctx), label=i18n("status"))
    refresh = gr.Button(i18n("refresh"))
    refresh.click(lambda: status_markdown(ctx), None, status, api_name="status")
    cfg_view = ctx.cfg.model_dump(mode="json")
    for secret in ("password", "api_key"):
        if cfg_view["webui"].get(secret):
            cfg_view["webui"][secret] = "********"
    gr.JSON(value=cfg_view, label="config")
