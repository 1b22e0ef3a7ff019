"""Compare tab: one prompt, the same assembled memory context, 2-4 choices side by side.

A choice is a model (the base model or an adapter) with its own sampling
(temperature, top-p, seed), so the same model can also be compared with
itself. The prompt service prepares the prompt once, exactly as Write would
(memories, chapter summaries), and every choice gets those tokens; all
choices run at once in the engine, stream into their columns together and
are kept in the history. "Keep" appends a column's text to the story so far.
"""
from __future__ import annotations

from typing import Optional

import gradio as gr

from ..api.streams import iterate_merged
from ..checkpoints import AdapterError
from ..engine.contract import EngineUnavailable, Finished, GenerationParams, Text
from ..prompting import PromptRequest, story_name
from .i18n import i18n
from .write_tab import BASE_CHOICE, adapter_choices, context_meter, preload_adapter

SLOTS = 4
OFF_CHOICE = "(off)"

def compare_choices(adapters) -> list[str]:
    return [OFF_CHOICE] + adapter_choices(adapters)


def compare_stream(studio, story: str, story_text: str, instruction: str, use_memory: bool, max_tokens: float,
                   repetition_penalty: float, top_k: float, *slots, interval: float = 0.03, should_stop=None):
    """Generator handler. `slots` is SLOTS groups of (model, temperature, top_p, seed).
    Yields (text 1, ..., text SLOTS, status, prompt) as any stream advances."""
    if not (story_text or "").strip() and not (instruction or "").strip():
        raise gr.Error("Write something first: a story to continue or an instruction.")
    chosen: list[tuple[int, Optional[str], GenerationParams]] = []
    for i in range(SLOTS):
        model, temperature, top_p, seed = slots[4 * i: 4 * i + 4]
        if not model or model == OFF_CHOICE:
            continue
        params = GenerationParams(
            temperature=round(float(temperature), 4), top_p=round(float(top_p), 4), top_k=int(top_k), max_tokens=int(max_tokens),
            repetition_penalty=float(repetition_penalty),
            seed=None if seed is None or int(seed) < 0 else int(seed),
        )
        chosen.append((i, None if model == BASE_CHOICE else model, params))
    if len(chosen) < 2:
        raise gr.Error("Pick at least two choices to compare.")

    req = PromptRequest(mode="continue", story=story, instruction=instruction or "", story_text=story_text or "",
                        use_memory=bool(use_memory), max_tokens=int(max_tokens))
    try:
        prepared = studio.prepare(req)
    except ValueError as exc:  # PromptTooLong among them
        raise gr.Error(str(exc)) from exc

    head = context_meter(prepared, studio.prompts.settings.max_model_len)
    texts = [""] * SLOTS
    notes: dict[int, str] = {}

    def status() -> str:
        lines = [head] + [f"**{i + 1}**: {notes[i]}" for i in sorted(notes)]
        return "  \n".join(lines)

    def make_streams():
        return [studio.astream(prepared, req, p, a, source="compare") for _, a, p in chosen]

    yield (*texts, status(), prepared.text)
    try:
        for events in iterate_merged(make_streams, interval=interval, should_stop=should_stop):
            for k, ev in events:
                slot = chosen[k][0]
                if isinstance(ev, Text):
                    texts[slot] += ev.text
                elif isinstance(ev, Finished):
                    rate = ev.output_tokens / ev.elapsed_s if ev.elapsed_s else 0.0
                    notes[slot] = f"{ev.output_tokens} tokens, {rate:.1f} tok/s ({ev.finish_reason})"
            yield (*texts, status(), prepared.text)
    except (ValueError, AdapterError, EngineUnavailable) as exc:
        raise gr.Error(str(exc)) from exc
    for slot, _, _ in chosen:  # Stop ended these early: the text stays, marked as stopped
        notes.setdefault(slot, "stopped")
    yield (*texts, status(), prepared.text)


def keep(story_text: str, text: str) -> str:
    """The story so far with a kept continuation appended."""
    return (story_text or "") + (text or "")


