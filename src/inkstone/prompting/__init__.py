"""The prompt service: every generation's prompt is built here, and only here.

A `PromptRequest` (story, mode, instruction, story text, memory on/off, max
tokens) goes in; a `PreparedPrompt` comes out: the prompt text, its token ids,
and the memories and chapter summaries it used, with their token costs. Write,
Compare, batch, the /v1 API and the CLI all call `PromptService.prepare`.
"""
from .modes import Mode, get_mode, list_modes
from .request import DEFAULT_STORY, PreparedPrompt, PromptRequest, UsedMemory, UsedSummary, story_name
from .service import PromptService

__all__ = ["DEFAULT_STORY", "Mode", "PreparedPrompt", "PromptRequest", "PromptService", "UsedMemory", "UsedSummary",
           "get_mode", "list_modes", "story_name"]
