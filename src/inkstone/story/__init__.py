"""Story projects: chapters and generation history with provenance, in SQLite."""
