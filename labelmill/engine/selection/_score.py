"""Which examples get the label+rationale prompt: a pure function of (example id, seed, rate).

A resumed run asks for the same subset and hits the store; raising the rate only adds examples
(the subset at rate r is contained in the subset at any rate above r).
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def selection_score(example_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the id and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{example_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def wants_rationale(example_id: str, seed: int, rate: float) -> bool:
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return selection_score(example_id, seed) < rate
