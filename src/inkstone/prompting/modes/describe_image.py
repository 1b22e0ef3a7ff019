"""Describe: what a picture shows, in the words a vision model learned from its captions.

train-vision trains on exactly this prompt (with the default instruction), so a
freshly trained model answers it with a caption."""
from . import Mode, register
from ..request import IMAGE_PLACEHOLDER, PromptRequest

DEFAULT_INSTRUCTION = "描述这张图片。"


def needs_image(req: PromptRequest, mode: str) -> None:
    if req.image is None:
        raise ValueError(f"{mode} mode needs an image")


def instruction(req: PromptRequest) -> str:
    needs_image(req, "describe")
    return f"{IMAGE_PLACEHOLDER}\n{req.instruction.strip() or DEFAULT_INSTRUCTION}"


MODE = register(Mode(
    name="describe", label="看图描述 Describe an image", inputs=("image", "instruction"), layout="task",
    instruction=instruction,
    for_writers=False,  # needs a picture: the Write tab's image input asks for it by name, not the mode list
))
