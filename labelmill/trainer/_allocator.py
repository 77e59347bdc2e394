"""Keep freed memory in the process instead of handing it back to the OS after every batch.

glibc serves a block over its mmap threshold (128 KiB at start, raised as big blocks are freed)
with a fresh `mmap` and returns the heap's free top with `trim` once it passes twice that. A
student's forward pass allocates and frees activations of a few MiB per layer, so under the
defaults every batch pays page faults for memory it just gave away: on the demo student that was
a fifth of predict's time, and the share moved from run to run as the dynamic threshold drifted.
Raising both thresholds once keeps the pages mapped; peak RSS does not grow, because the next
batch reuses them. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB (once a process); True if glibc took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc: musl and macOS have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
