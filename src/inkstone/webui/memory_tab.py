"""Memory tab: list, add, edit, delete and search story memories."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from ..memory.io import export_rows, import_rows, read_json_file
from ..memory.store import KIND_LABELS, KINDS, MemoryError_
from ..prompting import story_name
from ..story.export import safe_file_stem
from .i18n import headers, i18n, lang_of, say

# Writers see titles and kinds; the ids stay beside the table (gr.State), for editing.
COLUMNS = ["title", "kind", "text", "chapter"]
SEARCH_COLUMNS = ["score", "title", "kind", "text"]
KIND_CHOICES = [(KIND_LABELS[k], k) for k in KINDS]
ALL = "all"
# Runs in the browser before the handler: the writer confirms, and the answer goes in as `confirmed`.
CONFIRM_DELETE = "(id, ok) => [id, id ? confirm('Delete this memory? This cannot be undone.') : false]"


def kind_label(kind: str, request=None) -> str:
    en, zh = KIND_LABELS[kind].split(" ", 1)[1], KIND_LABELS[kind].split(" ", 1)[0]
    return zh if lang_of(request) == "zh" else en


def list_rows(memory, kind: str, story: str, request=None) -> tuple[pd.DataFrame, list[str]]:
    """The open story's memories as the writer reads them, and their ids in the same order."""
    entries = memory.call("list", kind=None if kind in (None, "", ALL) else kind, story=story_name(story))
    rows = [[e.title or e.text[:16], kind_label(e.kind, request), e.text, e.chapter] for e in entries]
    return pd.DataFrame(rows, columns=headers(request, *COLUMNS)), [e.id for e in entries]


EMPTY_FORM = ("", "", "", "")  # id, title, text, chapter


def save_entry(memory, entry_id: str, kind: str, title: str, text: str, chapter: str, story: str,
               request=None) -> tuple:
    """Add (no id) or update (id given). The form is emptied afterwards, so the next
    entry typed into it is a new one and never overwrites the one just saved.
    Returns (*EMPTY_FORM, note)."""
    try:
        if (entry_id or "").strip():
            entry = memory.call("update", entry_id.strip(), kind=kind, text=text, title=title, chapter=chapter)
            note = say(request, "memory_updated", t=entry.title or entry.text[:16], k=kind_label(entry.kind, request))
        else:
            entry = memory.call("add", kind, text, title=title, story=story_name(story), chapter=chapter or "")
            note = say(request, "memory_added", t=entry.title or entry.text[:16], k=kind_label(entry.kind, request),
                       s=entry.story)
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return (*EMPTY_FORM, note)


def delete_entry(memory, entry_id: str, confirmed: bool, request=None) -> tuple:
    """Delete the entry in the form once the writer has confirmed. Returns (*form, note)."""
    entry_id = (entry_id or "").strip()
    if not entry_id:
        raise gr.Error(say(request, "pick_memory"))
    try:
        entry = memory.call("get", entry_id)
        if entry is None:
            raise gr.Error(say(request, "no_memory", id=entry_id))
        if not confirmed:
            return entry_id, gr.skip(), gr.skip(), gr.skip(), say(request, "nothing_deleted")
        memory.call("delete", entry_id)
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return (*EMPTY_FORM, say(request, "memory_deleted", t=entry.title or entry.text[:16],
                             k=kind_label(entry.kind, request)))


def search_rows(memory, query: str, k: float, story: str, request=None) -> tuple[pd.DataFrame, list[str]]:
    if not (query or "").strip():
        raise gr.Error(say(request, "type_query"))
    hits = memory.call("search", query, k=int(k), story=story_name(story))
    rows = [[round(h.score, 3), h.entry.title or h.entry.text[:16], kind_label(h.entry.kind, request), h.entry.text]
            for h in hits]
    return pd.DataFrame(rows, columns=headers(request, *SEARCH_COLUMNS)), [h.entry.id for h in hits]


def entry_form(memory, entry_id: str) -> tuple:
    """(id, kind, title, text, chapter) of an entry, for the edit form."""
    e = memory.call("get", entry_id)
    if e is None:
        raise gr.Error(f"No memory with id {entry_id}: it may have been deleted already.")
    return e.id, e.kind, e.title, e.text, e.chapter


