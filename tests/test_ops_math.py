"""The ops of DESIGN.md section 13 (twinnn.ops.math / shape / activations): values against
NumPy float64 references, gradients against float64 finite differences (or exact values at
ties and kinks), the same errors on both backends, parity and a compiled TensorFlow step."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from twinnn import errors

RNG = np.random.default_rng(7)
X23 = RNG.standard_normal((2, 3)).astype(np.float32)
X234 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
POS23 = RNG.uniform(0.2, 3.0, (2, 3)).astype(np.float32)
IDX = np.array([[2, 0], [1, 1]])  # a repeated id: its gradient accumulates
_erf = np.vectorize(math.erf)


def _native(array: Any, dtype: str | None = None) -> Any:
    """``array`` as a native tensor of the current backend, its dtype kept (or ``dtype``)."""
    array = np.array(array, dtype=dtype)
    if tn.backend() == "torch":
        return torch_tensor(array)  # on twinnn's device
    import tensorflow as tf

    return tf.constant(array)


def _weights(shape: Sequence[int], seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).standard_normal(tuple(shape))


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def value_and_grads(
    fn: Callable[..., Any], arrays: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``fn`` on native float32 tensors of ``arrays`` and the gradients of
    ``sum_k sum(out_k * w_k)`` (fixed weights ``w_k``) w.r.t. each array, by the framework."""
    if tn.backend() == "torch":
        import torch

        xs = [torch_tensor(a, requires_grad=True) for a in arrays]
        outs = _as_list(fn(*xs))
        loss = sum(
            (o * torch_tensor(_weights(o.shape, k), dtype=o.dtype)).sum()
            for k, o in enumerate(outs)
        )
        grads = torch.autograd.grad(loss, xs, allow_unused=True)
        values = [torch_numpy(o) for o in outs]
        return values, [
            np.zeros_like(a) if g is None else torch_numpy(g)
            for a, g in zip(arrays, grads, strict=True)
        ]
    import tensorflow as tf

    xs = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        outs = _as_list(fn(*xs))
        loss = tf.add_n(
            [
                tf.reduce_sum(o * tf.constant(_weights(o.shape, k), o.dtype))
                for k, o in enumerate(outs)
            ]
        )
    grads = tape.gradient(loss, xs)
    return [o.numpy() for o in outs], [
        np.zeros_like(a) if g is None else tf.convert_to_tensor(g).numpy()
        for a, g in zip(arrays, grads, strict=True)
    ]


