"""LSTM on both backends against an independent float64 NumPy reference (forward and a
hand-written backpropagation through time), padding invariance, init presets, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import f32_tol, torch_numpy, torch_tensor
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError

Array = np.ndarray
Step = tuple[Array, Array, Array, Array, Array, Array, Array, Array]

# Unsorted, with 0, 1 and T (= 5).
LENGTHS = np.array([5, 0, 1, 3, 5, 2])
B, T, F, H = 6, 5, 3, 4


# --- float64 reference ---------------------------------------------------------------------------
def _sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


def _names(layer: int, direction: int) -> tuple[str, str, str]:
    suffix = "_reverse" if direction else ""
    return (f"w_ih_l{layer}{suffix}", f"w_hh_l{layer}{suffix}", f"bias_l{layer}{suffix}")


def _run_sequence(
    xs: Array, h: Array, c: Array, w_ih: Array, w_hh: Array, bias: Array
) -> tuple[Array, Array, Array, list[Step]]:
    """One direction over one unpadded sequence ``xs (n, in)``; gates i, f, g, o."""
    hidden = h.shape[0]
    outs = np.zeros((len(xs), hidden))
    steps: list[Step] = []
    for t, x_t in enumerate(xs):
        z = x_t @ w_ih + h @ w_hh + bias
        i, f = _sigmoid(z[:hidden]), _sigmoid(z[hidden : 2 * hidden])
        g, o = np.tanh(z[2 * hidden : 3 * hidden]), _sigmoid(z[3 * hidden :])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        steps.append((x_t, h, c, i, f, g, o, tc))
        h, c = o * tc, c_new
        outs[t] = h
    return outs, h, c, steps


def _backprop_sequence(
    steps: list[Step], d_outs: Array, dh: Array, dc: Array, w: Sequence[Array], g: list[Array]
) -> tuple[Array, Array, Array]:
    """Accumulate into ``g = [d w_ih, d w_hh, d bias]``; return ``(d xs, d h0, d c0)``."""
    w_ih, w_hh, _ = w
    d_xs = np.zeros((len(steps), w_ih.shape[0]))
    for t in reversed(range(len(steps))):
        x_t, h_prev, c_prev, i, f, gg, o, tc = steps[t]
        dh = dh + d_outs[t]
        dc = dc + dh * o * (1.0 - tc**2)
        dz = np.concatenate(
            [
                dc * gg * i * (1 - i),
                dc * c_prev * f * (1 - f),
                dc * i * (1 - gg**2),
                dh * tc * o * (1 - o),
            ]
        )
        g[0] += np.outer(x_t, dz)
        g[1] += np.outer(h_prev, dz)
        g[2] += dz
        d_xs[t] = w_ih @ dz
        dh, dc = w_hh @ dz, dc * f
    return d_xs, dh, dc


def reference_lstm(
    params: dict[str, Array],
    x: Array,
    lengths: Array,
    state: tuple[Array, Array],
    num_layers: int,
    dirs: int,
    seeds: tuple[Array, Array, Array],
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """``outputs, h, c`` and the gradients of ``sum(out*R) + sum(h*Sh) + sum(c*Sc)`` w.r.t.
    every parameter and ``x``, ``h0``, ``c0`` (float64, one sequence at a time, unpadded)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    h0, c0 = (np.asarray(s, np.float64) for s in state)
    R, Sh, Sc = seeds
    batch, time = x.shape[:2]
    hidden = h0.shape[2]
    h, c = h0.copy(), c0.copy()
    layer_in = [x[b, : lengths[b]] for b in range(batch)]
    tapes: list[list[list[list[Step]]]] = []
    for layer in range(num_layers):
        outs: list[list[Array]] = []
        tapes.append([])
        for d in range(dirs):
            k, w = layer * dirs + d, [p[n] for n in _names(layer, d)]
            outs.append([])
            tapes[layer].append([])
            for b in range(batch):
                seq = layer_in[b][::-1] if d else layer_in[b]
                o, h[k, b], c[k, b], steps = _run_sequence(seq, h0[k, b], c0[k, b], *w)
                outs[d].append(o[::-1] if d else o)
                tapes[layer][d].append(steps)
        layer_in = [np.concatenate([outs[d][b] for d in range(dirs)], axis=1) for b in range(batch)]
    out = np.zeros((batch, time, hidden * dirs))
    for b in range(batch):
        out[b, : lengths[b]] = layer_in[b]

    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dh0, dc0 = np.zeros_like(h0), np.zeros_like(c0)
    d_in = [np.asarray(R[b, : lengths[b]], np.float64) for b in range(batch)]
    for layer in reversed(range(num_layers)):
        width = p[_names(layer, 0)[0]].shape[0]
        d_below = [np.zeros((lengths[b], width)) for b in range(batch)]
        for d in range(dirs):
            k, names = layer * dirs + d, _names(layer, d)
            w, g = [p[n] for n in names], [grads[n] for n in names]
            for b in range(batch):
                d_outs = d_in[b][:, d * hidden : (d + 1) * hidden]
                d_xs, dh0[k, b], dc0[k, b] = _backprop_sequence(
                    tapes[layer][d][b], d_outs[::-1] if d else d_outs, Sh[k, b], Sc[k, b], w, g
                )
                d_below[b] += d_xs[::-1] if d else d_xs
        d_in = d_below
    dx = np.zeros_like(x)
    for b in range(batch):
        dx[b, : lengths[b]] = d_in[b]
    grads.update(x=dx, h0=dh0, c0=dc0)
    return out, h, c, grads


