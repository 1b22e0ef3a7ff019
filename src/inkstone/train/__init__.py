"""Inkstone train."""
