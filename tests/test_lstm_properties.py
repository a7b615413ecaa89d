"""LSTM properties: each sequence of a padded batch equals running it alone (hypothesis),
training parity between the backends on batches of changing shape, and the example script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twinnn as tn

ROOT = Path(__file__).resolve().parents[1]


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    batch = draw(st.integers(1, 4))
    time = draw(st.integers(1, 6))
    return {
        "batch": batch,
        "time": time,
        "features": draw(st.integers(1, 3)),
        "hidden": draw(st.integers(1, 4)),
        "num_layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "lengths": np.array(draw(st.lists(st.integers(0, time), min_size=batch, max_size=batch))),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(problem=problems())
def test_each_sequence_equals_running_it_alone_unpadded(
    backend: str, problem: dict[str, Any]
) -> None:
    p = problem
    rng = np.random.default_rng(p["seed"])
    dirs = 2 if p["bidirectional"] else 1
    layer = tn.LSTM(p["features"], p["hidden"], p["num_layers"], p["bidirectional"], init="torch")
    x = rng.uniform(-2, 2, (p["batch"], p["time"], p["features"])).astype(np.float32)
    state_shape = (p["num_layers"] * dirs, p["batch"], p["hidden"])
    h0 = rng.standard_normal(state_shape).astype(np.float32)
    c0 = rng.standard_normal(state_shape).astype(np.float32)
    result = layer(x, p["lengths"], (h0, c0))
    out, h, c = tn.to_numpy(result[0]), tn.to_numpy(result[1][0]), tn.to_numpy(result[1][1])
    assert out.shape == (p["batch"], p["time"], p["hidden"] * dirs)
    for b, n in enumerate(p["lengths"]):
        assert np.all(out[b, n:] == 0.0)
        if n == 0:
            np.testing.assert_array_equal(h[:, b], h0[:, b])
            np.testing.assert_array_equal(c[:, b], c0[:, b])
            continue
        alone = layer(x[b : b + 1, :n], None, (h0[:, b : b + 1], c0[:, b : b + 1]))
        a_out, (a_h, a_c) = alone
        np.testing.assert_allclose(out[b, :n], tn.to_numpy(a_out)[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h[:, b], tn.to_numpy(a_h)[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c[:, b], tn.to_numpy(a_c)[:, 0], rtol=1e-5, atol=1e-6)


class _Tagger(tn.Module):
    """2-layer bidirectional LSTM; the head reads the last layer's two final states and the
    mean of the outputs, so outputs, states and both directions all get gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = tn.LSTM(3, 6, num_layers=2, bidirectional=True)
        self.head = tn.Linear(24, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        out, (h, _) = self.lstm(x, lengths)
        features = tn.concat([h[-2], h[-1], tn.mean(out, axis=1)], axis=-1)
        return self.head(features)


def _batches(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Batch size in [2, 6] and time in [1, 8] change every step; lengths in [0, T]."""
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(count):
        batch, time = int(rng.integers(2, 7)), int(rng.integers(1, 9))
        lengths = rng.integers(0, time + 1, batch)
        x = rng.standard_normal((batch, time, 3)).astype(np.float32)
        x[np.arange(time)[None, :] >= lengths[:, None]] = 1e6  # padding is ignored
        y = rng.standard_normal((batch, 1)).astype(np.float32)
        batches.append((x, lengths, y))
    return batches


def test_fifty_momentum_steps_on_changing_shapes_agree_between_backends(
    both_backends: list[str],
) -> None:
    batches = _batches(50)
    losses: dict[str, list[float]] = {}
    finals: dict[str, dict[str, np.ndarray]] = {}
    for name in both_backends:
        tn.set_backend(name)
        tn.seed(3)
        model = _Tagger()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.05, momentum=0.9))
        losses[name] = [float(tn.to_numpy(step(*batch))) for batch in batches]
        finals[name] = model.state_dict()
        if name == "tensorflow":
            assert step.trace_count == 1  # type: ignore[attr-defined]
    torch_losses, tf_losses = np.array(losses["torch"]), np.array(losses["tensorflow"])
    assert np.all(np.isfinite(torch_losses))
    np.testing.assert_allclose(tf_losses, torch_losses, rtol=1e-5, atol=1e-7)
    for key, value in finals["torch"].items():
        np.testing.assert_allclose(finals["tensorflow"][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_example_prints_the_same_falling_losses_on_both_backends(
    both_backends: list[str],
) -> None:
    script = ROOT / "examples" / "sequence_lstm.py"
    printed: dict[str, list[float]] = {}
    for name in both_backends:
        env = {**os.environ, "TWINNN_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("TWINNN_REPORT_FILE", None)
        run = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "outputs (3, 10, 128)" in run.stdout
        assert "padded steps exactly zero: True" in run.stdout
        printed[name] = [
            float(v) for v in re.findall(r"(?:loss|held-out|training) ([0-9.]+)", run.stdout)
        ]
    torch_values, tf_values = np.array(printed["torch"]), np.array(printed["tensorflow"])
    assert len(torch_values) >= 10 and len(torch_values) == len(tf_values)
    np.testing.assert_allclose(tf_values, torch_values, rtol=1e-4)
    before, last_held_out = torch_values[0], torch_values[-1]
    assert last_held_out < before / 10  # it really learns: 0.32 -> about 0.01


@pytest.mark.slow
def test_jit_train_step_matches_eager(backend: str) -> None:
    """``jit=True`` (torch.compile / XLA) trains the LSTM to the same losses as eager steps."""
    batches = _batches(3)
    losses = []
    for jit in (False, True):
        tn.seed(5)
        model = _Tagger()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.05), jit=jit)
        losses.append([float(tn.to_numpy(step(*batch))) for batch in batches])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5, atol=1e-7)