# --- native helpers ------------------------------------------------------------------------------
def leaf(backend: str, value: Array) -> Any:
    """A native float32 tensor that gradients can be taken with respect to."""
    if backend == "torch":
        return torch_tensor(np.asarray(value, np.float32), requires_grad=True)
    import tensorflow as tf

    return tf.Variable(np.asarray(value, np.float32))


def native_grads(backend: str, loss_of: Callable[[], Any], wrt: Sequence[Any]) -> list[Array]:
    """Gradients of the scalar ``loss_of()`` w.r.t. ``wrt`` (autograd / GradientTape)."""
    if backend == "torch":
        import torch

        return [torch_numpy(g) for g in torch.autograd.grad(loss_of(), list(wrt))]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of()
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, list(wrt))]


def _problem(num_layers: int, dirs: int, seed: int = 1) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    width = H * dirs
    return {
        "x": rng.standard_normal((B, T, F)).astype(np.float32),
        "h0": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32) * 0.5,
        "c0": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((B, T, width)).astype(np.float32),
        "Sh": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32),
        "Sc": rng.standard_normal((num_layers * dirs, B, H)).astype(np.float32),
    }


def _with_garbage(x: Array, lengths: Array, values: Sequence[float]) -> Array:
    dirty = x.copy()
    for b, n in enumerate(lengths):
        dirty[b, n:] = np.resize(np.asarray(values, np.float32), dirty[b, n:].shape)
    return dirty


CONFIGS = [(1, False), (1, True), (2, False), (2, True)]


