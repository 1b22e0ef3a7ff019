"""The vocabulary loop through the real Studio and vLLM engine (the tiny model): rounds kept in
the history with their coverage, streaming, revision prompts, stopping, batch and training rows.

A tiny random model does not use the words on purpose, so these tests check the loop's
mechanics against what the analyser finds in whatever the model wrote."""
import json

import pytest

from inkstone.engine.contract import GenerationParams, Text
from inkstone.vocab.batch import run_vocab_batch
from inkstone.config import VocabConfig
from inkstone.vocab.loop import Round, RoundStarted, VocabStory, run_to_end, write_vocab_story
from inkstone.vocab.rounds import VocabRounds
from inkstone.vocab.training import read_stories, sft_rows
from inkstone.vocab.wordlists import Word, WordList

pytestmark = pytest.mark.slow

PARAMS = GenerationParams(temperature=1.0, top_p=1.0, top_k=-1, repetition_penalty=1.0, seed=5)
# Words the tiny model (trained on 红楼梦's characters) writes now and then, and words it never will.
COMMON = ["了", "的", "是", "不", "人", "一"]
NEVER = ["充电宝", "共享单车", "外卖"]


def zh_words(words):
    return WordList([Word(w) for w in words], "test list", "zh")


def test_rounds_stream_and_are_kept_in_history_with_coverage(rt):
    settings = VocabConfig(max_rounds=3, target_coverage=1.0, max_tokens=24)
    events = list(write_vocab_story(rt.studio, zh_words(COMMON + NEVER), theme="城市", settings=settings,
                                    params=PARAMS, story="vocab-rounds"))
    story = events[-1]
    assert isinstance(story, VocabStory)
    rounds = [e for e in events if isinstance(e, Round)]
    assert rounds == story.rounds and 1 <= len(rounds) <= 3
    assert [e.number for e in events if isinstance(e, RoundStarted)] == [r.number for r in rounds]
    assert rounds[0].mode == "vocab_story" and all(r.mode == "vocab_revise" for r in rounds[1:])

    # The text streams round by round, as written.
    streamed, current = [], None
    for e in events:
        if isinstance(e, RoundStarted):
            current = []
        elif isinstance(e, Text):
            current.append(e.text)
        elif isinstance(e, Round):
            streamed.append("".join(current).strip())
    assert streamed == [r.text for r in rounds]

    # Never-used words stay missing, so the target is never reached: the loop ends for want of gain or rounds.
    assert all(w in r.missing for r in rounds for w in NEVER)
    coverages = [r.coverage for r in rounds]
    if len(rounds) < 3:
        assert story.stop_reason == "no gain" and coverages[-1] <= max(coverages[:-1])
    else:
        assert story.stop_reason in ("max rounds", "no gain")
    assert story.coverage == max(coverages) and story.text == rounds[coverages.index(max(coverages))].text

    # Each round is a history entry of its own, with its coverage beside it.
    entries = {e.id: e for e in rt.studio.history.list(story="vocab-rounds")}
    kept = VocabRounds(rt.studio.db_path).of_run(story.run)
    assert [k["round"] for k in kept] == [r.number for r in rounds]
    for k, r in zip(kept, rounds):
        entry = entries[k["history_id"]]
        assert entry.source == "vocab" and entry.mode == r.mode and entry.output.strip() == r.text
        assert entry.params["seed"] == PARAMS.seed + r.number - 1
        assert k["coverage"] == pytest.approx(r.coverage) and k["missing"] == r.missing
    assert all(w in entries[kept[0]["history_id"]].prompt for w in COMMON + NEVER)  # the plan names every word

    out = story.as_json()
    assert out["story"] == story.text and out["seed"] == PARAMS.seed and out["model"] == rt.engine.model_name
    assert [w["word"] for w in out["words"]] == COMMON + NEVER and out["metrics"]["targets"] == 9
    assert [r["coverage"] for r in out["rounds"]] == [round(c, 4) for c in coverages]


