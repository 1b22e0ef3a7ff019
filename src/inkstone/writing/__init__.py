"""Writing with the studio: generations that are prepared by the prompt service,
run by the engine and kept in the story's history (the Studio), and many at
once from a file (batch)."""
