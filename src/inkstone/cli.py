"""One function per start.py subcommand; each takes the built Config and the parsed flags."""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path


class UserError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def run_doctor(cfg, args) -> int:
    from .system_info import doctor_report

    report, problems = doctor_report(cfg)
    print(report)
    return 1 if problems else 0


def run_prepare(cfg, args) -> int:
    from transformers import AutoTokenizer

    from .data.prepare import SAMPLE_TEXT, PrepareError, prepare
    from .model_files import resolve_base_model

    if args.sample:
        inputs = [SAMPLE_TEXT]
    else:
        inputs = args.input or [cfg.data.raw_dir]
        if not args.input and not Path(cfg.data.raw_dir).is_dir():
            raise UserError(f"no input: put novel .txt files under {cfg.data.raw_dir}, pass --input PATH, or use --sample")
    model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
    if model.note:
        print(f"note: {model.note}", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    try:
        d = cfg.data
        report = prepare(inputs, tokenizer, train_dir=d.train_dir, val_dir=d.val_dir, report_dir=d.prepared_dir,
                         chunk_size=d.chunk_size, overlap=min(d.chunk_overlap, d.chunk_size // 4),
                         val_split=d.val_split, seed=d.seed, extra_boilerplate_patterns=d.extra_boilerplate_patterns,
                         split_by=d.split_by, instructions=d.instruct_pairs, system=cfg.inference.system_prompt,
                         model_name=model.name, fast_counter=d.fast_token_counter)
    except PrepareError as exc:
        raise UserError(str(exc)) from exc
    print(f"prepared {report.books} books, {report.chapters} chapters: {report.train_chunks} train chunks "
          f"({report.train_tokens} tokens), {report.val_chunks} validation chunks ({report.val_tokens} tokens)")
    print(f"report: {Path(cfg.data.prepared_dir) / 'report.json'}")
    return 0


def run_train(cfg, args) -> int:
    from .model_files import resolve_base_model
    from .train.jobs import new_run_name
    from .train.qlora import TrainArgs, TrainingDataError, prepared_split, run_training
    from .train.run_lock import RunBusy

    data = args.data or cfg.data.train_dir
    # The prepared validation split belongs to the prepared training data, not to a file the user names.
    val = args.val_data or (prepared_split(cfg.data.val_dir) if args.data is None else None)
    model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
    if model.note:
        print(f"note: {model.note}", file=sys.stderr)
    run_name = args.run_name or new_run_name()
    targs = TrainArgs(data=Path(data), val_data=Path(val) if val else None, base_model=model.path,
                      output_dir=Path(cfg.train.output_dir) / run_name, train=cfg.train,
                      load_in_4bit=cfg.model.load_in_4bit, resume=args.resume)
    try:
        adapter = run_training(targs)
    except (TrainingDataError, FileNotFoundError, RunBusy) as exc:
        raise UserError(str(exc)) from exc
    print(f"adapter saved: {adapter}")
    return 0


def run_train_vision(cfg, args) -> int:
    from .model_files import resolve_base_model
    from .train.jobs import new_run_name
    from .train.run_lock import RunBusy
    from .vision.pairs import PairDataError
    from .vision.tower import TowerError
    from .vision.train import VisionTrainArgs, run_vision_training

    base = None if args.from_model else resolve_base_model(cfg.model.base, cfg.model.models_dir,
                                                           cfg.model.offline_fallback).path
    run_name = args.run_name or new_run_name("vision")
    vargs = VisionTrainArgs(data=args.data, output_dir=Path(cfg.train.output_dir) / run_name, base_model=base,
                            tower=args.tower, from_model=args.from_model, stage=args.stage,
                            unfreeze_tower=args.unfreeze_tower, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, save_steps=args.save_steps, max_steps=args.max_steps,
                            lora_r=args.lora_r, lora_alpha=2 * args.lora_r, seed=cfg.train.seed,
                            languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
                            resume=args.resume)
    try:
        model = run_vision_training(vargs)
    except (PairDataError, TowerError, FileNotFoundError, RunBusy, ValueError) as exc:
        raise UserError(str(exc)) from exc
    print(f"model saved: {model} (serve it with --model.base {model})")
    return 0


def run_migrate_memory(cfg, args) -> int:
    """Re-embed memories made with another embedder (or an older layout) for the configured one."""
    from .memory.embeddings import load_embedder
    from .memory.store import MemoryStore
    from .process_lock import Busy

    embedder, note = load_embedder(cfg.memory.embedding_model, cfg.memory.offline_fallback)
    if note:
        print(f"note: {note}", file=sys.stderr)
    try:
        store = MemoryStore(cfg.memory.db_dir, embedder)
    except Busy as exc:
        raise UserError(str(exc)) from exc
    try:
        if not store.pending_migration:
            print(f"nothing to migrate: every memory in {cfg.memory.db_dir} is embedded with {embedder.name}")
            return 0
        print(store.migration_note())
        moved = store.migrate(progress=lambda name, n: print(f"  {name}: {n} entries moved so far"))
        print(f"migrated {moved} memories to {embedder.name}")
    finally:
        store.close()
    return 0


def run_compare(cfg, args) -> int:
    from .train.jobs import compare_runs

    rows = compare_runs(cfg.train.output_dir)
    if not rows:
        print(f"no training runs under {cfg.train.output_dir}")
        return 0
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    cols = ["run", "checkpoint", "step", "train_loss", "eval_loss", "eval_ppl"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str("—" if r[c] is None else r[c]).ljust(widths[c]) for c in cols))
    return 0


def run_webui(cfg, args) -> int:
    from .process_lock import Busy
    from .runtime import open_runtime
    from .webui.access import check_exposure
    from .webui.app import AppContext, PortInUse, check_port_free, launch

    w = cfg.webui
    try:  # before the minute-long engine start, not after
        check_exposure(w)
        check_port_free(w.host, w.port)
    except (ValueError, PortInUse) as exc:
        raise UserError(str(exc)) from exc
    notes: list[str] = []
    print("[inkstone] starting the engine (the first start converts the offline model and takes a few minutes)")
    try:
        rt = open_runtime(cfg, notes=notes)
    except Busy as exc:
        raise UserError(str(exc)) from exc
    for n in notes:
        print(f"note: {n}")
    ctx = AppContext(cfg=cfg, rt=rt, notes=notes)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    demo = None
    try:
        demo = launch(ctx, block=False)
        print(f"[inkstone] studio at http://{'localhost' if w.host in ('0.0.0.0', '') else w.host}:{w.port}"
              + (f"  public: {demo.share_url}" if getattr(demo, "share_url", None) else ""))
        done.wait()
    except KeyboardInterrupt:
        print("\n[inkstone] shutting down")
    except PortInUse as exc:
        raise UserError(str(exc)) from exc
    finally:
        if ctx.train_job is not None and ctx.train_job.running:
            # A run outlives the web UI (it has its own session); the next start picks it up again.
            print(f"[inkstone] training run {ctx.train_job.run_dir.name} goes on (pid {ctx.train_job.pid}); "
                  "the next web UI start shows it again")
        if demo is not None:
            demo.close()
        rt.stop()
    return 0


def _check_adapter_early(cfg, path) -> None:
    """A bad adapter folder fails before the engine's minute-long start, not after."""
    from .checkpoints import AdapterError, check_adapter_dir

    if path:
        try:
            check_adapter_dir(path, cfg.model.max_lora_rank)
        except AdapterError as exc:
            raise UserError(str(exc)) from exc


def _print_stream(events) -> None:
    from .engine.contract import Finished, Text

    for ev in events:
        if isinstance(ev, Text):
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        elif isinstance(ev, Finished):
            sys.stdout.write("\n")
            print(f"[{ev.output_tokens} tokens, {ev.output_tokens / max(ev.elapsed_s, 1e-9):.1f} tok/s, "
                  f"finish: {ev.finish_reason}]", file=sys.stderr)


def run_inference(cfg, args) -> int:
    from .checkpoints import AdapterError
    from .engine.contract import GenerationParams
    from .prompting import PromptRequest
    from .runtime import open_runtime

    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    story_text = args.story_text.read_text(encoding="utf-8") if args.story_text else ""
    if not prompt.strip() and not story_text.strip():
        raise UserError("nothing to write from: give a prompt argument, pipe text on stdin, or --story-text FILE")
    _check_adapter_early(cfg, args.lora)
    passage = args.passage.read_text(encoding="utf-8") if args.passage else ""
    # The same request the Write tab makes (or the raw prompt, as the API's completions take it).
    req = PromptRequest(mode="raw" if args.raw else args.mode, story=args.story, story_text=story_text,
                        instruction="" if args.raw else prompt, text=prompt if args.raw else "",
                        passage=passage, use_memory=not args.no_memory, max_tokens=cfg.inference.max_tokens)
    notes: list[str] = []
    rt = open_runtime(cfg, memory=not args.no_memory, notes=notes, memory_required=False,
                      engine=not args.prompt_only)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    try:
        if args.prompt_only:  # what the model would be sent, without generating
            sys.stdout.write(rt.studio.prepare(req).text)
            return 0
        adapter = rt.adapters.register(args.lora, trusted=True) if args.lora else None
        _print_stream(rt.studio.write(req, GenerationParams.from_config(cfg.inference), adapter, source="cli"))
    except (AdapterError, ValueError) as exc:  # PromptTooLong is a ValueError
        raise UserError(str(exc)) from exc
    finally:
        rt.stop()
    return 0


def run_batch(cfg, args) -> int:
    from tqdm import tqdm

    from .engine.contract import GenerationParams
    from .runtime import open_runtime
    from .writing.batch import BatchError, read_items, run_batch as generate_batch

    try:  # a bad file fails before the engine's minute-long start
        read_items(args.input)
    except BatchError as exc:
        raise UserError(str(exc)) from exc
    _check_adapter_early(cfg, args.lora)
    rt = open_runtime(cfg, memory=args.memory, memory_required=False)
    try:
        adapter = rt.adapters.register(args.lora, trusted=True) if args.lora else None
        report = generate_batch(rt.studio, args.input, args.output,
                                params=GenerationParams.from_config(cfg.inference), fmt=args.format,
                                story=args.story, use_memory=args.memory, adapter=adapter,
                                progress=tqdm(unit="item"))
    except BatchError as exc:
        raise UserError(str(exc)) from exc
    finally:
        rt.stop()
    print(report.summary())
    return 0 if report.ok else 1


def run_vocab(cfg, args) -> int:
    """A vocabulary story (or --stories N of them): write, analyse, revise for the missed words."""
    import dataclasses

    from .engine.contract import GenerationParams
    from .runtime import open_runtime
    from .vocab.batch import run_vocab_batch
    from .vocab.console import print_events, write_story_json
    from .vocab.loop import write_vocab_story
    from .vocab.wordlists import VocabError, choose_words

    many = args.stories > 1
    wanted = [w.strip() for w in (args.pick or "").split(",") if w.strip()]
    try:  # a bad list fails before the engine's minute-long start
        words = choose_words(args.lang, level=args.level, words_file=args.words_file, seed=args.seed,
                             n=None if many else args.words, default_n=None if many else 20, wanted=wanted)
    except VocabError as exc:
        raise UserError(str(exc)) from exc
    for w in words.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.remote and args.adapter:
        raise UserError("--adapter names a local adapter; with --remote, set remote.model to the server's name")
    _check_adapter_early(cfg, args.adapter)
    try:
        rt = open_runtime(cfg, memory=False, memory_required=False, remote=args.remote)
    except ValueError as exc:  # --remote without remote.url / remote.model
        raise UserError(str(exc)) from exc
    params = dataclasses.replace(GenerationParams.from_config(cfg.inference), seed=args.seed)
    try:
        adapter = rt.adapters.register(args.adapter, trusted=True) if args.adapter else None
        kw = dict(theme=args.theme, length=args.length, settings=cfg.vocab, params=params, adapter=adapter,
                  story=args.story)
        if many:
            n = args.words or (None if args.words_file else 20)
            print(run_vocab_batch(rt.studio, words, args.output, stories=args.stories, n_words=n, seed=args.seed,
                                  best_of=args.best_of, **kw).summary())
        else:
            write_story_json(print_events(write_vocab_story(rt.studio, words, **kw)), args.output)
            print(f"written: {args.output}", file=sys.stderr)
    except (VocabError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        rt.stop()
    return 0


def _training_prompts(cfg):
    """The prompt service of the model to be trained, without engine, memory or stories: training
    rows carry exactly the prompts the studio will later build for these modes."""
    from transformers import AutoTokenizer

    from .model_files import resolve_base_model
    from .prompt_format import resolve_format
    from .prompting.service import PromptService, PromptSettings

    model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    return PromptService(tokenizer, PromptSettings.from_config(cfg, model.name,
                                                               resolve_format(tokenizer, "auto", model.name)))


def run_vocab_data(cfg, args) -> int:
    """Accepted vocabulary stories -> prompt/completion rows the trainer reads."""
    from .vocab.training import read_stories, sft_rows, write_rows
    from .vocab.wordlists import VocabError

    try:
        stories = read_stories(args.input)
    except VocabError as exc:
        raise UserError(str(exc)) from exc
    prompts = _training_prompts(cfg)
    try:
        rows, report = sft_rows(stories, prompts, min_coverage=args.min_coverage, with_words=args.with_words,
                                words_per_paragraph=cfg.vocab.words_per_paragraph)
    finally:
        prompts.close()
    for why in report.rejected:
        print(f"left out: {why}", file=sys.stderr)
    write_rows(rows, args.output)
    print(f"{report.rows} training rows written to {args.output}")
    return 0


def run_recut(cfg, args) -> int:
    """One episode, or every episode of a folder (resumable: finished ones are skipped)."""
    from .recut.pipeline import RecutError, adapter_for, episodes, prepare, run

    todo, done = episodes(args.input, args.output)
    ready, failed = [], []
    for subs, video, out in todo:  # bad subtitles, videos or targets fail before the engine's minute-long start
        try:
            ready.append((prepare(subs, args.target, args.lang, args.video or video), out))
        except RecutError as exc:
            if not args.input.is_dir():
                raise UserError(str(exc)) from exc
            failed.append(str(exc))
    if done:
        print(f"already cut: {len(done)} episode(s)", file=sys.stderr)
    for episode, _ in ready:  # a bad adapter folder, too, before the engine starts
        _check_adapter_early(cfg, adapter_for(episode.language, cfg.inference.recut_adapters, args.adapter))
    if ready:
        from .runtime import open_runtime

        rt = open_runtime(cfg, memory=False)
        try:
            for episode, out in ready:
                adapter = adapter_for(episode.language, cfg.inference.recut_adapters, args.adapter)
                name = rt.adapters.register(Path(adapter), trusted=True) if adapter else None
                try:
                    tl = run(rt.studio, episode, out, name, str(adapter) if adapter else None,
                             progress=lambda msg: print(msg, file=sys.stderr))
                except RecutError as exc:
                    if not args.input.is_dir():
                        raise UserError(str(exc)) from exc
                    failed.append(str(exc))
                    continue
                for c in tl.clips:
                    print(f"{'hook ' if c.hook else ''}cues {c.first_id}-{c.last_id}: "
                          f"{c.start / 1000:.3f}-{c.end / 1000:.3f} s")
                print(f"written: {Path(out) / 'timeline.json'}")
        finally:
            rt.stop()
    for message in failed:
        print(f"error: {message}", file=sys.stderr)
    return 1 if failed else 0


def run_recut_data(cfg, args) -> int:
    from .recut.align import PairError
    from .recut.training import build_recut_data

    prompts = _training_prompts(cfg)
    try:
        report = build_recut_data(args.pairs, args.output, prompts)
    except PairError as exc:
        raise UserError(str(exc)) from exc
    finally:
        prompts.close()
    print(report.summary())
    print(f"written: {args.output}; train with: start.py train --data {Path(args.output) / 'LANG'}")
    return 0


def run_export(cfg, args) -> int:
    from .export.errors import ExportError
    from .export.locate import resolve_adapter
    from .export.pipeline import run_export as export

    try:
        adapter = resolve_adapter(args.adapter)
        run = adapter.parent.name if adapter.name == "adapter" or adapter.name.startswith("checkpoint-") else adapter.name
        suffix = f"-{args.quant}" if args.format == "gguf" else ""
        out = args.out or Path(cfg.root) / "exports" / f"{run}-{args.format}{suffix}"
        # No --base: the base the adapter was trained on (recorded in adapter_config.json).
        report = export(adapter, args.base, out, fmt=args.format, quant=args.quant, push_to_hub=args.push_to_hub,
                        private=args.private, prepare_report=Path(cfg.data.prepared_dir) / "report.json",
                        overwrite=args.overwrite)
    except ExportError as exc:
        raise UserError(str(exc)) from exc
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return 0


def run_bench(cfg, args) -> int:
    out = args.output or (Path(cfg.root) / "bench-results" / f"{args.what}.json")
    if args.what == "serve":
        from .bench.serve import run_serve_bench

        levels = [int(x) for x in args.streams.split(",") if x.strip()]
        result = run_serve_bench(cfg, levels=levels, max_tokens=args.max_tokens)
    elif args.what == "soak":
        from .bench.soak import run_soak

        streams = int(args.streams) if args.streams.isdigit() else 32
        result = run_soak(cfg, streams=streams, minutes=args.minutes, max_tokens=args.max_tokens)
    elif args.what == "prepare":
        from transformers import AutoTokenizer

        from .bench.prepare import bench_prepare
        from .data.prepare import SAMPLE_TEXT
        from .model_files import resolve_base_model

        model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
        corpus = args.corpus or (cfg.data.sample_corpus if Path(cfg.data.sample_corpus).is_file() else SAMPLE_TEXT)
        result = bench_prepare(Path(corpus), AutoTokenizer.from_pretrained(model.path), None, big_mb=args.big_mb)
    elif args.what == "vocab":
        from .bench.vocab import run_vocab_bench

        result = run_vocab_bench(cfg)
    elif args.what == "recut":
        from .bench.recut import run_recut_bench

        result = run_recut_bench(cfg, args.pairs or Path(cfg.root) / "tests" / "data" / "recut")
    elif args.what == "memory":
        from .bench.memory import run_memory_bench

        result = run_memory_bench(cfg, sizes=[int(x) for x in args.sizes.split(",") if x.strip()])
    elif args.what == "quality":
        from .bench.quality import run_quality_check
        from .model_files import resolve_base_model

        model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
        corpus = Path(args.corpus or cfg.data.sample_corpus)
        if not corpus.is_file():
            raise SystemExit(f"bench quality needs a novel of many chapters: {corpus} not found (--corpus)")
        result = run_quality_check(model.path, corpus, train_chapters=args.train_chapters, steps=args.steps or 20,
                                   seq=args.seq or 512, four_bit=cfg.model.load_in_4bit)
    else:
        from .bench.train import run_train_bench
        from .data.prepare import SAMPLE_TEXT
        from .model_files import resolve_base_model

        model = resolve_base_model(cfg.model.base, cfg.model.models_dir, cfg.model.offline_fallback)
        result = run_train_bench(model.path, args.corpus or SAMPLE_TEXT, steps=args.steps or 12,
                                 seq=args.seq or 512, four_bit=args.four_bit, dtype=args.dtype,
                                 sides=tuple(s.strip() for s in args.sides.split(",") if s.strip()),
                                 repeats=args.repeats)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(result.get("summary", result), indent=2, ensure_ascii=False))
    print(f"written: {out}")
    return 0