def create_compare_tab(ctx, story) -> dict:
    """`story` is the app's open-story dropdown; the story text starts as its draft."""
    inf = ctx.cfg.inference
    studio = ctx.studio
    interval = ctx.cfg.inference.stream_interval_ms / 1000.0
    use_memory = gr.Checkbox(value=True, label=i18n("use_memory"))
    story_text = gr.Textbox(label=i18n("story_text"), lines=8, max_lines=30)
    instruction = gr.Textbox(label=i18n("instruction"), lines=2)
    with gr.Accordion(i18n("compare_shared"), open=False):
        with gr.Row():
            max_tokens = gr.Slider(16, 4096, value=inf.max_tokens, step=16, label=i18n("max_tokens"))
            rep = gr.Slider(1.0, 2.0, value=inf.repetition_penalty, step=0.01, label=i18n("rep_penalty"))
            top_k = gr.Slider(-1, 200, value=inf.top_k, step=1, label=i18n("top_k"))
    with gr.Row():
        go = gr.Button(i18n("compare_go"), variant="primary")
        stop = gr.Button(i18n("stop"), variant="stop")
        refresh = gr.Button(i18n("refresh"), size="sm")
    choices = compare_choices(ctx.adapters)
    defaults = [BASE_CHOICE, BASE_CHOICE, OFF_CHOICE, OFF_CHOICE]
    temps = [round(t, 2) for t in (inf.temperature, min(2.0, inf.temperature + 0.4), inf.temperature,
                                   inf.temperature)]
    slot_inputs, outputs, keeps, models = [], [], [], []
    with gr.Row(equal_height=False):
        for i in range(SLOTS):
            with gr.Column(min_width=220):
                gr.Markdown(f"**{i + 1}**")
                model = gr.Dropdown(choices, value=defaults[i], label=i18n("compare_model"), allow_custom_value=True)
                temperature = gr.Slider(0.0, 2.0, value=temps[i], step=0.05, label=i18n("temperature"))
                top_p = gr.Slider(0.05, 1.0, value=inf.top_p, step=0.05, label=i18n("top_p"))
                seed = gr.Number(value=-1 if inf.seed is None else inf.seed, precision=0, label=i18n("seed"))
                out = gr.Textbox(label=i18n("output"), lines=12, max_lines=40)
                keep_btn = gr.Button(i18n("compare_keep"), size="sm")
            slot_inputs += [model, temperature, top_p, seed]
            outputs.append(out)
            keeps.append(keep_btn)
            models.append(model)
    status = gr.Markdown()
    with gr.Accordion(i18n("prompt_seen"), open=False):
        prompt_box = gr.Textbox(show_label=False, lines=10, max_lines=60)

    def run(request: gr.Request, *args):  # Gradio passes the request first, then the inputs
        stop_asked = ctx.stops.start("compare", request)
        yield from compare_stream(studio, *args, interval=interval, should_stop=stop_asked)

    def stop_comparing(request: gr.Request) -> None:
        ctx.stops.raise_("compare", request)

    event = go.click(run, [story, story_text, instruction, use_memory, max_tokens, rep, top_k, *slot_inputs],
                     [*outputs, status, prompt_box], api_name="compare")
    # Stop raises a flag: the handler ends every stream (the engine aborts them) and keeps the text.
    stop.click(stop_comparing, None, None, api_name="compare_stop")
    for i, (btn, out) in enumerate(zip(keeps, outputs)):
        btn.click(keep, [story_text, out], story_text, api_name=f"compare_keep_{i + 1}").then(
            lambda name, text: studio.stories.save_draft(story_name(name), text or ""), [story, story_text], None,
            api_name=False)
    refresh.click(lambda: [gr.Dropdown(choices=compare_choices(ctx.adapters)) for _ in models], None, models,
                  api_name="compare_models")
    for model in models:
        model.change(lambda name: preload_adapter(ctx, name), model, None, api_name=False)
    return {"event": event, "outputs": outputs, "story_text": story_text, "keeps": keeps}
