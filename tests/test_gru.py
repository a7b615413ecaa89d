"""GRU on both backends against native ``torch.nn.GRU`` in float64 (converted weights, packed
sequences), values and gradients; padding invariance, each sequence equal to running it alone
(hypothesis), length 0, no retrace on TensorFlow, init presets, bad input, interop."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twinnn as tn
from _native_grads import f32_tol, torch_numpy, torch_tensor
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError

torch = pytest.importorskip("torch")

Array = np.ndarray
LENGTHS = np.array([5, 0, 1, 3, 5, 2])  # unsorted, with 0, 1 and T
B, T, F, H = 6, 5, 3, 4
CONFIGS = [(1, False), (1, True), (2, False), (2, True)]


# --- helpers --------------------------------------------------------------------------------------
def leaf(backend: str, value: Array) -> Any:
    """A native float32 tensor that gradients can be taken with respect to."""
    if backend == "torch":
        return torch_tensor(np.asarray(value, np.float32), requires_grad=True)
    import tensorflow as tf

    return tf.Variable(np.asarray(value, np.float32))


def native_grads(backend: str, loss_of: Callable[[], Any], wrt: Sequence[Any]) -> list[Array]:
    """Gradients of the scalar ``loss_of()`` w.r.t. ``wrt`` (autograd / GradientTape)."""
    if backend == "torch":
        return [torch_numpy(g) for g in torch.autograd.grad(loss_of(), list(wrt))]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of()
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, list(wrt))]


def _problem(num_layers: int, dirs: int, seed: int = 1) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((B, T, F)).astype(np.float32),
        "h0": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((B, T, H * dirs)).astype(np.float32),
        "Sh": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32),
    }


def torch_reference(
    state: dict[str, Array],
    data: dict[str, Array],
    lengths: Array,
    num_layers: int,
    bidirectional: bool,
) -> tuple[Array, Array, dict[str, Array]]:
    """Native ``torch.nn.GRU`` in float64 holding ``state`` (twinnn layout converted by hand:
    ``weight_ih = w_ih.T``), run on the packed sequences of ``lengths > 0``; returns ``out``,
    ``h`` and the gradients of ``sum(out * R) + sum(h * Sh)`` in twinnn's names and layout."""
    ref = torch.nn.GRU(F, H, num_layers, bidirectional=bidirectional, batch_first=True)
    ref = ref.double()
    with torch.no_grad():
        for name, param in ref.named_parameters():
            twin = name.replace("weight_", "w_")
            value = state[twin].T if twin.startswith("w_") else state[twin]
            param.copy_(torch.from_numpy(np.ascontiguousarray(value, np.float64)))
    x = torch.tensor(data["x"], dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor(data["h0"], dtype=torch.float64, requires_grad=True)
    R = torch.tensor(data["R"], dtype=torch.float64)
    Sh = torch.tensor(data["Sh"], dtype=torch.float64)
    rows = torch.tensor(np.flatnonzero(lengths > 0))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x[rows], torch.tensor(lengths[lengths > 0]), batch_first=True, enforce_sorted=False
    )
    out_packed, h_rows = ref(packed, h0[:, rows].contiguous())
    out_rows, _ = torch.nn.utils.rnn.pad_packed_sequence(
        out_packed, batch_first=True, total_length=T
    )
    out = torch.zeros(B, T, H * (2 if bidirectional else 1), dtype=torch.float64)
    out = out.index_copy(0, rows, out_rows)
    h = h0.index_copy(1, rows, h_rows)  # len == 0: the initial state
    loss = (out * R).sum() + (h * Sh).sum()
    names = [n for n, _ in ref.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in ref.named_parameters()] + [x, h0])
    expected: dict[str, Array] = {}
    for name, grad in zip([*names, "x", "h0"], grads, strict=True):
        twin = name.replace("weight_", "w_")
        expected[twin] = grad.numpy().T if twin.startswith("w_") else grad.numpy()
    return out.detach().numpy(), h.detach().numpy(), expected


