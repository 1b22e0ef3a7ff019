"""One generation path: Write, Compare, batch, the /v1 API and the CLI build the same
prompt, byte for byte, for the same request in the same story state, and every one of
them is kept in the story's history."""
import json
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT, env_for, tiny_settings
from inkstone.writing.batch import run_batch

pytestmark = pytest.mark.slow

STORY = "one-path"
INSTRUCTION = "写宝玉初见黛玉"
STORY_TEXT = "　　黛玉方进入房时，只见两个人搀着一位鬓发如银的老母迎上来。"
MEMORIES = [("character", "林黛玉", "林如海之女，自幼体弱，初进荣国府。"),
            ("character", "贾宝玉", "衔玉而生，性情乖僻，与黛玉似曾相识。"),
            ("world", "荣国府", "贾府长房，贾母所居。")]
CHAPTER = ("第一回", "甄士隐梦幻识通灵，贾雨村风尘怀闺秀", "黛玉别父进京，投奔外祖母。")


def fill(memory, stories):
    """The story state every entry point sees: memories and one accepted chapter."""
    for kind, title, text in MEMORIES:
        memory.call("add", kind, text, title=title, story=STORY)
    chapter = stories.add_chapter(STORY, CHAPTER[0], CHAPTER[1])
    stories.set_summary(chapter.id, CHAPTER[2])


def history_prompts(studio, source):
    return [e.prompt for e in studio.history.list(story=STORY) if e.source == source]


def test_every_entry_point_builds_the_same_prompt(app, client, rt, tmp_path, tiny_model):
    ctx, url = app
    fill(rt.memory, rt.studio.stories)

    # Write tab, through the running app
    _, status, write_prompt = client.predict(STORY_TEXT, INSTRUCTION, 0.0, 1.0, -1, 16, 1.0, 1, True, "(base model)",
                                             STORY, "continue", "", api_name="/write")
    assert "林如海之女" in write_prompt and CHAPTER[2] in write_prompt and STORY_TEXT in write_prompt

    # Compare tab: two choices from one prompt
    slots = ["(base model)", 0.0, 1.0, -1, "(base model)", 0.7, 1.0, 3] + ["(off)", 0.0, 1.0, -1] * 2
    *_, compare_prompt = client.predict(STORY, STORY_TEXT, INSTRUCTION, True, 16, 1.0, -1, *slots,
                                        api_name="/compare")

    # batch, in this process, over the same studio
    src = tmp_path / "items.jsonl"
    src.write_text(json.dumps({"prompt": INSTRUCTION, "story_text": STORY_TEXT}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    from inkstone.engine.contract import GenerationParams

    report = run_batch(rt.studio, src, tmp_path / "out.jsonl", params=GenerationParams(max_tokens=16),
                       story=STORY, use_memory=True)
    assert report.ok and report.generated == 1

    # the /v1 API, asking for the Write tab's mode; echo returns the prompt before the text
    body = {"model": ctx.engine.model_name, "prompt": INSTRUCTION, "max_tokens": 16, "echo": True,
            "temperature": 0.0, "inkstone": {"story": STORY, "use_memory": True, "mode": "continue",
                                             "story_text": STORY_TEXT}}
    r = httpx.post(url + "v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    api_text = r.json()["choices"][0]["text"]
    assert api_text.startswith(write_prompt)

    assert compare_prompt == write_prompt
    listed = httpx.get(url + "v1/modes", timeout=30).json()["data"]
    assert [m["id"] for m in listed if m["writing"]] == ["continue", "rewrite", "outline"]
    for source in ("write", "compare", "batch", "api"):
        prompts = history_prompts(rt.studio, source)
        assert prompts and set(prompts) == {write_prompt}, source
    api_entry = next(e for e in rt.studio.history.list(story=STORY) if e.source == "api")
    assert {m["title"] for m in api_entry.memories} <= {t for _, t, _ in MEMORIES} and api_entry.memories

    # the CLI, in its own process, over a copy of the same story state
    work = tmp_path / "cli"
    settings = tiny_settings(tiny_model, work)
    from inkstone.config import build_config
    from inkstone.runtime import open_memory
    from inkstone.story.db import StudioDB
    from inkstone.story.stories import Stories

    cli_cfg = build_config(**settings)
    memory = open_memory(cli_cfg, [])
    try:
        fill(memory, Stories(StudioDB(cli_cfg.memory.studio_db)))
    finally:
        memory.close()
    (tmp_path / "story.txt").write_text(STORY_TEXT, encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "start.py"), "inference", INSTRUCTION, "--prompt-only",
                          "--story", STORY, "--story-text", str(tmp_path / "story.txt"), "--max-tokens", "16"],
                         env=env_for(settings), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == write_prompt
