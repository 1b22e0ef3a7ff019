"""Opening pictures with PIL: one RGB image however it came (file, bytes, data URL).

Whatever a training pair or a writer hands in is read whole (a truncated file
fails here, not halfway through training), converted to RGB (palette, grey,
CMYK, transparency) and shrunk when huge, so that the tower's processor always
gets an ordinary RGB picture of bounded size.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Union

# Longest side kept; the tower sees a few hundred pixels at most, and a huge picture only costs memory.
MAX_SIDE = 1024
# PIL refuses pictures above this many pixels as possible decompression bombs; so do we, with a message.
MAX_PIXELS = 20_000 * 20_000

_DATA_URL = re.compile(r"^data:(?P<type>image/[\w.+-]+)?(?P<b64>;base64)?,(?P<data>.*)$", re.S)


class ImageError(ValueError):
    """A picture that cannot be used; the message names it and says why."""


def open_image(source: Union[str, Path, bytes], *, name: str = "", max_side: int = MAX_SIDE):
    """(RGB image, notes): notes say what was changed (converted, resized) for the report."""
    from PIL import Image, UnidentifiedImageError

    label = name or (str(source) if not isinstance(source, bytes) else "the image")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()  # decodes every byte: a truncated file fails here
            notes = []
            if img.mode != "RGB":
                notes.append(f"converted from {img.mode} to RGB")
                img = _to_rgb(img)
            else:
                img = img.copy()
    except FileNotFoundError as exc:
        raise ImageError(f"{label}: file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image PIL can read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: too large to open ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(f"{label}: unreadable image ({exc})") from exc
    if max(img.size) > max_side:
        notes.append(f"resized from {img.size[0]}x{img.size[1]}")
        img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return img, notes


def prompt_image(value, *, max_side: int = MAX_SIDE):
    """A writer's picture for PromptRequest.image: a PIL image (as gr.Image(type="pil") gives
    it), a file path or bytes; RGB and bounded in size, as training saw pictures."""
    from PIL import Image

    if isinstance(value, Image.Image):
        img = _to_rgb(value) if value.mode != "RGB" else value.copy()
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        return img
    return open_image(value, max_side=max_side)[0]


def _to_rgb(img):
    """RGB, transparent parts on white (a transparent background is not black to a writer)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img.convert("RGB")


def image_from_url(url: str, *, max_side: int = MAX_SIDE):
    """The picture in a `data:` URL. Other URLs are refused: the studio fetches nothing from the network."""
    url = (url or "").strip()
    m = _DATA_URL.match(url)
    if m is None:
        if re.match(r"^[a-z][a-z0-9+.-]*://", url, re.I):
            raise ImageError("remote image URLs are not fetched; send the image inline as a data URL "
                             "(data:image/png;base64,...)")
        raise ImageError("image_url must be a data URL (data:image/png;base64,...)")
    if not m.group("b64"):
        raise ImageError("image data URL must be base64-encoded (data:image/...;base64,...)")
    try:
        data = base64.b64decode(m.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"image data URL is not valid base64 ({exc})") from exc
    return open_image(data, name="the image in the data URL", max_side=max_side)[0]
