"""The comparison behind ``twinnn compare``: runs, per-metric differences, the verdict.

Two values ``a`` and ``b`` of a metric at one step agree when
``|a - b| <= atol + rtol * max(|a|, |b|)`` (symmetric, so the order of the backends does not
matter); two NaNs agree, one NaN does not. The relative difference is
``|a - b| / max(|a|, |b|)`` (0 when both are 0).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_DIFFER",
    "EXIT_FAILED",
    "EXIT_SAME",
    "Comparison",
    "MetricDiff",
    "Run",
    "compare_runs",
    "diff_metric",
]

EXIT_SAME, EXIT_DIFFER, EXIT_FAILED = 0, 1, 3


@dataclass
class Run:
    """One run of the script under one backend."""

    backend: str
    status: str  # "ok", "failed" (non-zero exit) or "timeout"
    returncode: int | None
    seconds: float
    stdout: str
    stderr_tail: str
    #: metric -> {step: value}; in JSON, parallel ``steps`` and ``values`` lists
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    bad_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {
            name: {"steps": list(series), "values": list(series.values())}
            for name, series in self.metrics.items()
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        metrics = {
            name: dict(zip(entry["steps"], entry["values"], strict=True))
            for name, entry in data["metrics"].items()
        }
        return cls(**{**data, "metrics": metrics})


@dataclass
class MetricDiff:
    """One metric compared between the two runs, over the steps both reported."""

    name: str
    steps: list[int]
    a: list[float]
    b: list[float]
    only_a: list[int]  # steps reported by the first backend only
    only_b: list[int]
    max_abs: float
    max_rel: float
    first_bad_step: int | None  # first common step beyond tolerance

    @property
    def ok(self) -> bool:
        return self.first_bad_step is None and not self.only_a and not self.only_b


@dataclass
class Comparison:
    """Everything ``compare`` found; ``to_dict``/``from_dict`` round-trip through JSON."""

    script: str
    args: list[str]
    seed: int
    rtol: float
    atol: float
    runs: list[Run]
    metrics: list[MetricDiff]
    missing: dict[str, list[str]]  # backend -> metrics only the other backend reported

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status != "ok"]

    @property
    def verdict(self) -> str:
        if self.failed or not any(r.metrics for r in self.runs):
            return "failed"
        if any(self.missing.values()) or not all(m.ok for m in self.metrics):
            return "differ"
        return "same"

    @property
    def exit_code(self) -> int:
        return {"same": EXIT_SAME, "differ": EXIT_DIFFER}.get(self.verdict, EXIT_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "args": self.args,
            "seed": self.seed,
            "rtol": self.rtol,
            "atol": self.atol,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "runs": [r.to_dict() for r in self.runs],
            "metrics": [asdict(m) for m in self.metrics],
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(
            script=data["script"],
            args=list(data["args"]),
            seed=data["seed"],
            rtol=data["rtol"],
            atol=data["atol"],
            runs=[Run.from_dict(r) for r in data["runs"]],
            metrics=[MetricDiff(**m) for m in data["metrics"]],
            missing=data["missing"],
        )

    def write_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:  # equal infinities too
        return True
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def diff_metric(
    name: str, a: dict[int, float], b: dict[int, float], rtol: float, atol: float
) -> MetricDiff:
    """Compare one metric over the steps both runs reported (ascending step order)."""
    steps = sorted(set(a) & set(b))
    max_abs = max_rel = 0.0
    first_bad: int | None = None
    for step in steps:
        x, y = a[step], b[step]
        if not _close(x, y, rtol, atol) and first_bad is None:
            first_bad = step
        if math.isnan(x) or math.isnan(y) or x == y:
            continue
        delta = abs(x - y)
        scale = max(abs(x), abs(y))
        max_abs = max(max_abs, delta)
        max_rel = max(max_rel, delta / scale if scale else 0.0)
    return MetricDiff(
        name=name,
        steps=steps,
        a=[a[s] for s in steps],
        b=[b[s] for s in steps],
        only_a=sorted(set(a) - set(b)),
        only_b=sorted(set(b) - set(a)),
        max_abs=max_abs,
        max_rel=max_rel,
        first_bad_step=first_bad,
    )


def compare_runs(
    script: str, args: list[str], seed: int, rtol: float, atol: float, runs: list[Run]
) -> Comparison:
    """Line the two runs' metrics up by step and compare them."""
    first, second = runs
    diffs: list[MetricDiff] = []
    missing: dict[str, list[str]] = {first.backend: [], second.backend: []}
    if not (first.status == "ok" and second.status == "ok"):
        return Comparison(script, args, seed, rtol, atol, runs, diffs, missing)
    for name in sorted(set(first.metrics) | set(second.metrics)):
        if name not in first.metrics:
            missing[first.backend].append(name)
        elif name not in second.metrics:
            missing[second.backend].append(name)
        else:
            diffs.append(diff_metric(name, first.metrics[name], second.metrics[name], rtol, atol))
    return Comparison(script, args, seed, rtol, atol, runs, diffs, missing)
