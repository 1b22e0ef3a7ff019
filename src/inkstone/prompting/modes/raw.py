"""Raw: the client's own prompt text (the /v1 completions API, `inference --raw`).
With memory on, the story's memories go in front of it."""
from . import Mode, register

MODE = register(Mode(
    name="raw", label="原文 Raw prompt", inputs=("text",), layout="raw",
    memory_query=lambda req: req.text[-1000:], for_writers=False,
))
