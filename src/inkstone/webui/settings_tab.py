"""Settings tab: what is running, where the models are, which adapters are loaded."""
from __future__ import annotations

import time

import gradio as gr

from ..system_info import device_summary
from .i18n import i18n


def status_markdown(ctx) -> str:
    engine, memory = ctx.engine, ctx.memory
    uptime = f"{time.time() - engine.started_at:.0f} s" if engine.started_at else "—"
    adapters = ctx.adapters.available()
    count = memory.call("count") if memory is not None else "—"
    embedder = memory.store.embedder.name if memory is not None else "—"
    lines = [
        f"- **Model**: `{engine.model_name}` at `{engine.settings.model_path}` "
        f"(prompt format: {ctx.rt.prompts.prompt_format})",
        f"- **Context**: {engine.max_model_len} tokens · started {uptime} ago",
        f"- **Engine**: {_engine_state(engine)}",
        f"- **Device**: {device_summary()}",
        f"- **Memory store**: {count} entries · embedder `{embedder}`",
        f"- **Adapters** ({len(adapters)}): " + (", ".join(f"`{n}`" for n in sorted(adapters)) or "none yet"),
    ]
    lines += [f"- ⚠️ {n}" for n in ctx.notes]
    return "\n".join(lines)


def _engine_state(engine) -> str:
    h = engine.health()
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