def _with_garbage(x: Array, lengths: Array, values: Sequence[float]) -> Array:
    dirty = x.copy()
    for b, n in enumerate(lengths):
        dirty[b, n:] = np.resize(np.asarray(values, np.float32), dirty[b, n:].shape)
    return dirty


# --- numerics -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("num_layers", "bidirectional"), CONFIGS)
def test_outputs_state_and_gradients_match_native_torch_gru_in_float64(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs)
    layer = tn.GRU(F, H, num_layers, bidirectional, init="torch")
    x, h0 = leaf(backend, data["x"]), leaf(backend, data["h0"])
    R, Sh = tn.tensor(data["R"]), tn.tensor(data["Sh"])
    result: dict[str, Any] = {}

    def loss_of() -> Any:
        out, h = layer(x, LENGTHS, h0)
        result.update(out=out, h=h)
        return tn.sum(out * R) + tn.sum(h * Sh)

    names = [n for n, _ in layer.named_parameters()]
    grads = native_grads(backend, loss_of, [p for _, p in layer.named_parameters()] + [x, h0])
    out, h, expected = torch_reference(layer.state_dict(), data, LENGTHS, num_layers, bidirectional)
    np.testing.assert_allclose(tn.to_numpy(result["out"]), out, **f32_tol(1e-5, 1e-6))
    np.testing.assert_allclose(tn.to_numpy(result["h"]), h, **f32_tol(1e-5, 1e-6))
    for name, got in zip([*names, "x", "h0"], grads, strict=True):
        np.testing.assert_allclose(got, expected[name], **f32_tol(1e-5, 2e-6), err_msg=name)
        assert np.abs(expected[name]).max() > 0 or name == "x"  # every gradient is exercised
    # The contract's exact parts: zero past each length, h0 for len == 0, zero x gradient there.
    got_out = tn.to_numpy(result["out"])
    for b, n in enumerate(LENGTHS):
        assert np.all(got_out[b, n:] == 0.0)
        assert np.all(grads[len(names)][b, n:] == 0.0)
    np.testing.assert_array_equal(tn.to_numpy(result["h"])[:, 1], data["h0"][:, 1])


