"""Smoke tests of the benchmark harness (``python -m benchmarks``).

The harness runs once per backend in ``--quick`` mode on the smallest workload; the tests
check the JSON document's schema and the consistency of its numbers -- never the timings
themselves (speed is measured by the harness, not asserted by tests). The one numerical claim
checked is that twinnn, the native code and Keras 3 start from the same weights and compute
the same first-step loss, i.e. that the harness times the same computation.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import IMPLEMENTATIONS, SCHEMA_VERSION  # noqa: E402
from benchmarks.run import parse_args, render  # noqa: E402
from benchmarks.timing import summarize  # noqa: E402

pytestmark = pytest.mark.slow

_WORKLOAD = "linear_seed"
_ROUNDS = 3
_cache: dict[str, dict[str, Any]] = {}


def _quick_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks --quick`` on ``linear_seed`` for one backend (run once)."""
    if backend not in _cache:
        out = tmp_path_factory.mktemp("bench") / "result.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--backend",
            backend,
            "--workload",
            _WORKLOAD,
            "--repeats",
            str(_ROUNDS),
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _cache[backend] = json.loads(out.read_text())
        _cache[backend]["_stdout"] = proc.stdout
    return _cache[backend]


def _finite_positive(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_document_schema(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    doc = _quick_run(backend, tmp_path_factory)
    assert doc["schema"] == SCHEMA_VERSION
    meta = doc["meta"]
    for key in ("date", "cpu", "cpu_count", "load_before", "load_after", "rounds", "workloads"):
        assert key in meta, key
    assert meta["quick"] is True and meta["rounds"] == _ROUNDS
    assert meta["workloads"] == [_WORKLOAD]
    assert list(doc["results"]) == [backend]
    entry = doc["results"][backend]
    assert set(entry) == {"timing", "memory", "imports"}
    timing = entry["timing"]
    assert timing["device"] == "cpu" and timing["twinnn_device"] == "cpu"
    assert backend in timing["versions"] and "keras" in timing["versions"]


def test_timings_are_consistent(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    workload = _quick_run(backend, tmp_path_factory)["results"][backend]["timing"]["workloads"][
        _WORKLOAD
    ]
    impls = workload["implementations"]
    assert set(impls) == set(IMPLEMENTATIONS)
    for name, r in impls.items():
        assert "error" not in r, (name, r.get("error"))
        assert len(r["samples_us"]) == _ROUNDS
        assert r["steps_per_round"] >= 1
        assert r["min_us"] <= r["q25_us"] <= r["median_us"] <= r["q75_us"] <= r["max_us"]
        assert r["median_us"] == pytest.approx(float(np.median(r["samples_us"])))
        assert _finite_positive(r["median_us"]) and _finite_positive(r["first_step_s"])
    for other in ("native", "keras3"):
        expected = impls["twinnn"]["median_us"] / impls[other]["median_us"]
        assert workload[f"ratio_{other}"] == pytest.approx(expected)


def test_implementations_compute_the_same_first_loss(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Same weights, same batch: the first loss agrees (float32 rounding), so the harness
    compares the same computation. The reference is the loss computed here in float64."""
    from benchmarks.workloads import WORKLOADS, make_batches, make_weights

    workload = WORKLOADS[_WORKLOAD]
    (x, y), weights = make_batches(workload)[0], make_weights(workload)
    pred = x.astype(np.float64) @ weights["weight"] + weights["bias"]
    expected = float(np.mean((pred - y) ** 2))
    result = _quick_run(backend, tmp_path_factory)["results"][backend]["timing"]
    impls = result["workloads"][_WORKLOAD]["implementations"]
    for name in IMPLEMENTATIONS:
        assert impls[name]["first_loss"] == pytest.approx(expected, rel=1e-5), name
    assert result["workloads"][_WORKLOAD]["loss_rel_diff_native"] < 1e-5


def test_imports_and_memory(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    entry = _quick_run(backend, tmp_path_factory)["results"][backend]
    assert set(entry["imports"]) == {"framework", "twinnn", "keras3"}
    for name, imp in entry["imports"].items():
        assert len(imp["samples_s"]) == 1, name
        assert _finite_positive(imp["median_s"]), name
    assert set(entry["memory"]) == set(IMPLEMENTATIONS)
    for name, mem in entry["memory"].items():
        assert _finite_positive(mem["rss_after_import_mb"]), name
        m = mem["workloads"][_WORKLOAD]
        assert m["peak_rss_mb"] >= m["rss_before_mb"] > 0, name
        assert m["peak_delta_mb"] == pytest.approx(m["peak_rss_mb"] - m["rss_before_mb"])
        assert m["gpu_peak_mb"] is None


def test_table_is_printed(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    doc = _quick_run(backend, tmp_path_factory)
    stdout = doc.pop("_stdout")
    try:
        table = render(doc)
        assert table in stdout
        row = next(line for line in table.splitlines() if line.startswith(f"| {backend} | "))
        assert _WORKLOAD in row and "x |" in row
    finally:
        doc["_stdout"] = stdout


def test_summarize_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8):
        seconds = list(rng.uniform(1e-4, 2e-4, size=n))
        s = summarize(seconds)
        us = np.array(seconds) * 1e6
        assert s["median_us"] == pytest.approx(np.median(us))
        assert s["q25_us"] == pytest.approx(np.percentile(us, 25))
        assert s["q75_us"] == pytest.approx(np.percentile(us, 75))
        assert s["spread_pct"] == pytest.approx(
            100 * (np.percentile(us, 75) - np.percentile(us, 25)) / np.median(us)
        )
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


def test_arguments_are_checked() -> None:
    assert parse_args(["--quick", "--backend", "tf"]).backend == ["tf"]
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--workload", "nope"])


def test_tensorflow_direct_graph_call_matches_the_public_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The TensorFlow step calls its traced graph through ``ConcreteFunction._call_flat`` (a
    speed path, see docs/performance.md). It must give the losses of the public call, also
    inside a user's ``tf.function`` and with a ``tf.Variable`` as an argument."""
    tf = pytest.importorskip("tensorflow")
    import twinnn as tn
    from twinnn.backends.tensorflow import trainer

    rng = np.random.default_rng(0)
    batches = [
        (rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 2)))
        for n in (4, 7, 1)
    ]

    def losses(fast: bool) -> list[float]:
        if not fast:
            monkeypatch.setattr(trainer, "_flat_caller", lambda concrete: concrete)
        tn.set_backend("tensorflow")
        tn.seed(0)
        model = tn.Linear(3, 2)
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1, momentum=0.9))
        outer = tf.function(lambda x, y: step(x, y))
        out = [float(step(x, y.astype(np.float32))) for x, y in batches]
        out.append(float(outer(tf.constant(batches[0][0]), tf.constant(batches[0][1], "float32"))))
        out.append(float(step(tf.Variable(batches[1][0]), batches[1][1].astype(np.float32))))
        monkeypatch.undo()
        assert step.trace_count == 1  # type: ignore[attr-defined]
        return out

    assert losses(fast=True) == losses(fast=False)


