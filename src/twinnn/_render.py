"""Text table and matplotlib figure for ``twinnn compare`` (matplotlib is imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from twinnn._compare import Comparison, MetricDiff, Run
from twinnn.errors import TwinnnError

__all__ = ["PlotUnavailableError", "format_comparison", "plot_comparison"]


class PlotUnavailableError(TwinnnError, ImportError):
    """``--plot`` was asked for but matplotlib is not installed."""


def _num(value: float) -> str:
    return f"{value:.7g}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    rule = "  ".join("-" * w for w in widths)
    return [line.rstrip() for line in [lines[0], rule, *lines[1:]]]


def _run_line(run: Run, versions: dict[str, str]) -> str:
    version = versions.get(run.backend, "not installed")
    state = {"ok": "ok", "timeout": "TIMED OUT", "failed": f"FAILED (exit {run.returncode})"}
    reported = sum(len(series) for series in run.metrics.values())
    text = f"  {run.backend} {version}: {state[run.status]} in {run.seconds:.1f} s, "
    text += f"{reported} values reported"
    return text + (f" ({run.bad_lines} unreadable lines)" if run.bad_lines else "")


def _metric_row(m: MetricDiff) -> list[str]:
    def ends(values: list[float]) -> tuple[str, str]:
        return (_num(values[0]), _num(values[-1])) if values else ("-", "-")

    (a_first, a_last), (b_first, b_last) = ends(m.a), ends(m.b)
    bad = "-" if m.first_bad_step is None else str(m.first_bad_step)
    return [
        m.name,
        str(len(m.steps)),
        a_first,
        b_first,
        a_last,
        b_last,
        f"{m.max_abs:.3g}",
        f"{m.max_rel:.3g}",
        bad,
    ]


def _verdict(c: Comparison) -> list[str]:
    a, b = (r.backend for r in c.runs)
    tol = f"rtol={c.rtol:g}, atol={c.atol:g}"
    if c.verdict == "failed":
        lines = []
        for run in c.failed or c.runs:
            why = {"timeout": "timed out", "failed": f"exited with {run.returncode}"}
            lines.append(
                f"FAILED on {run.backend}: the script {why.get(run.status, 'reported nothing')}"
                + (" (no twinnn.report calls?)" if run.status == "ok" else "")
                + ("; stderr ends with:\n    " if run.stderr_tail else "")
                + run.stderr_tail.replace("\n", "\n    ")
            )
        return lines
    lines = []
    for m in c.metrics:
        if m.first_bad_step is not None:
            i = m.steps.index(m.first_bad_step)
            lines.append(
                f"DIFFER: {m.name!r} is beyond tolerance ({tol}) from step {m.first_bad_step}: "
                f"{a} {_num(m.a[i])} vs {b} {_num(m.b[i])}"
            )
        for backend, only in ((a, m.only_a), (b, m.only_b)):
            if only:
                lines.append(f"DIFFER: {m.name!r} reported only on {backend} at steps {only[:10]}")
    for backend, names in c.missing.items():
        if names:
            lines.append(f"DIFFER: {backend} did not report {names}")
    if not lines:
        steps = sum(len(m.steps) for m in c.metrics)
        lines.append(f"SAME: {len(c.metrics)} metric(s), {steps} values agree within {tol}")
    return lines


def format_comparison(c: Comparison, versions: dict[str, str]) -> str:
    """The report ``compare`` prints: the runs, one table row per metric, the verdict."""
    a, b = (r.backend for r in c.runs)
    lines = [f"twinnn compare {' '.join([c.script, *c.args])}  (seed {c.seed})"]
    lines += [_run_line(r, versions) for r in c.runs]
    if c.metrics:
        header = [
            "metric",
            "steps",
            f"first {a}",
            f"first {b}",
            f"last {a}",
            f"last {b}",
            "max abs diff",
            "max rel diff",
            "first step beyond tol",
        ]
        lines += ["", *_table([header, *(_metric_row(m) for m in c.metrics)])]
    return "\n".join([*lines, "", *_verdict(c)])


def plot_comparison(c: Comparison, path: str | os.PathLike[str]) -> None:
    """Per metric: both backends' curves (top) and ``b - a`` with the tolerance band (bottom)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed; `pip install twinnn[plot]`"
        ) from exc
    a, b = (r.backend for r in c.runs)
    columns = max(len(c.metrics), 1)
    fig = Figure(figsize=(5.0 * columns, 6.0), layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False, sharex="col")
    for col, m in enumerate(c.metrics):
        top, bottom = axes[0][col], axes[1][col]
        top.plot(m.steps, m.a, label=a, linewidth=2.0)
        top.plot(m.steps, m.b, label=b, linestyle="--", linewidth=1.5)
        top.set_title(m.name)
        top.legend()
        diff = [y - x for x, y in zip(m.a, m.b, strict=True)]
        band = [c.atol + c.rtol * max(abs(x), abs(y)) for x, y in zip(m.a, m.b, strict=True)]
        bottom.fill_between(m.steps, [-t for t in band], band, alpha=0.2, label="tolerance")
        bottom.plot(m.steps, diff, color="black", linewidth=1.0, label=f"{b} - {a}")
        if m.first_bad_step is not None:
            bottom.axvline(m.first_bad_step, color="red", label=f"step {m.first_bad_step}")
        bottom.set_xlabel("step")
        bottom.set_ylabel("difference")
        bottom.legend()
    fig.suptitle(f"twinnn compare {os.path.basename(c.script)}: {a} vs {b}")
    fig.savefig(path, dpi=100)
