"""The host's own speed, measured beside the bench's figures: on this host
kind the same work takes up to twice as long in a slow hour (other tenants
of the machine), so a report says how fast its host was while it ran."""
from __future__ import annotations

import random
import time
import zlib


def reference_data() -> bytes:
    """16.3 MB, the same on every run: random blocks between runs of text,
    which deflate does not find trivial."""
    rng = random.Random(17)
    text = b"golden reference workload " * 160
    return b"".join(rng.randbytes(4096) + text for _ in range(2000))


def reference_seconds(rounds: int = 3) -> float:
    """The quickest of `rounds` single-core deflates of reference_data() at
    zlib's level 6, the vmdk's in the package stage."""
    data, best = reference_data(), float("inf")
    for _ in range(rounds):
        start = time.monotonic()
        zlib.compress(data, 6)
        best = min(best, time.monotonic() - start)
    return round(best, 2)
