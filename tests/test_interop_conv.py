"""twinnn.interop for Conv1D / Conv2D: both ways with torch.nn.Conv1d/2d (channels first: the
tests permute) and Keras Conv1D/Conv2D (channels last), values bit for bit, outputs against the
native layers' own forward, a converted torch conv training like the original, and the refused
settings."""

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

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _first(x: np.ndarray) -> Any:
    """Channels last -> a channels-first torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _last(y: Any) -> np.ndarray:
    return np.moveaxis(y.detach().numpy(), 1, -1)


def _same_state(a: tn.Module, b: tn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name, value in sa.items():
        np.testing.assert_array_equal(sb[name], value)


TORCH_CASES = [
    (1, {"kernel_size": 3}),
    (1, {"kernel_size": 4, "padding": "same", "dilation": 2}),
    (1, {"kernel_size": 3, "stride": 2, "padding": 2, "bias": False}),
    (2, {"kernel_size": 3, "padding": 1}),
    (2, {"kernel_size": (4, 2), "padding": "same"}),  # asymmetric: torch pads the end too
    (2, {"kernel_size": 3, "stride": 2, "padding": (1, 0)}),
    (2, {"kernel_size": 2, "dilation": (2, 1), "padding": "valid"}),
]


@pytest.mark.parametrize(("dims", "kwargs"), TORCH_CASES, ids=[str(c) for c in TORCH_CASES])
def test_from_and_to_torch(backend: str, dims: int, kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    native = (torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d)(3, 5, **kwargs)
    layer = from_torch(native)
    assert isinstance(layer, tn.Conv1D if dims == 1 else tn.Conv2D) and layer.backend == backend
    x = _x(2, *([9, 8][:dims]), 3)
    with torch.no_grad():
        expected = _last(native(_first(x)))
    np.testing.assert_allclose(tn.to_numpy(layer(x)), expected, **TOL)
    back = to_torch(layer)
    assert type(back) is type(native)
    for attr in ("kernel_size", "stride", "dilation", "padding", "groups", "padding_mode"):
        wanted = getattr(native, attr)
        assert getattr(back, attr) == ((0,) * dims if wanted == "valid" else wanted), attr
    np.testing.assert_array_equal(back.weight.detach().numpy(), native.weight.detach().numpy())
    assert (back.bias is None) == (native.bias is None)
    with torch.no_grad():
        np.testing.assert_allclose(_last(back(_first(x))), expected, **TOL)
    _same_state(layer, from_torch(back))


def test_to_torch_of_twinnn_layers(backend: str) -> None:
    x = _x(2, 9, 8, 3)
    for layer in [
        tn.Conv2D(3, 4, 4, padding="same", init="torch"),  # (1, 2): torch's 'same'
        tn.Conv2D(3, 4, 3, strides=2, padding=(2, 1), init="torch"),
        tn.Conv2D(3, 4, 3, strides=(1, 2), init="torch"),
    ]:
        native = to_torch(layer)
        with torch.no_grad():
            np.testing.assert_allclose(_last(native(_first(x))), tn.to_numpy(layer(x)), **TOL)
    with pytest.raises(ArgumentError, match=r"padding='same', strides=\(2, 2\)\) has no torch"):
        to_torch(tn.Conv2D(3, 4, 3, strides=2, padding="same"))


def test_converted_torch_conv_trains_like_the_original(backend: str) -> None:
    torch.manual_seed(1)
    native = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    layer = from_torch(native)
    x, y = _x(4, 7, 6, 3), _x(4, 4, 3, 4, seed=1)
    optimizer = torch.optim.SGD(native.parameters(), lr=0.1)
    step = tn.train_step(layer, tn.mse_loss, tn.SGD(layer.parameters(), lr=0.1))
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(native(_first(x)), _first(y))
        loss.backward()
        optimizer.step()
        np.testing.assert_allclose(float(step(x, y)), loss.item(), rtol=1e-5)
    trained = from_torch(native).state_dict()
    for name, value in layer.state_dict().items():
        np.testing.assert_allclose(value, trained[name], **TOL)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (lambda: torch.nn.Conv2d(4, 4, 3, groups=2), r"Conv2d\(groups=2\) cannot be converted"),
        (
            lambda: torch.nn.Conv1d(3, 4, 3, padding=1, padding_mode="reflect"),
            r"Conv1d\(padding_mode='reflect'\) cannot be converted: twinnn's Conv1D/Conv2D pad "
            r"with zeros",
        ),
        (
            lambda: torch.nn.Conv2d(3, 4, 3, stride=2, dilation=2),
            r"strides > 1 together with dilation > 1",
        ),
    ],
)
def test_from_torch_refuses(backend: str, module: Any, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        from_torch(module())


def test_from_torch_refuses_float64(backend: str) -> None:
    with pytest.raises(DTypeError, match=r"torch.nn.Conv2d.weight has dtype torch.float64"):
        from_torch(torch.nn.Conv2d(3, 4, 3).double())


# --- Keras --------------------------------------------------------------------------------------

KERAS_CASES = [
    (1, {"kernel_size": 3, "padding": "same", "strides": 2}),
    (1, {"kernel_size": 4, "padding": "valid", "dilation_rate": 2, "use_bias": False}),
    (2, {"kernel_size": 3, "padding": "same", "strides": 2}),  # asymmetric (0, 1) at n=8
    (2, {"kernel_size": (4, 2), "padding": "same", "dilation_rate": (1, 2)}),
    (2, {"kernel_size": 2, "padding": "valid", "strides": (2, 1)}),
]


@pytest.mark.parametrize(("dims", "kwargs"), KERAS_CASES, ids=[str(c) for c in KERAS_CASES])
def test_from_and_to_keras(backend: str, dims: int, kwargs: dict[str, Any]) -> None:
    native = (keras.layers.Conv1D if dims == 1 else keras.layers.Conv2D)(
        5, bias_initializer="random_normal", **kwargs
    )
    x = _x(2, *([8, 9][:dims]), 3)
    expected = keras.ops.convert_to_numpy(native(x))
    layer = from_keras(native)
    assert isinstance(layer, tn.Conv1D if dims == 1 else tn.Conv2D)
    np.testing.assert_array_equal(
        layer.state_dict()["weight"], keras.ops.convert_to_numpy(native.kernel)
    )
    np.testing.assert_allclose(tn.to_numpy(layer(x)), expected, **TOL)
    back = to_keras(layer)
    assert type(back) is type(native)
    assert (back.padding, back.strides, back.dilation_rate) == (
        native.padding,
        native.strides,
        native.dilation_rate,
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), expected, **TOL)
    _same_state(layer, from_keras(back))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: keras.layers.Conv1D(4, 3, padding="causal"),
            r"Conv1D\(padding='causal'\) cannot be converted",
        ),
        (lambda: keras.layers.Conv2D(6, 3, groups=3), r"Conv2D\(groups=3\) cannot be converted"),
        (
            lambda: keras.layers.Conv2D(4, 3, activation="relu"),
            r"Conv2D\(activation='relu'\) cannot be converted",
        ),
    ],
)
def test_from_keras_refuses(backend: str, make: Any, message: str) -> None:
    layer = make()
    layer.build((None, 8, 3) if isinstance(layer, keras.layers.Conv1D) else (None, 8, 8, 3))
    with pytest.raises(ArgumentError, match=message):
        from_keras(layer)


def test_from_keras_refuses_channels_first(backend: str) -> None:
    layer = keras.layers.Conv2D(4, 3, data_format="channels_first")
    layer.build((None, 3, 8, 8))
    with pytest.raises(ArgumentError, match=r"data_format='channels_first'.*channels last"):
        from_keras(layer)


def test_to_keras_refuses_explicit_padding(backend: str) -> None:
    with pytest.raises(ArgumentError, match=r"ZeroPadding2D\(\(1, 1\)\) before a 'valid'"):
        to_keras(tn.Conv2D(3, 4, 3, padding=1))