@pytest.mark.backends("torch")
def test_torch_padded_path_matches_the_reference_and_ignores_garbage(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CPU torch runs the GRU with lengths packed; on GPU the padded path (no host sync).
    Here the padded path runs on CPU: the same reference values and gradients, and garbage
    in the padding changes nothing."""
    from twinnn.backends.torch import rnn

    def padded(*args: Any) -> tuple[Any, Any]:
        x, lengths, h0, weights, num_layers, bidirectional = args
        out, (h,) = rnn._stack(
            x, lengths, (h0,), weights, num_layers, bidirectional, rnn._gru_direction, "GRU"
        )
        return out, h

    monkeypatch.setattr(rnn, "_gru_packed", padded)
    data = _problem(2, 2, seed=5)
    layer = tn.GRU(F, H, 2, True, init="torch")
    params = [p for _, p in layer.named_parameters()]
    R, Sh = tn.tensor(data["R"]), tn.tensor(data["Sh"])
    runs = []
    for x_value in (data["x"], _with_garbage(data["x"], LENGTHS, [1e30, np.inf, np.nan])):
        x, h0 = leaf(backend, x_value), leaf(backend, data["h0"])
        seen: dict[str, Any] = {}

        def loss_of(x: Any = x, h0: Any = h0, seen: dict[str, Any] = seen) -> Any:
            out, h = layer(x, LENGTHS, h0)
            seen.update(out=tn.to_numpy(out), h=tn.to_numpy(h))
            return tn.sum(out * R) + tn.sum(h * Sh)

        runs.append((seen, native_grads(backend, loss_of, [*params, x, h0])))
    out, h, expected = torch_reference(layer.state_dict(), data, LENGTHS, 2, True)
    np.testing.assert_allclose(runs[0][0]["out"], out, **f32_tol(1e-5, 1e-6))
    np.testing.assert_allclose(runs[0][0]["h"], h, **f32_tol(1e-5, 1e-6))
    names = [n for n, _ in layer.named_parameters()]
    for name, got in zip([*names, "x", "h0"], runs[0][1], strict=True):
        np.testing.assert_allclose(got, expected[name], **f32_tol(1e-5, 2e-6), err_msg=name)
    for key in ("out", "h"):
        np.testing.assert_array_equal(runs[1][0][key], runs[0][0][key])
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_without_lengths_matches_full_lengths_and_the_reference(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs, seed=2)
    data["h0"] = np.zeros_like(data["h0"])
    layer = tn.GRU(F, H, num_layers, bidirectional, init="torch")
    out, h = layer(data["x"])
    full = np.full(B, T)
    want_out, want_h, _ = torch_reference(layer.state_dict(), data, full, num_layers, bidirectional)
    np.testing.assert_allclose(tn.to_numpy(out), want_out, **f32_tol(1e-5, 1e-6))
    np.testing.assert_allclose(tn.to_numpy(h), want_h, **f32_tol(1e-5, 1e-6))
    with_lengths, h_lengths = layer(data["x"], full)
    np.testing.assert_allclose(tn.to_numpy(with_lengths), tn.to_numpy(out), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tn.to_numpy(h_lengths), tn.to_numpy(h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_garbage_in_padding_changes_no_output_state_or_gradient(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs, seed=3)
    layer = tn.GRU(F, H, num_layers, bidirectional, init="torch")
    R, Sh = tn.tensor(data["R"]), tn.tensor(data["Sh"])
    params = [p for _, p in layer.named_parameters()]
    clean = np.where(np.arange(T)[None, :, None] < LENGTHS[:, None, None], data["x"], 0.0)
    runs = []
    for x_value in (clean, _with_garbage(data["x"], LENGTHS, [1e30, -1e30, np.inf, np.nan])):
        x = leaf(backend, x_value.astype(np.float32))
        seen: dict[str, Any] = {}

        def loss_of(x: Any = x, seen: dict[str, Any] = seen) -> Any:
            out, h = layer(x, LENGTHS)
            seen.update(out=tn.to_numpy(out), h=tn.to_numpy(h))
            return tn.sum(out * R) + tn.sum(h * Sh)

        runs.append((seen, native_grads(backend, loss_of, [*params, x])))
    (first, grads_a), (second, grads_b) = runs
    for key in ("out", "h"):
        np.testing.assert_array_equal(first[key], second[key])
    for a, b in zip(grads_a, grads_b, strict=True):
        assert np.all(np.isfinite(b))
        np.testing.assert_array_equal(a, b)


def test_compiled_train_step_update_is_minus_the_reference_gradient(backend: str) -> None:
    """One SGD step with lr=1 inside ``train_step`` (tf.function on TensorFlow)."""
    data = _problem(2, 2, seed=4)
    data["h0"] = np.zeros_like(data["h0"])
    data["Sh"] = np.full_like(data["Sh"], 0.5)
    layer = tn.GRU(F, H, 2, True, init="torch")
    before = layer.state_dict()

    def loss_fn(pred: Any, seeds: Any) -> Any:
        out, h = pred
        return tn.sum(out * seeds) + tn.sum(h) * 0.5

    tn.train_step(layer, loss_fn, tn.SGD(layer.parameters(), lr=1.0))(data["x"], LENGTHS, data["R"])
    *_, grads = torch_reference(before, data, LENGTHS, 2, True)
    for name, value in layer.state_dict().items():
        np.testing.assert_allclose(before[name] - value, grads[name], **f32_tol(1e-5, 2e-6))


def test_zero_time_steps_and_all_lengths_zero(backend: str) -> None:
    layer = tn.GRU(F, H, 2, True, init="torch")  # non-zero biases: one step would move h
    h0 = np.random.default_rng(6).standard_normal((4, 2, H)).astype(np.float32)
    for lengths in ([0, 0], None):
        out, h = layer(np.zeros((2, 0, F), np.float32), lengths, h0)
        assert tuple(out.shape) == (2, 0, 2 * H)
        np.testing.assert_array_equal(tn.to_numpy(h), h0)
    out, h = layer(np.ones((2, 3, F), np.float32), [0, 0], h0)
    assert np.all(tn.to_numpy(out) == 0.0)
    np.testing.assert_array_equal(tn.to_numpy(h), h0)
    # Inside a compiled step the time axis is unknown while tracing; T == 0 still works.
    step = tn.eval_step(layer, lambda pred, _: tn.sum(pred[1] ** 2))
    assert float(tn.to_numpy(step(np.ones((2, 3, F), np.float32), np.zeros(1)))) > 0.0
    assert float(tn.to_numpy(step(np.ones((2, 0, F), np.float32), np.zeros(1)))) == 0.0


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
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(problem=problems())
def test_each_sequence_equals_running_it_alone_unpadded(
    backend: str, problem: dict[str, Any]
) -> None:
    p = problem
    rng = np.random.default_rng(p["seed"])
    dirs = 2 if p["bidirectional"] else 1
    layer = tn.GRU(p["features"], p["hidden"], p["num_layers"], p["bidirectional"], init="torch")
    x = rng.uniform(-2, 2, (p["batch"], p["time"], p["features"])).astype(np.float32)
    h0 = rng.standard_normal((p["num_layers"] * dirs, p["batch"], p["hidden"])).astype(np.float32)
    out, h = (tn.to_numpy(t) for t in layer(x, p["lengths"], h0))
    assert out.shape == (p["batch"], p["time"], p["hidden"] * dirs)
    for b, n in enumerate(p["lengths"]):
        assert np.all(out[b, n:] == 0.0)
        if n == 0:
            np.testing.assert_array_equal(h[:, b], h0[:, b])
            continue
        a_out, a_h = (tn.to_numpy(t) for t in layer(x[b : b + 1, :n], None, h0[:, b : b + 1]))
        np.testing.assert_allclose(out[b, :n], a_out[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h[:, b], a_h[:, 0], rtol=1e-5, atol=1e-6)


# --- training parity, no retrace -----------------------------------------------------------------
class _Tagger(tn.Module):
    """2-layer bidirectional GRU; the head reads the last layer's two final states and the mean
    of the outputs, so outputs, states and both directions all get gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = tn.GRU(F, 6, num_layers=2, bidirectional=True, init="torch")
        self.head = tn.Linear(24, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        out, h = self.gru(x, lengths)
        return self.head(tn.concat([h[-2], h[-1], tn.mean(out, axis=1)], axis=-1))


def _batches(count: int) -> list[tuple[Array, Array, Array]]:
    """Batch size in [2, 6] and time in [1, 8] change every step; lengths in [0, T]; the
    padding holds 1e6 (it must be ignored)."""
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(count):
        batch, time = int(rng.integers(2, 7)), int(rng.integers(1, 9))
        lengths = rng.integers(0, time + 1, batch)
        x = rng.standard_normal((batch, time, F)).astype(np.float32)
        # a learnable target: the mean of feature 0 over the valid steps (0 for len == 0)
        valid = np.arange(time)[None, :] < lengths[:, None]
        y = (x[:, :, 0] * valid).sum(1, keepdims=True) / np.maximum(lengths[:, None], 1)
        x[~valid] = 1e6
        batches.append((x, lengths, y.astype(np.float32)))
    return batches


def test_thirty_momentum_steps_on_changing_shapes_agree_between_backends(
    both_backends: list[str],
) -> None:
    """The losses and final parameters agree within float32 rounding, and TensorFlow's
    compiled step traced once for all 30 batch sizes and lengths."""
    batches = _batches(30)
    losses: dict[str, Array] = {}
    finals: dict[str, dict[str, Array]] = {}
    for name in both_backends:
        tn.set_backend(name)
        tn.seed(3)
        model = _Tagger()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.05, momentum=0.9))
        losses[name] = np.array([float(tn.to_numpy(step(*batch))) for batch in batches])
        finals[name] = model.state_dict()
        if name == "tensorflow":
            assert step.trace_count == 1  # type: ignore[attr-defined]
    assert np.all(np.isfinite(losses["torch"]))
    assert losses["torch"][-5:].mean() < losses["torch"][:5].mean()  # it learns
    np.testing.assert_allclose(losses["tensorflow"], losses["torch"], rtol=1e-5, atol=1e-7)
    for key, value in finals["torch"].items():
        np.testing.assert_allclose(finals["tensorflow"][key], value, rtol=1e-5, atol=1e-6)


