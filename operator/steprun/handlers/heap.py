"""Hand the heap freed after a listing back to the operating system.

kopf lists each watched resource at start and again each time a watch stream ends (in pages,
LIST_CHUNK_SIZE in kopf_handlers.py), and turns every listed object into a Python dict before
the handlers see it. With thousands of retained objects that is MiBs of short-lived objects.
CPython frees them, but glibc keeps the freed memory in its arenas, so the resident size stays
at the listing's peak (measured in bench/results/memory-*.md). Once listing events have
stopped arriving for a moment, a full collection and ``malloc_trim(0)`` return it. Nothing is
lost when the C library has no ``malloc_trim`` (musl): the release is then only the collection.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Awaitable, Callable

# Long enough that one listing (events handed over back to back) counts as one burst.
QUIET_SECONDS = 2.0


class ListingRelease:
    """Decides when a listing is over: kopf hands listed objects to event handlers with
    ``type`` None; watch events carry ADDED/MODIFIED/DELETED and do not delay the release."""

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.quiet_seconds = quiet_seconds
        self.last_listed: float | None = None

    def noted(self, event_type: str | None, now: float) -> None:
        if event_type is None:
            self.last_listed = now

    def due(self, now: float) -> bool:
        return self.last_listed is not None and now - self.last_listed >= self.quiet_seconds

    def released(self) -> None:
        self.last_listed = None


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_heap() -> None:
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


async def release_after_listings(
    tracker: ListingRelease,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    release: Callable[[], None] = release_heap,
) -> None:
    while True:
        await sleep(tracker.quiet_seconds / 2)
        if tracker.due(clock()):
            tracker.released()
            release()