# --- numerics ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("num_layers", "bidirectional"), CONFIGS)
def test_outputs_states_and_gradients_match_float64_reference(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs)
    layer = tn.LSTM(F, H, num_layers, bidirectional, init="torch")
    x, h0, c0 = (leaf(backend, data[k]) for k in ("x", "h0", "c0"))
    R, Sh, Sc = (tn.tensor(data[k]) for k in ("R", "Sh", "Sc"))
    result: dict[str, Any] = {}

    def loss_of() -> Any:
        out, (h, c) = layer(x, LENGTHS, (h0, c0))
        result.update(out=out, h=h, c=c)
        return tn.sum(out * R) + tn.sum(h * Sh) + tn.sum(c * Sc)

    names = [n for n, _ in layer.named_parameters()]
    grads = native_grads(backend, loss_of, [p for _, p in layer.named_parameters()] + [x, h0, c0])
    out, h, c, expected = reference_lstm(
        layer.state_dict(),
        data["x"],
        LENGTHS,
        (data["h0"], data["c0"]),
        num_layers,
        dirs,
        (data["R"], data["Sh"], data["Sc"]),
    )
    for name, want in (("out", out), ("h", h), ("c", c)):
        np.testing.assert_allclose(tn.to_numpy(result[name]), want, **f32_tol(1e-5, 1e-6))
    for name, got in zip([*names, "x", "h0", "c0"], grads, strict=True):
        np.testing.assert_allclose(got, expected[name], **f32_tol(1e-5, 2e-6), err_msg=name)
    # The contract's exact parts: zero past each length, initial state for len == 0.
    got_out = tn.to_numpy(result["out"])
    for b, n in enumerate(LENGTHS):
        assert np.all(got_out[b, n:] == 0.0)
    np.testing.assert_array_equal(tn.to_numpy(result["h"])[:, 1], data["h0"][:, 1])
    np.testing.assert_array_equal(tn.to_numpy(result["c"])[:, 1], data["c0"][:, 1])


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_without_lengths_matches_reference_with_full_lengths(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs, seed=2)
    layer = tn.LSTM(F, H, num_layers, bidirectional)
    out, (h, c) = layer(data["x"])
    full = np.full(B, T)
    zeros = np.zeros((num_layers * dirs, B, H), np.float32)
    seeds = (data["R"], data["Sh"], data["Sc"])
    want = reference_lstm(
        layer.state_dict(), data["x"], full, (zeros, zeros), num_layers, dirs, seeds
    )
    for got, expected in zip((out, h, c), want[:3], strict=True):
        np.testing.assert_allclose(tn.to_numpy(got), expected, **f32_tol(1e-5, 1e-6))
    with_lengths = layer(data["x"], full)
    np.testing.assert_allclose(tn.to_numpy(with_lengths[0]), tn.to_numpy(out), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_garbage_in_padding_changes_no_output_state_or_gradient(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    dirs = 2 if bidirectional else 1
    data = _problem(num_layers, dirs, seed=3)
    layer = tn.LSTM(F, H, num_layers, bidirectional)
    R, Sh = tn.tensor(data["R"]), tn.tensor(data["Sh"])
    params = [p for _, p in layer.named_parameters()]
    clean = np.where(np.arange(T)[None, :, None] < LENGTHS[:, None, None], data["x"], 0.0)
    runs = []
    for x_value in (clean, _with_garbage(data["x"], LENGTHS, [1e30, -1e30, np.inf, np.nan])):
        x = leaf(backend, x_value.astype(np.float32))
        seen: dict[str, Any] = {}

        def loss_of(x: Any = x, seen: dict[str, Any] = seen) -> Any:
            out, (h, c) = layer(x, LENGTHS)
            seen.update(out=tn.to_numpy(out), h=tn.to_numpy(h), c=tn.to_numpy(c))
            return tn.sum(out * R) + tn.sum(h * Sh) + tn.sum(c)

        grads = native_grads(backend, loss_of, [*params, x])
        runs.append((seen, grads))
    (first, grads_a), (second, grads_b) = runs
    for key in ("out", "h", "c"):
        np.testing.assert_array_equal(first[key], second[key])
    for a, b in zip(grads_a, grads_b, strict=True):
        assert np.all(np.isfinite(b))
        np.testing.assert_array_equal(a, b)


def test_compiled_train_step_gradients_match_reference(backend: str) -> None:
    """One SGD step with lr=1 inside ``train_step`` (tf.function on TensorFlow): the update is
    minus the reference gradient."""
    data = _problem(2, 2, seed=4)
    layer = tn.LSTM(F, H, 2, True)
    before = layer.state_dict()

    def loss_fn(pred: Any, seeds: Any) -> Any:
        out, (h, c) = pred
        return tn.sum(out * seeds) + tn.sum(h) * 0.5 + tn.sum(c) * 0.25

    step = tn.train_step(layer, loss_fn, tn.SGD(layer.parameters(), lr=1.0))
    step(data["x"], LENGTHS, data["R"])
    ones = np.ones((4, B, H), np.float32)
    zeros = np.zeros_like(ones)
    seeds = (data["R"], ones * 0.5, ones * 0.25)
    *_, grads = reference_lstm(before, data["x"], LENGTHS, (zeros, zeros), 2, 2, seeds)
    for name, value in layer.state_dict().items():
        np.testing.assert_allclose(before[name] - value, grads[name], **f32_tol(1e-5, 2e-6))


def test_native_integer_lengths_of_any_width_are_accepted(backend: str) -> None:
    layer = tn.LSTM(F, H)
    x = np.random.default_rng(5).standard_normal((B, T, F)).astype(np.float32)
    want = tn.to_numpy(layer(x, LENGTHS)[0])
    for dtype in ("int32", "int64", "uint8"):
        got = tn.to_numpy(layer(x, tn.tensor(LENGTHS, dtype=dtype))[0])
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(tn.to_numpy(layer(x, LENGTHS.tolist())[0]), want)


def test_zero_time_steps(backend: str) -> None:
    layer = tn.LSTM(F, H, 2, True, init="torch")  # non-zero biases: one step would move h, c
    state = np.random.default_rng(6).standard_normal((2, 4, 2, H)).astype(np.float32)
    for lengths in ([0, 0], None):
        out, (h, c) = layer(np.zeros((2, 0, F), np.float32), lengths, tuple(state))
        assert tuple(out.shape) == (2, 0, 2 * H)
        np.testing.assert_array_equal(tn.to_numpy(h), state[0])
        np.testing.assert_array_equal(tn.to_numpy(c), state[1])
    # Inside a compiled step the time axis is unknown while tracing; T == 0 still works.
    step = tn.eval_step(layer, lambda pred, _: tn.sum(pred[1][0] ** 2) + tn.sum(pred[1][1] ** 2))
    assert float(tn.to_numpy(step(np.ones((2, 3, F), np.float32), np.zeros(1)))) > 0.0
    assert float(tn.to_numpy(step(np.ones((2, 0, F), np.float32), np.zeros(1)))) == 0.0


# --- training parity between the backends ---------------------------------------------------------
class StateReader(tn.Module):
    """2-layer bidirectional LSTM whose head reads the last layer's final ``h`` *and* ``c`` of
    both directions and the mean of the outputs: a wrong cell state on one backend changes the
    loss, the gradients and every later step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = tn.LSTM(F, H, num_layers=2, bidirectional=True)
        self.head = tn.Linear(6 * H, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        out, (h, c) = self.lstm(x, lengths)
        features = tn.concat([h[-2], h[-1], c[-2], c[-1], tn.mean(out, axis=1)], axis=-1)
        return self.head(features)


def changing_batches(count: int, seed: int = 11) -> list[tuple[Array, Array, Array]]:
    """Batch size in [2, 6] and time in [1, 8] change every step; lengths in [0, T]; the
    padding holds 1e6 (it must be ignored)."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        batch, time = int(rng.integers(2, 7)), int(rng.integers(1, 9))
        lengths = rng.integers(0, time + 1, batch)
        x = rng.standard_normal((batch, time, F)).astype(np.float32)
        x[np.arange(time)[None, :] >= lengths[:, None]] = 1e6
        y = rng.standard_normal((batch, 1)).astype(np.float32)
        batches.append((x, lengths, y))
    return batches


def train_state_reader(backend: str, steps: int) -> dict[str, Any]:
    """``steps`` SGD steps (lr 0.05, momentum 0.9) of :class:`StateReader` on
    :func:`changing_batches`, from seed 3. Returns the losses, the final parameters, the
    trained LSTM's ``out``, ``h`` and ``c`` on a held-out batch, the first step's gradient
    (from a copy at lr=1 without momentum: the change of the weights) and the trace count
    (TensorFlow; ``None`` on torch)."""
    tn.set_backend(backend)
    tn.seed(3)
    model = StateReader()
    first = StateReader()
    first.load_state_dict(model.state_dict())
    batches = changing_batches(steps)
    tn.train_step(first, tn.mse_loss, tn.SGD(first, lr=1.0), eager=True)(*batches[0])
    gradient = {k: model.state_dict()[k] - v for k, v in first.state_dict().items()}
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.05, momentum=0.9))
    losses = [float(tn.to_numpy(step(*batch))) for batch in batches]
    x, lengths, _ = changing_batches(1, seed=12)[0]
    out, (h, c) = model.lstm(x, lengths)
    return {
        "losses": np.array(losses),
        "params": model.state_dict(),
        "held_out": {"out": tn.to_numpy(out), "h": tn.to_numpy(h), "c": tn.to_numpy(c)},
        "gradient": gradient,
        "trace_count": getattr(step, "trace_count", None),
    }