# --- init, names ----------------------------------------------------------------------------------
def _expected_init(preset: str, seed: int) -> dict[str, Array]:
    """Independent NumPy re-draw of the presets for GRU(F, H, 2, True), in parameter order."""
    rng = np.random.default_rng(seed)
    expected: dict[str, Array] = {}
    for layer in range(2):
        fan_in = F if layer == 0 else 2 * H
        for suffix in ("", "_reverse"):
            n_ih, n_hh, n_bi, n_bh = (
                f"{p}_l{layer}{suffix}" for p in ("w_ih", "w_hh", "bias_ih", "bias_hh")
            )
            if preset == "torch":
                k = 1.0 / math.sqrt(H)
                for name, shape in ((n_ih, (fan_in, 3 * H)), (n_hh, (H, 3 * H))):
                    expected[name] = rng.uniform(-k, k, shape).astype(np.float32)
                for name in (n_bi, n_bh):
                    expected[name] = rng.uniform(-k, k, 3 * H).astype(np.float32)
            else:
                limit = math.sqrt(6.0 / (fan_in + 3 * H))
                expected[n_ih] = rng.uniform(-limit, limit, (fan_in, 3 * H)).astype(np.float32)
                q, r = np.linalg.qr(rng.standard_normal((3 * H, H)))
                expected[n_hh] = (q * np.sign(np.diag(r))).T.astype(np.float32)
                expected[n_bi] = expected[n_bh] = np.zeros(3 * H, np.float32)
    return expected


