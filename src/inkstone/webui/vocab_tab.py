"""Vocabulary tab: a short story that uses a learner's words, streamed round by round,
with the target words highlighted and the missed ones listed; rewrite for the missed
words; compare models on the same words and seed; a resumable batch."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import html
import re
from pathlib import Path
from typing import Optional

import gradio as gr
import pandas as pd

from ..checkpoints import AdapterError
from ..engine.contract import EngineUnavailable, GenerationParams, Text
from ..vocab.batch import run_vocab_batch
from ..vocab.loop import DEFAULT_LENGTH, Round, RoundStarted, VocabStory, run_to_end, write_vocab_story
from ..vocab.matching import WordResult
from ..vocab.wordlists import JLPT_LEVELS, VocabError, Word, WordList, choose_words, draw, words_from_text
from . import vocab_strings
from .i18n import headers, i18n, lang_of
from .write_tab import BASE_CHOICE, adapter_choices

LEVEL_CHOICES = {"ja": list(JLPT_LEVELS[::-1]), "zh": [str(i) for i in range(1, 7)] + ["7-9"], "en": []}
ROUND_COLUMNS = ["round", "mode", "coverage", "missing"]
COMPARE_COLUMNS = ["model", "first_round", "kept", "rounds", "density"]  # header keys (i18n MESSAGES col_*)


def _say(request, key: str, **values) -> str:
    strings = vocab_strings.ZH if lang_of(request) == "zh" else vocab_strings.EN
    return strings[key].format(**values)


def highlight(text: str, results: list[WordResult]) -> str:
    """The story as HTML with each use of a target word marked (its word in the title)."""
    marks = sorted((a, b, r.word) for r in results for a, b in r.spans)
    out, at = [], 0
    for a, b, word in marks:
        if a < at:  # overlapping uses (a word inside a longer one): the first stays marked
            continue
        out.append(html.escape(text[at:a]))
        out.append(f'<mark title="{html.escape(word)}">{html.escape(text[a:b])}</mark>')
        at = b
    out.append(html.escape(text[at:]))
    return '<div class="vocab-story">' + "".join(out).replace("\n", "<br>") + "</div>"


def report_markdown(story: VocabStory, request=None) -> str:
    m = story.metrics
    lines = [_say(request, "vocab_kept", c=m["coverage"], used=m["used"], targets=m["targets"], d=m["density"],
                  length=m["length"], unit=m["length_unit"], why=story.stop_reason)]
    missing = story.analysis.missing
    lines.append(_say(request, "vocab_missing", words="、".join(missing)) if missing
                 else _say(request, "vocab_all_used"))
    if m.get("above_level"):
        lines.append(_say(request, "vocab_above", words="、".join(m["above_level"][:30])))
    lines += [f"- {w}" for w in story.analysis.notes() + story.words.warnings]
    return "\n\n".join(lines)


def rounds_table(rounds: list[Round], request=None) -> pd.DataFrame:
    return pd.DataFrame([[r.number, r.mode, round(r.coverage, 3), "、".join(r.missing)] for r in rounds],
                        columns=headers(request, *ROUND_COLUMNS))


def choose(lang: str, level: str, file, pasted: str, count: float, seed: float, request=None) -> WordList:
    """The words for one story from the tab's settings: pasted words, else the file, else the level."""
    try:
        if (pasted or "").strip():
            return draw(words_from_text(pasted, lang, "pasted list"), int(count), int(seed))
        path = getattr(file, "name", file) if file else None
        if path is None and not level:
            raise VocabError(_say(request, "vocab_no_words"))
        return choose_words(lang, level=None if path else level, words_file=path, n=int(count), seed=int(seed))
    except VocabError as exc:
        raise gr.Error(str(exc)) from exc


def _params(ctx, seed: float) -> GenerationParams:
    params = GenerationParams.from_config(ctx.cfg.inference)
    params.seed = int(seed)
    return params


def _adapter(name: Optional[str]) -> Optional[str]:
    return None if not name or name == BASE_CHOICE else name


