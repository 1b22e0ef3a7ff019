"""Memory tab: list, add, edit, delete and search story memories."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import gradio as gr

from ..memory.io import export_rows, import_rows, read_json_file
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


def import_file(bridge, path, story: str) -> str:
    if not path:
        raise gr.Error("Choose a JSON file to import.")
    story = (story or "").strip() or "default"
    try:
        rows = read_json_file(Path(path))
        imported, errors = bridge.memory_run(lambda store: import_rows(store, rows, story))
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    lines = [f"Imported {imported} memories into story '{story}'."] + [f"- skipped {e}" for e in errors]
    return "\n".join(lines)


def export_file(bridge, story: str) -> str:
    story = (story or "").strip() or "default"
    data = bridge.memory_run(lambda store: export_rows(store, story))
    safe = re.sub(r"[^\w.-]+", "_", story).strip("._") or "story"  # a story name may hold "/" or ".."
    out = Path(tempfile.mkdtemp(prefix="inkstone-export-")) / f"memories-{safe}.json"
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(out)


def delete_story(ctx, story: str, confirm: str) -> str:
    story = (story or "").strip()
    if not story or confirm.strip() != story:
        raise gr.Error("To delete a story, type its exact name in the confirmation box.")
    counts = ctx.studio.delete_story(story)
    return f"Deleted story '{story}': {counts['memories']} memories and {counts['history']} history entries."


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

    with gr.Accordion(f"{i18n('import')} / {i18n('export')} / {i18n('delete_story')}", open=False):
        with gr.Row():
            upload = gr.File(label=i18n("import"), file_types=[".json"], type="filepath")
            do_import = gr.Button(i18n("import"))
            do_export = gr.Button(i18n("export"))
            download = gr.File(label=i18n("export"))
        with gr.Row():
            confirm = gr.Textbox(label=i18n("confirm_story"), max_lines=1)
            do_delete = gr.Button(i18n("delete_story"), variant="stop")
        io_note = gr.Markdown()
    do_import.click(lambda f, s: import_file(bridge, f, s), [upload, story], io_note, api_name="memory_import").then(
        lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name=False)
    do_export.click(lambda s: export_file(bridge, s), story, download, api_name="memory_export")
    do_delete.click(lambda s, c: delete_story(ctx, s, c), [story, confirm], io_note, api_name="story_delete").then(
        lambda kf, s: list_rows(bridge, kf, s), [kind_filter, story], table, api_name=False)

    def pick(evt: gr.SelectData, rows):
        # Selecting a row fills the form for editing.
        row = rows.iloc[evt.index[0]].tolist() if hasattr(rows, "iloc") else rows[evt.index[0]]
        return row[0], row[1], row[2], row[3], row[4]

    table.select(pick, table, [entry_id, kind, title, text, chapter], api_name=False)