@pytest.mark.parametrize("preset", ["default", "torch"])
def test_init_presets_bit_identical_on_both_backends(both_backends: list[str], preset: str) -> None:
    states = []
    for name in both_backends:
        tn.set_backend(name)
        tn.seed(7)
        states.append(tn.GRU(F, H, 2, True, init=preset).state_dict())
    expected = _expected_init(preset, 7)
    assert list(states[0]) == list(expected)  # names, in registration order
    for state in states:
        for name, value in expected.items():
            np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_parameter_names_shapes_and_repr(backend: str) -> None:
    layer = tn.GRU(3, 5, num_layers=2)
    shapes = {n: tuple(v.shape) for n, v in layer.state_dict().items()}
    assert shapes == {
        "w_ih_l0": (3, 15),
        "w_hh_l0": (5, 15),
        "bias_ih_l0": (15,),
        "bias_hh_l0": (15,),
        "w_ih_l1": (5, 15),
        "w_hh_l1": (5, 15),
        "bias_ih_l1": (15,),
        "bias_hh_l1": (15,),
    }
    assert repr(layer) == "GRU(input_size=3, hidden_size=5, num_layers=2, bidirectional=False)"
    assert "dropout=0.25" in repr(tn.GRU(3, 5, 2, dropout=0.25))


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_size": 0}, ArgumentError, r"GRU\(input_size\) must be > 0, got 0"),
        ({"hidden_size": -2}, ArgumentError, r"GRU\(hidden_size\) must be > 0, got -2"),
        ({"num_layers": 1.5}, ArgumentTypeError, r"GRU\(num_layers\) must be an int, got float"),
        ({"bidirectional": 1}, ArgumentTypeError, r"GRU\(bidirectional\) must be a bool"),
        ({"dropout": 1.5}, ArgumentError, r"GRU\(dropout\) must be in \[0.0, 1.0\], got 1.5"),
        ({"dropout": "0.1"}, ArgumentTypeError, r"GRU\(dropout\) must be a float"),
        ({"init": "xavier"}, ArgumentError, r"GRU\(init=\.\.\.\) must be one of .*'xavier'"),
    ],
)
def test_bad_constructor_arguments(
    backend: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"input_size": F, "hidden_size": H, **kwargs}
    with pytest.raises(error, match=match):
        tn.GRU(**args)


