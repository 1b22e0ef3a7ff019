"""Scene from an image: a story scene built on a picture, with story memory as in any writing."""
from . import Mode, register, writing_query
from ..request import IMAGE_PLACEHOLDER, PromptRequest
from .describe_image import needs_image

DEFAULT_INSTRUCTION = "根据这张图片写一个场景，写出画面里的景物、颜色和气氛。"


def instruction(req: PromptRequest) -> str:
    needs_image(req, "scene")
    return f"{IMAGE_PLACEHOLDER}\n{req.instruction.strip() or DEFAULT_INSTRUCTION}"


MODE = register(Mode(
    name="scene", label="看图写场景 Scene from an image", inputs=("image", "story_text", "instruction"),
    layout="writing", instruction=instruction, memory_query=writing_query, summaries=True,
    for_writers=False,  # needs a picture: the Write tab's image input asks for it by name, not the mode list
))
