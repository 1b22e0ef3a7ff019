"""History tab: every generation with what produced it; search, restore, re-run, delete."""
from __future__ import annotations

import json
import time

import gradio as gr
import pandas as pd

from ..prompting import story_name
from ..vocab.rounds import VocabRounds
from .i18n import headers, i18n, say

COLUMNS = ["id", "time", "source", "mode", "adapter", "seed", "tokens", "finish", "output"]


def history_rows(studio, story: str, query: str, request=None) -> pd.DataFrame:
    """The open story's generations, newest first."""
    rows = []
    for e in studio.history.list(story=story_name(story), query=query or ""):
        rows.append([e.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.started)), e.source, e.mode,
                     e.adapter or "", e.params.get("seed"), e.output_tokens, e.finish_reason or "",
                     e.output[:80].replace("\n", " ")])
    return pd.DataFrame(rows, columns=headers(request, *COLUMNS))


def show_entry(studio, entry_id, request=None) -> tuple[str, str, str]:
    e = studio.history.get(int(entry_id)) if entry_id not in (None, "") else None
    if e is None:
        raise gr.Error(say(request, "no_history", id=entry_id))
    # Memories by kind and title (with what they cost in the prompt), not by their ids.
    memories = e.memories or [{"id": i} for i in e.memory_ids]
    meta = {"source": e.source, "model": e.model, "adapter": e.adapter, "params": e.params, "memories": memories,
            "instruction": e.instruction, "mode": e.mode}
    vocab_round = VocabRounds(studio.db_path).of_entry(e.id) if e.source == "vocab" else None
    if vocab_round:  # a vocabulary story's round: its coverage, used and missing words
        meta["vocab"] = {k: vocab_round[k] for k in ("round", "coverage", "used", "missing")}
    return e.output, e.prompt, json.dumps(meta, ensure_ascii=False, indent=2)


def rerun_entry(studio, entry_id) -> str:
    try:
        return studio.rerun(int(entry_id))
    except (ValueError, TypeError) as exc:
        raise gr.Error(str(exc)) from exc


def delete_entry(studio, entry_id, request=None) -> str:
    if entry_id in (None, "") or not studio.history.delete(int(entry_id)):
        raise gr.Error(say(request, "no_history", id=entry_id))
    return say(request, "history_deleted", id=entry_id)


def create_history_tab(ctx, story) -> None:
    """`story` is the app's open-story dropdown: the tab lists that story's generations."""
    studio = ctx.studio
    with gr.Row():
        query = gr.Textbox(label=i18n("search"), max_lines=1)
        refresh = gr.Button(i18n("refresh"))
    table = gr.Dataframe(interactive=False, wrap=True)
    with gr.Row():
        entry_id = gr.Number(label=i18n("history_id"), precision=0)
        show = gr.Button(i18n("restore"))
        rerun = gr.Button(i18n("rerun"))
        delete = gr.Button(i18n("delete"), variant="stop")
    note = gr.Markdown()
    output = gr.Textbox(label=i18n("output"), lines=8)
    with gr.Accordion(i18n("prompt_seen"), open=False):
        prompt = gr.Textbox(show_label=False, lines=8)
        meta = gr.Code(language="json")

    def listed(s, q, request: gr.Request):
        return history_rows(studio, s, q, request)

    def shown(i, request: gr.Request):
        return show_entry(studio, i, request)

    def deleted(i, request: gr.Request):
        return delete_entry(studio, i, request)

    def pick(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else None

    refresh.click(listed, [story, query], table, api_name="history_list")
    query.submit(listed, [story, query], table, api_name=False)
    story.change(listed, [story, query], table, api_name=False)
    table.select(pick, None, entry_id, api_name=False).then(shown, entry_id, [output, prompt, meta], api_name=False)
    show.click(shown, entry_id, [output, prompt, meta], api_name="history_show")
    rerun.click(lambda i: rerun_entry(studio, i), entry_id, output, api_name="history_rerun")
    delete.click(deleted, entry_id, note, api_name="history_delete").then(
        listed, [story, query], table, api_name=False)