def test_bad_call_arguments(backend: str) -> None:
    layer = tn.GRU(F, H, num_layers=2)
    x = np.zeros((B, T, F), np.float32)
    with pytest.raises(ShapeError, match=r"GRU.forward: argument 'x' must have shape \(batch, "):
        layer(np.zeros((B, T, 2), np.float32))
    with pytest.raises(DTypeError, match="'x' must be float32"):
        layer(tn.tensor(x, dtype="float64"))
    with pytest.raises(ArgumentError, match=r"GRU.forward: argument 'lengths' must be in \[0, 5\]"):
        layer(x, np.array([1, 2, 6, 0, 5, 7]))
    with pytest.raises(DTypeError, match=r"GRU.forward: argument 'lengths' must hold integers"):
        layer(x, np.full(B, 2.0))
    with pytest.raises(ShapeError, match=r"'lengths' must have shape \(batch,\).*got \(3,\)$"):
        layer(x, np.array([1, 2, 3]))
    with pytest.raises(
        ShapeError,
        match=r"GRU.forward: argument 'initial_state' must have shape \(2, batch, 4\) "
        r"\(num_layers \* directions, batch of x \(6, 5, 3\), hidden_size\), got \(1, 6, 4\)$",
    ):
        layer(x, LENGTHS, np.zeros((1, B, H), np.float32))
    with pytest.raises(ShapeError, match=r"'initial_state' must have shape.*got \(2, 5, 4\)"):
        layer(x, LENGTHS, np.zeros((2, B - 1, H), np.float32))
    with pytest.raises(DTypeError, match="'initial_state' must be float32"):
        layer(x, LENGTHS, tn.tensor(np.zeros((2, B, H)), dtype="float64"))
    with pytest.raises(ArgumentError, match=r"'padding' must be 'right' or 'left'.*got 'pre'"):
        layer(x, LENGTHS, padding="pre")
    if backend == "torch" and tn.device() != "cpu":
        return  # values of native lengths are a device-side assertion there
    with pytest.raises(ArgumentError, match=r"GRU.forward: argument 'lengths'.*got values \[9\]"):
        layer(x, tn.tensor([1, 2, 9, 0, 5, 5], dtype="int64"))


def test_bad_lengths_inside_train_step(backend: str) -> None:
    """Native lengths inside the compiled step: TensorFlow's graph assertion is re-raised as
    the same ArgumentError, naming the GRU."""
    if backend == "torch" and tn.device() != "cpu":
        pytest.skip("on a GPU torch checks lengths values with a device-side assertion")
    layer = tn.GRU(F, H)
    step = tn.train_step(
        layer, lambda pred, y: tn.mean(pred[0]) + tn.mean(y), tn.SGD(layer.parameters(), lr=0.1)
    )
    x = np.zeros((B, T, F), np.float32)
    step(x, LENGTHS, np.zeros((B, 1), np.float32))
    message = r"^GRU.forward: argument 'lengths' must be in \[0, 5\] .*got values \[8\]$"
    with pytest.raises(ArgumentError, match=message):
        step(x, np.array([1, 2, 8, 0, 5, 5]), np.zeros((B, 1), np.float32))


