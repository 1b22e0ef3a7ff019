"""Inkstone inference."""
