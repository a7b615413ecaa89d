"""Interleaved timing of train steps, summary statistics, and process memory probes.

Method (per workload, all implementations in one process):

1. Warm up each implementation: its first step (tracing, building, kernel selection) is
   excluded, then it runs for ``warmup_s`` seconds (at least ``MIN_WARMUP_STEPS`` steps).
2. Calibrate a block length ``n`` per implementation so that one block takes about
   ``block_s`` seconds (at least one step).
3. Run ``rounds`` rounds; each round times one block of every implementation, in an order that
   rotates every round (ABC, BCA, CAB, ...), so slow drift of the machine (another process
   starting, thermal limits) hits every implementation alike. A block ends with the
   implementation's ``sync()`` (waits for queued GPU work) inside the timed region.
4. Report, per implementation, the median per-step time over rounds and the spread
   (quartiles, min, max) of the per-round values.

The Python garbage collector stays on (as in a real training loop).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.workloads import Impl

__all__ = [
    "MIN_WARMUP_STEPS",
    "current_rss_mb",
    "interleaved",
    "peak_rss_mb",
    "reset_peak_rss",
    "summarize",
]

MIN_WARMUP_STEPS = 3


class _Runner:
    """Runs blocks of steps of one implementation, cycling through its batches."""

    def __init__(self, impl: Impl) -> None:
        self.impl = impl
        self.index = 0

    def block(self, n: int) -> float:
        """Run ``n`` steps (then ``sync``); return the seconds per step."""
        step, batches, k = self.impl.step, self.impl.batches, len(self.impl.batches)
        i = self.index
        start = time.perf_counter()
        for _ in range(n):
            step(*batches[i % k])
            i += 1
        self.impl.sync()
        elapsed = time.perf_counter() - start
        self.index = i
        return elapsed / n

    def warm_up(self, seconds: float) -> float:
        """Run for ``seconds`` (at least ``MIN_WARMUP_STEPS`` steps); return the fastest step."""
        best = float("inf")
        deadline = time.perf_counter() + seconds
        steps = 0
        while steps < MIN_WARMUP_STEPS or time.perf_counter() < deadline:
            best = min(best, self.block(1))
            steps += 1
        return best


def interleaved(
    impls: Mapping[str, Impl], *, rounds: int, block_s: float, warmup_s: float
) -> dict[str, dict[str, Any]]:
    """Time every implementation in ``impls`` (already past its first step); see the module
    docstring. Returns ``{name: summarize(per-round seconds per step) | {"steps_per_round": n}}``.
    """
    runners = {name: _Runner(impl) for name, impl in impls.items()}
    blocks: dict[str, int] = {}
    for name, runner in runners.items():
        fastest = runner.warm_up(warmup_s)
        blocks[name] = max(1, round(block_s / max(fastest, 1e-9)))
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(runners[name].block(blocks[name]))
    return {name: {**summarize(samples[name]), "steps_per_round": blocks[name]} for name in names}


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, min and max of per-step times, in microseconds.

    ``spread_pct`` is the interquartile range as a percentage of the median. Quartiles use
    the "inclusive" method (linear interpolation between order statistics; NumPy's default).
    """
    if not seconds:
        raise ValueError("summarize(seconds) needs at least one sample, got none")
    us = [s * 1e6 for s in seconds]
    median = statistics.median(us)
    if len(us) >= 2:
        q25, _, q75 = statistics.quantiles(us, n=4, method="inclusive")
    else:
        q25 = q75 = us[0]
    return {
        "median_us": median,
        "q25_us": q25,
        "q75_us": q75,
        "min_us": min(us),
        "max_us": max(us),
        "spread_pct": 100.0 * (q75 - q25) / median if median > 0 else 0.0,
        "samples_us": us,
    }


# --- memory -------------------------------------------------------------------------------------

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def current_rss_mb() -> float:
    """Resident set size now, in MiB (``/proc/self/statm``; the peak where that is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """High-water mark of the resident set size, in MiB (since start or the last reset).

    ``VmHWM`` from ``/proc/self/status`` (resettable), else ``getrusage``'s ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if os.uname().sysname == "Darwin" else maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0: ``clear_refs`` 5).

    Returns whether it worked; where it does not, :func:`peak_rss_mb` is the process peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
