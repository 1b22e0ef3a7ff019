"""Inkstone: a local studio for writing long fiction with your own language model."""

__version__ = "0.1.0"