# --- interop: torch.nn.GRU, keras GRU ------------------------------------------------------------
def _torch_packed(native: Any, x: Array, lengths: Array) -> tuple[Array, Array]:
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        out, h = native(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out.numpy(), h.numpy()


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_torch_gru_converts_both_ways_exactly(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    from twinnn.interop.torch import from_torch, to_torch

    torch.manual_seed(0)
    native = torch.nn.GRU(F, H, num_layers, bidirectional=bidirectional, batch_first=True)
    native.dropout = 0.25 if num_layers > 1 else 0.0
    native.eval()
    layer = from_torch(native)
    assert isinstance(layer, tn.GRU) and layer.dropout == native.dropout
    state = layer.state_dict()
    np.testing.assert_array_equal(state["w_ih_l0"], native.weight_ih_l0.detach().numpy().T)
    np.testing.assert_array_equal(state["bias_hh_l0"], native.bias_hh_l0.detach().numpy())
    lengths = np.array([5, 3, 1, 4, 5, 2])
    x = np.random.default_rng(0).standard_normal((B, T, F)).astype(np.float32)
    layer.eval()
    out, h = layer(x, lengths)
    want_out, want_h = _torch_packed(native, x, lengths)
    np.testing.assert_allclose(tn.to_numpy(out), want_out, **f32_tol(1e-5, 1e-6))
    np.testing.assert_allclose(tn.to_numpy(h), want_h, **f32_tol(1e-5, 1e-6))
    back = to_torch(layer)
    assert isinstance(back, torch.nn.GRU) and back.batch_first and back.dropout == native.dropout
    for (name, a), (_, b) in zip(back.named_parameters(), native.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ArgumentError, match=r"torch\.nn\.GRU\(bias=False\) cannot be converted"):
        from_torch(torch.nn.GRU(F, H, bias=False))


def test_keras_gru_converts_both_ways(backend: str) -> None:
    keras = pytest.importorskip("keras")
    from twinnn.interop.keras import from_keras, to_keras

    lengths = np.array([5, 3, 1, 4, 5, 2])
    x = np.random.default_rng(1).standard_normal((B, T, F)).astype(np.float32)
    mask = np.arange(T)[None, :] < lengths[:, None]
    rng = np.random.default_rng(2)
    for bidirectional in (False, True):
        gru = keras.layers.GRU(H, return_sequences=True, return_state=True)
        native = keras.layers.Bidirectional(gru) if bidirectional else gru
        native.build((None, None, F))
        for variable in native.weights:
            variable.assign(rng.uniform(-0.5, 0.5, tuple(variable.shape)).astype(np.float32))
        layer = from_keras(native)
        assert isinstance(layer, tn.GRU) and layer.bidirectional == bidirectional
        want_out, *want_h = (
            np.asarray(keras.ops.convert_to_numpy(t)) for t in native(x, mask=mask)
        )
        out, h = (tn.to_numpy(t) for t in layer(x, lengths))
        # Keras' CPU loop copies the last valid output into masked steps: compare valid steps
        np.testing.assert_allclose(out, want_out * mask[:, :, None], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h, np.stack(want_h), rtol=1e-5, atol=1e-6)
        back = to_keras(layer)  # zero_output_for_mask=True: zeros at masked steps too
        for a, b in zip(back.weights, native.weights, strict=True):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
            )
        again = np.asarray(keras.ops.convert_to_numpy(back(x, mask=mask)[0]))
        np.testing.assert_allclose(again, out, rtol=1e-5, atol=1e-6)
    for kwargs, setting in (
        ({"reset_after": False}, "reset_after=False"),
        ({"recurrent_dropout": 0.1}, "recurrent_dropout=0.1"),
        ({"go_backwards": True}, "go_backwards=True"),
    ):
        bad = keras.layers.GRU(H, **kwargs)
        bad.build((None, None, F))
        with pytest.raises(ArgumentError, match=rf"keras\.layers\.GRU\({setting}\) cannot be"):
            from_keras(bad)
    with pytest.raises(ArgumentError, match=r"twinnn.GRU\(num_layers=2\) has no single Keras"):
        to_keras(tn.GRU(F, H, 2))
