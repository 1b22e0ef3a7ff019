"""Export a trained adapter: merge it into the base, write a Hugging Face folder
or a GGUF file (+ Ollama Modelfile), verify the result against the adapter on
the base, and optionally push it to the Hub.

    from inkstone.export import run_export, resolve_adapter
    report = run_export(resolve_adapter("checkpoints/first"), None, Path("exports/first"), "gguf")

Heavy libraries (torch, transformers, peft, gguf) are imported inside the
functions that need them, so importing this package is cheap.
"""
from ..checkpoints import is_adapter_dir, run_dir_of
from .errors import ExportError, VerificationError
from .locate import resolve_adapter

__all__ = ["ExportError", "VerificationError", "is_adapter_dir", "resolve_adapter", "run_dir_of", "run_export"]


def run_export(*args, **kwargs) -> dict:
    """See `inkstone.export.pipeline.run_export`."""
    from .pipeline import run_export as _run_export

    return _run_export(*args, **kwargs)
