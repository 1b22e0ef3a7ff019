"""Write tab: continue, rewrite or write from an outline, streamed; accept a passage
as a chapter and review the memories the model proposes from it."""
from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from ..checkpoints import AdapterError
from ..engine.contract import EngineUnavailable, Finished, GenerationParams, Text
from ..memory.store import KINDS, MemoryError_
from ..prompting import PreparedPrompt, PromptRequest, list_modes, story_name
from ..prompting.modes.extract_memory import ExtractionError, Proposal
from ..vision.images import ImageError, prompt_image
from .i18n import headers, i18n, say

BASE_CHOICE = "(base model)"
PROPOSAL_COLUMNS = ["keep", "kind", "title", "text"]
KEPT_VERSIONS = 5  # generated passages the writer can go back to
RUN_SECONDS = 30  # the default length of a run, once this machine's speed is known


def mode_choices() -> list[tuple[str, str]]:
    """The writing modes of the registry, as (label, name)."""
    return [(m.label, m.name) for m in list_modes(for_writers=True)]


def adapter_choices(adapters) -> list[str]:
    return [BASE_CHOICE] + adapters.names()


def preload_adapter(ctx, name: str) -> None:
    """Load a chosen adapter into the engine ahead of the first request that uses it."""
    if name and name not in (BASE_CHOICE, "(off)"):
        try:
            ctx.engine.preload(ctx.adapters.resolve(name))
        except AdapterError as exc:
            gr.Warning(str(exc))


def used_memories(prepared: PreparedPrompt) -> str:
    return ", ".join(m.entry.title or m.entry.text[:12] for m in prepared.memories) or "—"


def context_meter(prepared: PreparedPrompt, max_model_len: int, request=None) -> str:
    """Where the context goes: the prompt's parts against the model's context, and what was cut."""
    mem = sum(m.tokens for m in prepared.memories)
    parts = [say(request, "meter_prompt", p=len(prepared.token_ids), w=prepared.max_tokens, c=max_model_len),
             say(request, "meter_memories", t=mem, n=len(prepared.memories), names=used_memories(prepared))]
    if prepared.summaries:
        parts.append(say(request, "meter_summaries", t=sum(s.tokens for s in prepared.summaries),
                         n=len(prepared.summaries)))
    cut = []
    if prepared.story_chars_dropped:
        cut.append(say(request, "cut_story", n=prepared.story_chars_dropped))
    if prepared.memories_dropped:
        cut.append(say(request, "cut_memories", n=prepared.memories_dropped))
    if cut:
        parts.append(say(request, "meter_cut", what=", ".join(cut)))
    return " · ".join(parts)


def run_estimate(studio, max_tokens: float, request=None) -> str:
    """How long a run of `max_tokens` takes at the speed measured on this machine."""
    rate = studio.history.measured_speed()
    if not rate:
        return ""
    return say(request, "estimate", s=round(int(max_tokens) / rate), n=int(max_tokens), rate=rate)


def default_max_tokens(studio, configured: int) -> int:
    """About RUN_SECONDS of writing at the measured speed, never more than configured."""
    rate = studio.history.measured_speed()
    if not rate:
        return configured
    return int(min(configured, max(64, round(rate * RUN_SECONDS / 16) * 16)))


