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


@attrs.define
class IdleTrim:
    """Whether to trim now, from successive samples of (time, CPU seconds, resident bytes)."""

    growth: int = GROWTH
    quiet_cpu: float = QUIET_CPU
    _floor: int | None = None
    _last: tuple[float, float] | None = None

    def sample(self, *, now: float, cpu_seconds: float, rss: int) -> bool:
        """Take one sample; True when the caller should trim (then call ``trimmed``)."""
        last, self._last = self._last, (now, cpu_seconds)
        if self._floor is None or rss < self._floor:
            self._floor = rss
        if last is None or now <= last[0]:
            return False
        busy = (cpu_seconds - last[1]) / (now - last[0])
        return busy < self.quiet_cpu and rss >= self._floor + self.growth

    def trimmed(self, rss: int) -> None:
        """The resident size after a trim: the new floor to grow from."""
        self._floor = rss


def resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
            policy.trimmed(after)
            log.info("memory: quiet after a burst, returned %d KiB", (rss - after) // 1024)