def stream_story(ctx, words: WordList, theme: str, length: float, rounds: float, seed: float, adapter: str,
                 revise_from: Optional[str] = None, should_stop=None, request=None):
    """Yield (story html, report, rounds table, state) as the rounds are written."""
    settings = ctx.cfg.vocab.model_copy(update={"max_rounds": int(rounds)})
    done: list[Round] = []
    shown, status = "", ""
    for w in words.warnings:
        gr.Warning(w)
    try:
        for ev in write_vocab_story(ctx.studio, words, theme=theme or "", length=int(length) or None,
                                    settings=settings, params=_params(ctx, seed), adapter=_adapter(adapter),
                                    revise_from=revise_from, should_stop=should_stop):
            if isinstance(ev, RoundStarted):
                shown, status = "", _say(request, "vocab_writing", n=ev.number, mode=ev.mode)
                yield gr.skip(), status, gr.skip(), gr.skip()
            elif isinstance(ev, Text):
                shown += ev.text
                yield html.escape(shown).replace("\n", "<br>"), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(ev, Round):
                done.append(ev)
                status = _say(request, "vocab_round_done", n=ev.number, c=ev.coverage)
                yield gr.skip(), status, rounds_table(done, request), gr.skip()
            elif isinstance(ev, VocabStory):
                state = {"text": ev.text, "lang": words.lang, "words": [dataclasses.asdict(w) for w in words.words],
                         "source": words.source, "level": words.level}
                yield (highlight(ev.text, ev.analysis.results), report_markdown(ev, request), rounds_table(done, request),
                       state)
    except (EngineUnavailable, AdapterError, ValueError) as exc:
        raise gr.Error(str(exc)) from exc


