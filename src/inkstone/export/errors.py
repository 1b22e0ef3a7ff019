"""The two ways an export fails: a problem the user can fix (bad path, offline
Hub, unsupported model), and an export that does not match the adapter on its
base model (a bug or a lossy format), which is never reported as a success."""
from __future__ import annotations


class ExportError(RuntimeError):
    """A problem the user can fix; the message names the path, repo or field."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report  # what was done before the failure (e.g. a finished export whose push failed)


class VerificationError(ExportError):
    """The exported model disagrees with the adapter-on-base model beyond tolerance."""
