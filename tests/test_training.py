"""train_step / eval_step: compilation, eager mode, retracing, inputs and errors (DESIGN.md §7)."""

from __future__ import annotations

import functools
from collections.abc import Callable
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


def _batches(
    sizes: list[int], seq: bool = False, times: list[int] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(x, y)`` of batch sizes ``sizes``; with ``seq`` a time axis too, of lengths ``times``
    (default ``3, 4, 5, ...``)."""
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(sizes):
        lead = (n, times[i] if times else 3 + i) if seq else (n,)
        out.append(
            (
                rng.standard_normal((*lead, 4)).astype(np.float32),
                rng.standard_normal((*lead, 1)).astype(np.float32),
            )
        )
    return out


def _count_torch_compiles(monkeypatch: pytest.MonkeyPatch, backend: str = "eager") -> Any:
    """Make every ``torch.compile`` this test calls count the graphs Dynamo compiles.

    The counter is a Dynamo backend (``backend="eager"``: the graphs run as captured, no
    Inductor; ``"inductor"``: the real compiler). Dynamo decides when to recompile (its guards
    on shapes and values), so counting its graphs counts recompilations. Dynamo's caches are
    reset first, so no graph of an earlier test is reused.
    """
    import torch
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounter() if backend == "eager" else CompileCounterWithBackend(backend)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    return counter


def _compiled_step(
    model: tn.Module, opt: tn.SGD, backend: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Callable[[], int]]:
    """The step that compiles on each backend and a function that counts its compilations:
    TensorFlow's default step (``trace_count``), torch's ``jit=True`` step (Dynamo graphs;
    torch's default step runs eagerly and compiles nothing)."""
    if backend == "tensorflow":
        step = tn.train_step(model, tn.mse_loss, opt)
        return step, lambda: int(step.trace_count)
    counter = _count_torch_compiles(monkeypatch)
    return tn.train_step(model, tn.mse_loss, opt, jit=True), lambda: int(counter.frame_count)


@pytest.mark.parametrize("seq", [False, True], ids=["batch", "batch-and-time"])
def test_compiled_step_traces_once_for_new_batch_sizes(
    backend: str, seq: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorFlow's step traces once for every batch size and sequence length. torch's
    ``jit=True`` step compiles once (each graph Dynamo splits it into) for sizes >= 2, and a
    batch or a sequence of length 1 compiles again (torch specialises sizes 0 and 1), as
    docs/debugging.md says."""
    model = Counting()
    opt = tn.SGD(model.parameters(), lr=0.01)
    step, compiles = _compiled_step(model, opt, backend, monkeypatch)
    counts = []
    for i, (x, y) in enumerate(_batches([8, 5, 16, 2, 1, 3], seq, times=[3, 4, 5, 6, 7, 1])):
        opt.lr = 0.01 / (i + 1)  # a schedule: no retrace either
        step(x, y)
        counts.append(compiles())
    assert counts[0] >= 1, "the step compiled nothing: the count is not measuring it"
    if backend == "tensorflow":
        assert model.calls == 1, "forward ran outside tracing (or retraced)"
        assert counts == [1] * 6
        return
    assert counts[:4] == [counts[0]] * 4, f"recompiled for a new batch size: {counts}"
    assert counts[4] > counts[3], "a batch of 1 no longer compiles again: update the docs"
    if seq:  # batch 3, time 1
        assert counts[5] > counts[4], "a sequence of 1 no longer compiles again: update the docs"
    else:  # batch 3 reuses the dynamic graphs
        assert counts[5] == counts[4], f"recompiled for a new batch size: {counts}"


@pytest.mark.backends("tensorflow")
def test_a_new_argument_structure_traces_one_more_graph(backend: str) -> None:
    """One graph per structure (rank, last dimension, dtype): rank-3 inputs after rank-2 ones
    trace a second graph; going back to rank 2 reuses the first."""
    model = Counting()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.01))
    counts = []
    for x, y in [*_batches([4, 6]), *_batches([5, 2], seq=True), *_batches([3])]:
        step(x, y)
        counts.append(step.trace_count)  # type: ignore[attr-defined]
    assert counts == [1, 1, 2, 2, 2]
    assert model.calls == 2


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


def _linear_losses(
    on_step: Callable[[], object] = lambda: None, **step_options: bool
) -> list[float]:
    """Losses of 4 momentum steps of a seeded Linear(4, 1) on batches of changing size;
    ``on_step()`` is called after each step."""
    tn.seed(1)
    model = tn.Linear(4, 1)
    opt = tn.SGD(model, lr=0.1, momentum=0.9)
    step = tn.train_step(model, tn.mse_loss, opt, **step_options)
    losses = []
    for x, y in _batches([8, 6, 8, 3]):
        losses.append(float(tn.to_numpy(step(x, y))))
        on_step()
    return losses


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
    with pytest.raises(
        errors.ArgumentTypeError,
        match=r"optimizer must be a twinnn optimizer \(SGD, Adam, ...\), got object",
    ):
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
@pytest.mark.backends("torch")
def test_torch_jit_step_matches_eager_and_inductor_compiles_once(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real compiler (Inductor; about 15 s on 2 CPU cores with a cold cache): the same
    losses as eager steps, and batch sizes 8, 6, 8, 3 reuse the graphs of the first batch."""
    eager = _linear_losses(jit=False)
    counter = _count_torch_compiles(monkeypatch, "inductor")
    counts: list[int] = []
    compiled = _linear_losses(on_step=lambda: counts.append(counter.frame_count), jit=True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5)
    assert counts[0] >= 1 and counts == [counts[0]] * 4, counts


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


def test_rank1_arguments_do_not_retrace_for_new_batch_sizes(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Scaled()
    step, compiles = _compiled_step(model, tn.SGD(model, lr=0.01), backend, monkeypatch)
    counts = []
    for x, y in _batches([8, 5, 16, 2]):
        step(x, np.ones(len(x), np.float32), y)
        counts.append(compiles())
    assert counts[0] >= 1, "the step compiled nothing: the count is not measuring it"
    assert counts == [counts[0]] * 4, f"recompiled for a new batch size: {counts}"
    if backend == "tensorflow":
        assert counts[0] == 1 and model.calls == 1


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("seq", [False, True], ids=["batch", "batch-and-time"])
def test_xla_step_traces_once_per_input_shape(backend: str, seq: bool) -> None:
    """``jit=True`` on TensorFlow (``tf.function(jit_compile=True)``) traces with the full input
    shapes, once per shape (XLA compiles one executable per shape anyway): a shape seen before
    reuses its trace, also under a learning-rate schedule (docs/debugging.md)."""
    model = Counting()
    opt = tn.SGD(model.parameters(), lr=0.01)
    step = tn.train_step(model, tn.mse_loss, opt, jit=True)
    batches = _batches([8, 5, 16, 2, 1, 3], seq, times=[3, 4, 5, 6, 7, 1])
    counts = []
    for i, (x, y) in enumerate([*batches, *batches]):
        opt.lr = 0.01 / (i + 1)
        step(x, y)
        counts.append(step.trace_count)  # type: ignore[attr-defined]
    assert counts == [1, 2, 3, 4, 5, 6] + [6] * 6
    assert model.calls == 6


@pytest.mark.backends("tensorflow")
def test_xla_step_matches_the_default_step(backend: str) -> None:
    np.testing.assert_allclose(_linear_losses(jit=True), _linear_losses(jit=False), rtol=1e-6)


@pytest.mark.backends("torch")
def test_torch_jit_step_is_one_graph_without_breaks(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward and loss of a ``jit=True`` step compile into one graph: twinnn's own code
    on the path (backend selection, argument and shape checks) causes no graph break (a
    ``ContextVar.get`` in it did, which made Dynamo fall back to eager for the whole loss)."""
    import torch._dynamo

    counter = _count_torch_compiles(monkeypatch)
    torch._dynamo.utils.counters.clear()
    model = tn.Linear(4, 1)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.01), jit=True)
    for x, y in _batches([8, 5, 16], False):
        step(x, y)
    assert counter.frame_count == 1
    assert dict(torch._dynamo.utils.counters["graph_break"]) == {}
