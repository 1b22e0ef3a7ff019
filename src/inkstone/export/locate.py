"""What to export from a path the user gave, with export's error type.

The rule itself (adapter folder, or a run's finished adapter/ else its latest
complete checkpoint) lives in inkstone.checkpoints; here its AdapterError
becomes an ExportError, which the export command reports to the user.
"""
from __future__ import annotations

from pathlib import Path

from .. import checkpoints
from .errors import ExportError


def resolve_adapter(path) -> Path:
    """The adapter folder to export from `path`; see `inkstone.checkpoints.resolve_adapter`."""
    try:
        return checkpoints.resolve_adapter(path)
    except checkpoints.AdapterError as exc:
        raise ExportError(str(exc)) from exc