def numeric_grads(ref: Callable[..., Any], arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Central finite differences, in float64, of ``sum_k sum(ref(*xs)_k * w_k)``."""
    xs = [np.asarray(a, np.float64) for a in arrays]

    def loss(values: list[np.ndarray]) -> float:
        outs = _as_list(ref(*values))
        return float(sum((o * _weights(o.shape, k)).sum() for k, o in enumerate(outs)))

    grads = []
    for i, x in enumerate(xs):
        grad = np.zeros_like(x)
        for j in range(x.size):
            h = 1e-6 * max(1.0, abs(float(x.flat[j])))
            plus, minus = [v.copy() for v in xs], [v.copy() for v in xs]
            plus[i].flat[j] += h
            minus[i].flat[j] -= h
            grad.flat[j] = (loss(plus) - loss(minus)) / (2 * h)
        grads.append(grad)
    return grads


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp(x: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _take_along(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    return np.take_along_axis(x, idx, axis)


AWAY = np.where(np.abs(X23) < 0.1, 0.5, X23).astype(np.float32)  # no kink within reach
# (name, twinnn call on native tensors, NumPy float64 reference, inputs)
SMOOTH: list[tuple[str, Callable[..., Any], Callable[..., Any], list[np.ndarray]]] = [
    ("exp", tn.exp, np.exp, [X23]),
    ("log", tn.log, np.log, [POS23]),
    ("log1p", tn.log1p, np.log1p, [POS23 - 0.5]),
    ("sqrt", tn.sqrt, np.sqrt, [POS23]),
    ("abs", tn.abs, np.abs, [AWAY]),
    ("square", tn.square, np.square, [X23]),
    ("maximum", tn.maximum, np.maximum, [X23, X23[1] + 0.05]),
    ("minimum", tn.minimum, np.minimum, [X23, X23[:1] - 0.05]),
    ("max-axis", lambda x: tn.max(x, axis=1), lambda x: np.max(x, axis=1), [X234]),
    (
        "max-axes-keepdims",
        lambda x: tn.max(x, axis=(0, -1), keepdims=True),
        lambda x: np.max(x, axis=(0, 2), keepdims=True),
        [X234],
    ),
    ("max-all", tn.max, np.max, [X234]),
    ("min-axis", lambda x: tn.min(x, axis=-1), lambda x: np.min(x, axis=-1), [X234]),
    (
        "min-all-keepdims",
        lambda x: tn.min(x, keepdims=True),
        lambda x: np.min(x, keepdims=True),
        [X234],
    ),
    (
        "where",
        lambda x, y: tn.where(np.array([True, False, True]), x, y),
        lambda x, y: np.where(np.array([True, False, True]), x, y),
        [X23, X23[:1] * 2],
    ),
    (
        "clip",
        lambda x: tn.clip(x, -0.5, 0.7),
        lambda x: np.clip(x, -0.5, 0.7),
        [np.where(np.abs(np.abs(X23) - 0.6) < 0.1, 0.0, X23).astype(np.float32)],
    ),
    ("clip-high-only", lambda x: tn.clip(x, None, 0.3), lambda x: np.clip(x, None, 0.3), [X234]),
    (
        "transpose",
        lambda x: tn.transpose(x, (2, 0, 1)),
        lambda x: np.transpose(x, (2, 0, 1)),
        [X234],
    ),
    ("transpose-reverse", tn.transpose, np.transpose, [X234]),
    (
        "transpose-negative",
        lambda x: tn.transpose(x, (-1, 0, 1)),
        lambda x: np.transpose(x, (2, 0, 1)),
        [X234],
    ),
    ("expand_dims", lambda x: tn.expand_dims(x, 1), lambda x: np.expand_dims(x, 1), [X23]),
    (
        "expand_dims-tuple",
        lambda x: tn.expand_dims(x, (0, -1)),
        lambda x: np.expand_dims(x, (0, -1)),
        [X23],
    ),
    ("squeeze-all", tn.squeeze, np.squeeze, [X23.reshape(2, 1, 3, 1)]),
    (
        "squeeze-axis",
        lambda x: tn.squeeze(x, -1),
        lambda x: np.squeeze(x, -1),
        [X23.reshape(2, 1, 3, 1)],
    ),
    ("stack", lambda a, b: tn.stack([a, b], axis=1), lambda a, b: np.stack([a, b], 1), [X23, -X23]),
    (
        "stack-last",
        lambda a, b: tn.stack((a, b), axis=-1),
        lambda a, b: np.stack([a, b], -1),
        [X23, X23],
    ),
    ("split-sections", lambda x: tn.split(x, 3, axis=1), lambda x: np.split(x, 3, axis=1), [X234]),
    (
        "split-points",
        lambda x: tn.split(x, [1, 1, 3], axis=-1),
        lambda x: np.split(x, [1, 1, 3], axis=-1),
        [X234],
    ),
    ("take", lambda x: tn.take(x, IDX, axis=1), lambda x: np.take(x, IDX, axis=1), [X234]),
    ("take-flat", lambda x: tn.take(x, [5, 0, 5]), lambda x: np.take(x, [5, 0, 5]), [X23]),
    ("take-scalar-id", lambda x: tn.take(x, 1, axis=0), lambda x: np.take(x, 1, axis=0), [X23]),
    (
        "take_along_axis",
        lambda x: tn.take_along_axis(x, [[2, 2, 0], [1, 0, 1]], axis=1),
        lambda x: _take_along(x, np.array([[2, 2, 0], [1, 0, 1]]), 1),
        [X23],
    ),
    (
        "take_along_axis-middle",
        lambda x: tn.take_along_axis(x, np.array([[[0, 1, 2, 2]], [[2, 2, 1, 0]]]), axis=1),
        lambda x: _take_along(x, np.array([[[0, 1, 2, 2]], [[2, 2, 1, 0]]]), 1),
        [X234],
    ),
    (
        "take_along_axis-broadcast",
        lambda x: tn.take_along_axis(x, np.array([[[1], [0], [3]]]), axis=2),
        lambda x: _take_along(x, np.array([[[1], [0], [3]]]), 2),
        [X234],
    ),
    (
        "take_along_axis-flat",
        lambda x: tn.take_along_axis(x, [4, 4, 1], axis=None),
        lambda x: _take_along(x.reshape(-1), np.array([4, 4, 1]), 0),
        [X23],
    ),
    ("softmax", tn.softmax, lambda x: _softmax(x, -1), [X234]),
    ("softmax-axis0", lambda x: tn.softmax(x, axis=0), lambda x: _softmax(x, 0), [X234]),
    ("log_softmax", tn.log_softmax, lambda x: np.log(_softmax(x, -1)), [X234]),
    (
        "log_softmax-axis1",
        lambda x: tn.log_softmax(x, 1),
        lambda x: np.log(_softmax(x, 1)),
        [X234],
    ),
    ("logsumexp-all", tn.logsumexp, _logsumexp, [X234]),
    ("logsumexp-axis", lambda x: tn.logsumexp(x, axis=1), lambda x: _logsumexp(x, 1), [X234]),
    (
        "logsumexp-axes-keepdims",
        lambda x: tn.logsumexp(x, axis=[0, 2], keepdims=True),
        lambda x: _logsumexp(x, (0, 2), True),
        [X234],
    ),
    ("gelu", tn.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), [X234 * 2]),
    ("gelu-tanh", lambda x: tn.gelu(x, approximate="tanh"), _gelu_tanh, [X234 * 2]),
    ("silu", tn.silu, lambda x: x / (1 + np.exp(-x)), [X234 * 2]),
    ("leaky_relu", tn.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), [AWAY]),
    (
        "leaky_relu-slope",
        lambda x: tn.leaky_relu(x, 0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        [AWAY],
    ),
    ("elu", tn.elu, lambda x: np.where(x > 0, x, np.expm1(x)), [AWAY * 2]),
    (
        "elu-alpha",
        lambda x: tn.elu(x, alpha=0.5),
        lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)),
        [AWAY * 2],
    ),
    ("cast-float32", lambda x: tn.cast(x, "float32"), lambda x: x, [X23]),
]


@pytest.mark.parametrize(
    ("fn", "ref", "arrays"), [c[1:] for c in SMOOTH], ids=[c[0] for c in SMOOTH]
)
def test_op_matches_numpy_values_and_gradients(
    backend: str, fn: Callable[..., Any], ref: Callable[..., Any], arrays: list[np.ndarray]
) -> None:
    values, grads = value_and_grads(fn, arrays)
    expected = _as_list(ref(*[a.astype(np.float64) for a in arrays]))
    assert len(values) == len(expected)
    for got, want in zip(values, expected, strict=True):
        assert got.dtype == np.float32
        assert got.shape == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    for got, want in zip(grads, numeric_grads(ref, arrays), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# --- gradients at ties and kinks: exact values, the same on both backends --------------------


def _grads(fn: Callable[..., Any], *arrays: Any) -> list[np.ndarray]:
    """Gradients of ``sum(fn(...))`` (weights 1)."""
    if tn.backend() == "torch":
        import torch

        xs = [torch_tensor(np.asarray(a, np.float32), requires_grad=True) for a in arrays]
        grads = torch.autograd.grad(fn(*xs).sum(), xs)
        return [torch_numpy(g) for g in grads]
    import tensorflow as tf

    xs = [tf.constant(np.asarray(a, np.float32)) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = tf.reduce_sum(fn(*xs))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, xs)]


def test_maximum_minimum_split_a_tie_evenly(backend: str) -> None:
    a, b = [1.0, 2.0, 3.0], [1.0, 1.0, 4.0]
    ga, gb = _grads(tn.maximum, a, b)
    np.testing.assert_array_equal(ga, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 0.0, 1.0])
    ga, gb = _grads(tn.minimum, a, b)
    np.testing.assert_array_equal(ga, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(gb, [0.5, 1.0, 0.0])
    # broadcast: b's gradient sums over the broadcast axis, halves included
    ga, gb = _grads(tn.maximum, [[0.0, 2.0], [0.0, -1.0]], [0.0])
    np.testing.assert_array_equal(ga, [[0.5, 1.0], [0.5, 0.0]])
    np.testing.assert_array_equal(gb, [2.0])


def test_max_min_split_ties_among_the_extreme_elements(backend: str) -> None:
    x = [[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]]
    (g,) = _grads(lambda t: tn.max(t, axis=1), x)
    np.testing.assert_allclose(g, [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-7)
    (g,) = _grads(tn.max, x)  # over everything: the three 5s
    np.testing.assert_allclose(g, [[0, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-7)
    (g,) = _grads(lambda t: tn.min(t, axis=0), [[1.0, 2.0], [1.0, 0.0]])
    np.testing.assert_array_equal(g, [[0.5, 0.0], [0.5, 1.0]])


def test_kinks_have_torch_gradients(backend: str) -> None:
    zero = [0.0, 1.0, -1.0]
    (g,) = _grads(tn.abs, zero)
    np.testing.assert_array_equal(g, [0.0, 1.0, -1.0])
    (g,) = _grads(lambda t: tn.clip(t, 0.0, 1.0), [0.0, 1.0, 2.0, 0.5])  # bounds included
    np.testing.assert_array_equal(g, [1.0, 1.0, 0.0, 1.0])
    (g,) = _grads(lambda t: tn.leaky_relu(t, 0.25), zero)
    np.testing.assert_array_equal(g, [0.25, 1.0, 0.25])
    (g,) = _grads(lambda t: tn.elu(t, 0.5), zero)
    np.testing.assert_allclose(g, [0.5, 1.0, 0.5 * np.exp(-1.0)], rtol=1e-6)
    (g,) = _grads(tn.elu, [0.0])
    np.testing.assert_array_equal(g, [1.0])
    (g,) = _grads(lambda t: tn.where(t > 0, t, 0.0), zero)
    np.testing.assert_array_equal(g, [0.0, 1.0, 0.0])


def test_gathers_accumulate_gradients_of_repeated_ids(backend: str) -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    (g,) = _grads(lambda t: tn.take(t, [2, 0, 2, 2], axis=0), x)
    np.testing.assert_array_equal(g, [[1, 1], [0, 0], [3, 3]])
    (g,) = _grads(lambda t: tn.take_along_axis(t, [[1, 1], [0, 0], [1, 0]], axis=1), x)
    np.testing.assert_array_equal(g, [[0, 2], [2, 0], [1, 1]])


def test_cast_passes_gradients_between_floats_and_stops_at_integers(backend: str) -> None:
    x = [1.0001, -2.5, 3.75]
    (g,) = _grads(lambda t: tn.cast(tn.cast(t, "float16"), "float32") * 3.0, x)
    np.testing.assert_array_equal(g, [3.0, 3.0, 3.0])
    (g,) = _grads(lambda t: t + tn.cast(tn.cast(t, "int32"), "float32"), x)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


# --- values beyond the float table ---------------------------------------------------------


def test_log1p_is_accurate_near_zero(backend: str) -> None:
    x = np.array([1e-7, -1e-7, 1e-10, 3e-5], np.float32)
    np.testing.assert_allclose(
        tn.to_numpy(tn.log1p(x)), np.log1p(x.astype(np.float64)), rtol=1e-6, atol=0
    )


def test_gelu_and_elu_keep_relative_accuracy_where_naive_forms_cancel(backend: str) -> None:
    """``1 + erf(x / sqrt 2)`` (torch's fused gelu) and ``exp(x) - 1`` (tf.nn.elu) cancel;
    twinnn computes ``0.5 x erfc(-x / sqrt 2)`` and ``expm1`` on both backends."""
    x = np.array([-3.8, -5.0, -7.0, -9.0, 2.0], np.float32)
    erfc = np.vectorize(math.erfc)
    expected = 0.5 * x.astype(np.float64) * erfc(-x.astype(np.float64) / np.sqrt(2))
    np.testing.assert_allclose(tn.to_numpy(tn.gelu(x)), expected, rtol=1e-5, atol=0)
    small = np.array([-1e-3, -2.3e-3, -2e-4, -3e-6], np.float32)
    expected = np.expm1(small.astype(np.float64))
    np.testing.assert_allclose(tn.to_numpy(tn.elu(small)), expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(tn.to_numpy(tn.elu(small, 0.5)), 0.5 * expected, rtol=1e-6, atol=0)


def test_sqrt_is_correctly_rounded(backend: str) -> None:
    x = np.random.default_rng(3).uniform(0, 100, 4096).astype(np.float32)
    expected = np.sqrt(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(tn.to_numpy(tn.sqrt(x)), expected)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_argmin_follow_numpy_ties_and_nan(backend: str, op: str) -> None:
    fn, ref = getattr(tn, op), getattr(np, op)
    cases = [
        np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 1.0, 2.0]], np.float32),
        np.array([[1.0, np.nan, 3.0, np.nan], [np.inf, 1.0, np.nan, -np.inf]], np.float32),
        np.array([[4, 9, 9], [-1, -5, -5]], np.int32),
        np.array([[False, True, True], [False, False, False]]),
    ]
    for x in cases:
        for axis in (0, 1, -1):
            out = fn(x, axis=axis)
            assert tn.to_numpy(out).dtype == np.int64
            np.testing.assert_array_equal(tn.to_numpy(out), ref(x, axis=axis))
        assert tn.to_numpy(fn(x)).shape == ()
        assert int(tn.to_numpy(fn(x))) == ref(x)  # None: the flattened x
    big = np.zeros((3, 1000), np.float32)
    big[:, [500, 700]] = 1.0 if op == "argmax" else -1.0
    np.testing.assert_array_equal(tn.to_numpy(fn(big, axis=1)), [500, 500, 500])


def test_max_min_propagate_nan(backend: str) -> None:
    x = np.array([[1.0, np.nan, 3.0], [0.0, -1.0, 2.0]], np.float32)
    for fn, ref in ((tn.max, np.max), (tn.min, np.min)):
        np.testing.assert_array_equal(tn.to_numpy(fn(x, axis=1)), ref(x, axis=1))
    np.testing.assert_array_equal(tn.to_numpy(tn.maximum(x, 2.0)), np.maximum(x, 2.0))
    np.testing.assert_array_equal(tn.to_numpy(tn.minimum(2.0, x)), np.minimum(2.0, x))
    np.testing.assert_array_equal(tn.to_numpy(tn.clip(x, 0.5, 2.5)), np.clip(x, 0.5, 2.5))


def test_one_hot_and_cast_values(backend: str) -> None:
    ids = np.array([[0, 3], [2, 2]])
    for given in (ids, ids.astype(np.int32), _native(ids, "uint8"), _native(ids, "int32")):
        out = tn.to_numpy(tn.one_hot(given, 4))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, np.eye(4, dtype=np.float32)[ids])
    x = np.array([-2.7, -0.5, 0.0, 0.5, 2.7], np.float32)
    for given in (x, _native(x)):
        np.testing.assert_array_equal(tn.to_numpy(tn.cast(given, "int32")), [-2, 0, 0, 0, 2])
        np.testing.assert_array_equal(tn.to_numpy(tn.cast(given, "bool")), x != 0)
        assert tn.to_numpy(tn.cast(given, "float16")).dtype == np.float16
    wide = _native(np.array([0.1, 1e-30]))  # a float64 tensor: cast is how to bring it in
    np.testing.assert_array_equal(tn.to_numpy(tn.cast(wide, "float32")), np.float32([0.1, 1e-30]))
    assert tn.to_numpy(tn.cast([1, 2], "float64")).dtype == np.float64
    assert tn.to_numpy(tn.exp([0, 1])).dtype == np.float32  # float ops cast ints


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "bool"])
def test_dtype_keeping_ops_follow_numpy_on_integers_and_bools(backend: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    raw_a, raw_b = rng.integers(-4, 5, (2, 3)), rng.integers(-4, 5, (2, 3))
    if dtype == "bool":
        a, b = raw_a > 0, raw_b > 0
    else:
        a = (np.abs(raw_a) if dtype == "uint8" else raw_a).astype(dtype)
        b = (np.abs(raw_b) if dtype == "uint8" else raw_b).astype(dtype)
    ta, tb = _native(a), _native(b)
    cond = a > b
    checks: list[tuple[Any, np.ndarray]] = [
        (tn.abs(ta), np.abs(a)),
        (tn.square(ta), np.square(a)),
        (tn.maximum(ta, tb), np.maximum(a, b)),
        (tn.minimum(ta, tb), np.minimum(a, b)),
        (tn.max(ta, axis=0), np.max(a, axis=0)),
        (tn.min(ta), np.min(a)),
        (tn.argmax(ta, axis=1), np.argmax(a, axis=1)),
        (tn.where(cond, ta, tb), np.where(cond, a, b)),
        (tn.transpose(ta), a.T),
        (tn.expand_dims(ta, -1), a[..., None]),
        (tn.squeeze(tn.expand_dims(ta, 0), 0), a),
        (tn.stack([ta, tb], axis=1), np.stack([a, b], 1)),
        (tn.split(ta, 3, axis=1)[2], np.split(a, 3, axis=1)[2]),
        (tn.take(ta, [2, 0], axis=1), np.take(a, [2, 0], axis=1)),
        (
            tn.take_along_axis(ta, [[1], [0]], axis=1),
            np.take_along_axis(a, np.array([[1], [0]]), 1),
        ),
    ]
    if dtype != "bool":
        checks.append((tn.clip(ta, 0, 2), np.clip(a, 0, 2)))
        checks.append((tn.maximum(ta, 1), np.maximum(a, np.array(1, dtype))))  # a number: a's
    for out, expected in checks:
        got = tn.to_numpy(out)
        assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
        np.testing.assert_array_equal(got, expected)


def test_operands_of_different_dtypes(backend: str) -> None:
    ints = _native(np.array([1, 5, -3], np.int32))
    assert tn.to_numpy(tn.maximum(ints, 2)).dtype == np.int32
    mixed = tn.to_numpy(tn.maximum(ints, 0.5))  # a float operand: float32
    np.testing.assert_array_equal(mixed, np.float32([1, 5, 0.5]))
    floats = tn.to_numpy(tn.where([True, False, True], ints, tn.tensor([0.5, 0.5, 0.5])))
    np.testing.assert_array_equal(floats, np.float32([1, 0.5, -3]))
    assert tn.to_numpy(tn.where([1, 0], [1, 2], [True, False])).dtype == np.int64  # host: NumPy
    np.testing.assert_array_equal(tn.to_numpy(tn.where([2, 0], 1.0, 0.0)), [1.0, 0.0])  # != 0
    np.testing.assert_array_equal(tn.to_numpy(tn.clip(ints, 0, 2.5)), np.float32([1, 2.5, 0]))
    uint = tn.clip(_native(np.array([0, 200, 255], np.uint8)), -5, 1000)  # bounds beyond dtype
    np.testing.assert_array_equal(tn.to_numpy(uint), np.uint8([0, 200, 255]))


@pytest.mark.parametrize("scale", [1e4, -1e4, 3e4])
def test_softmax_family_is_stable_at_large_logits(backend: str, scale: float) -> None:
    logits = np.array([[1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, -2.0]], np.float32) * scale
    x64 = logits.astype(np.float64)
    cases: list[tuple[Callable[[Any], Any], Callable[[np.ndarray], np.ndarray]]] = [
        (tn.softmax, lambda x: _softmax(x, -1)),
        (tn.log_softmax, lambda x: x - _logsumexp(x, -1, True)),
        (lambda x: tn.logsumexp(x, axis=-1), lambda x: _logsumexp(x, -1)),
        (tn.logsumexp, _logsumexp),
    ]
    for fn, ref in cases:
        (values,), (grad,) = value_and_grads(fn, [logits])
        assert np.isfinite(values).all() and np.isfinite(grad).all()
        np.testing.assert_allclose(values, ref(x64), rtol=1e-6, atol=1e-6)
    (probs,) = value_and_grads(tn.softmax, [logits])[0]
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-6)


def test_a_chain_of_ops_gives_the_same_values_and_gradients_on_both_backends(
    both_backends: list[str],
) -> None:
    """Values and gradients agree within float32 rounding across backends."""
    ids = np.array([[0, 2, 1], [1, 1, 2]])
    targets = np.array([[1], [0]])

    def chain(table: Any, x: Any) -> Any:
        emb = tn.take(table, ids, axis=0)  # (2, 3, 4)
        h = tn.gelu(tn.maximum(emb, tn.expand_dims(x, 1)) + tn.abs(emb))
        h = tn.where(h > 0.1, tn.silu(h), tn.elu(h, 0.7)) + tn.leaky_relu(h, 0.1)
        pooled = tn.max(h, axis=1) + tn.logsumexp(h, axis=1)  # (2, 4)
        parts = tn.split(tn.clip(pooled, -3.0, None), [1, 3], axis=-1)
        logits = tn.concat([parts[1], tn.sqrt(tn.square(parts[0]) + 1.0)], axis=-1)
        picked = tn.take_along_axis(tn.log_softmax(logits, axis=-1), targets, axis=-1)
        probs = tn.softmax(tn.transpose(logits), axis=0)
        counts = tn.sum(tn.one_hot(ids, 4), axis=1)  # (2, 4)
        bonus = tn.log1p(tn.exp(tn.min(counts * pooled, axis=1)))  # (2,)
        return tn.stack([tn.squeeze(picked, 1), tn.min(probs, axis=0), bonus], axis=0)

    rng = np.random.default_rng(11)
    arrays = [
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal((2, 4)).astype(np.float32),
    ]
    results = []
    for name in both_backends:
        with tn.use_backend(name):
            results.append(value_and_grads(chain, arrays))
    (v_torch,), g_torch = results[0]
    (v_tf,), g_tf = results[1]
    np.testing.assert_allclose(v_torch, v_tf, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_torch, g_tf, strict=True):
        assert np.abs(a).sum() > 0
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- bad input: the same error, with the same message, on both backends -----------------------


class Case:
    """A bad call: the error it must raise and a text its message must contain."""

    def __init__(
        self, id_: str, call: Callable[[], Any], error: type[errors.TwinnnError], names: str
    ) -> None:
        self.id, self.call, self.error, self.names = id_, call, error, names


M23 = np.ones((2, 3), np.float32)
BAD: list[Case] = [
    Case("exp-None", lambda: tn.exp(None), errors.ArgumentTypeError, "'x'"),
    Case("log-str", lambda: tn.log(["a"]), errors.DTypeError, "'x'"),
    Case("max-axis-high", lambda: tn.max(M23, axis=2), errors.ArgumentError, "max(axis)"),
    Case("min-axis-repeat", lambda: tn.min(M23, axis=(0, -2)), errors.ArgumentError, "min(axis)"),
    Case("max-axis-float", lambda: tn.max(M23, axis=1.0), errors.ArgumentTypeError, "max(axis)"),  # type: ignore[arg-type]
    Case(
        "max-keepdims-int",
        lambda: tn.max(M23, keepdims=1),
        errors.ArgumentTypeError,
        "max(keepdims)",
    ),  # type: ignore[arg-type]
    Case("max-empty", lambda: tn.max(np.ones((2, 0)), axis=1), errors.ShapeError, "max(x)"),
    Case("min-empty-all", lambda: tn.min([]), errors.ShapeError, "min(x)"),
    Case(
        "argmax-axis-tuple",
        lambda: tn.argmax(M23, axis=(0,)),
        errors.ArgumentTypeError,
        "argmax(axis)",
    ),  # type: ignore[arg-type]
    Case("argmin-axis-high", lambda: tn.argmin(M23, axis=-3), errors.ArgumentError, "argmin(axis)"),
    Case("argmax-empty", lambda: tn.argmax(np.ones((0, 2))), errors.ShapeError, "argmax(x)"),
    Case(
        "maximum-broadcast", lambda: tn.maximum(M23, [1.0, 2.0]), errors.ShapeError, "maximum(a, b)"
    ),
    Case("minimum-None", lambda: tn.minimum(M23, None), errors.ArgumentTypeError, "'b'"),
    Case(
        "maximum-int-overflow",
        lambda: tn.maximum(tn.tensor([1, 2], "int8"), 300),
        errors.DTypeError,
        "maximum(a, b): b must fit the dtype int8 of a",
    ),
    Case(
        "maximum-two-int-dtypes",
        lambda: tn.maximum(tn.tensor([1], "int32"), tn.tensor([1], "int64")),
        errors.DTypeError,
        "maximum(a, b) must get tensors of one dtype",
    ),
    Case(
        "where-broadcast",
        lambda: tn.where([True, False], M23, 0.0),
        errors.ShapeError,
        "where(condition, x, y)",
    ),
    Case("where-str", lambda: tn.where(["a"], 1.0, 0.0), errors.DTypeError, "'condition'"),
    Case(
        "clip-no-bound",
        lambda: tn.clip(M23, None, None),
        errors.ArgumentError,
        "clip(a_min, a_max)",
    ),
    Case("clip-str-bound", lambda: tn.clip(M23, "0", 1), errors.ArgumentTypeError, "clip(a_min)"),  # type: ignore[arg-type]
    Case("clip-bool-bound", lambda: tn.clip(M23, 0, True), errors.ArgumentTypeError, "clip(a_max)"),
    Case(
        "clip-nan-bound", lambda: tn.clip(M23, math.nan, 1.0), errors.ArgumentError, "clip(a_min)"
    ),
    Case(
        "transpose-repeat",
        lambda: tn.transpose(M23, (0, 0)),
        errors.ArgumentError,
        "transpose(axes)",
    ),
    Case(
        "transpose-short",
        lambda: tn.transpose(X234, (1, 0)),
        errors.ArgumentError,
        "transpose(axes)",
    ),
    Case(
        "transpose-axis-high",
        lambda: tn.transpose(M23, (0, 2)),
        errors.ArgumentError,
        "transpose(axes)",
    ),
    Case(
        "transpose-str",
        lambda: tn.transpose(M23, "01"),
        errors.ArgumentTypeError,
        "transpose(axes)",
    ),  # type: ignore[arg-type]
    Case(
        "expand_dims-high",
        lambda: tn.expand_dims(M23, 3),
        errors.ArgumentError,
        "expand_dims(axis)",
    ),
    Case(
        "expand_dims-low",
        lambda: tn.expand_dims(M23, -4),
        errors.ArgumentError,
        "expand_dims(axis)",
    ),
    Case(
        "expand_dims-None",
        lambda: tn.expand_dims(M23, None),
        errors.ArgumentTypeError,
        "expand_dims(axis)",
    ),  # type: ignore[arg-type]
    Case(
        "expand_dims-repeat",
        lambda: tn.expand_dims(M23, (0, -4)),
        errors.ArgumentError,
        "expand_dims(axis)",
    ),
    Case("squeeze-not-1", lambda: tn.squeeze(M23, 1), errors.ShapeError, "squeeze(axis)"),
    Case("squeeze-axis-high", lambda: tn.squeeze(M23, 2), errors.ArgumentError, "squeeze(axis)"),
    Case("stack-empty", lambda: tn.stack([]), errors.ArgumentError, "stack(tensors)"),
    Case("stack-not-list", lambda: tn.stack(M23), errors.ArgumentTypeError, "stack(tensors)"),
    Case("stack-shapes", lambda: tn.stack([M23, M23.T]), errors.ShapeError, "stack(tensors)"),
    Case(
        "stack-dtypes",
        lambda: tn.stack([M23, np.ones((2, 3), np.int64)]),
        errors.DTypeError,
        "stack(tensors)",
    ),
    Case(
        "stack-axis-high", lambda: tn.stack([M23, M23], axis=3), errors.ArgumentError, "stack(axis)"
    ),
    Case(
        "split-not-divisible",
        lambda: tn.split(M23, 2, axis=1),
        errors.ArgumentError,
        "split(indices_or_sections)",
    ),
    Case(
        "split-zero", lambda: tn.split(M23, 0), errors.ArgumentError, "split(indices_or_sections)"
    ),
    Case(
        "split-descending",
        lambda: tn.split(M23, [2, 1], axis=1),
        errors.ArgumentError,
        "split(indices_or_sections)",
    ),
    Case(
        "split-beyond",
        lambda: tn.split(M23, [4], axis=1),
        errors.ArgumentError,
        "split(indices_or_sections)",
    ),
    Case(
        "split-float",
        lambda: tn.split(M23, 1.5),
        errors.ArgumentTypeError,
        "split(indices_or_sections)",
    ),  # type: ignore[arg-type]
    Case("split-axis-high", lambda: tn.split(M23, 1, axis=2), errors.ArgumentError, "split(axis)"),
    Case(
        "take-too-large",
        lambda: tn.take(M23, [0, 3], axis=1),
        errors.ArgumentError,
        "take(indices) must hold ids in [0, 3)",
    ),
    Case(
        "take-negative", lambda: tn.take(M23, [-1], axis=0), errors.ArgumentError, "take(indices)"
    ),
    Case("take-flat-too-large", lambda: tn.take(M23, 6), errors.ArgumentError, "[0, 6)"),
    Case("take-float-ids", lambda: tn.take(M23, [0.0], axis=0), errors.DTypeError, "take(indices)"),
    Case("take-bool-ids", lambda: tn.take(M23, [True], axis=0), errors.DTypeError, "take(indices)"),
    Case("take-axis-high", lambda: tn.take(M23, [0], axis=2), errors.ArgumentError, "take(axis)"),
    Case(
        "take-empty-axis",
        lambda: tn.take(np.ones((0, 2)), [0], axis=0),
        errors.ArgumentError,
        "[0, 0)",
    ),
    Case(
        "take_along-too-large",
        lambda: tn.take_along_axis(M23, [[3], [0]], axis=1),
        errors.ArgumentError,
        "take_along_axis(indices)",
    ),
    Case(
        "take_along-rank",
        lambda: tn.take_along_axis(M23, [0, 1], axis=1),
        errors.ShapeError,
        "take_along_axis(indices) must have the rank of x",
    ),
    Case(
        "take_along-broadcast",
        lambda: tn.take_along_axis(M23, [[0], [1], [2]], axis=1),
        errors.ShapeError,
        "take_along_axis(indices) must broadcast",
    ),
    Case(
        "one_hot-too-large",
        lambda: tn.one_hot([0, 4], 4),
        errors.ArgumentError,
        "one_hot(indices) must hold ids in [0, 4)",
    ),
    Case(
        "one_hot-negative", lambda: tn.one_hot([[-1]], 4), errors.ArgumentError, "one_hot(indices)"
    ),
    Case("one_hot-depth-0", lambda: tn.one_hot([0], 0), errors.ArgumentError, "one_hot(depth)"),
    Case(
        "one_hot-depth-float",
        lambda: tn.one_hot([0], 2.0),
        errors.ArgumentTypeError,
        "one_hot(depth)",
    ),  # type: ignore[arg-type]
    Case("one_hot-float-ids", lambda: tn.one_hot([1.0], 2), errors.DTypeError, "one_hot(indices)"),
    Case("cast-unknown", lambda: tn.cast(M23, "float99"), errors.ArgumentError, "cast(dtype)"),
    Case("cast-bfloat16", lambda: tn.cast(M23, "bfloat16"), errors.ArgumentError, "cast(dtype)"),
    Case("cast-type", lambda: tn.cast(M23, np.float32), errors.ArgumentTypeError, "cast(dtype)"),  # type: ignore[arg-type]
    Case("cast-str-data", lambda: tn.cast(["a"], "int32"), errors.DTypeError, "'x'"),
    Case(
        "softmax-axis-high", lambda: tn.softmax(M23, axis=2), errors.ArgumentError, "softmax(axis)"
    ),
    Case("log_softmax-0d", lambda: tn.log_softmax(1.0), errors.ArgumentError, "log_softmax(axis)"),
    Case(
        "logsumexp-repeat",
        lambda: tn.logsumexp(M23, axis=[1, 1]),
        errors.ArgumentError,
        "logsumexp(axis)",
    ),
    Case(
        "gelu-approximate-value",
        lambda: tn.gelu(M23, "exact"),
        errors.ArgumentError,
        "gelu(approximate)",
    ),
    Case(
        "gelu-approximate-bool",
        lambda: tn.gelu(M23, True),
        errors.ArgumentTypeError,
        "gelu(approximate)",
    ),  # type: ignore[arg-type]
    Case(
        "leaky_relu-slope-str",
        lambda: tn.leaky_relu(M23, "0.1"),
        errors.ArgumentTypeError,
        "leaky_relu(negative_slope)",
    ),  # type: ignore[arg-type]
    Case("elu-alpha-nan", lambda: tn.elu(M23, math.nan), errors.ArgumentError, "elu(alpha)"),
    Case("silu-ragged", lambda: tn.silu([[1.0], [1.0, 2.0]]), errors.ShapeError, "'x'"),
]

# Native tensors, made inside the call for the current backend.
NATIVE_BAD: list[Case] = [
    Case(
        "take-native-too-large",
        lambda: tn.take(M23, _native([0, 2, 3]), axis=1),
        errors.ArgumentError,
        "take(indices) must hold ids in [0, 3)",
    ),
    Case(
        "take-native-negative-int32",
        lambda: tn.take(M23, _native([[-1]], "int32"), axis=0),
        errors.ArgumentError,
        "take(indices)",
    ),
    Case(
        "take_along-native",
        lambda: tn.take_along_axis(M23, _native([[0], [5]], "int16"), axis=1),
        errors.ArgumentError,
        "take_along_axis(indices)",
    ),
    Case(
        "one_hot-native-negative",
        lambda: tn.one_hot(_native([1, -2]), 3),
        errors.ArgumentError,
        "one_hot(indices) must hold ids in [0, 3)",
    ),
    Case(
        "one_hot-native-too-large-uint8",
        lambda: tn.one_hot(_native([255], "uint8"), 3),
        errors.ArgumentError,
        "one_hot(indices)",
    ),
    Case(
        "one_hot-native-float",
        lambda: tn.one_hot(_native([1.0], "float32"), 3),
        errors.DTypeError,
        "one_hot(indices) must hold integers",
    ),
]


def _outcome(case: Case) -> tuple[type[BaseException], str]:
    with pytest.raises(errors.TwinnnError) as info:
        case.call()
    return type(info.value), str(info.value)


ALL_BAD = BAD + NATIVE_BAD


@pytest.mark.parametrize("case", ALL_BAD, ids=[c.id for c in ALL_BAD])
def test_bad_input_raises_a_twinnn_error_naming_the_argument(backend: str, case: Case) -> None:
    cls, message = _outcome(case)
    assert cls is case.error, message
    assert case.names in message
    assert " got " in message


@pytest.mark.parametrize("case", ALL_BAD, ids=[c.id for c in ALL_BAD])
def test_same_message_on_both_backends(both_backends: list[str], case: Case) -> None:
    outcomes = []
    for name in both_backends:
        with tn.use_backend(name):
            outcomes.append(_outcome(case))
    assert outcomes[0] == outcomes[1]


def test_bad_ids_are_unique() -> None:
    assert len({c.id for c in ALL_BAD}) == len(ALL_BAD)


# --- inside a compiled step -------------------------------------------------------------------


class Tagger(tn.Module):
    """An embedding lookup and a small head written with the new ops."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(3)
        self.table = tn.parameter(rng.standard_normal((5, 3)).astype(np.float32))
        self.scale = tn.parameter(rng.standard_normal((3,)).astype(np.float32))

    def forward(self, ids: Any) -> Any:
        emb = tn.take(self.table, ids, axis=0)  # (B, 3)
        h = tn.gelu(emb * self.scale) + tn.leaky_relu(emb) + tn.abs(tn.minimum(emb, 0.0))
        h = tn.where(h > 0.0, h, tn.elu(h, 0.5)) + tn.max(h, axis=-1, keepdims=True) * 0.1
        return tn.log_softmax(tn.clip(h, -5.0, 5.0), axis=-1)


def _nll(log_probs: Any, target: Any) -> Any:
    picked = tn.take_along_axis(log_probs, tn.expand_dims(target, -1), axis=-1)
    spread = tn.logsumexp(log_probs, axis=-1) + tn.sum(tn.one_hot(target, 3) * 0.0)
    return -tn.mean(tn.squeeze(picked, -1)) + 0.01 * tn.mean(tn.square(spread))


def _eager_loss(model: Tagger, ids: np.ndarray, target: np.ndarray) -> float:
    return float(tn.to_numpy(_nll(model(ids), target)))


def test_the_ops_trace_into_a_compiled_step(backend: str) -> None:
    """The ops run inside ``train_step`` (a ``tf.function`` without autograph on TensorFlow)
    for new batch sizes without retracing, the loss matches the eager one, and out-of-range
    ids fed as data raise the eager error from inside the graph, before any update."""
    model = Tagger()
    step = tn.train_step(model, _nll, tn.SGD(model, lr=0.1))
    rng = np.random.default_rng(0)
    for n in (4, 7, 2):
        ids, target = rng.integers(0, 5, n), rng.integers(0, 3, n)
        expected = _eager_loss(model, ids, target)
        loss = float(tn.to_numpy(step(ids, target)))
        assert loss == pytest.approx(expected, rel=1e-5)
    if backend == "tensorflow":
        assert step.trace_count == 1  # type: ignore[attr-defined]
    before = [tn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(errors.ArgumentError, match=r"take\(indices\) must hold ids in \[0, 5\)"):
        step(np.array([0, 5, 1]), np.array([0, 1, 2]))
    with pytest.raises(errors.ArgumentError, match=r"take_along_axis\(indices\).*\[0, 3\)"):
        step(np.array([0, 4]), np.array([3, 0]))
    for p, old in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(tn.to_numpy(p), old)
    if backend == "tensorflow":
        assert step.trace_count == 1  # type: ignore[attr-defined]


@pytest.mark.backends("tensorflow")
def test_ops_trace_with_unknown_dims(backend: str) -> None:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], autograph=False)
    def traced(x: Any) -> Any:
        parts = tn.split(tn.transpose(x, (1, 0)), [1], axis=1)  # axis 1 unknown: refused
        return parts[0]

    with pytest.raises(errors.ShapeError, match=r"split\(x\) needs the size of axis 1"):
        traced(tf.ones((2, 3)))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)], autograph=False)
    def fine(x: Any) -> Any:
        a, b = tn.split(x, [1], axis=1)
        y = tn.take_along_axis(tn.softmax(x), tn.argmax(x, axis=1)[:, None], axis=1)
        z = tn.stack([tn.squeeze(a, 1), tn.max(b, axis=1)], axis=-1)
        return tn.sum(y) + tn.sum(z) + tn.sum(tn.take(x, [0, 0], axis=0))

    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], np.float32)
    probs = _softmax(x.astype(np.float64), -1).max(axis=1).sum()
    expected = probs + (x[:, 0] + x[:, 1:].max(axis=1)).sum() + 2 * x[0].sum()
    assert float(fine(x)) == pytest.approx(expected, rel=1e-6)


def test_backend_gathers_and_argmax_take_negative_axes(backend: str) -> None:
    """The front passes non-negative axes; the losses call the backend directly with -1."""
    from twinnn import config

    impl = config.current()
    x = impl.convert(X234, "x")
    ids = impl.convert(np.array([[[1], [0], [3]], [[2], [2], [0]]]), "ids")
    np.testing.assert_array_equal(
        impl.to_numpy(impl.take_along_axis(x, ids, -1)),
        np.take_along_axis(X234, impl.to_numpy(ids), -1),
    )
    np.testing.assert_array_equal(impl.to_numpy(impl.argmax(x, -1)), np.argmax(X234, -1))
    np.testing.assert_array_equal(
        impl.to_numpy(impl.take(x, impl.convert(np.array([3, 0]), "i"), -1)),
        np.take(X234, [3, 0], -1),
    )
    np.testing.assert_array_equal(impl.to_numpy(impl.maximum(x, 0.0)), np.maximum(X234, 0.0))
