"""The Compare tab on a small Gradio app of its own, driven through gradio_client."""
import gradio as gr
import pytest
from gradio_client import Client

from conftest import free_port, wait_until
from inkstone.engine.contract import GenerationParams
from inkstone.webui.compare_tab import OFF_CHOICE, create_compare_tab
from inkstone.webui.write_tab import BASE_CHOICE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compare_app(cfg, rt, tiny_lora):
    from inkstone.webui.app import AppContext

    lora = rt.adapters.register(tiny_lora, name="cmp-lora")
    ctx = AppContext(cfg=cfg, rt=rt)
    with gr.Blocks() as demo:
        story = gr.Dropdown(["default"], value="default", allow_custom_value=True)  # the app's open story
        create_compare_tab(ctx, story)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False), lora
    demo.close()


def args(story_text, instruction, slots, *, story="default", mem=False, max_tokens=32, rep=1.0, top_k=-1):
    flat = []
    for model, temperature, seed in slots + [(OFF_CHOICE, 0.0, -1)] * (4 - len(slots)):
        flat += [model, temperature, 1.0, seed]
    return (story, story_text, instruction, mem, max_tokens, rep, top_k, *flat)


def test_choices_stream_side_by_side_from_one_prompt(compare_app, rt):
    client, lora = compare_app
    slots = [(BASE_CHOICE, 0.0, -1), (lora, 0.0, -1), (BASE_CHOICE, 1.0, 5)]
    job = client.submit(*args("宝玉笑道：", "写下去", slots, max_tokens=200), api_name="/compare")
    updates = list(job)
    *texts, status, prompt = job.outputs()[-1]
    assert all(texts[:3]) and texts[3] == ""
    assert status.count("200 tokens") == 3
    # all three advanced together, not one after another
    assert any(u[0] and u[1] and u[2] and "tokens," not in u[4] for u in job.outputs())
    assert len(updates) >= 3
    # every choice got the same prompt: the base column is what the engine gives for it
    greedy = GenerationParams(temperature=0.0, max_tokens=200, repetition_penalty=1.0)
    assert texts[0] == rt.engine.generate_text(rt.prompts.encode_recorded(prompt, "continue"), greedy)
    assert texts[1] != texts[0]  # the adapter


def test_memory_context_is_assembled_once_for_all(compare_app, rt):
    client, lora = compare_app
    rt.memory.call("add", "world", "大观园，元妃省亲时所建的园子。", title="大观园", story="cmp-story")
    slots = [(BASE_CHOICE, 0.0, -1), (lora, 0.0, -1)]
    *_, status, prompt = client.predict(*args("", "写大观园的夜景", slots, story="cmp-story", mem=True),
                                        api_name="/compare")
    assert "元妃省亲" in prompt and "大观园" in status


def test_keep_appends_a_column_to_the_story(compare_app):
    client, _ = compare_app
    assert client.predict("宝玉笑道：", "你又来了。", api_name="/compare_keep_2") == "宝玉笑道：你又来了。"


def test_fewer_than_two_choices_is_refused(compare_app):
    client, _ = compare_app
    with pytest.raises(Exception, match="at least two"):
        client.predict(*args("宝玉", "", [(BASE_CHOICE, 0.0, -1)]), api_name="/compare")


def test_stop_aborts_every_choice_in_the_engine(compare_app, rt):
    client, lora = compare_app
    slots = [(BASE_CHOICE, 0.0, -1), (lora, 0.8, 1)]
    job = client.submit(*args("宝玉", "", slots, max_tokens=900), api_name="/compare")
    wait_until(lambda: rt.engine.engine.get_num_unfinished_requests() == 2, timeout=30, interval=0.05)
    job.cancel()
    wait_until(lambda: rt.engine.engine.get_num_unfinished_requests() == 0, timeout=20)


def test_the_stop_button_keeps_every_column_and_says_stopped(compare_app, rt):
    client, lora = compare_app
    slots = [(BASE_CHOICE, 0.0, -1), (lora, 0.8, 1)]
    job = client.submit(*args("宝玉", "", slots, max_tokens=900), api_name="/compare")
    wait_until(lambda: any(o[0] and o[1] for o in job.outputs()), timeout=60, interval=0.05)
    client.predict(api_name="/compare_stop")
    *texts, status, prompt = job.result(timeout=60)
    assert texts[0] and texts[1] and status.count("stopped") == 2
    wait_until(lambda: rt.engine.engine.get_num_unfinished_requests() == 0, timeout=20)
