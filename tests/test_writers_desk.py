"""A story as a thing the writer opens: its draft kept between visits, its chapters with
summaries they can see and correct, its text as a file, and a page in their language."""
import json

import pytest
from gradio_client import Client

from inkstone.prompting import PromptRequest
from inkstone.story.db import StudioDB
from inkstone.story.export import export_story
from inkstone.story.stories import Stories
from inkstone.story.summary_check import summary_problem


@pytest.mark.parametrize("bad", ["", "   ", "1000000000000000000000000000000", "。。。。。。", "好好好好好好好好好好好好好好",
                                 "宝玉" * 40, "12:30"])
def test_degenerate_summaries_are_refused(bad):
    assert summary_problem(bad)


@pytest.mark.parametrize("good", ["宝玉挨打，黛玉探望。", "Jia Baoyu is beaten by his father; Daiyu visits him.",
                                  "第三回里，黛玉进了荣国府，见到贾母、王熙凤与宝玉，宝玉摔了通灵宝玉。"])
def test_real_summaries_pass(good):
    assert summary_problem(good) is None


def test_a_refused_summary_keeps_the_stored_one(tmp_path):
    stories = Stories(StudioDB(tmp_path / "s.sqlite3"))
    ch = stories.add_chapter("s", "第一章", "宝玉见了黛玉。")
    stories.set_summary(ch.id, "宝玉初见黛玉。")
    with pytest.raises(ValueError, match="summary not saved: the summary has almost no words"):
        stories.set_summary(ch.id, "1000000000000")
    assert stories.chapter(ch.id).summary == "宝玉初见黛玉。"
    with pytest.raises(ValueError, match="no chapter"):
        stories.set_summary(ch.id + 99, "宝玉初见黛玉。")


def test_draft_survives_and_story_overview_lists_chapters(tmp_path):
    db = StudioDB(tmp_path / "s.sqlite3")
    stories = Stories(db)
    stories.add_chapter("红楼", "第一回", "甄士隐梦幻识通灵。")
    stories.save_draft("红楼", "却说黛玉……")
    again = Stories(StudioDB(tmp_path / "s.sqlite3"))  # a later visit: a new process opens the file
    assert again.draft("红楼") == "却说黛玉……"
    top = again.overview()[0]
    assert (top["name"], top["chapters"], top["chars"]) == ("红楼", 1, len("甄士隐梦幻识通灵。"))
    again.delete("红楼")
    assert again.draft("红楼") == "" and "红楼" not in again.names()


ODD = "..红楼 梦?"  # a story name is free text, not a file name


def test_story_exports_as_text_markdown_and_epub(tmp_path):
    stories = Stories(StudioDB(tmp_path / "s.sqlite3"))
    with pytest.raises(ValueError, match="nothing to export"):
        export_story(stories, "空", "md", tmp_path)
    stories.add_chapter(ODD, "第一回", "甄士隐梦幻识通灵。\n贾雨村风尘怀闺秀。")
    stories.add_chapter(ODD, "第二回", "贾夫人仙逝扬州城。")
    stories.save_draft(ODD, "草稿一句。")
    md = export_story(stories, ODD, "md", tmp_path)
    text = md.read_text(encoding="utf-8")
    assert md.parent == tmp_path and md.name == "红楼_梦.md"  # a story name is not a path
    assert text.index("## 第一回") < text.index("## 第二回") < text.index("草稿一句。")
    assert "## " not in export_story(stories, ODD, "txt", tmp_path).read_text(encoding="utf-8")
    from ebooklib import ITEM_DOCUMENT, epub

    book = epub.read_epub(str(export_story(stories, ODD, "epub", tmp_path)))
    pages = [i.get_content().decode("utf-8") for i in book.get_items_of_type(ITEM_DOCUMENT)]
    body = "".join(pages)
    assert "甄士隐梦幻识通灵。" in body and "贾夫人仙逝扬州城。" in body and book.title == ODD
    with pytest.raises(ValueError, match="unknown export format"):
        export_story(stories, ODD, "pdf", tmp_path)


