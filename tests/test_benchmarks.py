"""Smoke tests of the benchmark harness (``python -m benchmarks``).

The harness runs once per backend in ``--quick`` mode on the smallest workload; the tests
check the JSON document's schema and the consistency of its numbers -- never the timings
themselves (speed is measured by the harness, not asserted by tests). The one numerical claim
checked is that twinnn, the native code and Keras 3 start from the same weights and compute
the same first-step loss, i.e. that the harness times the same computation.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
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
from benchmarks.worker import KERAS_MISSING  # noqa: E402

pytestmark = pytest.mark.slow

#: Keras 3 is optional for the harness: without it its results are a note, the rest is timed.
HAS_KERAS = importlib.util.find_spec("keras") is not None
MEASURED = [name for name in IMPLEMENTATIONS if HAS_KERAS or name != "keras3"]

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
    if not HAS_KERAS:
        assert impls["keras3"] == {"skipped": KERAS_MISSING}
        assert "ratio_keras3" not in workload
    for name in MEASURED:
        r = impls[name]
        assert "error" not in r, (name, r.get("error"))
        assert len(r["samples_us"]) == _ROUNDS
        assert r["steps_per_round"] >= 1
        assert r["min_us"] <= r["q25_us"] <= r["median_us"] <= r["q75_us"] <= r["max_us"]
        assert r["median_us"] == pytest.approx(float(np.median(r["samples_us"])))
        assert _finite_positive(r["median_us"]) and _finite_positive(r["first_step_s"])
    for other in MEASURED[1:]:
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
    for name in MEASURED:
        assert impls[name]["first_loss"] == pytest.approx(expected, rel=1e-5), name
    assert result["workloads"][_WORKLOAD]["loss_rel_diff_native"] < 1e-5


def test_imports_and_memory(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    entry = _quick_run(backend, tmp_path_factory)["results"][backend]
    assert set(entry["imports"]) == {"framework", "twinnn", "keras3"}
    imports = dict(entry["imports"])
    if not HAS_KERAS:  # no sample, and no memory result: a note instead
        assert imports.pop("keras3") == {"median_s": None, "samples_s": []}
        assert entry["memory"]["keras3"] == {"skipped": KERAS_MISSING}
        assert entry["timing"]["versions"]["keras"] == "not installed"
    for name, imp in imports.items():
        assert len(imp["samples_s"]) == 1, name
        assert _finite_positive(imp["median_s"]), name
    assert set(entry["memory"]) == set(IMPLEMENTATIONS)
    for name in MEASURED:
        mem = entry["memory"][name]
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
    with pytest.raises(SystemExit):
        parse_args(["--threads", "0"])
    args = parse_args(["--tiny", "--threads", "1", "--workload", "lm_lstm_nodrop"])
    assert args.tiny and args.threads == 1 and args.workload == ["lm_lstm_nodrop"]
    assert parse_args(["--workload", "transformer_small"]).workload == ["transformer_small"]


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


# --- the word language model workloads (lm_lstm, lm_lstm_nodrop) ---------------------------------

_LM = "lm_lstm"
_lm_cache: dict[str, dict[str, Any]] = {}


def _lm_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks --tiny --quick --timing-only --threads 1`` on ``lm_lstm`` (run
    once per backend): the real implementations and checks at a smoke-test size."""
    if backend not in _lm_cache:
        out = tmp_path_factory.mktemp("bench_lm") / "result.json"
        command = [
            *(sys.executable, "-m", "benchmarks", "--tiny", "--quick", "--timing-only"),
            *("--backend", backend, "--workload", _LM, "--repeats", "2", "--device", "cpu"),
            *("--threads", "1"),
            *("--json", str(out)),
        ]
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _lm_cache[backend] = json.loads(out.read_text())
    return _lm_cache[backend]