def write_stream(studio, story_text: str, instruction: str, temperature: float, top_p: float, top_k: float,
                 max_tokens: float, repetition_penalty: float, seed: float, use_memory: bool,
                 adapter: str, story: str, mode: str = "continue", passage: str = "", should_stop=None,
                 request=None, image=None):
    """Generator handler: yields (output, status, prompt) as text arrives. When
    `should_stop()` turns true (the Stop button) it ends with the text kept."""
    if mode == "continue" and not (story_text or "").strip() and not (instruction or "").strip():
        raise gr.Error(say(request, "write_first"))
    studio.stories.save_draft(story_name(story), story_text or "")  # what the writer typed is never lost
    params = GenerationParams(
        temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), max_tokens=int(max_tokens),
        repetition_penalty=float(repetition_penalty), seed=None if seed is None or int(seed) < 0 else int(seed),
    )
    chosen = None if not adapter or adapter == BASE_CHOICE else adapter
    try:
        picture = prompt_image(image) if image is not None else None
    except ImageError as exc:
        raise gr.Error(str(exc)) from exc
    req = PromptRequest(mode=mode or "continue", story=story, story_text=story_text or "",
                        instruction=instruction or "", passage=passage or "", use_memory=bool(use_memory),
                        max_tokens=int(max_tokens), image=picture)
    out, prompt, status, finished = "", "", "", False
    try:
        for ev in studio.write(req, params, chosen, source="write", should_stop=should_stop):
            if isinstance(ev, PreparedPrompt):
                prompt = ev.text
                status = context_meter(ev, studio.prompts.settings.max_model_len, request)
                estimate = run_estimate(studio, max_tokens, request)
                # A load shows here until the first text arrives (it is usually preloaded on selection).
                loading = chosen and not studio.engine.adapter_ready(studio.adapters.resolve(chosen))
                waiting = [x for x in (estimate, loading and say(request, "loading_adapter")) if x]
                yield out, " · ".join([status, *waiting]), prompt
            elif isinstance(ev, Text):
                out += ev.text
                # Only the text changes while streaming: skipping the other outputs saves the
                # server their postprocessing on every update (it adds up with many writers).
                yield out, gr.skip(), gr.skip()
            elif isinstance(ev, Finished):
                rate = ev.output_tokens / ev.elapsed_s if ev.elapsed_s else 0.0
                ttft = f"{ev.ttft_s * 1000:.0f} ms" if ev.ttft_s is not None else "—"
                status += " · " + say(request, "run_done", n=ev.output_tokens, rate=rate, ttft=ttft,
                                      reason=ev.finish_reason)
                finished = True
                yield out, status, prompt
        if not finished:  # the writer pressed Stop: a normal end, the text stays
            yield out, f"{status} · " + say(request, "stopped_after", n=len(studio.prompts.encode_output(out))), prompt
    except EngineUnavailable as exc:
        if not out:
            raise gr.Error(say(request, "engine_restarting", err=exc)) from exc
        # The text written before the engine went down stays on screen (and in History).
        yield out, f"{status} · ⚠ engine restarting: {exc}", prompt
    except (AdapterError, ValueError) as exc:  # PromptTooLong is a ValueError
        raise gr.Error(str(exc)) from exc


