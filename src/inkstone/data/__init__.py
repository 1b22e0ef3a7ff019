"""Inkstone data."""
