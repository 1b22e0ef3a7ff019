"""Memory tab: list, add, edit, delete and search story memories."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import gradio as gr

from ..memory.io import export_rows, import_rows, read_json_file
from ..memory.store import KIND_LABELS, KINDS, MemoryError_
from ..prompting import DEFAULT_STORY, story_name
from .i18n import i18n

COLUMNS = ["id", "kind", "title", "text", "chapter", "story"]
SEARCH_COLUMNS = ["score", "kind", "title", "text", "id"]
KIND_CHOICES = [(KIND_LABELS[k], k) for k in KINDS]
ALL = "all"
# Runs in the browser before the handler: the writer confirms, and the answer goes in as `confirmed`.
CONFIRM_DELETE = "(id, ok) => [id, id ? confirm('Delete this memory? This cannot be undone.') : false]"


def list_rows(memory, kind: str, story: str) -> list[list]:
    entries = memory.call("list", kind=None if kind in (None, "", ALL) else kind,
                                 story=(story or "").strip() or None)
    return [[e.id, e.kind, e.title, e.text, e.chapter, e.story] for e in entries]


EMPTY_FORM = ("", "", "", "")  # id, title, text, chapter


def save_entry(memory, entry_id: str, kind: str, title: str, text: str, chapter: str, story: str) -> tuple:
    """Add (no id) or update (id given). The form is emptied afterwards, so the next
    entry typed into it is a new one and never overwrites the one just saved.
    Returns (*EMPTY_FORM, note)."""
    try:
        if (entry_id or "").strip():
            entry = memory.call("update", entry_id.strip(), kind=kind, text=text, title=title, chapter=chapter)
            done = "Updated"
        else:
            entry = memory.call("add", kind, text, title=title, story=story_name(story), chapter=chapter or "")
            done = "Added"
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return (*EMPTY_FORM, f"{done} “{entry.title or entry.text[:16]}” ({entry.kind}) in story '{entry.story}'.")


def delete_entry(memory, entry_id: str, confirmed: bool) -> tuple:
    """Delete the entry in the form once the writer has confirmed. Returns (*form, note)."""
    entry_id = (entry_id or "").strip()
    if not entry_id:
        raise gr.Error("Pick a memory first: click its row in the table.")
    try:
        entry = memory.call("get", entry_id)
        if entry is None:
            raise gr.Error(f"No memory with id {entry_id}: it may have been deleted already.")
        if not confirmed:
            return entry_id, gr.skip(), gr.skip(), gr.skip(), "Nothing deleted."
        memory.call("delete", entry_id)
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return (*EMPTY_FORM, f"Deleted “{entry.title or entry.text[:16]}” ({entry.kind}).")


def search_rows(memory, query: str, k: float, story: str) -> list[list]:
    if not (query or "").strip():
        raise gr.Error("Type what to search for.")
    hits = memory.call("search", query, k=int(k), story=(story or "").strip() or None)
    return [[round(h.score, 3), h.entry.kind, h.entry.title, h.entry.text, h.entry.id] for h in hits]


def import_file(memory, path, story: str) -> str:
    if not path:
        raise gr.Error("Choose a JSON file to import.")
    story = story_name(story)
    try:
        rows = read_json_file(Path(path))
        imported, errors = memory.run(lambda store: import_rows(store, rows, story))
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    lines = [f"Imported {imported} memories into story '{story}'."] + [f"- skipped {e}" for e in errors]
    return "\n".join(lines)


def export_file(memory, story: str) -> str:
    story = story_name(story)
    data = memory.run(lambda store: export_rows(store, story))
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
    memory = ctx.memory
    with gr.Row():
        story = gr.Textbox(label=i18n("story"), value=DEFAULT_STORY, max_lines=1)
        kind_filter = gr.Dropdown([(ALL, ALL)] + KIND_CHOICES, value=ALL, label=i18n("filter_kind"))
        refresh = gr.Button(i18n("refresh"))
    table = gr.Dataframe(headers=COLUMNS, value=lambda: list_rows(memory, ALL, DEFAULT_STORY),
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
                new = gr.Button(i18n("new_entry"))
                delete = gr.Button(i18n("delete"), variant="stop")
            confirmed = gr.Checkbox(visible=False)  # set by the browser's confirmation dialog
            form_note = gr.Markdown()
        with gr.Column():
            query = gr.Textbox(label=i18n("query"), max_lines=2)
            k = gr.Slider(1, 20, value=5, step=1, label=i18n("top_k_results"))
            search = gr.Button(i18n("search"))
            results = gr.Dataframe(headers=SEARCH_COLUMNS, interactive=False, wrap=True)

    refresh.click(lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name="memory_list")
    kind_filter.change(lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name=False)
    form = [entry_id, title, text, chapter]
    save.click(lambda *a: save_entry(memory, *a), [entry_id, kind, title, text, chapter, story], [*form, form_note],
               api_name="memory_save").then(
        lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name=False)
    new.click(lambda: (*EMPTY_FORM, ""), None, [*form, form_note], api_name=False)
    delete.click(lambda i, ok: delete_entry(memory, i, ok), [entry_id, confirmed], [*form, form_note],
                 api_name="memory_delete", js=CONFIRM_DELETE).then(
        lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name=False)
    search.click(lambda q, n, s: search_rows(memory, q, n, s), [query, k, story], results, api_name="memory_search")

    # One key: an f-string of translated labels would show their raw metadata instead.
    with gr.Accordion(i18n("import_export"), open=False):
        with gr.Row():
            upload = gr.File(label=i18n("import"), file_types=[".json"], type="filepath")
            do_import = gr.Button(i18n("import"))
            do_export = gr.Button(i18n("export"))
            download = gr.File(label=i18n("export"))
        with gr.Row():
            confirm = gr.Textbox(label=i18n("confirm_story"), max_lines=1)
            do_delete = gr.Button(i18n("delete_story"), variant="stop")
        io_note = gr.Markdown()
    do_import.click(lambda f, s: import_file(memory, f, s), [upload, story], io_note, api_name="memory_import").then(
        lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name=False)
    do_export.click(lambda s: export_file(memory, s), story, download, api_name="memory_export")
    do_delete.click(lambda s, c: delete_story(ctx, s, c), [story, confirm], io_note, api_name="story_delete").then(
        lambda kf, s: list_rows(memory, kf, s), [kind_filter, story], table, api_name=False)

    def pick(evt: gr.SelectData, rows):
        # Selecting a row fills the form for editing.
        row = rows.iloc[evt.index[0]].tolist() if hasattr(rows, "iloc") else rows[evt.index[0]]
        return row[0], row[1], row[2], row[3], row[4]

    table.select(pick, table, [entry_id, kind, title, text, chapter], api_name=False)
