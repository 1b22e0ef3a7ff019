"""Choose which whole chapters (or books) go to validation.

Chunks never cross a chapter, and overlap and instruction context stay inside
one, so assigning whole units keeps every validation sentence out of training.
The choice is a seeded sample of exactly round(n * val_split) units (at least
one when val_split > 0 and there are two or more), the rest train.
"""
from __future__ import annotations

import random


def validation_units(n_units: int, val_split: float, seed: int) -> set[int]:
    if n_units < 2 or val_split <= 0:
        return set()
    n_val = min(max(round(n_units * val_split), 1), n_units - 1)
    return set(random.Random(seed).sample(range(n_units), n_val))
