"""Write tab: continue, rewrite or write from an outline, streamed; accept a passage
as a chapter and review the memories the model proposes from it."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from ..checkpoints import AdapterError
from ..engine.contract import EngineUnavailable, Finished, GenerationParams, Text
from ..memory.store import KINDS, MemoryError_
from ..prompting import DEFAULT_STORY, PreparedPrompt, PromptRequest, list_modes, story_name
from ..prompting.modes.extract_memory import ExtractionError, Proposal
from .i18n import i18n

BASE_CHOICE = "(base model)"
PROPOSAL_COLUMNS = ["keep", "kind", "title", "text"]


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


def context_meter(prepared: PreparedPrompt, max_model_len: int) -> str:
    """Where the context goes: the prompt's parts against the model's context, and what was cut."""
    mem = sum(m.tokens for m in prepared.memories)
    summ = sum(s.tokens for s in prepared.summaries)
    parts = [f"prompt {len(prepared.token_ids)} tokens + {prepared.max_tokens} to write, "
             f"of {max_model_len} in context",
             f"memories {mem} tokens ({len(prepared.memories)}): {used_memories(prepared)}"]
    if prepared.summaries:
        parts.append(f"chapter summaries {summ} tokens ({len(prepared.summaries)})")
    cut = []
    if prepared.story_chars_dropped:
        cut.append(f"the oldest {prepared.story_chars_dropped} characters of the story so far")
    if prepared.memories_dropped:
        cut.append(f"{prepared.memories_dropped} less relevant memories")
    if cut:
        parts.append("cut to fit: " + ", ".join(cut))
    return " · ".join(parts)


def write_stream(studio, story_text: str, instruction: str, temperature: float, top_p: float, top_k: float,
                 max_tokens: float, repetition_penalty: float, seed: float, use_memory: bool,
                 adapter: str, story: str, mode: str = "continue", passage: str = "", should_stop=None):
    """Generator handler: yields (output, status, prompt) as text arrives. When
    `should_stop()` turns true (the Stop button) it ends with the text kept."""
    if mode == "continue" and not (story_text or "").strip() and not (instruction or "").strip():
        raise gr.Error("Write something first: a story to continue or an instruction.")
    params = GenerationParams(
        temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), max_tokens=int(max_tokens),
        repetition_penalty=float(repetition_penalty), seed=None if seed is None or int(seed) < 0 else int(seed),
    )
    chosen = None if not adapter or adapter == BASE_CHOICE else adapter
    req = PromptRequest(mode=mode or "continue", story=story, story_text=story_text or "",
                        instruction=instruction or "", passage=passage or "", use_memory=bool(use_memory),
                        max_tokens=int(max_tokens))
    out, prompt, status, finished = "", "", "", False
    try:
        for ev in studio.write(req, params, chosen, source="write", should_stop=should_stop):
            if isinstance(ev, PreparedPrompt):
                prompt = ev.text
                status = context_meter(ev, studio.prompts.settings.max_model_len)
                # A load shows here until the first text arrives (it is usually preloaded on selection).
                loading = chosen and not studio.engine.adapter_ready(studio.adapters.resolve(chosen))
                yield out, status + (" · loading adapter…" if loading else ""), prompt
            elif isinstance(ev, Text):
                out += ev.text
                # Only the text changes while streaming: skipping the other outputs saves the
                # server their postprocessing on every update (it adds up with many writers).
                yield out, gr.skip(), gr.skip()
            elif isinstance(ev, Finished):
                rate = ev.output_tokens / ev.elapsed_s if ev.elapsed_s else 0.0
                ttft = f"{ev.ttft_s * 1000:.0f} ms" if ev.ttft_s is not None else "—"
                status += f" · {ev.output_tokens} tokens, {rate:.1f} tok/s, first token {ttft} ({ev.finish_reason})"
                finished = True
                yield out, status, prompt
        if not finished:  # the writer pressed Stop: a normal end, the text stays
            yield out, f"{status} · stopped after {len(studio.prompts.encode_output(out))} tokens", prompt
    except EngineUnavailable as exc:
        if not out:
            raise gr.Error(f"Engine restarting: {exc}") from exc
        # The text written before the engine went down stays on screen (and in History).
        yield out, f"{status} · ⚠ engine restarting: {exc}", prompt
    except (AdapterError, ValueError) as exc:  # PromptTooLong is a ValueError
        raise gr.Error(str(exc)) from exc


def accept_chapter(studio, story: str, title: str, text: str):
    """Keep the text as a chapter; return the model's memory proposals for review."""
    if not (text or "").strip():
        raise gr.Error("Nothing to accept: the story text is empty.")
    try:
        chapter_id, proposals = studio.accept_chapter(story_name(story), title, text)
    except (ExtractionError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    rows = [[True, p.kind, p.title, p.text] for p in proposals]
    note = f"Chapter kept (#{chapter_id}). {len(rows)} memories proposed: untick what is wrong, edit, then save."
    return pd.DataFrame(rows, columns=PROPOSAL_COLUMNS), note


def save_proposals(studio, story: str, chapter_title: str, table) -> str:
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
    return f"Saved {len(ids)} memories; {len(rows) - len(ids)} rejected."


def _truthy(v) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1", "yes", "y")


def create_write_tab(ctx) -> dict:
    inf = ctx.cfg.inference
    studio = ctx.studio
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                story = gr.Dropdown(studio.stories.names(), value=DEFAULT_STORY, label=i18n("story"),
                                    allow_custom_value=True)
                mode = gr.Radio(mode_choices(), value="continue", label=i18n("mode"))
            story_text = gr.Textbox(label=i18n("story_text"), lines=12, max_lines=40)
            instruction = gr.Textbox(label=i18n("instruction"), lines=2)
            passage = gr.Textbox(label=i18n("passage"), lines=3, visible=False)
            with gr.Row():
                go = gr.Button(i18n("generate"), variant="primary")
                stop = gr.Button(i18n("stop"), variant="stop")
                append = gr.Button(i18n("append"))
            output = gr.Textbox(label=i18n("output"), lines=10, max_lines=40)
            status = gr.Markdown()
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
                max_tokens = gr.Slider(16, 4096, value=inf.max_tokens, step=16, label=i18n("max_tokens"))
                rep = gr.Slider(1.0, 2.0, value=inf.repetition_penalty, step=0.01, label=i18n("rep_penalty"))
                seed = gr.Number(value=-1 if inf.seed is None else inf.seed, precision=0, label=i18n("seed"))

    def run(request: gr.Request, *args):  # Gradio passes the request first, then the inputs
        yield from write_stream(studio, *args, should_stop=ctx.stops.start("write", request))

    event = go.click(
        run, [story_text, instruction, temperature, top_p, top_k, max_tokens, rep, seed, use_memory, adapter, story,
              mode, passage],
        [output, status, prompt_box], api_name="write",
    )
    # Stop raises a flag the handler sees; it ends the stream (vLLM aborts the request) and
    # keeps the text. Cancelling the event instead would cover the text with error badges.
    def stop_writing(request: gr.Request) -> None:
        ctx.stops.raise_("write", request)

    stop.click(stop_writing, None, None, api_name="stop")
    mode.change(lambda m: gr.Textbox(visible=m == "rewrite"), mode, passage, api_name=False)
    append.click(lambda s, o: ((s or "") + (o or ""), ""), [story_text, output], [story_text, output], api_name=False)
    refresh.click(lambda: gr.Dropdown(choices=adapter_choices(ctx.adapters)), None, adapter, api_name="adapters")
    adapter.change(lambda name: preload_adapter(ctx, name), adapter, None, api_name=False)
    accept.click(lambda s, t, x: accept_chapter(studio, s, t, x), [story, chapter_title, story_text],
                 [proposals, props_note], api_name="accept_chapter")
    save_props.click(lambda s, t, rows: save_proposals(studio, s, t, rows), [story, chapter_title, proposals],
                     props_note, api_name="save_proposals")
    return {"event": event, "story": story, "story_text": story_text, "output": output}


def _initial_adapter(ctx) -> str:
    lora = ctx.cfg.webui.lora
    if lora is None:
        return BASE_CHOICE
    name = ctx.adapters.register(lora, trusted=True)  # from the command line or the config
    preload_adapter(ctx, name)
    return name