def test_hundred_momentum_steps_on_changing_shapes_agree_between_backends(
    both_backends: list[str],
) -> None:
    """docs/lstm.md: the cross-backend losses, parameters, first-step gradients and the trained
    layer's outputs, ``h`` and ``c`` agree within float32 rounding, and TensorFlow's compiled
    step traced once for all 100 shapes."""
    runs = {name: train_state_reader(name, 100) for name in both_backends}
    torch_run, tf_run = runs["torch"], runs["tensorflow"]
    assert tf_run["trace_count"] == 1
    assert np.all(np.isfinite(torch_run["losses"]))
    assert torch_run["losses"][-10:].mean() < torch_run["losses"][:10].mean()  # it learns
    np.testing.assert_allclose(tf_run["losses"], torch_run["losses"], rtol=1e-5, atol=1e-7)
    for part in ("gradient", "params", "held_out"):
        for name, value in torch_run[part].items():
            got = tf_run[part][name]
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6, err_msg=f"{part} {name}")
    c = torch_run["held_out"]["c"]
    assert np.abs(c).max() > 0.1  # the cell state was really compared
    assert all(np.abs(g).max() > 0 for g in torch_run["gradient"].values())  # all reach the loss


# --- init ----------------------------------------------------------------------------------------
def _expected_init(preset: str, seed: int, num_layers: int, dirs: int) -> dict[str, Array]:
    """Independent NumPy re-draw of the presets, in parameter order."""
    rng = np.random.default_rng(seed)
    expected: dict[str, Array] = {}
    for layer in range(num_layers):
        fan_in = F if layer == 0 else H * dirs
        for d in range(dirs):
            n_ih, n_hh, n_b = _names(layer, d)
            if preset == "torch":
                k = 1.0 / math.sqrt(H)
                expected[n_ih] = rng.uniform(-k, k, (fan_in, 4 * H)).astype(np.float32)
                expected[n_hh] = rng.uniform(-k, k, (H, 4 * H)).astype(np.float32)
                b_ih = rng.uniform(-k, k, 4 * H).astype(np.float32)
                expected[n_b] = b_ih + rng.uniform(-k, k, 4 * H).astype(np.float32)
            else:
                limit = math.sqrt(6.0 / (fan_in + 4 * H))
                expected[n_ih] = rng.uniform(-limit, limit, (fan_in, 4 * H)).astype(np.float32)
                q, r = np.linalg.qr(rng.standard_normal((4 * H, H)))
                expected[n_hh] = (q * np.sign(np.diag(r))).T.astype(np.float32)
                bias = np.zeros(4 * H, np.float32)
                bias[H : 2 * H] = 1.0
                expected[n_b] = bias
    return expected