def import_file(memory, path, story: str, request=None) -> str:
    if not path:
        raise gr.Error(say(request, "choose_json"))
    story = story_name(story)
    try:
        rows = read_json_file(Path(path))
        imported, errors = memory.run(lambda store: import_rows(store, rows, story))
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    lines = [say(request, "imported", n=imported, s=story)] + [say(request, "skipped", e=e) for e in errors]
    return "\n".join(lines)


def export_file(memory, story: str) -> str:
    story = story_name(story)
    data = memory.run(lambda store: export_rows(store, story))
    out = Path(tempfile.mkdtemp(prefix="inkstone-export-")) / f"memories-{safe_file_stem(story)}.json"
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(out)


def delete_story(ctx, story: str, confirm: str, request=None) -> str:
    story = (story or "").strip()
    if not story or (confirm or "").strip() != story:
        raise gr.Error(say(request, "confirm_delete_story"))
    counts = ctx.studio.delete_story(story)
    return say(request, "story_deleted", s=story, m=counts["memories"], h=counts["history"])


def create_memory_tab(ctx, story) -> None:
    """`story` is the app's open-story dropdown, shared by the tabs."""
    memory = ctx.memory
    with gr.Row():
        kind_filter = gr.Dropdown([(ALL, ALL)] + KIND_CHOICES, value=ALL, label=i18n("filter_kind"))
        refresh = gr.Button(i18n("refresh"))
    table = gr.Dataframe(label=i18n("memory_entries"), interactive=False, wrap=True,
                         column_widths=["16%", "10%", "56%", "18%"])
    table_ids = gr.State([])
    with gr.Row():
        with gr.Column():
            entry_id = gr.Textbox(label=i18n("entry_id"), max_lines=1, visible=False)
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
            results = gr.Dataframe(label=i18n("search_results"), interactive=False, wrap=True, visible=False,
                                   column_widths=["10%", "18%", "12%", "60%"])
            result_ids = gr.State([])

    # Closures with annotations: Gradio hands the request (the page's language) and the
    # selection only to parameters annotated with their types.
    def listed(kf, s, request: gr.Request):
        return list_rows(memory, kf, s, request)

    def saved(i, kd, t, x, ch, s, request: gr.Request):
        return save_entry(memory, i, kd, t, x, ch, s, request)

    def deleted(i, ok, request: gr.Request):
        return delete_entry(memory, i, ok, request)

    def found(q, n, s, request: gr.Request):
        return search_rows(memory, q, n, s, request)

    def edit(ids, evt: gr.SelectData, request: gr.Request):  # a row of either table opens it in the form
        form = entry_form(memory, ids[evt.index[0]])
        return (*form, say(request, "editing", t=form[2] or form[3][:16]))

    def imported(f, s, request: gr.Request):
        return import_file(memory, f, s, request)

    def story_deleted(s, c, request: gr.Request):
        return delete_story(ctx, s, c, request)

    listing = ([kind_filter, story], [table, table_ids])
    refresh.click(listed, *listing, api_name="memory_list")
    kind_filter.change(listed, *listing, api_name=False)
    story.change(listed, *listing, api_name=False)
    form = [entry_id, title, text, chapter]
    save.click(saved, [entry_id, kind, title, text, chapter, story], [*form, form_note],
               api_name="memory_save").then(listed, *listing, api_name=False)
    new.click(lambda: (*EMPTY_FORM, ""), None, [*form, form_note], api_name=False)
    delete.click(deleted, [entry_id, confirmed], [*form, form_note], api_name="memory_delete",
                 js=CONFIRM_DELETE).then(listed, *listing, api_name=False)
    # The results table shows once there are results (empty, it would show bare column numbers).
    for trigger, name in ((search.click, "memory_search"), (query.submit, False)):
        trigger(found, [query, k, story], [results, result_ids], api_name=name).then(
            lambda: gr.Dataframe(visible=True), None, results, api_name=False)
    table.select(edit, table_ids, [entry_id, kind, title, text, chapter, form_note], api_name=False)
    results.select(edit, result_ids, [entry_id, kind, title, text, chapter, form_note], api_name=False)

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
    do_import.click(imported, [upload, story], io_note, api_name="memory_import").then(
        listed, *listing, api_name=False)
    do_export.click(lambda s: export_file(memory, s), story, download, api_name="memory_export")
    do_delete.click(story_deleted, [story, confirm], io_note, api_name="story_delete").then(
        listed, *listing, api_name=False)