def compare_models(ctx, words: WordList, theme: str, length: float, rounds: float, seed: float,
                   models: list[str], request=None) -> pd.DataFrame:
    """The same words and seed through each chosen model or adapter, at once."""
    settings = ctx.cfg.vocab.model_copy(update={"max_rounds": int(rounds)})

    def one(name: str) -> list:
        story = run_to_end(write_vocab_story(ctx.studio, words, theme=theme or "", length=int(length) or None,
                                             settings=settings, params=_params(ctx, seed), adapter=_adapter(name)))
        first = story.rounds[0].coverage if story.rounds else story.coverage
        return [name, round(first, 3), round(story.coverage, 3), len(story.rounds), story.metrics["density"]]

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(models))) as pool:
        try:
            rows = list(pool.map(one, models or [BASE_CHOICE]))
        except (EngineUnavailable, AdapterError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
    return pd.DataFrame(rows, columns=headers(request, *COMPARE_COLUMNS))


def batch_file(ctx, name: str) -> Path:
    stem = re.sub(r"[^\w.-]+", "-", (name or "").strip()).strip(".-") or "stories"
    return Path(ctx.cfg.data.raw_dir).parent / "vocab" / f"{stem}.jsonl"  # data/vocab beside data/raw


def create_vocab_tab(ctx) -> dict:
    vc = ctx.cfg.vocab
    with gr.Row():
        with gr.Column(scale=1):
            lang = gr.Radio(["ja", "zh", "en"], value="ja", label=i18n("vocab_lang"))
            level = gr.Dropdown(LEVEL_CHOICES["ja"], value="N1", label=i18n("vocab_level"), allow_custom_value=True)
            file = gr.File(label=i18n("vocab_file"), file_types=[".txt", ".csv"])
            pasted = gr.Textbox(label=i18n("vocab_pasted"), lines=3)
            count = gr.Slider(1, 60, value=20, step=1, label=i18n("vocab_count"))
            theme = gr.Textbox(label=i18n("vocab_theme"), max_lines=1)
            length = gr.Number(value=DEFAULT_LENGTH["ja"], precision=0, label=i18n("vocab_length"))
            rounds = gr.Slider(1, 6, value=vc.max_rounds, step=1, label=i18n("vocab_rounds"))
            seed = gr.Number(value=0, precision=0, label=i18n("vocab_seed"))
            adapter = gr.Dropdown(adapter_choices(ctx.adapters), value=BASE_CHOICE, label=i18n("adapter"))
        with gr.Column(scale=3):
            with gr.Row():
                go = gr.Button(i18n("vocab_write"), variant="primary")
                stop = gr.Button(i18n("stop"), variant="stop")
                rewrite = gr.Button(i18n("vocab_rewrite"))
            story_html = gr.HTML(label=i18n("vocab_story"))
            report = gr.Markdown()
            table = gr.Dataframe(headers=headers(None, *ROUND_COLUMNS), label=i18n("vocab_rounds_table"), wrap=True)
            state = gr.State(None)
            with gr.Accordion(i18n("vocab_compare"), open=False):
                models = gr.CheckboxGroup(adapter_choices(ctx.adapters), value=[BASE_CHOICE],
                                          label=i18n("vocab_compare_models"))
                compare_go = gr.Button(i18n("vocab_compare_go"))
                compare_table = gr.Dataframe(headers=headers(None, *COMPARE_COLUMNS))
            with gr.Accordion(i18n("vocab_batch"), open=False):
                with gr.Row():
                    batch_n = gr.Number(value=10, precision=0, minimum=1, label=i18n("vocab_batch_n"))
                    best_of = gr.Number(value=2, precision=0, minimum=1, label=i18n("vocab_best_of"))
                    batch_name = gr.Textbox(value="stories", max_lines=1, label=i18n("vocab_batch_name"))
                batch_go = gr.Button(i18n("vocab_batch_go"))
                batch_note = gr.Markdown()
                batch_out = gr.File()

    lang.change(lambda x: (gr.Dropdown(choices=LEVEL_CHOICES[x], value=(LEVEL_CHOICES[x] or [None])[0]),
                           DEFAULT_LENGTH[x]), lang, [level, length], api_name=False)
    settings = [lang, level, file, pasted, count, theme, length, rounds, seed, adapter]

    def write(request: gr.Request, lang_, level_, file_, pasted_, count_, theme_, length_, rounds_, seed_, adapter_):
        words = choose(lang_, level_, file_, pasted_, count_, seed_, request)
        yield from stream_story(ctx, words, theme_, length_, rounds_, seed_, adapter_,
                                should_stop=ctx.stops.start("vocab", request), request=request)

    def revise(request: gr.Request, st, theme_, length_, rounds_, seed_, adapter_):
        if not st or not (st.get("text") or "").strip():
            raise gr.Error(_say(request, "vocab_no_story"))
        words = WordList([Word(**w) for w in st["words"]], st["source"], st["lang"], st["level"])
        yield from stream_story(ctx, words, theme_, length_, rounds_, seed_, adapter_, revise_from=st["text"],
                                should_stop=ctx.stops.start("vocab", request), request=request)

    def stop_it(request: gr.Request) -> None:
        ctx.stops.raise_("vocab", request)

    def compare(request: gr.Request, lang_, level_, file_, pasted_, count_, theme_, length_, rounds_, seed_,
                adapter_, models_):
        words = choose(lang_, level_, file_, pasted_, count_, seed_, request)
        return compare_models(ctx, words, theme_, length_, rounds_, seed_, models_, request)

    def batch(request: gr.Request, lang_, level_, file_, pasted_, count_, theme_, length_, rounds_, seed_,
              adapter_, n, best, name):
        path = getattr(file_, "name", file_) if file_ else None
        try:
            base = words_from_text(pasted_, lang_, "pasted list") if (pasted_ or "").strip() else \
                choose_words(lang_, level=None if path else level_, words_file=path, default_n=None)
            settings_ = vc.model_copy(update={"max_rounds": int(rounds_)})
            out = batch_file(ctx, name)
            rep = run_vocab_batch(ctx.studio, base, out, stories=int(n), n_words=int(count_), seed=int(seed_),
                                  best_of=int(best), theme=theme_ or "", length=int(length_) or None,
                                  settings=settings_, params=_params(ctx, seed_), adapter=_adapter(adapter_))
        except (VocabError, EngineUnavailable, AdapterError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc
        mean = sum(rep.coverages) / len(rep.coverages) if rep.coverages else 0.0
        return _say(request, "vocab_batch_done", written=rep.written, skipped=rep.skipped, c=mean, path=out), str(out)

    event = go.click(write, settings, [story_html, report, table, state], api_name="vocab")
    rewrite.click(revise, [state, theme, length, rounds, seed, adapter], [story_html, report, table, state],
                  api_name="vocab_rewrite")
    stop.click(stop_it, None, None, api_name="vocab_stop")
    compare_go.click(compare, settings + [models], compare_table, api_name="vocab_compare")
    batch_go.click(batch, settings + [batch_n, best_of, batch_name], [batch_note, batch_out], api_name="vocab_batch")
    def empty_tables(request: gr.Request):
        return (pd.DataFrame(columns=headers(request, *ROUND_COLUMNS)),
                pd.DataFrame(columns=headers(request, *COMPARE_COLUMNS)))

    return {"event": event, "story": story_html, "report": report, "on_load": (empty_tables, [table, compare_table])}