@pytest.mark.parametrize("preset", ["default", "keras", "torch"])
def test_init_presets_bit_identical_on_both_backends(both_backends: list[str], preset: str) -> None:
    states = []
    for name in both_backends:
        tn.set_backend(name)
        tn.seed(7)
        states.append(tn.LSTM(F, H, 2, True, init=preset).state_dict())
    expected = _expected_init("torch" if preset == "torch" else "keras", 7, 2, 2)
    assert list(states[0]) == list(expected)  # names, in registration order
    for state in states:
        for name, value in expected.items():
            np.testing.assert_array_equal(state[name], value, err_msg=name)
    w_hh = states[0]["w_hh_l0"]
    if preset != "torch":  # orthogonal rows over the whole (H, 4H) matrix
        np.testing.assert_allclose(w_hh @ w_hh.T, np.eye(H), atol=1e-5)


def test_parameter_names_and_shapes(backend: str) -> None:
    layer = tn.LSTM(3, 5, num_layers=2, bidirectional=True)
    shapes = {n: tuple(v.shape) for n, v in layer.state_dict().items()}
    assert shapes == {
        "w_ih_l0": (3, 20),
        "w_hh_l0": (5, 20),
        "bias_l0": (20,),
        "w_ih_l0_reverse": (3, 20),
        "w_hh_l0_reverse": (5, 20),
        "bias_l0_reverse": (20,),
        "w_ih_l1": (10, 20),
        "w_hh_l1": (5, 20),
        "bias_l1": (20,),
        "w_ih_l1_reverse": (10, 20),
        "w_hh_l1_reverse": (5, 20),
        "bias_l1_reverse": (20,),
    }
    assert list(shapes) == [n for n, _ in layer.named_parameters()]
    assert repr(layer) == "LSTM(input_size=3, hidden_size=5, num_layers=2, bidirectional=True)"


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_size": 0}, ArgumentError, r"LSTM\(input_size\) must be > 0, got 0"),
        ({"hidden_size": -2}, ArgumentError, r"LSTM\(hidden_size\) must be > 0, got -2"),
        ({"num_layers": 0}, ArgumentError, r"LSTM\(num_layers\) must be > 0"),
        ({"num_layers": 1.5}, ArgumentTypeError, r"LSTM\(num_layers\) must be an int, got float"),
        ({"bidirectional": 1}, ArgumentTypeError, r"LSTM\(bidirectional\) must be a bool"),
        ({"init": "xavier"}, ArgumentError, r"LSTM\(init=\.\.\.\) must be one of .*'xavier'"),
    ],
)
def test_bad_constructor_arguments(
    backend: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"input_size": F, "hidden_size": H, **kwargs}
    with pytest.raises(error, match=match):
        tn.LSTM(**args)


