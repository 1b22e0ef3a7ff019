"""What `prepare` did, as counts a person can check: written to report.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Report:
    books: int = 0
    chapters: int = 0
    train_chunks: int = 0
    val_chunks: int = 0
    train_tokens: int = 0
    val_tokens: int = 0
    train_chapters: int = 0
    val_chapters: int = 0
    train_instruct: int = 0
    val_instruct: int = 0
    split_by: str = "chapter"
    chunk_size: int = 0
    overlap: int = 0
    val_split: float = 0.0
    seed: int = 0
    prompt_format: str = ""
    tokenizer: str = ""
    token_counter: str = ""  # the encoder that counted: fastokens, or the tokenizers library
    # Per input file read: format, encoding (and how it was found), bytes, books, chapters, records.
    files: list[dict] = field(default_factory=list)
    # Files not read at all, with the reason (unsupported, empty, binary, undecodable, no text field...).
    skipped: list[dict] = field(default_factory=list)
    # Problems inside files that were read (broken JSON line, record without text), with file:line.
    errors: list[dict] = field(default_factory=list)
    duplicates: dict = field(default_factory=dict)
    boilerplate: dict = field(default_factory=dict)
    long_chapters_split: int = 0  # chapters over max_chapter_chars, cut into sections
    long_paragraphs_split: int = 0  # paragraphs over one chunk, cut into sentences
    bytes_in: int = 0
    seconds: float = 0.0
    mb_per_s: float = 0.0
    outputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
