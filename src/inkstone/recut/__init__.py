"""Subtitle recut: an episode's subtitles in, a hook-first short cut out, every clip
traceable to its original timecodes (see pipeline.py for the order of work)."""
