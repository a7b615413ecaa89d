"""twinnn.interop for Embedding, LayerNorm and BatchNorm: both ways with torch.nn and Keras,
values bit for bit, outputs against the native layers' own forward, the conventions that
differ (Keras' epsilon, momentum and biased moving variance), and the refused settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn.errors import ArgumentError, DTypeError

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from twinnn.interop.keras import from_keras, to_keras  # noqa: E402
from twinnn.interop.torch import from_torch, to_torch  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-6}
IDS = np.array([[0, 3, 9, 3], [1, 0, 2, 7]])


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return (2.0 * np.random.default_rng(seed).standard_normal(shape) + 0.5).astype(np.float32)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(keras.ops.convert_to_numpy(x))


def _same_state(a: tn.Module, b: tn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name, value in sa.items():
        np.testing.assert_array_equal(sb[name], value)


def _randomize_torch(module: Any, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.dtype == torch.float32:
                values = rng.uniform(0.5 if name == "running_var" else -0.5, 1.5, tensor.shape)
                tensor.copy_(torch.from_numpy(values.astype(np.float32)))


def _randomize_keras(layer: Any, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        low = 0.5 if "variance" in variable.path else -0.5
        variable.assign(rng.uniform(low, 1.5, tuple(variable.shape)).astype(np.float32))


# --- torch -------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [None, 3, -1])
def test_embedding_from_and_to_torch(backend: str, padding_idx: int | None) -> None:
    torch.manual_seed(0)
    native = torch.nn.Embedding(10, 4, padding_idx=padding_idx)
    _randomize_torch(native)
    layer = from_torch(native)
    assert isinstance(layer, tn.Embedding) and layer.backend == backend
    assert layer.padding_idx == native.padding_idx
    np.testing.assert_array_equal(layer.state_dict()["weight"], _np(native.weight))
    np.testing.assert_array_equal(tn.to_numpy(layer(IDS)), _np(native(torch.from_numpy(IDS))))
    back = to_torch(layer)
    assert isinstance(back, torch.nn.Embedding) and back.padding_idx == native.padding_idx
    np.testing.assert_array_equal(_np(back.weight), _np(native.weight))
    _same_state(layer, from_torch(back))


def test_layer_norm_from_and_to_torch(backend: str) -> None:
    native = torch.nn.LayerNorm(6, eps=1e-3)
    _randomize_torch(native)
    layer = from_torch(native)
    assert isinstance(layer, tn.LayerNorm) and layer.eps == 1e-3
    x = _x(3, 5, 6)
    np.testing.assert_allclose(tn.to_numpy(layer(x)), _np(native(torch.from_numpy(x))), **TOL)
    back = to_torch(layer)
    assert isinstance(back, torch.nn.LayerNorm) and back.eps == 1e-3
    assert tuple(back.normalized_shape) == (6,)
    np.testing.assert_allclose(_np(back(torch.from_numpy(x))), tn.to_numpy(layer(x)), **TOL)
    _same_state(layer, from_torch(back))


@pytest.mark.parametrize("rank", [2, 3])
def test_batch_norm_from_torch_trains_and_evaluates_like_torch(backend: str, rank: int) -> None:
    native = torch.nn.BatchNorm1d(5, momentum=0.3, eps=1e-4)
    _randomize_torch(native)
    layer = from_torch(native)
    assert isinstance(layer, tn.BatchNorm)
    assert (layer.momentum, layer.eps) == (0.3, 1e-4)
    _same_state(layer, from_torch(native))
    x = _x(8, 5) if rank == 2 else _x(4, 7, 5)

    def torch_forward(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(x)
        return _np(native(xt) if rank == 2 else native(xt.transpose(1, 2)).transpose(1, 2))

    # eval: the running statistics
    native.eval()
    layer.eval()
    np.testing.assert_allclose(tn.to_numpy(layer(x)), torch_forward(x), **TOL)
    # training: the batch statistics, and the running ones move the same way
    native.train()
    layer.train()
    np.testing.assert_allclose(tn.to_numpy(layer(x)), torch_forward(x), **TOL)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(layer.state_dict()[name], _np(getattr(native, name)), **TOL)


def test_batch_norm_to_torch(backend: str) -> None:
    layer = tn.BatchNorm(4, momentum=0.25, eps=1e-3)
    step = tn.train_step(layer, tn.mse_loss, tn.SGD(layer.parameters(), lr=0.1))
    step(_x(6, 4), _x(6, 4, seed=1))
    native = to_torch(layer)
    assert isinstance(native, torch.nn.BatchNorm1d)
    assert (native.momentum, native.eps, int(native.num_batches_tracked)) == (0.25, 1e-3, 0)
    assert native.affine and native.track_running_stats
    native.eval()
    layer.eval()
    x = _x(3, 4, seed=2)
    np.testing.assert_allclose(_np(native(torch.from_numpy(x))), tn.to_numpy(layer(x)), **TOL)
    _same_state(layer, from_torch(native))


def test_batch_norm_2d_converts_channels_last(backend: str) -> None:
    native = torch.nn.BatchNorm2d(3).eval()
    _randomize_torch(native)
    layer = from_torch(native).eval()
    x = _x(2, 4, 5, 3)  # (B, H, W, C)
    expected = _np(native(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
    np.testing.assert_allclose(tn.to_numpy(layer(x)), expected, **TOL)


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: torch.nn.Embedding(5, 2, max_norm=1.0), "max_norm"),
        (lambda: torch.nn.Embedding(5, 2, scale_grad_by_freq=True), "scale_grad_by_freq"),
        (lambda: torch.nn.LayerNorm((2, 3)), "normalized_shape"),
        (lambda: torch.nn.LayerNorm(3, elementwise_affine=False), "elementwise_affine"),
        (lambda: torch.nn.LayerNorm(3, bias=False), "bias"),
        (lambda: torch.nn.BatchNorm1d(3, affine=False), "affine"),
        (lambda: torch.nn.BatchNorm1d(3, track_running_stats=False), "track_running_stats"),
        (lambda: torch.nn.BatchNorm1d(3, momentum=None), "momentum"),
    ],
)
def test_torch_refusals(backend: str, make: Any, setting: str) -> None:
    with pytest.raises(ArgumentError, match=rf"torch\.nn\.\w+\({setting}=.*cannot be converted"):
        from_torch(make())


def test_torch_float64_is_refused(backend: str) -> None:
    with pytest.raises(DTypeError, match=r"torch\.nn\.Embedding\.weight has dtype torch\.float64"):
        from_torch(torch.nn.Embedding(4, 2).double())
    with pytest.raises(DTypeError, match=r"BatchNorm1d\.weight has dtype"):
        from_torch(torch.nn.BatchNorm1d(2).double())


# --- Keras -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_zero", [False, True])
def test_embedding_from_and_to_keras(backend: str, mask_zero: bool) -> None:
    native = keras.layers.Embedding(10, 4, mask_zero=mask_zero)
    native.build()
    _randomize_keras(native)
    layer = from_keras(native)
    assert isinstance(layer, tn.Embedding) and layer.padding_idx is None
    np.testing.assert_array_equal(layer.state_dict()["weight"], _np(native.embeddings))
    np.testing.assert_array_equal(tn.to_numpy(layer(IDS)), _np(native(IDS)))
    back = to_keras(layer)
    assert isinstance(back, keras.layers.Embedding)
    np.testing.assert_array_equal(_np(back(IDS)), tn.to_numpy(layer(IDS)))
    _same_state(layer, from_keras(back))


def test_layer_normalization_carries_keras_epsilon(backend: str) -> None:
    native = keras.layers.LayerNormalization()  # epsilon 1e-3 by default
    native.build((None, 6))
    _randomize_keras(native)
    layer = from_keras(native)
    assert isinstance(layer, tn.LayerNorm) and layer.eps == native.epsilon == 1e-3
    x = _x(3, 5, 6)
    np.testing.assert_allclose(tn.to_numpy(layer(x)), _np(native(x)), **TOL)
    back = to_keras(tn.LayerNorm(6))
    assert back.epsilon == 1e-5 and back.axis == [-1]
    np.testing.assert_allclose(_np(back(x)), tn.to_numpy(tn.LayerNorm(6)(x)), **TOL)
    _same_state(layer, from_keras(to_keras(layer)))


def test_batch_normalization_from_keras(backend: str) -> None:
    native = keras.layers.BatchNormalization(momentum=0.9, epsilon=2e-3)
    native.build((None, None, 4))
    _randomize_keras(native)
    layer = from_keras(native)
    assert isinstance(layer, tn.BatchNorm)
    assert layer.momentum == 0.1 and layer.eps == 2e-3  # Keras' 0.9
    x = _x(3, 5, 4)
    layer.eval()
    np.testing.assert_allclose(tn.to_numpy(layer(x)), _np(native(x, training=False)), **TOL)
    # training: the batch is normalised the same way and the moving mean moves the same way;
    # the moving variance does not: Keras averages the biased variance, twinnn the unbiased
    before = layer.state_dict()
    layer.train()
    np.testing.assert_allclose(tn.to_numpy(layer(x)), _np(native(x, training=True)), **TOL)
    after = layer.state_dict()
    np.testing.assert_allclose(after["running_mean"], _np(native.moving_mean), **TOL)
    n = 3 * 5
    batch_var = x.reshape(-1, 4).astype(np.float64).var(0)
    np.testing.assert_allclose(
        _np(native.moving_variance), 0.9 * before["running_var"] + 0.1 * batch_var, rtol=1e-5
    )
    np.testing.assert_allclose(
        after["running_var"], 0.9 * before["running_var"] + 0.1 * batch_var * n / (n - 1), rtol=1e-5
    )


def test_batch_norm_to_keras_and_back(backend: str) -> None:
    layer = tn.BatchNorm(4, momentum=0.05, eps=1e-4)
    step = tn.train_step(layer, tn.mse_loss, tn.SGD(layer.parameters(), lr=0.1))
    step(_x(3, 5, 4), _x(3, 5, 4, seed=1))
    native = to_keras(layer, input_rank=3)
    assert isinstance(native, keras.layers.BatchNormalization)
    assert native.momentum == 0.95 and native.epsilon == 1e-4
    x = _x(2, 6, 4, seed=2)
    layer.eval()
    np.testing.assert_allclose(_np(native(x, training=False)), tn.to_numpy(layer(x)), **TOL)
    again = from_keras(native)
    assert isinstance(again, tn.BatchNorm) and again.momentum == 0.05
    _same_state(layer, again)
    with pytest.raises(ArgumentError, match=r"to_keras\(input_rank\) must be an int >= 2"):
        to_keras(layer, input_rank=1)


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: keras.layers.LayerNormalization(axis=1), "axis"),
        (lambda: keras.layers.LayerNormalization(center=False), "center"),
        (lambda: keras.layers.LayerNormalization(scale=False), "scale"),
        (lambda: keras.layers.LayerNormalization(gamma_regularizer="l2"), "gamma_regularizer"),
        (lambda: keras.layers.BatchNormalization(axis=1), "axis"),
        (lambda: keras.layers.BatchNormalization(renorm=True), "renorm"),
        (lambda: keras.layers.BatchNormalization(center=False), "center"),
        (
            lambda: keras.layers.Embedding(5, 3, embeddings_regularizer="l2"),
            "embeddings_regularizer",
        ),
        (lambda: keras.layers.Embedding(5, 3, lora_rank=2), "lora_rank"),
    ],
)
def test_keras_refusals(backend: str, make: Any, setting: str) -> None:
    native = make()
    native.build((None, 3, 3)) if not isinstance(native, keras.layers.Embedding) else native.build()
    with pytest.raises(
        ArgumentError, match=rf"keras\.layers\.\w+\({setting}=.*cannot be converted"
    ):
        from_keras(native)


def test_conversions_draw_no_random_numbers(backend: str) -> None:
    tn.seed(4)
    expected = tn.Linear(3, 3).state_dict()["weight"]
    layers = (tn.Embedding(5, 2, padding_idx=0), tn.LayerNorm(3), tn.BatchNorm(3))
    tn.seed(4)
    for layer in layers:
        from_torch(to_torch(layer))
        from_keras(to_keras(layer))
    np.testing.assert_array_equal(tn.Linear(3, 3).state_dict()["weight"], expected)
