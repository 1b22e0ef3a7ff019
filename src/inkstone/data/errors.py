"""The one error `prepare` raises to its caller: a problem the user can fix."""
from __future__ import annotations


class PrepareError(ValueError):
    """Nothing usable in the inputs, bad arguments, or an output folder that cannot be written."""
