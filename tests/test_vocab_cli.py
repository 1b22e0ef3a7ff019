"""`start.py vocab` and `start.py vocab-data` as a user runs them."""
import json

import pytest

from test_cli import cli_env, run  # noqa: F401  (the fixture: start.py's settings pointing at the tiny model)


def test_an_empty_list_is_refused_before_the_engine_starts(cli_env, tmp_path):
    env, _ = cli_env
    empty = tmp_path / "words.txt"
    empty.write_text("\n# none yet\n", encoding="utf-8")
    r = run(["vocab", "--lang", "en", "--words-file", str(empty), "--output", str(tmp_path / "s.json")], env)
    assert r.returncode == 2 and f"error: {empty}: the word list is empty" in r.stderr
    assert "engine" not in r.stderr.lower() and not (tmp_path / "s.json").exists()
    r = run(["vocab", "--lang", "en", "--level", "N1", "--output", str(tmp_path / "s.json")], env)
    assert r.returncode == 2 and "no built-in en levels" in r.stderr


@pytest.mark.slow
def test_vocab_streams_the_story_and_writes_its_json(cli_env, tmp_path):
    env, _ = cli_env
    words = tmp_path / "words.csv"
    words.write_text("word,reading,meaning\ndog,,a pet\ncat,,\nrun,,\ndog,,\n", encoding="utf-8")
    out = tmp_path / "story.json"
    r = run(["vocab", "--lang", "en", "--words-file", str(words), "--rounds", "2", "--max-tokens", "16",
             "--seed", "7", "--theme", "a rainy day", "--output", str(out)], env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 repeated words removed (dog)" in r.stderr and "[round 1: vocab_story]" in r.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [w["word"] for w in data["words"]] == ["dog", "cat", "run"]
    assert all(set(w) >= {"word", "used", "match"} and w["used"] == (w["match"] is not None) for w in data["words"])
    assert data["coverage"] == pytest.approx(sum(w["used"] for w in data["words"]) / 3, abs=1e-4)
    assert 1 <= len(data["rounds"]) <= 2 and all({"coverage", "text"} <= set(x) for x in data["rounds"])
    assert data["seed"] == 7 and data["adapter"] is None and data["model"] and data["lang"] == "en"
    assert data["story"] in r.stdout


def test_vocab_data_turns_accepted_stories_into_training_rows(cli_env, tmp_path):
    env, _ = cli_env
    story = {"story": "The dog ran after the cat.", "coverage": 1.0, "lang": "en", "theme": "a rainy day",
             "words": [{"word": w, "used": True, "match": "lemma"} for w in ("dog", "cat", "run")]}
    (tmp_path / "a.json").write_text(json.dumps(story), encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps(dict(story, coverage=0.3)) + "\n", encoding="utf-8")
    rows = tmp_path / "sft.jsonl"
    r = run(["vocab-data", "--input", str(tmp_path / "a.json"), "--input", str(tmp_path / "b.jsonl"),
             "--output", str(rows)], env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "b.jsonl, line 1: coverage 0.30 below 1.00" in r.stderr and "1 training rows" in r.stdout
    (row,) = [json.loads(line) for line in rows.read_text(encoding="utf-8").splitlines()]
    assert row["completion"] == story["story"] and "dog" in row["prompt"] and "a rainy day" in row["prompt"]
    assert "words" not in row
