"""Memory tab: list, add, edit, delete and search story memories."""
from __future__ import annotations

import gradio as gr

from ..memory.store import KIND_LABELS, KINDS, MemoryError_
from .i18n import i18n

COLUMNS = ["id", "kind", "title", "text", "chapter", "story"]
SEARCH_COLUMNS = ["score", "kind", "title", "text", "id"]
KIND_CHOICES = [(KIND_LABELS[k], k) for k in KINDS]
ALL = "all"


def list_rows(bridge, kind: str, story: str) -> list[list]:
    entries = bridge.memory_call("list", kind=None if kind in (None, "", ALL) else kind,
                                 story=(story or "").strip() or None)
    return [[e.id, e.kind, e.title, e.text, e.chapter, e.story] for e in entries]


def save_entry(bridge, entry_id: str, kind: str, title: str, text: str, chapter: str, story: str) -> str:
    """Add (no id) or update (id given); returns the entry's id."""
    try:
        if (entry_id or "").strip():
            entry = bridge.memory_call("update", entry_id.strip(), kind=kind, text=text, title=title, chapter=chapter)
        else:
            entry = bridge.memory_call("add", kind, text, title=title, story=(story or "").strip() or "default",
                                       chapter=chapter or "")
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return entry.id


def delete_entry(bridge, entry_id: str) -> str:
    try:
        bridge.memory_call("delete", (entry_id or "").strip())
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return ""


def search_rows(bridge, query: str, k: float, story: str) -> list[list]:
    if not (query or "").strip():
        raise gr.Error("Type what to search for.")
    hits = bridge.memory_call("search", query, k=int(k), story=(story or "").strip() or None)
    return [[round(h.score, 3), h.entry.kind, h.entry.title, h.entry.text, h.entry.id] for h in hits]


def create_memory_tab(ctx) -> None:
    bridge = ctx.bridge
    with gr.Row():
        story = gr.Textbox(label=i18n("story"), value="default", max_lines=1)
        kind_filter = gr.Dropdown([(ALL, ALL)] + KIND_CHOICES, value=ALL, label=i18n("filter_kind"))
        refresh = gr.Button(i18n("refresh"))
    table = gr.Dataframe(headers=COLUMNS, value=lambda: list_rows(bridge, ALL, "default"),
                         label=i18n("memory_entries"), interactive=False, wrap=True)
    with gr.Row():
        with gr.Column():
            entry_id = gr.Textbox(label=i18n("entry_id"), max_lines=1)
            kind = gr.Dropdown(KIND_CHOICES, value="character", label=i18n("kind"))
            title = gr.Textbox(label=i18n("title"), max_lines=1)
            text = gr.Textbox(label=i18n("text"), lines=4)
            chapter = gr.Textbox(label=i18n("chapter"), max_lines=1)
            with gr.Row():
                save = gr.Button(i18n("save"), variant="primary")
                delete = gr.Button(i18n("delete"), variant="stop")
        with gr.Column():
            query = gr.Textbox(label=i18n("query"), max_lines=2)
            k = gr.Slider(1, 20, value=5, step=1, label=i18n("top_k_results"))
            search = gr.Button(i18n("search"))
            results = gr.Dataframe(headers=SEARCH_COLUMNS, interactive=False, wrap=True)

    refresh.click(lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name="memory_list")
    kind_filter.change(lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name=False)
    save.click(lambda *a: save_entry(bridge, *a), [entry_id, kind, title, text, chapter, story], entry_id,
               api_name="memory_save").then(
        lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name=False)
    delete.click(lambda i: delete_entry(bridge, i), entry_id, entry_id, api_name="memory_delete").then(
        lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name=False)
    search.click(lambda q, n, s: search_rows(bridge, q, n, s), [query, k, story], results, api_name="memory_search")

    def pick(evt: gr.SelectData, rows):
        # Selecting a row fills the form for editing.
        row = rows.iloc[evt.index[0]].tolist() if hasattr(rows, "iloc") else rows[evt.index[0]]
        return row[0], row[1], row[2], row[3], row[4]

    table.select(pick, table, [entry_id, kind, title, text, chapter], api_name=False)