@pytest.mark.slow
def test_a_new_chapter_starts_where_the_last_one_ended(rt):
    studio = rt.studio
    story = "desk-continuity"
    studio.stories.add_chapter(story, "第一回", "前面的事。" * 10 + "宝玉转身出了园门。")
    fresh = studio.prepare(PromptRequest(story=story, story_text="", instruction="接着写"))
    assert "宝玉转身出了园门。" in fresh.text  # an empty draft still continues the story
    draft = studio.prepare(PromptRequest(story=story, story_text="次日清晨，", instruction="接着写"))
    assert draft.text.index("宝玉转身出了园门。") < draft.text.index("次日清晨，")
    # A client that sends the whole story gets no second copy of the ending.
    whole = studio.prepare(PromptRequest(story=story, story_text="前面的事。" * 10 + "宝玉转身出了园门。次日",
                                         instruction="接着写"))
    assert whole.text.split("【正文】")[1].count("宝玉转身出了园门。") == 1


@pytest.mark.slow
def test_writer_sees_and_corrects_chapter_summaries_and_exports_the_story(client, rt):
    story = "desk-story"
    _, note, draft = client.predict(story, "第一回", "宝玉见了黛玉，笑道：这个妹妹我曾见过的。" * 3,
                                    api_name="/accept_chapter")
    assert draft == "" and "Chapter kept" in note
    info, stories, chapters, *_ = client.predict(story, api_name="/story_open")
    assert "1 chapters" in info and story in [r[0] for r in stories["data"]]
    assert chapters["headers"] == ["#", "Title", "Characters", "Summary"]
    assert [r[:2] for r in chapters["data"]] == [[1, "第一回"]]
    (chapter,) = rt.studio.stories.chapters(story)
    with pytest.raises(Exception, match="summary not saved"):
        client.predict(chapter.id, "1000000000000", api_name="/summary_save")
    assert "saved" in client.predict(chapter.id, "宝玉初见黛玉，说似曾相识。", api_name="/summary_save")
    _, _, chapters, *_ = client.predict(story, api_name="/story_open")
    assert chapters["data"][0][3] == "宝玉初见黛玉，说似曾相识。"
    # The corrected summary is what later prompts carry.
    assert "宝玉初见黛玉，说似曾相识。" in rt.studio.prepare(PromptRequest(story=story, instruction="接着写")).text
    proposal, note = client.predict(chapter.id, api_name="/summary_regenerate")
    assert "summary" in note.lower()  # a proposal in the box, or why the model's was not usable
    assert rt.studio.stories.chapter(chapter.id).summary == "宝玉初见黛玉，说似曾相识。"  # nothing stored yet
    exported = client.predict(story, "md", api_name="/story_export")
    assert "## 第一回" in open(exported, encoding="utf-8").read()


@pytest.mark.slow
def test_the_chinese_page_gets_chinese_tables_and_messages(app):
    zh = Client(app[1], verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    zh.predict("", "character", "王熙凤", "凤辣子。", "", "desk-zh", api_name="/memory_save")
    rows = zh.predict("all", "desk-zh", api_name="/memory_list")
    assert rows["headers"] == ["标题", "类别", "内容", "章节"] and rows["data"][0][:2] == ["王熙凤", "人物"]
    with pytest.raises(Exception, match="请输入要搜索的内容"):
        zh.predict("", 3, "desk-zh", api_name="/memory_search")
    assert "引擎" in zh.predict(api_name="/status")
    assert json.dumps(zh.predict("desk-zh", "", api_name="/history_list")["headers"], ensure_ascii=False).count("时间")


def test_both_languages_have_every_string_and_help_follows_the_schema():
    from inkstone.config import Config
    from inkstone.webui.i18n import EN, MESSAGES, ZH

    assert set(EN) == set(ZH)
    assert all(en and zh for en, zh in MESSAGES.values())
    descriptions = {name: f.description for section in Config.model_fields.values()
                    for name, f in getattr(section.annotation, "model_fields", {}).items()}
    for key in (k for k in EN if k.endswith("_info")):
        assert EN[key] == descriptions[key[:-len("_info")]], key


@pytest.mark.slow
def test_a_picture_needs_a_model_that_sees(client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    from test_webui import write_args

    png = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(png)
    # The app serves the tiny text model: the picture is refused with a message, not dropped.
    with pytest.raises(Exception, match="does not read images"):
        client.predict(handle_file(str(png)), *write_args("", ""), api_name="/write_scene")
    with pytest.raises(Exception, match="cannot identify image file .*broken.png"):  # named, refused at upload
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        client.predict(handle_file(str(tmp_path / "broken.png")), *write_args("", ""), api_name="/write_describe")
