"""Inkstone bench."""
