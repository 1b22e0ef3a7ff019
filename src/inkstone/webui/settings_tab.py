"""Settings tab: what is running, where the models are, which adapters are loaded."""
from __future__ import annotations

import time

import gradio as gr

from ..system_info import device_summary
from .i18n import i18n, lang_of


LABELS = {  # (English, 中文)
    "model": ("Model", "模型"), "format": ("prompt format", "提示格式"), "context": ("Context", "上下文"),
    "tokens": ("tokens", "词元"), "started": ("started {t} ago", "已运行 {t}"), "engine": ("Engine", "引擎"),
    "device": ("Device", "设备"), "memory": ("Memory store", "记忆库"), "entries": ("entries", "条"),
    "embedder": ("embedder", "嵌入模型"), "adapters": ("Adapters", "适配器"), "none": ("none yet", "暂无"),
    "ready": ("ready", "就绪"), "restarting": ("⚠ engine restarting after a crash", "⚠ 引擎崩溃后正在重启"),
    "failed": ("⚠ the engine could not be restarted; see the server log", "⚠ 引擎无法重启，请查看服务器日志"),
    "restarted": ("restarted {n}× (last took {s} s)", "已重启 {n} 次（上次用时 {s} 秒）"),
    "search": ("search {mode}", "检索方式：{mode}"), "hybrid": ("hybrid", "混合（语义＋词语）"),
    "dense": ("dense", "语义"), "lexical": ("lexical", "词语（BM25）"), "rerank": ("model rerank on", "模型重排已开启"),
    "speed": ("Measured speed", "实测速度"), "tok_s": ("{r:.1f} tok/s (median of recent runs)", "{r:.1f} 词元/秒（近期运行中位数）"),
}


def status_markdown(ctx, request=None) -> str:
    zh = lang_of(request) == "zh"

    def t(key: str, **kw) -> str:
        return LABELS[key][zh].format(**kw)

    engine, memory = ctx.engine, ctx.memory
    uptime = t("started", t=f"{time.time() - engine.started_at:.0f} s") if engine.started_at else "—"
    adapters = ctx.adapters.available()
    count = memory.call("count") if memory is not None else "—"
    embedder = memory.store.embedder.name if memory is not None else "—"
    search = t("search", mode=t(memory.store.search_mode)) if memory is not None else ""
    if memory is not None and ctx.rt.prompts.reranker is not None:
        search += " · " + t("rerank")
    rate = ctx.studio.history.measured_speed()
    lines = [
        f"- **{t('model')}**: `{engine.model_name}` at `{engine.settings.model_path}` "
        f"({t('format')}: {ctx.rt.prompts.prompt_format})",
        f"- **{t('context')}**: {engine.max_model_len} {t('tokens')} · {uptime}",
        f"- **{t('engine')}**: {_engine_state(engine, t)}",
        f"- **{t('speed')}**: {t('tok_s', r=rate) if rate else '—'}",
        f"- **{t('device')}**: {device_summary()}",
        f"- **{t('memory')}**: {count} {t('entries')} · {t('embedder')} `{embedder}` · {search}",
        f"- **{t('adapters')}** ({len(adapters)}): " + (", ".join(f"`{n}`" for n in sorted(adapters)) or t("none")),
    ]
    lines += [f"- ⚠️ {n}" for n in ctx.notes]
    return "\n".join(lines)


def _engine_state(engine, t) -> str:
    h = engine.health()
    text = t(h["state"]) if h["state"] in ("ready", "restarting", "failed") else h["state"]
    done = [r for r in h["restarts"] if "restart_s" in r]
    if done:
        text += " · " + t("restarted", n=len(done), s=done[-1]["restart_s"])
    return text


def create_settings_tab(ctx):
    """Returns the loader the app runs when a page opens (it needs the page's language)."""
    status = gr.Markdown(label=i18n("status"))
    refresh = gr.Button(i18n("refresh"))

    def shown(request: gr.Request):
        return status_markdown(ctx, request)

    refresh.click(shown, None, status, api_name="status")
    cfg_view = ctx.cfg.model_dump(mode="json")
    for secret in ("password", "api_key"):
        if cfg_view["webui"].get(secret):
            cfg_view["webui"][secret] = "********"
    gr.JSON(value=cfg_view, label="config")
    return shown, status
