"""Inkstone webui."""
