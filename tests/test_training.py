"""train_step / eval_step: compilation, eager mode, retracing, inputs and errors (DESIGN.md §7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors


class Counting(tn.Module):
    """Counts how often forward's Python body runs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = tn.Linear(4, 1)
        self.calls = 0

    def forward(self, x: Any) -> Any:
        self.calls += 1
        return self.linear(x)


def _batches(sizes: list[int], seq: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(sizes):
        lead = (n, 3 + i) if seq else (n,)
        out.append(
            (
                rng.standard_normal((*lead, 4)).astype(np.float32),
                rng.standard_normal((*lead, 1)).astype(np.float32),
            )
        )
    return out


@pytest.mark.parametrize("seq", [False, True], ids=["batch", "batch-and-time"])
def test_compiled_step_traces_once_for_new_batch_sizes(backend: str, seq: bool) -> None:
    model = Counting()
    opt = tn.SGD(model.parameters(), lr=0.01)
    step = tn.train_step(model, tn.mse_loss, opt)
    for i, (x, y) in enumerate(_batches([8, 5, 16, 2, 1], seq)):
        opt.lr = 0.01 / (i + 1)  # a schedule: no retrace either
        step(x, y)
    if backend == "tensorflow":
        assert model.calls == 1, "forward ran outside tracing (or retraced)"
        assert step.trace_count == 1  # type: ignore[attr-defined]
    else:
        assert model.calls == 5  # torch runs eagerly by default


@pytest.mark.parametrize("how", ["env", "argument"])
def test_eager_mode_runs_forward_every_step(
    backend: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Counting()
    if how == "env":
        monkeypatch.setenv("TWINNN_EAGER", "1")
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.01))
    else:
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.01), eager=True)
    for x, y in _batches([8, 8, 5]):
        step(x, y)
    assert model.calls == 3


def _linear_losses(**step_options: bool) -> list[float]:
    """Losses of 4 momentum steps of a seeded Linear(4, 1) on batches of changing size."""
    tn.seed(1)
    model = tn.Linear(4, 1)
    opt = tn.SGD(model, lr=0.1, momentum=0.9)
    step = tn.train_step(model, tn.mse_loss, opt, **step_options)
    return [float(tn.to_numpy(step(x, y))) for x, y in _batches([8, 6, 8, 3])]


def test_eager_and_compiled_give_the_same_losses(backend: str) -> None:
    np.testing.assert_allclose(_linear_losses(eager=False), _linear_losses(eager=True), rtol=1e-6)


def test_eval_step_computes_loss_without_updating(backend: str) -> None:
    model = tn.Linear(4, 1)
    before = model.state_dict()
    evaluate = tn.eval_step(model, tn.mse_loss)
    x, y = _batches([6])[0]
    loss = float(tn.to_numpy(evaluate(x, y)))
    pred = x @ before["weight"] + before["bias"]
    assert loss == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    np.testing.assert_array_equal(model.state_dict()["weight"], before["weight"])


def test_float64_arrays_are_cast_native_float64_tensors_refused(backend: str) -> None:
    model = tn.Linear(4, 1)
    evaluate = tn.eval_step(model, tn.mse_loss)
    x, y = _batches([5])[0]
    as_f32 = tn.to_numpy(evaluate(x, y))
    as_f64 = tn.to_numpy(evaluate(x.astype(np.float64), y.astype(np.float64).tolist()))
    np.testing.assert_array_equal(as_f32, as_f64)
    native64 = tn.tensor(x, dtype="float64")
    with pytest.raises(errors.DTypeError, match=r"'x' must be float32.*float64") as info:
        model(native64)
    assert isinstance(info.value, TypeError)


def test_step_arguments_are_checked(backend: str) -> None:
    model = tn.Linear(4, 1)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1))
    with pytest.raises(errors.ArgumentError, match=r"at least 2 arguments, got 1"):
        step(np.zeros((2, 4), np.float32))
    with pytest.raises(errors.ShapeError, match=r"loss_fn must return a scalar"):
        tn.train_step(model, lambda p, t: p - t, tn.SGD(model, lr=0.1))(
            np.zeros((2, 4), np.float32), np.zeros((2, 1), np.float32)
        )
    with pytest.raises(errors.ArgumentTypeError, match=r"model must be a twinnn.Module"):
        tn.train_step(object(), tn.mse_loss, tn.SGD(model, lr=0.1))  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentTypeError, match=r"loss_fn must be callable"):
        tn.train_step(model, "mse", tn.SGD(model, lr=0.1))  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentTypeError, match=r"optimizer must be a twinnn.SGD"):
        tn.train_step(model, tn.mse_loss, object())  # type: ignore[arg-type]


def test_ops_use_numpy_argument_names(backend: str) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    np.testing.assert_allclose(
        tn.to_numpy(tn.mean(x, axis=1, keepdims=True)), x.mean(axis=1, keepdims=True)
    )
    np.testing.assert_allclose(tn.to_numpy(tn.sum(x, axis=(0, 2))), x.sum(axis=(0, 2)))
    np.testing.assert_allclose(tn.to_numpy(tn.sum(x)), x.sum())
    np.testing.assert_allclose(tn.to_numpy(tn.concat([x, x], axis=-1)), np.concatenate([x, x], -1))
    np.testing.assert_allclose(tn.to_numpy(tn.reshape(x, (4, -1))), x.reshape(4, -1))
    np.testing.assert_allclose(tn.to_numpy(tn.relu(x)), np.maximum(x, 0))
    np.testing.assert_allclose(tn.to_numpy(tn.tanh(x / 10)), np.tanh(x / 10), rtol=1e-6)
    np.testing.assert_allclose(
        tn.to_numpy(tn.sigmoid(x / 10)), 1 / (1 + np.exp(-x / 10)), rtol=1e-6
    )
    np.testing.assert_allclose(tn.to_numpy(tn.matmul(x, np.ones((4, 2)))), x @ np.ones((4, 2)))
    assert tn.to_numpy(tn.tensor([1, 2], dtype="int64")).dtype == np.int64


@pytest.mark.slow
def test_torch_jit_step_matches_eager() -> None:
    pytest.importorskip("torch")
    tn.set_backend("torch")
    np.testing.assert_allclose(_linear_losses(jit=False), _linear_losses(jit=True), rtol=1e-5)


def test_shape_errors_inside_a_compiled_step_stay_twinnn_errors(backend: str) -> None:
    model = tn.Linear(4, 1)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1))
    with pytest.raises(errors.ShapeError, match=r"'x'.*in_features=4.*\(\?, 3\)|\(2, 3\)"):
        step(np.zeros((2, 3), np.float32), np.zeros((2, 1), np.float32))
    with pytest.raises(errors.ShapeError, match=r"'target'.*got \(\?,\)|got \(2,\)"):
        step(np.zeros((2, 4), np.float32), np.zeros(2, np.float32))


class Scaled(tn.Module):
    """Takes a rank-1 per-example argument, like an LSTM's lengths."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = tn.Linear(4, 1)
        self.calls = 0

    def forward(self, x: Any, scale: Any) -> Any:
        self.calls += 1
        return self.linear(x) * tn.reshape(scale, (-1, 1))


def test_rank1_arguments_do_not_retrace_for_new_batch_sizes(backend: str) -> None:
    model = Scaled()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.01))
    for x, y in _batches([8, 5, 16, 2]):
        step(x, np.ones(len(x), np.float32), y)
    assert model.calls == (1 if backend == "tensorflow" else 4)
