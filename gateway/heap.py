"""Give the C heap's free pages back to the system after the big, short-lived jobs.

A checkpoint pickles and compresses the whole folded state (~1 MB) on its own thread,
and a retention pass reads a day of events: glibc keeps the freed chunks inside its
arenas, where later small allocations pin them, so the RSS crept up by ~10 MB over a
90-day soak while what was in use stayed flat (``bench/soak.py --memory``: malloc
"used" 14.2 MB from day 7 on, "free" 3.8 -> 6.3 MB and more). ``malloc_trim(0)``
returns the free pages of every arena (madvise), without moving anything; it costs
about a millisecond per call. Elsewhere than glibc it is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("casegate.heap")


@functools.cache
def _libc_function(name: str, argtypes: tuple, restype):
    """A function of the C library, typed; None where it has none (musl, macOS: no
    malloc_trim nor these mallopt parameters)."""
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


def release_free_memory() -> bool:
    """True when the C library had free pages to return (malloc_trim's answer)."""
    fn = _libc_function("malloc_trim", (ctypes.c_size_t,), ctypes.c_int)
    if fn is None:
        return False
    try:
        return bool(fn(0))
    except Exception as e:    # never let housekeeping break a checkpoint
        log.debug("malloc_trim failed: %r", e)
        return False


# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_AT_BYTES = 256 * 1024
_tuned = False


def keep_big_buffers_out_of_the_heap() -> bool:
    """Serve allocations of MMAP_AT_BYTES and more with their own mmap, returned whole on free.

    glibc starts at 128 kB but raises the threshold (up to 32 MB) each time such a block is
    freed, after which the checkpoint's pickle and zlib buffers (1-4 MB) come from the heap.
    In the checkpoint thread's arena they end in the arena's top chunk, which malloc_trim
    does not return for a thread's arena: the 90-day soak's RSS stepped +4 MB for days at a
    time (malloc "free" 3.5 -> 7.6 MB while in use stayed 14.3). A fixed threshold (setting
    it turns the adjustment off) keeps those buffers out of every arena. Once per process."""
    global _tuned
    if _tuned:
        return True
    fn = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)
    _tuned = fn is not None and bool(fn(_M_MMAP_THRESHOLD, MMAP_AT_BYTES)) and \
        bool(fn(_M_TRIM_THRESHOLD, 2 * MMAP_AT_BYTES))
    return _tuned
