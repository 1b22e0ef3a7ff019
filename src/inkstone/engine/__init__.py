"""Running the model: the engine contract and its vLLM implementation.

Everything above this package (the prompt service, the studio, the web UI,
the API) sees only `contract.Engine`: token ids in, an async stream of text
out. A remote vLLM server can implement the same contract.
"""
from .contract import (Accepted, Adapter, Engine, EngineUnavailable, Finished, GenerationParams, PromptTooLong,
                       StreamEvent, Text)

__all__ = ["Accepted", "Adapter", "Engine", "EngineUnavailable", "Finished", "GenerationParams", "PromptTooLong",
           "StreamEvent", "Text"]
