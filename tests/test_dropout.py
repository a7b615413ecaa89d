"""Dropout (DESIGN.md §12): hash masks identical on both backends, across runs and for a batch
split by rows; their statistics; eval mode; gradients; compiled steps; argument checks.

The references below re-implement the documented hash (``twinnn.layers.dropout``'s module
docstring) independently: in plain Python ints for a few elements, with NumPy uint64 for many.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from twinnn import errors
from twinnn.layers import dropout as dropout_mod

M32 = 0xFFFFFFFF


# --- independent references ------------------------------------------------------------------
def _mix_py(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def _key_py(seed: int, layer: int, update: int) -> int:
    c = 0x9E3779B9
    for word in (seed & M32, seed >> 32, layer & M32, layer >> 32):
        c = _mix_py(c ^ word)
    return _mix_py(c ^ (update & M32) ^ (((update >> 32) * 0x9E3779B9) & M32))


def _mix_np(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(M32)
    return x ^ (x >> np.uint64(16))


def reference_keep(
    seed: int, layer: int, update: int, shape: tuple[int, ...], p: float, row_offset: int = 0
) -> np.ndarray:
    """The keep mask by the documented formula (NumPy, exact in uint64)."""
    n = math.prod(shape)
    rows = shape[0] if shape else 1
    per_row = n // rows if rows else 0
    e = np.arange(n, dtype=np.uint64) + np.uint64(row_offset * per_row)
    hi = e >> np.uint64(32)
    key = np.uint64(_key_py(seed, layer, update))
    bits = _mix_np((e & np.uint64(M32)) ^ key ^ _mix_np(hi))
    return (bits >= np.uint64(round(p * 2**32))).reshape(shape)


def _scale(p: float) -> np.float32:
    return np.float32(1.0 / (1.0 - p))


# --- helpers ----------------------------------------------------------------------------------
def _masks(layer: tn.Dropout, shape: tuple[int, ...], calls: int) -> list[np.ndarray]:
    """The keep masks of ``calls`` training-mode calls on ones."""
    x = np.ones(shape, np.float32)
    return [tn.to_numpy(layer(x)) != 0 for _ in range(calls)]


def _keep_of(backend: str, seed: int, layer: int, update: int, shape: Any, p: float, offset: int):
    """The backend's keep mask via the functional API (no layer needed)."""
    impl = tn.config.current()
    x = impl.convert_float(np.ones(shape, np.float32), "x")
    constant = dropout_mod.layer_constant(seed, layer)
    key = dropout_mod.step_key(impl, constant, impl.convert(np.int64(update), "u", "int64"))
    return tn.to_numpy(dropout_mod.keep_mask(impl, x, p, key, offset))


