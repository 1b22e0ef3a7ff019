"""Write tab: story text + instruction in, streamed continuation out."""
from __future__ import annotations

import gradio as gr

from ..inference.engine import AdapterError, Finished, GenerationParams, Prepared, Text
from ..inference.prompts import PromptTooLong
from .i18n import i18n

BASE_CHOICE = "(base model)"


def adapter_choices(bridge) -> list[str]:
    return [BASE_CHOICE] + sorted(bridge.available_adapters())


def write_stream(bridge, story_text: str, instruction: str, temperature: float, top_p: float, top_k: float,
                 max_tokens: float, repetition_penalty: float, seed: float, use_memory: bool,
                 adapter: str, story: str):
    """Generator handler: yields (output, status, prompt) as text arrives."""
    if not (story_text or "").strip() and not (instruction or "").strip():
        raise gr.Error("Write something first: a story to continue or an instruction.")
    params = GenerationParams(
        temperature=float(temperature), top_p=float(top_p), top_k=int(top_k), max_tokens=int(max_tokens),
        repetition_penalty=float(repetition_penalty), seed=None if seed is None or int(seed) < 0 else int(seed),
    )
    chosen = None if not adapter or adapter == BASE_CHOICE else adapter
    out, prompt, status = "", "", ""
    try:
        for ev in bridge.stream(instruction or "", story_text or "", params, adapter=chosen,
                                use_memory=bool(use_memory), story=(story or "").strip() or None):
            if isinstance(ev, Prepared):
                prompt = ev.prompt
                used = ", ".join(m.title or m.text[:12] for m in ev.memories) or "—"
                status = f"prompt {ev.prompt_tokens} tokens · memories used: {used}"
                yield out, status, prompt
            elif isinstance(ev, Text):
                out += ev.text
                yield out, status, prompt
            elif isinstance(ev, Finished):
                rate = ev.output_tokens / ev.elapsed_s if ev.elapsed_s else 0.0
                ttft = f"{ev.ttft_s * 1000:.0f} ms" if ev.ttft_s is not None else "—"
                status += f" · {ev.output_tokens} tokens, {rate:.1f} tok/s, first token {ttft} ({ev.finish_reason})"
                yield out, status, prompt
    except (PromptTooLong, AdapterError) as exc:
        raise gr.Error(str(exc)) from exc


def create_write_tab(ctx) -> dict:
    inf = ctx.cfg.inference
    bridge = ctx.bridge
    with gr.Row():
        with gr.Column(scale=3):
            story = gr.Textbox(label=i18n("story"), value="default", max_lines=1)
            story_text = gr.Textbox(label=i18n("story_text"), lines=12, max_lines=40)
            instruction = gr.Textbox(label=i18n("instruction"), lines=3)
            with gr.Row():
                go = gr.Button(i18n("generate"), variant="primary")
                stop = gr.Button(i18n("stop"), variant="stop")
                append = gr.Button(i18n("append"))
            output = gr.Textbox(label=i18n("output"), lines=10, max_lines=40)
            status = gr.Markdown()
            with gr.Accordion(i18n("prompt_seen"), open=False):
                prompt_box = gr.Textbox(show_label=False, lines=10, max_lines=60)
        with gr.Column(scale=1):
            with gr.Row():
                adapter = gr.Dropdown(adapter_choices(bridge), value=_initial_adapter(ctx), label=i18n("adapter"),
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

    def run(*args):
        yield from write_stream(bridge, *args)

    event = go.click(
        run, [story_text, instruction, temperature, top_p, top_k, max_tokens, rep, seed, use_memory, adapter, story],
        [output, status, prompt_box], api_name="write",
    )
    # Cancelling the event closes the handler's generator, which aborts the request in vLLM.
    stop.click(None, None, None, cancels=[event], api_name="stop")
    append.click(lambda s, o: ((s or "") + (o or ""), ""), [story_text, output], [story_text, output], api_name=False)
    refresh.click(lambda: gr.Dropdown(choices=adapter_choices(bridge)), None, adapter, api_name="adapters")
    return {"event": event}


def _initial_adapter(ctx) -> str:
    lora = ctx.cfg.webui.lora
    if lora is None:
        return BASE_CHOICE
    return ctx.bridge.register_adapter(lora)
