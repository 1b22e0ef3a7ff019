"""HTTP APIs served beside the web UI."""