# --- the hash ---------------------------------------------------------------------------------
def test_python_reference_of_a_few_elements(backend: str) -> None:
    tn.seed(42)
    layer = tn.Dropout(0.25)
    y = tn.to_numpy(layer(np.ones((3, 4), np.float32)))
    key = _key_py(42, 0, 0)
    for e in (0, 1, 2, 5, 11):
        kept = _mix_py(e ^ key) >= round(0.25 * 2**32)
        assert y.ravel()[e] == (_scale(0.25) if kept else 0.0), e


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_match_reference_and_scale(backend: str, p: float) -> None:
    tn.seed(7)
    first, second = tn.Dropout(p), tn.Dropout(p)
    for shape in [(), (1,), (9,), (4, 5, 3), (2, 0, 3), (3, 257)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for update in range(2):
            y = tn.to_numpy(first(x))
            keep = reference_keep(7, 0, update, shape, p)
            np.testing.assert_array_equal(y, np.where(keep, x * _scale(p), np.float32(0)))
        first.updates = 0
    np.testing.assert_array_equal(
        tn.to_numpy(second(np.ones((4, 6), np.float32))) != 0, reference_keep(7, 1, 0, (4, 6), p)
    )


@pytest.mark.parametrize(
    ("shape", "p"), [((64, 512), 0.5), ((20, 35, 200), 0.2), ((3, 1, 7), 0.9), ((5,), 0.3)]
)
def test_masks_bit_identical_across_backends(
    both_backends: list[str], shape: tuple[int, ...], p: float
) -> None:
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    outputs = []
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(123)
            tn.Dropout(0.5)  # layer 0; the layer under test is layer 1
            layer = tn.Dropout(p)
            outputs.append([tn.to_numpy(layer(x)) for _ in range(3)])
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(outputs[0][0] != 0, outputs[0][1] != 0)


def test_identical_across_runs_and_reset_by_seed(backend: str) -> None:
    runs = []
    for _ in range(2):
        tn.seed(5)
        layers = [tn.Dropout(0.4), tn.Dropout(0.4)]
        assert [lay.layer for lay in layers] == [0, 1]
        runs.append([m for lay in layers for m in _masks(lay, (6, 7), 2)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    tn.seed(6)
    assert not np.array_equal(_masks(tn.Dropout(0.4), (6, 7), 1)[0], runs[0][0])


def test_split_batch_with_row_offset_gives_the_whole_batch_mask(backend: str) -> None:
    tn.seed(9)
    layer = tn.Dropout(0.3)
    x = np.random.default_rng(1).standard_normal((10, 4, 3)).astype(np.float32)
    whole = tn.to_numpy(layer(x))
    parts = []
    for start, stop in [(0, 3), (3, 4), (4, 10)]:
        layer.updates = 0
        layer.row_offset = start
        parts.append(tn.to_numpy(layer(x[start:stop])))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_indices_beyond_2_to_32_mix_the_high_word(backend: str) -> None:
    """A row offset putting the element indices across 2**31 and 2**32 (int64 path)."""
    for offset in (2**28 - 2, 2**29 - 2, 2**33 + 5):  # 8 elements per row
        got = _keep_of(backend, 1, 2, 3, (4, 8), 0.5, offset)
        np.testing.assert_array_equal(got, reference_keep(1, 2, 3, (4, 8), 0.5, offset))
    # past 2**32 the indices do not repeat the first 2**32's masks
    low = _keep_of(backend, 1, 2, 3, (64, 8), 0.5, 0)
    high = _keep_of(backend, 1, 2, 3, (64, 8), 0.5, 2**29)
    assert not np.array_equal(low, high)


@pytest.mark.backends("tensorflow")
def test_tf_traced_masks_for_dynamic_shapes(backend: str) -> None:
    """In a traced TF step the element count is only known at run time (tf.cond path)."""
    import tensorflow as tf

    impl = tn.config.current()
    signature = [tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int64)]
    for offset in (0, 2**28 - 2, 2**29 - 2):

        def keep(x: Any, u: Any, offset: int = offset) -> Any:
            key = dropout_mod.step_key(impl, dropout_mod.layer_constant(1, 2), u)
            return dropout_mod.keep_mask(impl, x, 0.5, key, offset)

        traced = tf.function(keep, input_signature=signature, autograph=False)
        for shape in [(4, 8), (3, 5)]:
            got = traced(tf.ones(shape), tf.constant(3, tf.int64)).numpy()
            np.testing.assert_array_equal(got, reference_keep(1, 2, 3, shape, 0.5, offset))


# --- statistics -------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8])
def test_keep_rate_within_binomial_bound(backend: str, p: float) -> None:
    n = 1_000_000
    tn.seed(11)
    kept = _masks(tn.Dropout(p), (1000, 1000), 1)[0].sum()
    sd = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) < 5 * sd, (kept, n * (1 - p), sd)


def _agreement_ok(a: np.ndarray, b: np.ndarray, p: float) -> None:
    expected = p * p + (1 - p) * (1 - p)
    rate = float(np.mean(a == b))
    sd = math.sqrt(expected * (1 - expected) / a.size)
    assert abs(rate - expected) < 5 * sd, (rate, expected)


def test_independent_across_layers_steps_and_neighbours(backend: str) -> None:
    p, shape = 0.3, (1000, 1000)
    tn.seed(13)
    first, second = tn.Dropout(p), tn.Dropout(p)
    step0, step1 = _masks(first, shape, 2)
    other = _masks(second, shape, 1)[0]
    _agreement_ok(step0, step1, p)  # one layer, consecutive steps
    _agreement_ok(step0, other, p)  # two layers, one step
    flat = step0.ravel()
    _agreement_ok(flat[:-1], flat[1:], p)  # neighbouring elements
    _agreement_ok(step0[:-1], step0[1:], p)  # neighbouring rows
    first.updates = 2**32  # the update's high word counts too
    _agreement_ok(step0, _masks(first, shape, 1)[0], p)


# --- modes, values, gradients -----------------------------------------------------------------
def test_eval_mode_is_identity_and_does_not_count(backend: str) -> None:
    layer = tn.Dropout(0.5)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    layer.eval()
    np.testing.assert_array_equal(tn.to_numpy(layer(x)), x)
    assert int(tn.to_numpy(layer.updates)) == 0
    layer.train()
    layer(x)
    layer(x)
    assert int(tn.to_numpy(layer.updates)) == 2


def test_p_zero_and_one(backend: str) -> None:
    x = np.array([[1.0, -2.0, np.inf, np.nan]], np.float32)
    np.testing.assert_array_equal(tn.to_numpy(tn.Dropout(0.0)(x)), x)
    zero = tn.to_numpy(tn.Dropout(1.0)(x))  # x * 0, as torch: NaN where x is inf or NaN
    np.testing.assert_array_equal(zero, np.array([[0.0, -0.0, np.nan, np.nan]], np.float32))


def test_buffer_is_not_in_state_dict(backend: str) -> None:
    model = tn.Sequential(tn.Linear(3, 2), tn.Dropout(0.1))
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    assert [n for n, _ in model.named_buffers()] == ["1.updates"]
    assert repr(tn.Dropout(0.25)) == "Dropout(p=0.25)"


def test_gradient_is_mask_times_scale(backend: str) -> None:
    p = 0.4
    tn.seed(17)
    layer = tn.Dropout(p)
    x = np.random.default_rng(4).standard_normal((6, 9)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((6, 9)).astype(np.float32)
    if backend == "torch":
        import torch

        xt = torch_tensor(x, requires_grad=True)
        y = layer(xt)
        (grad,) = torch.autograd.grad((y * torch_tensor(w)).sum(), xt)
        got, out = torch_numpy(grad), torch_numpy(y)
    else:
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt)
            loss = tf.reduce_sum(y * w)
        got, out = tape.gradient(loss, xt).numpy(), y.numpy()
    keep = reference_keep(17, 0, 0, (6, 9), p)
    np.testing.assert_array_equal(out, np.where(keep, x * _scale(p), np.float32(0)))
    np.testing.assert_array_equal(got, np.where(keep, w * _scale(p), np.float32(0)))


# --- compiled steps ---------------------------------------------------------------------------
class _MLP(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = tn.Linear(6, 32)
        self.drop = tn.Dropout(0.3)
        self.out = tn.Linear(32, 2, init="torch")

    def forward(self, x: Any) -> Any:
        return self.out(self.drop(tn.relu(self.hidden(x))))


def _train_mlp(backend: str, steps: int) -> tuple[list[float], list[np.ndarray], Any, Any]:
    rng = np.random.default_rng(21)
    with tn.use_backend(backend):
        tn.seed(0)
        model = _MLP()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1), eager=False)
        probe = tn.Dropout(0.3)  # a second dropout layer: its masks, through a compiled step
        probed = probe_model(probe)
        seen = tn.train_step(probed, tn.mse_loss, tn.SGD(probed.parameters(), lr=0.0), outputs=True)
        losses, masks = [], []
        for _ in range(steps):
            x = rng.standard_normal((16, 6)).astype(np.float32)
            y = rng.standard_normal((16, 2)).astype(np.float32)
            losses.append(float(tn.to_numpy(step(x, y))))
            _, out = seen(np.ones((8, 5), np.float32), np.zeros((8, 5), np.float32))
            masks.append(tn.to_numpy(out) != 0)
        return losses, masks, step, model


