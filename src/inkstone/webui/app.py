"""The Gradio app: the open story above seven tabs, over one Runtime.

Handlers never touch vLLM or ChromaDB themselves: generations go through the
Studio (prompt service → engine → history), memory through its own thread.
The queue's concurrency limit is high so that several writers reach the
engine at once and vLLM batches them.
"""
from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import gradio as gr

from ..prompting import DEFAULT_STORY, story_name
from ..runtime import Runtime
from ..train.jobs import TrainJob
from .access import api_guarded, check_exposure, gradio_session_user
from .i18n import i18n
from .compare_tab import create_compare_tab
from .history_tab import create_history_tab
from .memory_tab import create_memory_tab
from .recut_tab import create_recut_tab
from .settings_tab import create_settings_tab
from .story_tab import create_story_tab
from .stopping import StopSignals
from .train_tab import create_train_tab
from .vocab_tab import create_vocab_tab
from .write_tab import create_write_tab

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    cfg: object  # inkstone.config.Config
    rt: Runtime
    notes: list[str] = field(default_factory=list)  # fallbacks taken, shown in Settings
    train_job: Optional[TrainJob] = None
    stops: StopSignals = field(default_factory=StopSignals)  # Stop buttons, per browser session

    def __post_init__(self):
        if self.train_job is None:  # a run started before this web UI (re)started is picked up again
            from ..train.jobs import find_running

            self.train_job = find_running(self.cfg.train.output_dir)

    # The parts the tabs use, by name.
    @property
    def engine(self):
        return self.rt.engine

    @property
    def studio(self):
        return self.rt.studio

    @property
    def memory(self):
        return self.rt.memory

    @property
    def adapters(self):
        return self.rt.adapters


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Inkstone") as demo:
        gr.Markdown("# Inkstone 砚台")
        if ctx.notes:  # fallbacks taken at start: one closed notice area, not a banner per note
            with gr.Accordion(f"⚠️ {len(ctx.notes)} notice(s) / 提示", open=False):
                gr.Markdown("What the studio did instead of what the config asked, and why. "
                            "Everything works; these say what to change for the full setup.\n\n"
                            + "\n".join(f"- {n}" for n in ctx.notes))
        # The open story, shared by every tab: each reloads its part when it changes.
        story = gr.Dropdown(ctx.studio.stories.names(), value=DEFAULT_STORY, label=i18n("story_current"),
                            allow_custom_value=True)
        with gr.Tabs():
            with gr.Tab(i18n("tab_write")):
                create_write_tab(ctx, story)
            with gr.Tab(i18n("tab_story")):
                create_story_tab(ctx, story)
            with gr.Tab(i18n("tab_memory")):
                create_memory_tab(ctx, story)
            with gr.Tab(i18n("tab_compare")) as compare_tab:
                compare = create_compare_tab(ctx, story)
            with gr.Tab(i18n("tab_history")):
                create_history_tab(ctx, story)
            with gr.Tab(i18n("tab_recut")):
                recut_load = create_recut_tab(ctx)
            with gr.Tab(i18n("tab_vocab")):
                vocab_load = create_vocab_tab(ctx)["on_load"]
            with gr.Tab(i18n("tab_train")):
                create_train_tab(ctx)
            with gr.Tab(i18n("tab_settings")):
                settings_status, settings_box = create_settings_tab(ctx)
        # A returning writer finds the story they worked on last, draft and all.
        demo.load(lambda: open_latest_story(ctx), None, story, api_name=False)
        # A name the writer typed is a new story (Write creates it on opening): list it. `input`
        # fires only for the writer's own choice, so this update does not trigger itself.
        story.input(lambda s: gr.Dropdown(choices=_with(ctx.studio.stories.names(), story_name(s))), story, story,
                    api_name=False)
        demo.load(settings_status, None, settings_box, api_name=False)
        # Headers of tables that start empty: Gradio translates labels, not a table's columns.
        for fn, outputs in (recut_load, vocab_load):
            demo.load(fn, None, outputs, api_name=False)
        # Compare starts from the same draft as Write (saved there when it loses focus).
        compare_tab.select(lambda s: ctx.studio.stories.draft(story_name(s)), story, compare["story_text"],
                           api_name=False)
    demo.queue(default_concurrency_limit=ctx.cfg.webui.concurrency, max_size=None)
    return demo


def _with(names: list[str], name: str) -> list[str]:
    return names if name in names else [*names, name]


def open_latest_story(ctx) -> gr.Dropdown:
    overview = ctx.studio.stories.overview()
    latest = overview[0]["name"] if overview else DEFAULT_STORY
    return gr.Dropdown(choices=[s["name"] for s in overview], value=latest)


class PortInUse(RuntimeError):
    pass


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(
                    f"port {port} on {host} is already in use: stop the other program or pass --port N"
                ) from exc
            raise


def auth_for(webui_cfg) -> Optional[tuple[str, str]]:
    if webui_cfg.username and webui_cfg.password:
        return (webui_cfg.username, webui_cfg.password.get_secret_value())
    return None


def launch(ctx: AppContext, *, block: bool = True):
    """Start the app; returns the Blocks (already serving when block=False)."""
    w = ctx.cfg.webui
    auth = auth_for(w)
    check_exposure(w)
    check_port_free(w.host, w.port)
    demo = build_app(ctx)
    demo.launch(
        server_name=w.host, server_port=w.port, share=w.share, auth=auth, i18n=i18n,
        prevent_thread_lock=True, show_error=True, quiet=not block,
        max_threads=max(40, w.concurrency + 8), max_file_size=f"{ctx.cfg.limits.max_upload_mb}mb",
    )
    mount_extra_routes(ctx, demo)
    if block:
        demo.block_thread()
    return demo


def mount_extra_routes(ctx: AppContext, demo: gr.Blocks) -> None:
    """HTTP routes served by the same process and engine, beside the Gradio app."""
    from ..api.openai_compat import create_router

    w = ctx.cfg.webui
    key = w.api_key.get_secret_value() if w.api_key else None
    demo.app.include_router(create_router(ctx, api_key=key, guarded=api_guarded(w),
                                          session_user=gradio_session_user(demo)))
