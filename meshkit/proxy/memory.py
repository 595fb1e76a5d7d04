"""Memory back to the OS after a burst: ``malloc_trim`` once the sidecar is quiet.

A flood (rapid reset, thousands of connections) grows the heap; freeing its
objects leaves the pages with the C allocator, which keeps them (the RSS
stayed at the peak).  The sidecar runs with every Python allocation in the
C heap (``meshkit.api.template.SIDECAR_ENV``), so ``malloc_trim(0)`` can
return the free pages, after a full collection has freed the burst's
reference cycles (cancelled tasks and their tracebacks, which hold buffers
and connection state until the oldest generation is collected).  ``IdleTrim`` decides when (pure: samples in, a yes or
no out): the resident size grew since the last trim and the process used
almost no CPU over the last interval, so the trim, which walks the whole
heap, never runs on a busy sidecar's hot path.

``fill_heap_holes`` serves the template (``meshkit.proxy.template``): the
free chunks its imports left all over the C heap would take a forked
sidecar's first allocations, each one copying a page shared with every
other sidecar; allocated once in the template, they leave a sidecar's new
objects to fresh pages at the top of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import resource
from collections.abc import Callable

import attrs
import trio

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
"""Seconds between two samples of the resident size and the CPU time."""
GROWTH = 8 * 1024 * 1024
"""Bytes the resident size must have grown above its floor to be worth a trim."""
QUIET_CPU = 0.05
"""Share of one CPU below which an interval counts as quiet."""
RETRY = 4.0
MAX_RETRY = 60.0
"""Seconds before a trim that left the size high is tried again, doubling up to this."""


@attrs.define
class IdleTrim:
    """Whether to trim now, from successive samples of (time, CPU seconds, resident bytes).

    A trim that leaves the size still ``growth`` above its floor came before the
    burst's objects were freed (a loaded machine tears a flood down slowly), so
    it is tried again on a quiet interval ``retry`` seconds later, the wait
    doubling up to ``max_retry``; one that brought the size down ends the series.
    """

    growth: int = GROWTH
    quiet_cpu: float = QUIET_CPU
    retry: float = RETRY
    max_retry: float = MAX_RETRY
    _floor: int | None = None
    _last: tuple[float, float] | None = None
    _next_try: float = 0.0
    _wait: float = 0.0

    def sample(self, *, now: float, cpu_seconds: float, rss: int) -> bool:
        """Take one sample; True when the caller should trim (then call ``trimmed``)."""
        last, self._last = self._last, (now, cpu_seconds)
        if self._floor is None or rss < self._floor:
            self._floor = rss
        if last is None or now <= last[0] or now < self._next_try:
            return False
        busy = (cpu_seconds - last[1]) / (now - last[0])
        return busy < self.quiet_cpu and rss >= self._floor + self.growth

    def trimmed(self, rss: int, *, now: float) -> None:
        """The resident size after a trim at ``now``."""
        assert self._floor is not None
        if rss >= self._floor + self.growth:
            self._wait = min(self.max_retry, self._wait * 2 if self._wait else self.retry)
            self._next_try = now + self._wait
        else:
            self._floor, self._wait, self._next_try = rss, 0.0, 0.0


def resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2_FIELDS.split(" ")]


# Largest request first, halved down (below the mmap threshold, 128 KiB); then
# each size glibc's per-thread cache keeps chunks for (up to 1032 bytes, by 16).
CACHED_REQUESTS = range(8, 1033, 16)
LARGEST_HOLE = 64 * 1024
HOLE_ROUNDS = 2  # the filling's own Python objects, freed, leave a few chunks for a second round


def fill_heap_holes() -> int:
    """Allocate, and never free, every free chunk of glibc's main heap; how many allocations.

    An allocation came from a hole when it lies below where the heap's top
    chunk started (the break minus ``keepcost``); the first one above ends a
    size.  0 where the C library is not glibc (no ``mallinfo2``).  A few
    thousand allocations, a few milliseconds.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        malloc, sbrk, mallinfo2 = libc.malloc, libc.sbrk, libc.mallinfo2
    except (OSError, AttributeError):
        return 0
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    mallinfo2.restype = _MallInfo2

    # Below where the top chunk starts now: the holes, a finite set (the filling's own
    # objects, freed, make new chunks above it, which must not count).
    top: int = (sbrk(0) or 0) - mallinfo2().keepcost

    def from_a_hole(size: int) -> bool:
        address: int = malloc(size) or top
        return address < top

    count = 0
    for _ in range(HOLE_ROUNDS):
        size = LARGEST_HOLE
        while size >= CACHED_REQUESTS[0]:
            count += 1
            if not from_a_hole(size):
                size //= 2
        for size in CACHED_REQUESTS:  # what the caches keep for exact sizes only
            count += 1
            while from_a_hole(size):
                count += 1
    return count


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_when_idle(interval: float = CHECK_INTERVAL) -> None:
    """For the sidecar's life: hand free heap pages back whenever ``IdleTrim`` says so."""
    trim = find_malloc_trim()
    if trim is None or not os.path.exists("/proc/self/statm"):
        return
    policy = IdleTrim()
    while True:
        await trio.sleep(interval)
        rss = resident_bytes()
        if policy.sample(now=trio.current_time(), cpu_seconds=cpu_seconds(), rss=rss):
            gc.collect()  # the flood's cycles (tasks, tracebacks) hold their buffers until then
            trim(0)
            after = resident_bytes()
            policy.trimmed(after, now=trio.current_time())
            log.info("memory: quiet after a burst, returned %d KiB", (rss - after) // 1024)