def probe_model(layer: tn.Dropout) -> tn.Module:
    class Probe(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tn.parameter(np.ones((), np.float32))
            self.drop = layer

        def forward(self, x: Any) -> Any:
            return self.drop(x * self.scale)

    return Probe()


def test_compiled_steps_match_eager_torch(both_backends: list[str]) -> None:
    steps = 5
    l_torch, m_torch, _, torch_model = _train_mlp("torch", steps)
    l_tf, m_tf, tf_step, tf_model = _train_mlp("tensorflow", steps)
    np.testing.assert_allclose(l_tf, l_torch, rtol=1e-5)
    for a, b in zip(m_torch, m_tf, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in itertools.pairwise(m_tf):
        assert not np.array_equal(a, b)  # a new mask every step
    for k, mask in enumerate(m_tf):
        np.testing.assert_array_equal(mask, reference_keep(0, 1, k, (8, 5), 0.3))
    assert tf_step.trace_count == 1
    for model in (torch_model, tf_model):
        assert int(tn.to_numpy(model.drop.updates)) == steps


# --- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "error", "text"),
    [
        (-0.1, errors.ArgumentError, "Dropout(p) must be in [0.0, 1.0], got -0.1"),
        (1.5, errors.ArgumentError, "Dropout(p) must be in [0.0, 1.0], got 1.5"),
        (math.nan, errors.ArgumentError, "Dropout(p) must be in [0.0, 1.0], got nan"),
        ("0.5", errors.ArgumentTypeError, "Dropout(p) must be a float, got str '0.5'"),
        (True, errors.ArgumentTypeError, "Dropout(p) must be a float, got bool True"),
    ],
)
def test_p_out_of_bounds(backend: str, p: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        tn.Dropout(p)
    assert str(info.value) == text


def test_row_offset_checked(backend: str) -> None:
    layer = tn.Dropout(0.5)
    layer.row_offset = -1
    with pytest.raises(errors.ArgumentError, match=r"row_offset must be >= 0, got -1"):
        layer(np.ones((2, 2), np.float32))
    layer.row_offset = 1.5
    with pytest.raises(errors.ArgumentTypeError, match=r"row_offset must be an int"):
        layer(np.ones((2, 2), np.float32))
