"""When a sidecar hands its free heap back to the OS (``meshkit.proxy.memory``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meshkit.api.template import SIDECAR_ENV
from meshkit.proxy.memory import IdleTrim, find_malloc_trim

MIB = 1024 * 1024


def test_a_quiet_interval_after_growth_trims_once() -> None:
    policy = IdleTrim(growth=8 * MIB, quiet_cpu=0.05)
    assert not policy.sample(now=0.0, cpu_seconds=1.0, rss=40 * MIB)
    # The burst: the heap grows while the CPU is busy.
    assert not policy.sample(now=2.0, cpu_seconds=3.0, rss=90 * MIB)
    # Quiet (0.02 s of CPU in 2 s) and 50 MiB above the floor: trim.
    assert policy.sample(now=4.0, cpu_seconds=3.02, rss=90 * MIB)
    policy.trimmed(45 * MIB, now=4.0)
    # Quiet again, but nothing grew since the trim: no second walk of the heap.
    assert not policy.sample(now=6.0, cpu_seconds=3.03, rss=46 * MIB)


def test_a_trim_that_came_too_early_is_tried_again_while_the_size_stays_high() -> None:
    """The first quiet interval may come before the burst's objects are freed (a
    loaded machine tears a flood's connections down slowly): the trim then returns
    little, and a later quiet interval must try again, less and less often."""
    policy = IdleTrim(growth=8 * MIB, quiet_cpu=0.05, retry=4.0)
    policy.sample(now=0.0, cpu_seconds=0.0, rss=40 * MIB)
    assert policy.sample(now=2.0, cpu_seconds=0.0, rss=84 * MIB)
    policy.trimmed(83 * MIB, now=2.0)
    assert not policy.sample(now=4.0, cpu_seconds=0.0, rss=83 * MIB)  # before the retry
    assert policy.sample(now=6.0, cpu_seconds=0.0, rss=83 * MIB)
    policy.trimmed(83 * MIB, now=6.0)
    assert not policy.sample(now=12.0, cpu_seconds=0.0, rss=83 * MIB)  # backed off to 8 s
    assert policy.sample(now=14.0, cpu_seconds=0.0, rss=83 * MIB)
    policy.trimmed(44 * MIB, now=14.0)
    assert not policy.sample(now=16.0, cpu_seconds=0.0, rss=44 * MIB)


def test_a_busy_sidecar_is_never_trimmed_however_large() -> None:
    policy = IdleTrim(growth=8 * MIB, quiet_cpu=0.05)
    policy.sample(now=0.0, cpu_seconds=0.0, rss=40 * MIB)
    for step in range(1, 10):
        assert not policy.sample(now=2.0 * step, cpu_seconds=1.0 * step, rss=200 * MIB)


def test_small_growth_is_not_worth_a_trim() -> None:
    policy = IdleTrim(growth=8 * MIB, quiet_cpu=0.05)
    policy.sample(now=0.0, cpu_seconds=0.0, rss=40 * MIB)
    assert not policy.sample(now=2.0, cpu_seconds=0.0, rss=47 * MIB)
    assert policy.sample(now=4.0, cpu_seconds=0.0, rss=48 * MIB)


def _run_as_sidecar(script: str) -> str:
    """What ``script`` prints, run by Python with a sidecar's environment (its allocator)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**SIDECAR_ENV, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def test_freed_memory_returns_to_the_os_under_the_sidecar_allocator() -> None:
    if find_malloc_trim() is None:
        pytest.skip("this C library has no malloc_trim")
    script = """
import gc, sys
from meshkit.proxy.memory import find_malloc_trim, resident_bytes
base = resident_bytes()
keep, junk = [], []
for i in range(400_000):
    (keep if i % 1000 == 0 else junk).append([bytes(40), {i: i}])
peak = resident_bytes()
del junk
gc.collect()
find_malloc_trim()(0)
print(base, peak, resident_bytes())
"""
    out = _run_as_sidecar(script)
    base, peak, after = (int(field) for field in out.split())
    # A survivor every thousand objects pinned pymalloc's arenas at the peak;
    # in the C heap the free pages between them go back.
    assert peak - base > 50 * MIB, (base, peak)
    assert after - base < (peak - base) / 3, (base, peak, after)


def test_the_template_leaves_no_hole_in_its_heap_for_a_fork_to_fill() -> None:
    if find_malloc_trim() is None:
        pytest.skip("this C library is not glibc")
    script = """
import ctypes
from meshkit.proxy.memory import _MallInfo2, fill_heap_holes
info = ctypes.CDLL(None).mallinfo2
info.restype = _MallInfo2
junk = [[bytes(n % 700), {n: n}] for n in range(50_000)]
del junk[::3]  # holes all over the heap, of many sizes
before = info()
fill_heap_holes()
after = info()
print(before.ordblks + before.smblks, after.ordblks + after.smblks)
"""
    out = _run_as_sidecar(script)
    holes_before, holes_after = (int(field) for field in out.split())
    # What is left free is the top chunk (and at most a few chunks the last
    # round's own objects freed): a fork's allocations take fresh pages.
    assert holes_before > 1000, holes_before
    assert holes_after <= 3, holes_after
