"""max_pool, avg_pool and flatten: values and gradients against float64 NumPy references
(windows taken one by one; SAME average pooling counts only the valid elements), parity across
backends, the compiled path, and bad inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import _window_reference as ref
import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError

TOL = {"rtol": 1e-5, "atol": 1e-6}

# (spatial sizes, pool_size, strides, padding)
CASES = [
    ((8,), 2, None, "valid"),
    ((9,), 3, 2, "same"),  # (1, 1)
    ((8,), 3, 2, "same"),  # asymmetric (0, 1)
    ((9,), 4, 2, "same"),  # asymmetric (1, 2)
    ((7,), 3, 1, "same"),
    ((8, 8), 2, None, "valid"),
    ((8, 8), 3, 2, "same"),  # (0, 1) in both dims
    ((9, 8), (4, 3), (2, 1), "same"),
    ((7, 9), (3, 2), (2, 3), "valid"),
    ((5, 5), 3, 1, "same"),  # symmetric (1, 1): corners hold 4 of 9
    ((8, 9), 4, 3, "same"),
]


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _geometry(case: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    sizes, k, s, p = case
    n = len(sizes)
    window = (k,) * n if isinstance(k, int) else k
    step = window if s is None else ((s,) * n if isinstance(s, int) else s)
    return window, step, ref.pads_of(p, sizes, window, step, (1,) * n)


def _grad(backend: str, fn: Any, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if backend == "torch":
        xt = torch_tensor(x, requires_grad=True)
        out = fn(xt)
        (out * torch_tensor(g)).sum().backward()
        return torch_numpy(out), torch_numpy(xt.grad)
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = fn(xt)
        loss = tf.reduce_sum(out * g)
    return out.numpy(), tape.gradient(loss, xt).numpy()


@pytest.mark.parametrize("kind", ["max", "mean"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_values_and_gradients_match_numpy(backend: str, case: tuple[Any, ...], kind: str) -> None:
    sizes, k, s, p = case
    window, step, pads = _geometry(case)
    x = _x(2, *sizes, 3)
    op = tn.max_pool if kind == "max" else tn.avg_pool
    expected = ref.pool(kind, x, window, step, pads)
    g = _x(*expected.shape, seed=1)
    out, dx = _grad(backend, lambda t: op(t, k, s, p), x, g)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(dx, ref.pool_grad(kind, x, g, window, step, pads), **TOL)


def test_same_average_counts_only_valid_elements(backend: str) -> None:
    x = np.ones((1, 5, 5, 1), np.float32)
    np.testing.assert_array_equal(tn.to_numpy(tn.avg_pool(x, 3, 1, "same")), x)  # never 4/9
    x = np.arange(8, dtype=np.float32).reshape(1, 8, 1)
    out = tn.to_numpy(tn.avg_pool(x, 3, 2, "same"))  # pads (0, 1): last window [6, 7]
    np.testing.assert_allclose(out.ravel(), [1.0, 3.0, 5.0, 6.5])


def test_same_max_ignores_padding(backend: str) -> None:
    x = -np.ones((1, 3, 3, 1), np.float32)
    np.testing.assert_array_equal(tn.to_numpy(tn.max_pool(x, 2, 2, "same")), -np.ones((1, 2, 2, 1)))


def test_max_pool_gradient_goes_to_the_first_maximum(backend: str) -> None:
    x = np.ones((1, 2, 2, 1), np.float32)
    _, dx = _grad(backend, lambda t: tn.max_pool(t, 2), x, np.ones((1, 1, 1, 1), np.float32))
    np.testing.assert_array_equal(dx.ravel(), [1.0, 0.0, 0.0, 0.0])


def test_parity(both_backends: list[str]) -> None:
    x = _x(4, 9, 10, 5)
    results = []
    for name in both_backends:
        with tn.use_backend(name):
            results.append(
                [
                    tn.to_numpy(tn.max_pool(x, 3, 2, "same")),
                    tn.to_numpy(tn.avg_pool(x, (4, 3), (2, 3), "same")),
                    tn.to_numpy(tn.avg_pool(x[:, 0], 2)),
                ]
            )
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_compiled_pooling_on_new_spatial_sizes(backend: str) -> None:
    class Pool(tn.Module):
        def forward(self, x: Any) -> Any:
            return tn.avg_pool(tn.max_pool(x, 2, padding="same"), 3, 2, "same")

    step = tn.predict_step(Pool())
    for sizes in [(8, 8), (9, 7)]:
        x = _x(2, *sizes, 3)
        pads = [ref.tf_same(n, 2, 2) for n in sizes]
        inner = ref.pool("max", x, (2, 2), (2, 2), pads)
        pads = [ref.tf_same(n, 3, 2) for n in inner.shape[1:3]]
        expected = ref.pool("mean", inner, (3, 3), (2, 2), pads)
        np.testing.assert_allclose(tn.to_numpy(step(x)), expected, **TOL)


def test_valid_pool_larger_than_input_in_a_compiled_step(backend: str) -> None:
    class Pool(tn.Module):
        def forward(self, x: Any) -> Any:
            return tn.max_pool(x, 4)

    step = tn.predict_step(Pool())
    step(_x(1, 4, 4, 2))
    with pytest.raises(ShapeError, match=r"max_pool: argument 'x' of shape \(1, 3, 5, 2\)"):
        step(_x(1, 3, 5, 2))


# --- flatten ------------------------------------------------------------------------------------


def test_flatten(backend: str) -> None:
    x = _x(2, 3, 4, 5)
    np.testing.assert_array_equal(tn.to_numpy(tn.flatten(x)), x.reshape(2, 60))
    ids = np.arange(12).reshape(2, 3, 2)
    out = tn.flatten(ids)
    assert tn.to_numpy(out).dtype == np.int64
    np.testing.assert_array_equal(tn.to_numpy(out), ids.reshape(2, 6))
    np.testing.assert_array_equal(tn.to_numpy(tn.flatten(x[:, 0, 0])), x[:, 0, 0])
    np.testing.assert_array_equal(tn.to_numpy(tn.flatten(x[:, 0, 0, 0])), x[:, :1, 0, 0])
    assert tn.to_numpy(tn.flatten(np.zeros((0, 3, 2), np.float32))).shape == (0, 6)
    with pytest.raises(ShapeError, match=r"flatten: argument 'x' must have a batch axis"):
        tn.flatten(np.float32(1.0))


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: tn.max_pool(_x(2, 3, 3, 1), 4),
            ShapeError,
            r"max_pool: argument 'x' of shape \(2, 3, 3, 1\) is too small for pool_size=\(4, 4\) "
            r"with padding='valid'",
        ),
        (
            lambda: tn.avg_pool(_x(2, 3), 2),
            ShapeError,
            r"avg_pool: argument 'x' must have shape \(batch, width, channels\) or "
            r"\(batch, height, width, channels\).*got \(2, 3\)",
        ),
        (
            lambda: tn.max_pool(_x(2, 6, 6, 1), (2, 2, 2)),
            ArgumentError,
            r"max_pool\(pool_size\) must be an int or a tuple of 2 ints >= 1.*\(2, 2, 2\)",
        ),
        (lambda: tn.max_pool(_x(2, 6, 1), 2, 0), ArgumentError, r"max_pool\(strides\)"),
        (lambda: tn.avg_pool(_x(2, 6, 1), 2, None, 1), ArgumentTypeError, r"'valid' or 'same'"),
        (lambda: tn.avg_pool(_x(2, 6, 1), 2, None, "full"), ArgumentError, r"got str 'full'"),
        (lambda: tn.max_pool(_x(2, 6, 1), "2"), ArgumentTypeError, r"max_pool\(pool_size\)"),
    ],
)
def test_bad_inputs(backend: str, call: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()