def _lm_reference_loss(workload: Any, batch: tuple[np.ndarray, ...], w: dict[str, Any]) -> float:
    """The first chunk's mean cross-entropy from the initial weights and a zero state, in
    float64 NumPy, without dropout: embedding lookup, the stacked LSTM (gates i, f, g, o), the
    decoder, a stable log-sum-exp."""
    w64 = {k: np.asarray(v, np.float64) for k, v in w.items()}
    x, y = batch
    hidden = workload.hidden

    def sig(v: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-v))

    seq = w64["encoder.weight"][x]  # (B, T, E)
    for k in range(workload.layers):
        h = np.zeros((x.shape[0], hidden))
        c = np.zeros_like(h)
        outs = []
        for t in range(x.shape[1]):
            z = seq[:, t] @ w64[f"rnn.w_ih_l{k}"] + h @ w64[f"rnn.w_hh_l{k}"]
            i, f, g, o = np.split(z + w64[f"rnn.bias_l{k}"], 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        seq = np.stack(outs, axis=1)
    logits = seq @ w64["decoder.weight"] + w64["decoder.bias"]
    top = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
    picked = np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return float(np.mean(lse - picked))


def test_lm_workloads_data_and_weights() -> None:
    """The token chunks are consecutive pieces of one stream (so a carried state is the
    state of the text before), targets are the next tokens, and the weights have the neutral
    layout with the sizes of pytorch/examples' word language model."""
    from benchmarks.workloads import WORKLOADS, agreement_variant, make_batches, make_weights, tiny

    full, nodrop = WORKLOADS["lm_lstm"], WORKLOADS["lm_lstm_nodrop"]
    assert (full.out_features, full.in_features, full.hidden, full.layers) == (10_000, 200, 200, 2)
    assert (full.batch, full.time, full.lr, full.clip_norm, full.dropout) == (
        20,
        35,
        20.0,
        0.25,
        0.2,
    )
    assert nodrop.dropout == 0.0 and agreement_variant(nodrop) is nodrop
    assert agreement_variant(full) == dataclasses.replace(full, dropout=0.0)
    batches = make_batches(full)
    assert len(batches) == full.pool
    for (x, y), (x_next, _) in itertools.pairwise(batches):
        assert x.shape == y.shape == (20, 35) and x.dtype == y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        np.testing.assert_array_equal(x_next[:, 0], y[:, -1])
    ids = np.concatenate([x.ravel() for x, _ in batches])
    assert ids.min() >= 0 and ids.max() < 10_000
    counts = np.sort(np.bincount(ids, minlength=10_000))[::-1]
    assert counts[0] > 20 * counts[100]  # Zipf: the top word is far more frequent than the 100th
    weights = make_weights(full)
    assert weights["encoder.weight"].shape == (10_000, 200)
    assert weights["rnn.w_ih_l1"].shape == weights["rnn.w_hh_l1"].shape == (200, 800)
    assert weights["decoder.weight"].shape == (200, 10_000)
    assert all(v.dtype == np.float32 for v in weights.values())
    small = tiny(full)
    assert small.kind == "lm" and small.dropout == full.dropout
    assert small.out_features * small.in_features < 1000


def test_lm_implementations_agree(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The harness on ``lm_lstm`` (tiny sizes): every implementation runs; the first losses of
    the dropout-free copy agree with the float64 reference; the next two losses agree between
    twinnn, Keras 3 (stateful LSTM) and native TensorFlow, which they would not if any of them
    dropped the carried state; the timed model (dropout 0.2) computes other losses."""
    from benchmarks.workloads import WORKLOADS, agreement_variant, make_batches, make_weights, tiny

    doc = _lm_run(backend, tmp_path_factory)
    assert doc["meta"]["tiny"] is True and doc["meta"]["workloads"] == [_LM]
    assert doc["meta"]["threads"] == 1
    if backend == "torch":  # --threads reached the worker (OMP_NUM_THREADS)
        assert doc["results"]["torch"]["timing"]["versions"]["torch_threads"] == "1"
    entry = doc["results"][backend]["timing"]["workloads"][_LM]
    assert "dropout 0" in entry["agreement"]
    workload = tiny(WORKLOADS[_LM])
    check = agreement_variant(workload)
    expected = _lm_reference_loss(check, make_batches(check)[0], make_weights(check))
    impls = entry["implementations"]
    assert set(impls) == set(IMPLEMENTATIONS)
    if not HAS_KERAS:
        assert impls["keras3"] == {"skipped": KERAS_MISSING}
    for name in MEASURED:
        r = impls[name]
        assert "error" not in r, (name, r.get("error"))
        assert len(r["samples_us"]) == 2 and _finite_positive(r["median_us"])
        assert r["first_loss"] == pytest.approx(expected, rel=1e-5), name
        assert len(r["agreement_losses"]) == len(r["timed_losses"]) == 3
        assert r["timed_losses"][0] != r["first_loss"], name  # dropout was on when timed
    carried = ["twinnn", "keras3"] + (["native"] if backend == "tensorflow" else [])
    # (native torch trains its two LSTM biases, bias_ih and bias_hh: its later losses differ)
    ref = impls["twinnn"]["agreement_losses"]
    for name in carried:
        if name in MEASURED:
            np.testing.assert_allclose(
                impls[name]["agreement_losses"], ref, rtol=1e-4, err_msg=name
            )
    for name in MEASURED[1:]:
        assert entry[f"loss_rel_diff_{name}"] < 1e-5, name


def test_lm_twinnn_dropout_is_the_same_on_both_backends(
    both_backends: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """twinnn's timed model (dropout 0.2, seed 0) trains with the same masks on both
    backends, so its losses with dropout on agree too; the native ones need not."""
    losses = {
        b: _lm_run(b, tmp_path_factory)["results"][b]["timing"]["workloads"][_LM][
            "implementations"
        ]["twinnn"]["timed_losses"]
        for b in both_backends
    }
    np.testing.assert_allclose(losses["torch"], losses["tensorflow"], rtol=1e-5)


def test_dropout_pairs_are_timed_together() -> None:
    """lm_lstm and lm_lstm_nodrop, when both run, share their interleaved rounds (so the
    difference of their medians is not drift); other workloads keep their own."""
    from benchmarks.worker import _timing_groups

    names = ["lm_lstm_nodrop", "linear_seed", "lm_lstm"]
    assert _timing_groups(names) == [["lm_lstm_nodrop", "lm_lstm"], ["linear_seed"]]
    assert _timing_groups(["lm_lstm", "lstm_len"]) == [["lm_lstm"], ["lstm_len"]]


def test_lm_dropout_cost_is_reported() -> None:
    """With lm_lstm and lm_lstm_nodrop in a run, the table gains the cost of dropout per
    implementation: the difference of the median step times and its share of the step."""
    timing = {
        name: {
            "implementations": {
                k: {"median_us": us} for k, us in zip(IMPLEMENTATIONS, t, strict=True)
            }
        }
        for name, t in (
            ("lm_lstm", (60_000.0, 50_000.0, 90_000.0)),
            ("lm_lstm_nodrop", (50_000.0, 52_000.0, 80_000.0)),
        )
    }
    doc = {
        "meta": {
            "cpu": "cpu",
            "cpu_count": 2,
            "load_before": [0.1],
            "load_after": [0.2],
            "rounds": 3,
            "workloads": ["lm_lstm", "lm_lstm_nodrop"],
        },
        "results": {"torch": {"timing": {"device": "cpu", "workloads": timing}}},
    }
    text = render(doc)
    assert "Cost of dropout" in text
    assert "| torch | lm_lstm - lm_lstm_nodrop | 10.00 ms (+20%) | -2000 µs (-4%) " in text
    assert "| 10.00 ms (+12%) |" in text
    del doc["results"]["torch"]["timing"]["workloads"]["lm_lstm_nodrop"]
    assert "Cost of dropout" not in render(doc)


def test_distributed_benchmark_prints_its_table(tmp_path: Path) -> None:
    """``python -m benchmarks.distributed --tiny`` on torch: two processes (``twinnn run
    -n 2``) time twinnn's data-parallel step and hand-written DDP, print the table, and both
    start from the same weights (the same first global loss)."""
    out = tmp_path / "dist.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.distributed",
        "--tiny",
        "--backend",
        "torch",
        "--workload",
        "lstm_len",
        "--no-local",
        "--timeout",
        "50",
        "--json",
        str(out),
    ]
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| backend | workload | twinnn | native | twinnn/native |" in proc.stdout
    assert "| torch | lstm_len |" in proc.stdout
    entry = json.loads(out.read_text())["results"]["torch"]["workloads"]["lstm_len"]
    assert entry["twinnn"]["median_ms"] > 0 and entry["native"]["median_ms"] > 0
    assert entry["first_loss_rel_diff"] < 1e-5


# --- the Transformer encoder workload (transformer_small) -------------------------------------

_TRANSFORMER = "transformer_small"
_transformer_cache: dict[str, dict[str, Any]] = {}


def _transformer_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks --tiny --quick --timing-only`` on ``transformer_small`` (once per
    backend)."""
    if backend not in _transformer_cache:
        out = tmp_path_factory.mktemp("bench_transformer") / "result.json"
        command = [
            *(sys.executable, "-m", "benchmarks", "--tiny", "--quick", "--timing-only"),
            *("--backend", backend, "--workload", _TRANSFORMER, "--repeats", "2"),
            *("--device", "cpu", "--threads", "1", "--json", str(out)),
        ]
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _transformer_cache[backend] = json.loads(out.read_text())
    return _transformer_cache[backend]


def _transformer_reference_loss(
    workload: Any, batch: tuple[np.ndarray, ...], w: dict[str, Any]
) -> float:
    """The first batch's mean cross-entropy from the initial weights, without dropout, in
    float64 NumPy: embedding + positions, post-norm blocks (attention over the keys
    ``j < length``, exact GELU, LayerNorm eps 1e-5), the mean over the valid tokens, the head."""
    from benchmarks.workloads import sinusoidal_positions

    w64 = {k: np.asarray(v, np.float64) for k, v in w.items()}
    tokens, lengths, labels = batch
    e, h = workload.in_features, workload.heads
    d, t = e // h, tokens.shape[1]
    erf = np.vectorize(math.erf)

    def norm(x: Any, name: str) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * w64[f"{name}.weight"] + w64[f"{name}.bias"]

    def heads(x: Any) -> Any:  # (B, T, E) -> (B, H, T, D)
        return x.reshape(x.shape[0], t, h, d).transpose(0, 2, 1, 3)

    valid = np.arange(t)[None, :] < lengths[:, None]  # (B, T)
    x = w64["embed.weight"][tokens] + sinusoidal_positions(t, e).astype(np.float64)
    for k in range(workload.layers):
        p = f"layers.{k}."
        q, kk, v = (
            heads(x @ w64[f"{p}self_attn.w_{n}"] + w64[f"{p}self_attn.b_{n}"]) for n in "qkv"
        )
        scores = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(d)
        scores = np.where(valid[:, None, None, :], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        merged = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        attended = merged @ w64[f"{p}self_attn.w_o"] + w64[f"{p}self_attn.b_o"]
        x = norm(x + attended, f"{p}norm1")
        z = x @ w64[f"{p}linear1.weight"] + w64[f"{p}linear1.bias"]
        mlp = (0.5 * z * (1 + erf(z / math.sqrt(2)))) @ w64[f"{p}linear2.weight"]
        x = norm(x + mlp + w64[f"{p}linear2.bias"], f"{p}norm2")
    pooled = (x * valid[..., None]).sum(1) / lengths[:, None]
    logits = pooled @ w64["head.weight"] + w64["head.bias"]
    top = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def test_transformer_workload_data_and_weights() -> None:
    """The sizes of issue 14, batches of (tokens, lengths, labels) with lengths in [T/4, T]
    and one full-length row, and the weights in the neutral layout (torch's names)."""
    from benchmarks.workloads import WORKLOADS, agreement_variant, make_batches, make_weights, tiny

    full = WORKLOADS[_TRANSFORMER]
    assert (full.layers, full.in_features, full.heads, full.time, full.batch) == (2, 128, 4, 64, 32)
    assert (full.hidden, full.dropout, full.optimizer) == (512, 0.1, "adamw")
    assert agreement_variant(full) == dataclasses.replace(full, dropout=0.0)
    batches = make_batches(full)
    assert len(batches) == full.pool
    for tokens, lengths, labels in batches:
        assert tokens.shape == (32, 64) and lengths.shape == labels.shape == (32,)
        assert tokens.dtype == lengths.dtype == labels.dtype == np.int64
        assert lengths.min() >= 16 and lengths.max() == 64
        assert tokens.min() >= 0 and tokens.max() < full.vocab
        assert labels.min() >= 0 and labels.max() < full.out_features
    assert len({tuple(lengths) for _, lengths, _ in batches}) == full.pool  # different lengths
    weights = make_weights(full)
    assert weights["embed.weight"].shape == (1000, 128)
    assert weights["layers.1.self_attn.w_o"].shape == (128, 128)
    assert weights["layers.0.linear1.weight"].shape == (128, 512)
    assert weights["layers.0.linear2.weight"].shape == (512, 128)
    assert weights["head.weight"].shape == (128, 10)
    assert len(weights) == 1 + 2 * 16 + 2 and all(v.dtype == np.float32 for v in weights.values())
    small = tiny(full)
    assert small.kind == "transformer" and small.in_features % small.heads == 0
    assert small.dropout == full.dropout


def test_transformer_implementations_agree(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The harness on ``transformer_small`` (tiny sizes): every implementation runs, the first
    losses of the dropout-free copy equal the float64 reference (so the weight conversions --
    torch's packed ``in_proj``, Keras' per-head kernels -- and the key masks are right), the
    next two losses (after AdamW updates) agree, and the timed model has dropout on."""
    from benchmarks.workloads import WORKLOADS, agreement_variant, make_batches, make_weights, tiny

    doc = _transformer_run(backend, tmp_path_factory)
    assert doc["meta"]["workloads"] == [_TRANSFORMER]
    entry = doc["results"][backend]["timing"]["workloads"][_TRANSFORMER]
    assert "dropout 0" in entry["agreement"]
    check = agreement_variant(tiny(WORKLOADS[_TRANSFORMER]))
    expected = _transformer_reference_loss(check, make_batches(check)[0], make_weights(check))
    impls = entry["implementations"]
    assert set(impls) == set(IMPLEMENTATIONS)
    if not HAS_KERAS:
        assert impls["keras3"] == {"skipped": KERAS_MISSING}
    for name in MEASURED:
        r = impls[name]
        assert "error" not in r, (name, r.get("error"))
        assert len(r["samples_us"]) == 2 and _finite_positive(r["median_us"])
        assert r["first_loss"] == pytest.approx(expected, rel=1e-5), name
        assert r["timed_losses"][0] != r["first_loss"], name  # dropout was on when timed
    # Keras' Adam on TensorFlow updates the embedding's sparse gradient lazily (only the rows
    # in the batch), about 5e-5 relative on the second loss here; elsewhere the updates agree
    # to float32 rounding.
    rtol = 2e-4 if backend == "tensorflow" else 1e-5
    ref = impls["twinnn"]["agreement_losses"]
    for name in MEASURED[1:]:
        np.testing.assert_allclose(impls[name]["agreement_losses"], ref, rtol=rtol, err_msg=name)
        assert entry[f"loss_rel_diff_{name}"] < 1e-5, name


def test_transformer_twinnn_dropout_is_the_same_on_both_backends(
    both_backends: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """twinnn's timed transformer (dropout 0.1 on the embeddings and in four places per block,
    seed 0) trains with the same masks on both backends."""
    losses = {
        b: _transformer_run(b, tmp_path_factory)["results"][b]["timing"]["workloads"][_TRANSFORMER][
            "implementations"
        ]["twinnn"]["timed_losses"]
        for b in both_backends
    }
    np.testing.assert_allclose(losses["torch"], losses["tensorflow"], rtol=1e-5)


# --- the convolutional workload (cnn_small) ------------------------------------------------------

_CNN = "cnn_small"
_cnn_cache: dict[str, dict[str, Any]] = {}


def _cnn_run(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks --tiny --quick --timing-only`` on ``cnn_small`` (once per
    backend)."""
    if backend not in _cnn_cache:
        out = tmp_path_factory.mktemp("bench_cnn") / "result.json"
        command = [
            *(sys.executable, "-m", "benchmarks", "--tiny", "--quick", "--timing-only"),
            *("--backend", backend, "--workload", _CNN, "--repeats", "2"),
            *("--device", "cpu", "--threads", "1", "--json", str(out)),
        ]
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        _cnn_cache[backend] = json.loads(out.read_text())
    return _cnn_cache[backend]


def _cnn_reference_loss(workload: Any, batch: tuple[np.ndarray, ...], w: dict[str, Any]) -> float:
    """The first batch's mean cross-entropy from the initial weights in float64 NumPy, channels
    last: per convolution a 3x3 SAME cross-correlation (one zero on each side at stride 1) plus
    bias, ReLU, a 2x2 max pool; the ``h, w, c`` flatten, the head."""
    w64 = {k: np.asarray(v, np.float64) for k, v in w.items()}
    x, labels = batch
    x = x.astype(np.float64)
    for k in range(1, len(workload.channels) + 1):
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        side = x.shape[1]
        y = w64[f"conv{k}.bias"] + sum(
            padded[:, i : i + side, j : j + side] @ w64[f"conv{k}.weight"][i, j]
            for i in range(3)
            for j in range(3)
        )
        y = np.maximum(y, 0.0)
        b, h, wd, c = y.shape
        x = y.reshape(b, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
    logits = x.reshape(len(x), -1) @ w64["head.weight"] + w64["head.bias"]
    top = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def test_cnn_workload_data_and_weights() -> None:
    """The sizes of issue 14 (3 convolutions on 32x32x3, batch 64), channels-last float32
    images with int64 labels, and the weights in the neutral layout (kernels ``(3, 3, in,
    out)``, the head's rows in ``h, w, c`` order)."""
    from benchmarks.workloads import WORKLOADS, agreement_variant, make_batches, make_weights, tiny

    full = WORKLOADS[_CNN]
    assert parse_args(["--workload", _CNN]).workload == [_CNN]
    assert (full.kind, full.batch, full.image, full.in_features) == ("cnn", 64, 32, 3)
    assert (full.channels, full.out_features, full.optimizer) == ((32, 64, 64), 10, "sgd")
    assert (full.lr, full.momentum, full.dropout) == (0.01, 0.9, 0.0)
    assert agreement_variant(full) is full
    batches = make_batches(full)
    assert len(batches) == full.pool
    for images, labels in batches:
        assert images.shape == (64, 32, 32, 3) and images.dtype == np.float32
        assert labels.shape == (64,) and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < 10
    weights = make_weights(full)
    shapes = {k: v.shape for k, v in weights.items()}
    assert shapes == {
        "conv1.weight": (3, 3, 3, 32),
        "conv1.bias": (32,),
        "conv2.weight": (3, 3, 32, 64),
        "conv2.bias": (64,),
        "conv3.weight": (3, 3, 64, 64),
        "conv3.bias": (64,),
        "head.weight": (4 * 4 * 64, 10),
        "head.bias": (10,),
    }
    assert all(v.dtype == np.float32 for v in weights.values())
    small = tiny(full)
    assert small.kind == "cnn" and small.image >> len(small.channels) == 2  # flatten order counts


def test_cnn_implementations_agree(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The harness on ``cnn_small`` (tiny sizes): every implementation runs, the first loss
    equals the float64 reference (so native torch's NCHW kernels and its head, whose rows are
    permuted from ``h, w, c`` to ``c, h, w``, hold the same weights), and the next two losses,
    after SGD-with-momentum updates, agree."""
    from benchmarks.workloads import WORKLOADS, make_batches, make_weights, tiny

    doc = _cnn_run(backend, tmp_path_factory)
    assert doc["meta"]["workloads"] == [_CNN]
    entry = doc["results"][backend]["timing"]["workloads"][_CNN]
    workload = tiny(WORKLOADS[_CNN])
    expected = _cnn_reference_loss(workload, make_batches(workload)[0], make_weights(workload))
    impls = entry["implementations"]
    assert set(impls) == set(IMPLEMENTATIONS)
    if not HAS_KERAS:
        assert impls["keras3"] == {"skipped": KERAS_MISSING}
    for name in MEASURED:
        r = impls[name]
        assert "error" not in r, (name, r.get("error"))
        assert len(r["samples_us"]) == 2 and _finite_positive(r["median_us"])
        assert r["first_loss"] == pytest.approx(expected, rel=1e-5), name
    ref = impls["twinnn"]["agreement_losses"]
    assert len(set(ref)) == len(ref)  # the updates change the loss
    for name in MEASURED[1:]:
        np.testing.assert_allclose(impls[name]["agreement_losses"], ref, rtol=1e-5, err_msg=name)
        assert entry[f"loss_rel_diff_{name}"] < 1e-5, name
