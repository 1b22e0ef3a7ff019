"""Chat: the client's messages under the model's chat template (the /v1 chat API).
With memory on, the story's memories go in front of the latest user message."""
from . import Mode, register


def latest_user_text(req) -> str:
    users = [m["content"] for m in req.messages if m.get("role") == "user"]
    return users[-1][-1000:] if users else ""


MODE = register(Mode(
    name="chat", label="对话 Chat", inputs=("messages",), layout="chat",
    memory_query=latest_user_text, for_writers=False,
))
