"""Image-caption pairs for training: a folder or a saved Hugging Face dataset.

A folder holds `images/` and `captions.json` ({"file name": "caption"}); a
dataset is one saved with `datasets`' `save_to_disk` (a DatasetDict uses its
"train" split), with an image column and a caption column. Every pair is
checked before training starts: each bad pair is reported by name and left
out, the rest are used. A picture that is not RGB is converted and a huge one
resized; those are reported as notes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .images import MAX_SIDE, ImageError, open_image
from .language import KNOWN, caption_language

CAPTIONS_FILE = "captions.json"
IMAGES_DIR = "images"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CAPTION_COLUMNS = ("caption", "text", "captions", "sentence", "description")


class PairDataError(ValueError):
    """Data that cannot be read at all (no pairs, a broken captions.json); the message names the file."""


@dataclass
class Pair:
    name: str  # file name or dataset row, as reports name it
    caption: str
    load: Callable[[], object]  # the RGB image, opened again when training needs it


@dataclass
class PairSet:
    pairs: list[Pair]
    problems: list[str] = field(default_factory=list)  # pairs left out, one line each
    notes: list[str] = field(default_factory=list)  # pairs used after a change (converted, resized)

    def report(self) -> str:
        lines = [f"{len(self.pairs)} pairs used, {len(self.problems)} left out"]
        lines += [f"  left out: {p}" for p in self.problems] + [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def data_kind(data: Path) -> str:
    """folder | dataset; PairDataError when `data` is neither (checked before a run folder is made)."""
    data = Path(data)
    if (data / CAPTIONS_FILE).is_file():
        return "folder"
    if any((data / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
        return "dataset"
    raise PairDataError(f"{data}: neither {CAPTIONS_FILE} with {IMAGES_DIR}/ nor a dataset saved with save_to_disk")


def read_pairs(data: Path, languages: Sequence[str] = KNOWN, max_side: int = MAX_SIDE) -> PairSet:
    data = Path(data)
    found = _folder_pairs(data) if data_kind(data) == "folder" else _dataset_pairs(data)
    checked = _checked(found, languages, max_side)
    if not checked.pairs:
        raise PairDataError(f"{data}: no usable image-caption pairs\n{checked.report()}")
    return checked


@dataclass
class _Found:
    pairs: list[tuple[str, object, str]]  # (name, image source, caption)
    problems: list[str]
    opener: Callable[[object, str, int], object]


def _folder_pairs(data: Path) -> _Found:
    path = data / CAPTIONS_FILE
    try:
        captions = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PairDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise PairDataError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if not isinstance(captions, dict):
        raise PairDataError(f"{path}:1: expected an object mapping image file names to captions")
    images = data / IMAGES_DIR
    files = {p.name: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if images.is_dir() else {}
    pairs, problems = [], []
    for name, caption in captions.items():
        if not isinstance(caption, str):
            problems.append(f"{name}: caption is not text ({type(caption).__name__})")
        elif name not in files:
            problems.append(f"{name}: has a caption but no image in {IMAGES_DIR}/")
        else:
            pairs.append((name, files[name], caption))
    problems += [f"{name}: image without a caption in {CAPTIONS_FILE}" for name in sorted(files) if name not in captions]

    def opener(source, name, max_side):
        return open_image(source, name=name, max_side=max_side)

    return _Found(pairs, problems, opener)


def _dataset_pairs(data: Path) -> _Found:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(data))
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise PairDataError(f"{data}: dataset has no 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    image_col = _image_column(ds, data)
    text_col = next((c for c in CAPTION_COLUMNS if c in ds.column_names), None)
    if text_col is None:
        raise PairDataError(f"{data}: no caption column (looked for {', '.join(CAPTION_COLUMNS)}; "
                            f"columns: {', '.join(ds.column_names)})")
    from datasets import Image as ImageFeature

    raw = ds.cast_column(image_col, ImageFeature(decode=False))  # bytes: a bad picture fails in our check
    pairs, problems = [], []
    for i, row in enumerate(raw):
        name = f"row {i}"
        caption = row[text_col]
        if isinstance(caption, list):  # several captions per picture: the first
            caption = caption[0] if caption else ""
        if not isinstance(caption, str):
            problems.append(f"{name}: caption is not text ({type(caption).__name__})")
            continue
        cell = row[image_col]
        source = (cell or {}).get("bytes") or (cell or {}).get("path")
        if source is None:
            problems.append(f"{name}: has a caption but no image")
            continue
        pairs.append((name, source, caption))

    def opener(source, name, max_side):
        return open_image(source, name=name, max_side=max_side)

    return _Found(pairs, problems, opener)


def _image_column(ds, data: Path) -> str:
    from datasets import Image as ImageFeature

    for name, feature in ds.features.items():
        if isinstance(feature, ImageFeature):
            return name
    if "image" in ds.column_names:
        return "image"
    raise PairDataError(f"{data}: no image column (columns: {', '.join(ds.column_names)})")


def _checked(found: _Found, languages: Sequence[str], max_side: int) -> PairSet:
    out = PairSet(pairs=[], problems=list(found.problems))
    for name, source, caption in found.pairs:
        caption = caption.strip()
        if not caption:
            out.problems.append(f"{name}: empty caption")
            continue
        lang = caption_language(caption)
        if lang not in languages:
            out.problems.append(f"{name}: caption is not in {' or '.join(languages)} ({caption[:40]!r})")
            continue
        try:
            _, notes = found.opener(source, name, max_side)
        except ImageError as exc:
            out.problems.append(str(exc))
            continue
        out.notes += [f"{name}: {n}" for n in notes]
        out.pairs.append(Pair(name, caption, _loader(found.opener, source, name, max_side)))
    return out


def _loader(opener, source, name: str, max_side: int) -> Callable[[], object]:
    return lambda: opener(source, name, max_side)[0]


def split_pairs(pairs: list[Pair], val_share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A fixed, seeded validation share (at least one pair when there are enough to spare)."""
    import random

    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = int(len(pairs) * val_share) if len(pairs) >= 10 else 0
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]

