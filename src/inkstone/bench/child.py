"""Run one side of a benchmark in a fresh interpreter and read back its JSON result.

A child process has its own peak RSS, its own interpreter lock and none of the
parent's history, which is what several benchmarks need to measure fairly.
The child is `python -m <module> args...` and prints its result as the last
line of its standard output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional


def run_json(module: str, *args, what: str, timeout: Optional[float] = None) -> dict:
    import inkstone

    env = dict(os.environ)
    src = str(Path(inkstone.__file__).resolve().parents[1])  # importable even when not installed
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit code {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
