"""torch against tensorflow in one process (DESIGN.md §9): identical init, outputs within
float32 rounding, identical loss curves within rtol 1e-5."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn


class MLP(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = tn.Linear(6, 16)
        self.out = tn.Linear(16, 2, init="torch")

    def forward(self, x: Any) -> Any:
        return self.out(tn.tanh(self.hidden(x)))


def _build(backend: str, factory: Any, seed: int = 0) -> Any:
    tn.set_backend(backend)
    tn.seed(seed)
    return factory()


@pytest.mark.parametrize(
    "factory",
    [lambda: tn.Linear(5, 1), lambda: tn.Linear(64, 32, init="torch"), MLP],
    ids=["linear", "linear-torch-init", "mlp"],
)
def test_same_seed_gives_bit_identical_state_dict(both_backends: list[str], factory: Any) -> None:
    states = [_build(b, factory, seed=11).state_dict() for b in both_backends]
    assert list(states[0]) == list(states[1])
    for name in states[0]:
        assert states[0][name].dtype == states[1][name].dtype == np.float32
        np.testing.assert_array_equal(states[0][name], states[1][name], err_msg=name)


def test_forward_outputs_agree(both_backends: list[str]) -> None:
    x = np.random.default_rng(0).standard_normal((7, 3, 6)).astype(np.float32)
    outs = [tn.to_numpy(_build(b, MLP)(x)) for b in both_backends]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def _train(backend: str, steps: int) -> tuple[list[float], dict[str, np.ndarray]]:
    model = _build(backend, MLP)
    opt = tn.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    step = tn.train_step(model, tn.mse_loss, opt)
    rng = np.random.default_rng(4)
    losses = []
    for i in range(steps):
        batch = 8 + (i % 5)  # a new batch size every step
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        y = rng.standard_normal((batch, 2)).astype(np.float32)
        opt.lr = 0.05 if i < steps // 2 else 0.02
        losses.append(float(tn.to_numpy(step(x, y))))
    return losses, model.state_dict()


def test_100_steps_agree(both_backends: list[str]) -> None:
    (l_torch, s_torch), (l_tf, s_tf) = (_train(b, 100) for b in both_backends)
    np.testing.assert_allclose(l_torch, l_tf, rtol=1e-5, atol=1e-6)
    for name in s_torch:
        np.testing.assert_allclose(s_torch[name], s_tf[name], rtol=1e-5, atol=1e-6)


def test_first_step_gradients_agree(both_backends: list[str]) -> None:
    """With lr=1 and no momentum, the change of the weights is the gradient."""
    x = np.random.default_rng(9).standard_normal((10, 6)).astype(np.float32)
    y = np.random.default_rng(8).standard_normal((10, 2)).astype(np.float32)
    grads = []
    for b in both_backends:
        model = _build(b, MLP)
        before = model.state_dict()
        tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=1.0))(x, y)
        after = model.state_dict()
        grads.append({n: before[n] - after[n] for n in before})
    for name in grads[0]:
        np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)


def test_example_script_prints_same_losses(both_backends: list[str]) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "linear_regression.py"
    outputs = []
    for b in both_backends:
        env = {**os.environ, "TWINNN_BACKEND": b}
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(
            [float(line.split()[-1]) for line in proc.stdout.splitlines() if "loss" in line]
        )
    assert len(outputs[0]) == 11
    # printed with 6 decimals: the same to one unit of the last digit (README.md)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1.01e-6)
    assert outputs[0][-1] < outputs[0][0]
