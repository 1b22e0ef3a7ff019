"""History tab: every generation with what produced it; search, restore, re-run, delete."""
from __future__ import annotations

import json
import time

import gradio as gr
import pandas as pd

from .i18n import i18n

COLUMNS = ["id", "time", "story", "source", "mode", "adapter", "seed", "tokens", "finish", "output"]


def history_rows(studio, story: str, query: str) -> pd.DataFrame:
    rows = []
    for e in studio.history.list(story=(story or "").strip() or None, query=query or ""):
        rows.append([e.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.started)), e.story, e.source, e.mode,
                     e.adapter or "", e.params.get("seed"), e.output_tokens, e.finish_reason or "",
                     e.output[:80].replace("\n", " ")])
    return pd.DataFrame(rows, columns=COLUMNS)


def show_entry(studio, entry_id) -> tuple[str, str, str]:
    e = studio.history.get(int(entry_id)) if entry_id not in (None, "") else None
    if e is None:
        raise gr.Error(f"no history entry {entry_id}")
    # Memories by kind and title (with what they cost in the prompt), not by their ids.
    memories = e.memories or [{"id": i} for i in e.memory_ids]
    meta = {"source": e.source, "model": e.model, "adapter": e.adapter, "params": e.params, "memories": memories,
            "instruction": e.instruction, "mode": e.mode}
    return e.output, e.prompt, json.dumps(meta, ensure_ascii=False, indent=2)


def rerun_entry(studio, entry_id) -> str:
    try:
        return studio.rerun(int(entry_id))
    except (ValueError, TypeError) as exc:
        raise gr.Error(str(exc)) from exc


def delete_entry(studio, entry_id) -> str:
    if entry_id in (None, "") or not studio.history.delete(int(entry_id)):
        raise gr.Error(f"no history entry {entry_id}")
    return f"Deleted entry {entry_id}."


def create_history_tab(ctx) -> None:
    studio = ctx.studio
    with gr.Row():
        story = gr.Textbox(label=i18n("story"), max_lines=1)
        query = gr.Textbox(label=i18n("search"), max_lines=1)
        refresh = gr.Button(i18n("refresh"))
    table = gr.Dataframe(value=lambda: history_rows(studio, "", ""), interactive=False, wrap=True)
    with gr.Row():
        entry_id = gr.Number(label="id", precision=0)
        show = gr.Button(i18n("restore"))
        rerun = gr.Button(i18n("rerun"))
        delete = gr.Button(i18n("delete"), variant="stop")
    note = gr.Markdown()
    output = gr.Textbox(label=i18n("output"), lines=8)
    with gr.Accordion(i18n("prompt_seen"), open=False):
        prompt = gr.Textbox(show_label=False, lines=8)
        meta = gr.Code(language="json")
    refresh.click(lambda s, q: history_rows(studio, s, q), [story, query], table, api_name="history_list")
    query.submit(lambda s, q: history_rows(studio, s, q), [story, query], table, api_name=False)
    def pick(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else None

    table.select(pick, None, entry_id, api_name=False)
    show.click(lambda i: show_entry(studio, i), entry_id, [output, prompt, meta], api_name="history_show")
    rerun.click(lambda i: rerun_entry(studio, i), entry_id, output, api_name="history_rerun")
    delete.click(lambda i: delete_entry(studio, i), entry_id, note, api_name="history_delete").then(
        lambda s, q: history_rows(studio, s, q), [story, query], table, api_name=False)
