"""Story tab: the stories, the open story's chapters in order with their summaries
(visible, editable, regenerated on request), and the story's text as a file."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from ..prompting import story_name
from ..story.export import FORMATS, export_story
from ..story.summary_check import summary_problem
from .i18n import headers, i18n, say


def story_list(studio, request: gr.Request = None) -> pd.DataFrame:
    rows = [[s["name"], s["chapters"], s["chars"], time.strftime("%Y-%m-%d %H:%M", time.localtime(s["updated"]))]
            for s in studio.stories.overview()]
    return pd.DataFrame(rows, columns=headers(request, "story", "chapters", "chars", "updated"))


def chapter_table(studio, story: str, request: gr.Request = None) -> tuple[pd.DataFrame, list[int]]:
    """The chapters in order, and their ids (kept beside the table, not shown in it)."""
    chapters = studio.stories.chapters(story_name(story))
    rows = [[c.position, c.title, len(c.text), c.summary or "—"] for c in chapters]
    return pd.DataFrame(rows, columns=headers(request, "no", "title", "chars", "summary")), [c.id for c in chapters]


def story_info(studio, story: str, request: gr.Request = None) -> str:
    story = story_name(story)
    chapters = studio.stories.chapters(story)
    return say(request, "story_info", s=story, c=len(chapters), n=sum(len(c.text) for c in chapters),
               d=len(studio.stories.draft(story)))


def pick_chapter(studio, ids: list[int], evt: gr.SelectData):
    """Selecting a row shows the chapter's text and puts its summary into the editor."""
    ch = studio.stories.chapter(ids[evt.index[0]])
    return ch.id, ch.text, ch.summary


def save_summary(studio, chapter_id, summary: str, request: gr.Request = None) -> str:
    if not chapter_id:
        raise gr.Error(say(request, "pick_chapter"))
    try:
        studio.stories.set_summary(int(chapter_id), summary)
    except ValueError as exc:  # empty or degenerate: refused, the stored one stays
        raise gr.Error(str(exc)) from exc
    return say(request, "summary_saved", t=studio.stories.chapter(int(chapter_id)).title)


def regenerate_summary(studio, chapter_id, request: gr.Request = None) -> tuple[str, str]:
    """The model's new proposal goes into the editor; nothing is stored until Save."""
    if not chapter_id:
        raise gr.Error(say(request, "pick_chapter"))
    proposal = studio.summarize(studio.stories.chapter(int(chapter_id)).text)
    problem = summary_problem(proposal)
    if problem:
        return gr.skip(), say(request, "summary_bad", why=problem)
    return proposal, say(request, "summary_proposed")


def export_text(studio, story: str, fmt: str) -> str:
    try:
        return str(export_story(studio.stories, story_name(story), fmt,
                                Path(tempfile.mkdtemp(prefix="inkstone-story-"))))
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


def create_story_tab(ctx, story) -> dict:
    studio = ctx.studio
    info = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=2):
            stories = gr.Dataframe(label=i18n("story_list"), interactive=False, wrap=True)
            chapters = gr.Dataframe(label=i18n("chapters"), interactive=False, wrap=True,
                                    column_widths=["8%", "22%", "12%", "58%"])
            chapter_ids = gr.State([])
            with gr.Row():
                fmt = gr.Radio(list(FORMATS), value="md", label=i18n("export_format"))
                export = gr.Button(i18n("export_story"))
            download = gr.File(label=i18n("export_story"))
        with gr.Column(scale=3):
            chapter_id = gr.Number(visible=False, precision=0)
            summary = gr.Textbox(label=i18n("summary"), lines=3)
            with gr.Row():
                save = gr.Button(i18n("save_summary"), variant="primary")
                regen = gr.Button(i18n("regen_summary"))
            note = gr.Markdown()
            text = gr.Textbox(label=i18n("chapter_text"), lines=16, max_lines=30, interactive=False)

    def refresh(s, request: gr.Request):
        table, ids = chapter_table(studio, s, request)
        return story_info(studio, s, request), story_list(studio, request), table, ids

    # Closures with annotations: Gradio hands the request (for the page's language) and the
    # selection only to parameters annotated with their types.
    def pick(ids, evt: gr.SelectData):
        return pick_chapter(studio, ids, evt)

    def save_it(chapter, text, request: gr.Request):
        return save_summary(studio, chapter, text, request)

    def regenerate(chapter, request: gr.Request):
        return regenerate_summary(studio, chapter, request)

    refresh_outputs = [info, stories, chapters, chapter_ids]
    story.change(refresh, story, refresh_outputs, api_name="story_open")
    chapters.select(pick, chapter_ids, [chapter_id, text, summary], api_name=False)
    save.click(save_it, [chapter_id, summary], note, api_name="summary_save").then(
        refresh, story, refresh_outputs, api_name=False)
    regen.click(regenerate, chapter_id, [summary, note], api_name="summary_regenerate")
    export.click(lambda s, f: export_text(studio, s, f), [story, fmt], download, api_name="story_export")
    return {"refresh": refresh, "refresh_outputs": refresh_outputs}