def test_bad_x(backend: str) -> None:
    layer = tn.LSTM(F, H)
    with pytest.raises(ShapeError, match=r"'x' must have shape \(batch, time, 3\).*got \(6, 5\)"):
        layer(np.zeros((B, T), np.float32))
    with pytest.raises(
        ShapeError, match=r"'x' must have shape \(batch, time, 3\).*got \(6, 5, 2\)"
    ):
        layer(np.zeros((B, T, 2), np.float32))
    with pytest.raises(DTypeError, match="'x' must be float32"):
        layer(tn.tensor(np.zeros((B, T, F)), dtype="float64"))
    # One rule on both backends: integer inputs where a float is needed are cast to float32.
    ints = np.arange(B * T * F).reshape(B, T, F) % 3
    np.testing.assert_array_equal(
        tn.to_numpy(layer(tn.tensor(ints, dtype="int32"))[0]),
        tn.to_numpy(layer(ints.astype(np.float32))[0]),
    )


@pytest.mark.parametrize(
    ("lengths", "error", "match"),
    [
        (
            np.array([1, 2, 3]),
            ShapeError,
            r"'lengths' must have shape \(batch,\), one length per sequence of x \(6, 5, 3\), "
            r"got \(3,\)$",
        ),
        (np.ones((6, 1), np.int64), ShapeError, r"'lengths' must have shape \(batch,\).*\(6, 1\)"),
        (np.array([1, 2, -1, 0, 5, 5]), ArgumentError, r"'lengths' must be in \[0, 5\].*\[-1\]"),
        (np.array([1, 2, 6, 0, 5, 7]), ArgumentError, r"'lengths' must be in \[0, 5\].*\[6, 7\]"),
        (
            np.array([1.0, 2, 3, 0, 5, 5]),
            DTypeError,
            # a direct call converts NumPy floats to float32 before forward sees them
            "'lengths' must hold integers, got dtype float32",
        ),
        ([True] * 6, DTypeError, "'lengths' must hold integers, got dtype bool"),
    ],
)
def test_bad_lengths(backend: str, lengths: Any, error: type[Exception], match: str) -> None:
    layer = tn.LSTM(F, H)
    with pytest.raises(error, match=match):
        layer(np.zeros((B, T, F), np.float32), lengths)


