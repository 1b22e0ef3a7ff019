"""A story's text as a file a writer can read elsewhere: plain text, Markdown or EPUB.

The accepted chapters in order, then the draft (the text after the last
accepted chapter) when there is one. EPUB goes through ebooklib, which writes
the container, the navigation document and the table of contents.
"""
from __future__ import annotations

import html
import re
import uuid
from pathlib import Path

from .stories import Stories

FORMATS = ("txt", "md", "epub")
DRAFT_TITLE = "（草稿）"


def safe_file_stem(name: str) -> str:
    """A story name as a file name: story names may hold "/" or ".."."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "story"


def export_story(stories: Stories, story: str, fmt: str, out_dir: Path) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parts = [(title or DRAFT_TITLE, text) for title, text in stories.full_text(story)]
    if not parts:
        raise ValueError(f"story '{story}' has no chapters and no draft yet: nothing to export")
    out = Path(out_dir) / f"{safe_file_stem(story)}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "epub":
        _write_epub(story, parts, out)
    else:
        mark = "## " if fmt == "md" else ""
        text = ("# " if fmt == "md" else "") + story + "\n\n"
        text += "\n\n".join(f"{mark}{title}\n\n{body.strip()}" for title, body in parts)
        out.write_text(text + "\n", encoding="utf-8")
    return out


def _write_epub(story: str, parts: list[tuple[str, str]], out: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(f"inkstone-{uuid.uuid4()}")
    book.set_title(story)
    book.set_language("zh" if re.search(r"[\u4e00-\u9fff]", story + parts[0][1][:200]) else "en")
    chapters = []
    for i, (title, text) in enumerate(parts, 1):
        ch = epub.EpubHtml(title=title, file_name=f"chapter-{i:03d}.xhtml")
        paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n") if p.strip())
        ch.content = f"<h2>{html.escape(title)}</h2>{paragraphs}"
        book.add_item(ch)
        chapters.append(ch)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(out), book)