def accept_chapter(studio, story: str, title: str, text: str, request=None):
    """Keep the text as a chapter; return the model's memory proposals for review, and an
    empty draft: the next chapter starts from a clean page (its prompt carries the end of
    this one)."""
    if not (text or "").strip():
        raise gr.Error(say(request, "nothing_to_accept"))
    story = story_name(story)
    try:
        accepted = studio.accept_chapter(story, title, text)
    except (ExtractionError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    studio.stories.save_draft(story, "")
    rows = [[True, p.kind, p.title, p.text] for p in accepted.proposals]
    note = say(request, "chapter_kept", id=accepted.chapter_id, n=len(rows))
    if accepted.summary_problem:
        note += say(request, "summary_refused", why=accepted.summary_problem)
    else:
        note += say(request, "summary_is", s=accepted.summary)
    table = pd.DataFrame(rows, columns=headers(request, *PROPOSAL_COLUMNS))
    return table, note, ""


def save_proposals(studio, story: str, chapter_title: str, table, request=None) -> str:
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    kept = []
    for i, row in enumerate(rows):
        keep, kind, title, text = (list(row) + [None] * 4)[:4]
        if not _truthy(keep):
            continue  # rejected: nothing is stored
        if kind not in KINDS:
            raise gr.Error(f"row {i + 1}: kind must be one of {', '.join(KINDS)}")
        kept.append(Proposal(kind, str(title or ""), str(text or "")))
    try:
        ids = studio.apply_proposals(story_name(story), chapter_title or "", kept)
    except MemoryError_ as exc:
        raise gr.Error(str(exc)) from exc
    return say(request, "saved_memories", n=len(ids), r=len(rows) - len(ids))


def _truthy(v) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1", "yes", "y")


def remember_version(versions: list[dict], text: str, seed) -> tuple[list[dict], gr.Radio]:
    """Keep a finished passage among the last KEPT_VERSIONS, newest first."""
    if (text or "").strip() and not (versions and versions[0]["text"] == text):
        versions = [{"text": text, "seed": seed, "at": time.strftime("%H:%M:%S")}, *versions][:KEPT_VERSIONS]
    return versions, version_picker(versions)


def version_picker(versions: list[dict]) -> gr.Radio:
    labels = [(f"{v['at']} · {len(v['text'])} 字" + (f" · seed {v['seed']}" if v["seed"] not in (None, -1) else ""), i)
              for i, v in enumerate(versions)]
    return gr.Radio(choices=labels, value=0 if labels else None, visible=bool(labels))


def create_write_tab(ctx, story) -> dict:
    """`story` is the app's open-story dropdown, shared by the tabs."""
    inf = ctx.cfg.inference
    studio = ctx.studio
    with gr.Row():
        with gr.Column(scale=3):
            mode = gr.Radio(mode_choices(), value="continue", label=i18n("mode"))
            story_text = gr.Textbox(label=i18n("story_text"), lines=12, max_lines=40)
            instruction = gr.Textbox(label=i18n("instruction"), lines=2)
            passage = gr.Textbox(label=i18n("passage"), lines=3, visible=False)
            with gr.Row():
                go = gr.Button(i18n("generate"), variant="primary")
                stop = gr.Button(i18n("stop"), variant="stop")
                append = gr.Button(i18n("append"))
                undo = gr.Button(i18n("undo_append"), size="sm")
            output = gr.Textbox(label=i18n("output"), lines=10, max_lines=40)
            versions_state = gr.State([])
            versions = gr.Radio([], label=i18n("versions"), visible=False)
            status = gr.Markdown()
            with gr.Accordion(i18n("from_picture"), open=False):  # needs a model trained to see (train-vision)
                with gr.Row():
                    picture = gr.Image(type="pil", label=i18n("picture"), height=220)
                    with gr.Column():
                        describe = gr.Button(i18n("describe_picture"))
                        scene = gr.Button(i18n("scene_from_picture"))
            with gr.Accordion(i18n("prompt_seen"), open=False):
                prompt_box = gr.Textbox(show_label=False, lines=10, max_lines=60)
            with gr.Accordion(i18n("accept_chapter"), open=False):
                with gr.Row():
                    chapter_title = gr.Textbox(label=i18n("chapter"), max_lines=1)
                    accept = gr.Button(i18n("accept_and_extract"))
                proposals = gr.Dataframe(headers=PROPOSAL_COLUMNS, datatype=["bool", "str", "str", "str"],
                                         interactive=True, wrap=True, label=i18n("proposals"))
                save_props = gr.Button(i18n("save_proposals"))
                props_note = gr.Markdown()
        with gr.Column(scale=1):
            with gr.Row():
                adapter = gr.Dropdown(adapter_choices(ctx.adapters), value=_initial_adapter(ctx), label=i18n("adapter"),
                                      allow_custom_value=True)
                refresh = gr.Button(i18n("refresh"), size="sm")
            use_memory = gr.Checkbox(value=True, label=i18n("use_memory"))
            with gr.Accordion(i18n("params"), open=True):
                temperature = gr.Slider(0.0, 2.0, value=inf.temperature, step=0.05, label=i18n("temperature"))
                top_p = gr.Slider(0.05, 1.0, value=inf.top_p, step=0.05, label=i18n("top_p"))
                top_k = gr.Slider(-1, 200, value=inf.top_k, step=1, label=i18n("top_k"))
                max_tokens = gr.Slider(16, 4096, value=lambda: default_max_tokens(studio, inf.max_tokens), step=16,
                                       label=i18n("max_tokens"))
                estimate = gr.Markdown()
                rep = gr.Slider(1.0, 2.0, value=inf.repetition_penalty, step=0.01, label=i18n("rep_penalty"))
                seed = gr.Number(value=-1 if inf.seed is None else inf.seed, precision=0, label=i18n("seed"))

    def run(request: gr.Request, *args):  # Gradio passes the request first, then the inputs
        yield from write_stream(studio, *args, should_stop=ctx.stops.start("write", request), request=request)

    event = go.click(
        run, [story_text, instruction, temperature, top_p, top_k, max_tokens, rep, seed, use_memory, adapter, story,
              mode, passage],
        [output, status, prompt_box], api_name="write",
    )
    def picture_run(mode_name: str):
        def run_with_picture(request: gr.Request, image, *args):
            *fields, _mode, passage_text = args  # the picture's own mode instead of the radio's
            yield from write_stream(studio, *fields, mode_name, passage_text, image=image, request=request,
                                    should_stop=ctx.stops.start("write", request))
        return run_with_picture

    inputs = [story_text, instruction, temperature, top_p, top_k, max_tokens, rep, seed, use_memory, adapter, story,
              mode, passage]
    for button, mode_name in ((describe, "describe"), (scene, "scene")):
        button.click(picture_run(mode_name), [picture, *inputs], [output, status, prompt_box],
                     api_name=f"write_{mode_name}").then(
            remember_version, [versions_state, output, seed], [versions_state, versions], api_name=False)

    # Every finished or stopped passage is kept; the writer can go back to any of the last few.
    event.then(remember_version, [versions_state, output, seed], [versions_state, versions], api_name=False)
    versions.input(lambda i, vs: vs[i]["text"] if i is not None and i < len(vs) else gr.skip(),
                   [versions, versions_state], output, api_name=False)

    # Stop raises a flag the handler sees; it ends the stream (vLLM aborts the request) and
    # keeps the text. Cancelling the event instead would cover the text with error badges.
    def stop_writing(request: gr.Request) -> None:
        ctx.stops.raise_("write", request)

    stop.click(stop_writing, None, None, api_name="stop")
    mode.change(lambda m: gr.Textbox(visible=m == "rewrite"), mode, passage, api_name=False)

    # The draft (the story text after the last accepted chapter) lives in the story, not in
    # the page: saved when it changes hands, loaded when a story is opened.
    undo_state = gr.State(None)

    def append_output(name, text, out):
        new = (text or "") + (out or "")
        studio.stories.save_draft(story_name(name), new)
        return new, "", text

    def undo_append(name, before, request: gr.Request):
        if before is None:
            gr.Info(say(request, "undo_nothing"))
            return gr.skip(), gr.skip(), None
        studio.stories.save_draft(story_name(name), before)
        return before, gr.skip(), None

    append.click(append_output, [story, story_text, output], [story_text, output, undo_state], api_name=False)
    undo.click(undo_append, [story, undo_state], [story_text, output, undo_state], api_name=False)
    story_text.blur(lambda name, text: studio.stories.save_draft(story_name(name), text or ""), [story, story_text],
                    None, api_name=False)

    def open_story(name, n, request: gr.Request):
        name = studio.stories.ensure(story_name(name))
        return (studio.stories.draft(name), "", [], gr.Radio(choices=[], visible=False), None,
                run_estimate(studio, n, request))

    story.change(open_story, [story, max_tokens], [story_text, output, versions_state, versions, undo_state,
                                                   estimate], api_name=False)

    def show_estimate(n, request: gr.Request):
        return run_estimate(studio, n, request)

    max_tokens.release(show_estimate, max_tokens, estimate, api_name=False)
    refresh.click(lambda: gr.Dropdown(choices=adapter_choices(ctx.adapters)), None, adapter, api_name="adapters")
    adapter.change(lambda name: preload_adapter(ctx, name), adapter, None, api_name=False)

    def accept_it(name, title, text, request: gr.Request):
        return accept_chapter(studio, name, title, text, request)

    def save_them(name, title, rows, request: gr.Request):
        return save_proposals(studio, name, title, rows, request)

    accept.click(accept_it, [story, chapter_title, story_text], [proposals, props_note, story_text],
                 api_name="accept_chapter")
    save_props.click(save_them, [story, chapter_title, proposals], props_note, api_name="save_proposals")
    return {"event": event, "story_text": story_text, "output": output}


def _initial_adapter(ctx) -> str:
    lora = ctx.cfg.webui.lora
    if lora is None:
        return BASE_CHOICE
    name = ctx.adapters.register(lora, trusted=True)  # from the command line or the config
    preload_adapter(ctx, name)
    return name