def _skip_where_values_are_checked_on_the_device(backend: str) -> None:
    """On a GPU, torch checks the values of native lengths with ``torch._assert_async`` (a
    device-side assertion, no host round trip: docs/lstm.md), which fails the CUDA context
    instead of raising an ``ArgumentError`` a test could catch."""
    if backend == "torch" and tn.device() != "cpu":
        pytest.skip(f"on {tn.device()} torch checks lengths values with a device-side assertion")


def test_bad_native_lengths(backend: str) -> None:
    layer = tn.LSTM(F, H)
    x = np.zeros((B, T, F), np.float32)
    with pytest.raises(DTypeError, match="'lengths' must hold integers, got dtype float32"):
        layer(x, tn.tensor(LENGTHS, dtype="float32"))
    with pytest.raises(ShapeError, match=r"'lengths' must have shape \(batch,\).*got \(4,\)"):
        layer(x, tn.tensor(LENGTHS[:4], dtype="int64"))
    # Values of native tensors are checked by the backend (on CPU / eagerly: ArgumentError).
    _skip_where_values_are_checked_on_the_device(backend)
    with pytest.raises(ArgumentError, match=r"'lengths' must be in \[0, 5\].*\[9\]"):
        layer(x, tn.tensor([1, 2, 9, 0, 5, 5], dtype="int64"))
    with pytest.raises(ArgumentError, match=r"'lengths' must be in \[0, 5\].*\[-3\]"):
        layer(x, tn.tensor([1, 2, -3, 0, 5, 5], dtype="int32"))


def test_bad_lengths_inside_train_step(backend: str) -> None:
    """torch's eager step raises ArgumentError; inside TensorFlow's compiled step the graph
    assertion fails and the step re-raises it as the same ArgumentError."""
    layer = tn.LSTM(F, H)

    def loss_fn(pred: Any, target: Any) -> Any:
        return tn.mean(pred[0]) * 0.0 + tn.mean(target)

    step = tn.train_step(layer, loss_fn, tn.SGD(layer.parameters(), lr=0.1))
    x = np.zeros((B, T, F), np.float32)
    step(x, LENGTHS, np.zeros((B, 1), np.float32))
    _skip_where_values_are_checked_on_the_device(backend)
    bad = np.array([1, 2, 8, 0, 5, 5])
    message = r"'lengths' must be in \[0, 5\] \(0 <= len <= time of x\), got values \[8\]$"
    with pytest.raises(ArgumentError, match=message) as info:
        step(x, bad, np.zeros((B, 1), np.float32))
    assert isinstance(info.value, ValueError)
    assert type(info.value) is ArgumentError


def test_bad_initial_state(backend: str) -> None:
    layer = tn.LSTM(F, H, num_layers=2)
    x = np.zeros((B, T, F), np.float32)
    good = np.zeros((2, B, H), np.float32)
    with pytest.raises(
        ShapeError,
        match=r"initial_state h0 must have shape \(2, batch, 4\) \(num_layers \* directions, "
        r"batch of x \(6, 5, 3\), hidden_size\), got \(1, 6, 4\)$",
    ):
        layer(x, LENGTHS, (np.zeros((1, B, H), np.float32), good))
    with pytest.raises(
        ShapeError, match=r"initial_state c0 must have shape \(2, batch, 4\).*\(2, 6\)"
    ):
        layer(x, LENGTHS, (good, np.zeros((2, B), np.float32)))
    with pytest.raises(ShapeError, match=r"initial_state h0 must have shape.*got \(2, 5, 4\)"):
        layer(x, LENGTHS, (np.zeros((2, B - 1, H), np.float32), good))
    with pytest.raises(ArgumentTypeError, match="'initial_state' must be a pair"):
        layer(x, LENGTHS, good)
    with pytest.raises(DTypeError, match="'initial_state h0' must be float32"):
        layer(x, LENGTHS, (tn.tensor(good, dtype="float64"), good))