def test_revision_names_only_the_missing_words_and_a_round_without_gain_stops(rt):
    start = "我今天很高兴，喝了一杯咖啡。"  # uses 高兴 and 咖啡
    words = zh_words(["高兴", "咖啡", "充电宝", "共享单车"])
    settings = VocabConfig(max_rounds=3, max_tokens=16)
    story = run_to_end(write_vocab_story(rt.studio, words, settings=settings, params=PARAMS,
                                         story="vocab-revise", revise_from=start))
    first = story.rounds[0]
    assert first.mode == "vocab_revise"
    head, keep = first.instruction.splitlines()[:2]
    assert "充电宝" in head and "共享单车" in head and "高兴" not in head and "咖啡" not in head
    assert "高兴" in keep and "咖啡" in keep and "充电宝" not in keep
    (entry,) = [e for e in rt.studio.history.list(story="vocab-revise") if e.id == first.history_id]
    assert head in entry.prompt and start in entry.prompt
    # The tiny model never writes 充电宝 or 共享单车, so its rewrite cannot beat the start's half:
    # no gain, and the start is kept.
    assert first.coverage <= 0.5 and all(w in first.missing for w in NEVER[:2])
    assert story.stop_reason == "no gain" and len(story.rounds) == 1
    assert story.text == start and story.coverage == 0.5


def test_a_story_that_uses_every_word_is_not_revised(rt):
    story = run_to_end(write_vocab_story(rt.studio, zh_words(["高兴"]), params=PARAMS, story="vocab-done",
                                         revise_from="我很高兴。"))
    assert story.rounds == [] and story.stop_reason == "target" and story.coverage == 1.0


def test_batch_keeps_the_best_of_n_and_resumes(rt, tmp_path):
    words = zh_words(COMMON + NEVER)
    out = tmp_path / "stories.jsonl"
    settings = VocabConfig(max_rounds=1, max_tokens=16)
    report = run_vocab_batch(rt.studio, words, out, stories=2, n_words=4, seed=1, best_of=2, settings=settings,
                             params=PARAMS, story="vocab-batch")
    assert (report.written, report.skipped) == (2, 0)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    for r in rows:
        assert len(r["words"]) == 4 and len(r["candidates"]) == 2 and r["coverage"] == max(r["candidates"])
    assert [w["word"] for w in rows[0]["words"]] != [w["word"] for w in rows[1]["words"]]  # seed + i draws

    # A crash mid-line leaves a cut record: it is dropped and that story written again.
    data = out.read_bytes()
    out.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 1] + b'{"index": 1, "ke')
    again = run_vocab_batch(rt.studio, words, out, stories=2, n_words=4, seed=1, best_of=2, settings=settings,
                            params=PARAMS, story="vocab-batch")
    assert (again.written, again.skipped) == (1, 1)
    assert [json.loads(line)["index"] for line in out.read_text(encoding="utf-8").splitlines()] == [0, 1]


def test_accepted_stories_become_training_rows_with_the_first_round_prompt(rt, tmp_path):
    good = {"story": "我今天很高兴。", "coverage": 1.0, "lang": "zh", "theme": "日常", "length": 100,
            "words": [{"word": "高兴", "used": True, "match": "lemma"}]}
    weak = dict(good, coverage=0.5)
    (tmp_path / "good.json").write_text(json.dumps(good, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "more.jsonl").write_text(json.dumps(weak, ensure_ascii=False) + "\n", encoding="utf-8")
    stories = read_stories([tmp_path / "good.json", tmp_path / "more.jsonl"])
    rows, report = sft_rows(stories, rt.prompts, min_coverage=1.0, with_words=True)
    assert report.rows == 1 and "more.jsonl, line 1: coverage 0.50 below 1.00" in report.rejected[0]
    (row,) = rows
    assert row["completion"] == "我今天很高兴。" and row["words"] == good["words"]
    assert "高兴" in row["prompt"] and "日常" in row["prompt"]
    # The very prompt the loop's first round sends for the same words.
    from inkstone.prompting import PromptRequest
    from inkstone.prompting.modes.vocab_story import brief

    brief_text = brief("zh", [["高兴"]], "日常", 100)
    assert row["prompt"] == rt.prompts.prepare(PromptRequest(mode="vocab_story", instruction=brief_text,
                                                             use_memory=False)).text
    (tmp_path / "bad.jsonl").write_text('{"story": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: not a vocabulary story"):
        read_stories([tmp_path / "bad.jsonl"])