def test_table_reports_skips_and_failures() -> None:
    """A workload twinnn cannot run and an implementation that failed are named in the table,
    in rows with the table's column count."""
    ok = {"median_us": 100.0, "spread_pct": 1.0}
    doc = {
        "meta": {
            "cpu": "cpu",
            "cpu_count": 2,
            "load_before": [0.1],
            "load_after": [0.2],
            "rounds": 3,
            "workloads": ["linear_seed", "lstm_len"],
        },
        "results": {
            "torch": {
                "timing": {
                    "device": "cpu",
                    "workloads": {
                        "linear_seed": {
                            "implementations": {
                                "twinnn": ok,
                                "native": ok,
                                "keras3": {"error": "RuntimeError: boom | bang"},
                            },
                            "ratio_native": 1.0,
                        },
                        "lstm_len": {"skipped": "twinnn.LSTM is not available"},
                    },
                }
            },
            "tensorflow": {"skipped": "tensorflow is not installed"},
        },
    }
    rows = [line for line in render(doc).splitlines() if line.startswith("| ")]
    columns = rows[0].count("|")
    assert all(row.count("|") == columns for row in rows), rows
    text = "\n".join(rows)
    assert "| torch | linear_seed | cpu | 100 µs | 100 µs | error | 1.00x | — |" in text
    assert "Keras 3 failed: RuntimeError: boom / bang" in text
    assert "skipped: twinnn.LSTM is not available" in text
    assert "tensorflow is not installed" in text
