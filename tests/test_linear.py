"""Linear: layout, init presets and forward against NumPy float64."""

from __future__ import annotations

import math

import numpy as np
import pytest

import reference
import twinnn as tn
from twinnn import errors


def test_forward_matches_numpy_any_leading_dims(backend: str) -> None:
    layer = tn.Linear(5, 3)
    state = layer.state_dict()
    rng = np.random.default_rng(1)
    for shape in [(5,), (4, 5), (2, 3, 5), (2, 1, 2, 5)]:
        x = rng.standard_normal(shape).astype(np.float32)
        out = tn.to_numpy(layer(x))
        expected = reference.linear(x, state["weight"], state["bias"])
        assert out.shape == (*shape[:-1], 3)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_no_bias(backend: str) -> None:
    layer = tn.Linear(4, 2, bias=False)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(
        tn.to_numpy(layer(x)), reference.linear(x, layer.state_dict()["weight"], None), rtol=1e-6
    )


def test_default_init_is_glorot_uniform_drawn_from_twinnn_generator(backend: str) -> None:
    tn.seed(123)
    layer = tn.Linear(7, 3)
    limit = math.sqrt(6.0 / (7 + 3))
    expected = np.random.default_rng(123).uniform(-limit, limit, (7, 3)).astype(np.float32)
    state = layer.state_dict()
    np.testing.assert_array_equal(state["weight"], expected)
    np.testing.assert_array_equal(state["bias"], np.zeros(3, np.float32))
    assert state["weight"].dtype == np.float32


def test_torch_init_preset(backend: str) -> None:
    tn.seed(5)
    layer = tn.Linear(9, 4, init="torch")
    bound = 1.0 / math.sqrt(9)
    rng = np.random.default_rng(5)
    state = layer.state_dict()
    np.testing.assert_array_equal(
        state["weight"], rng.uniform(-bound, bound, (9, 4)).astype(np.float32)
    )
    np.testing.assert_array_equal(state["bias"], rng.uniform(-bound, bound, 4).astype(np.float32))


def test_keras_preset_equals_default(backend: str) -> None:
    tn.seed(2)
    a = tn.Linear(3, 3).state_dict()
    tn.seed(2)
    b = tn.Linear(3, 3, init="keras").state_dict()
    np.testing.assert_array_equal(a["weight"], b["weight"])


def test_wrong_input_width_names_argument(backend: str) -> None:
    layer = tn.Linear(5, 1)
    with pytest.raises(errors.ShapeError, match=r"'x'.*in_features=5.*\(10, 4\)") as info:
        layer(np.zeros((10, 4), np.float32))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        ((0, 1), {}, errors.ArgumentError, r"in_features.*> 0.*got 0"),
        ((3, -2), {}, errors.ArgumentError, r"out_features.*> 0.*got -2"),
        ((3.0, 2), {}, errors.ArgumentTypeError, r"in_features.*int.*float"),
        ((3, 2), {"bias": 1}, errors.ArgumentTypeError, r"bias.*bool"),
        ((3, 2), {"init": "xavier"}, errors.ArgumentError, r"init.*'xavier'"),
    ],
)
def test_bad_constructor_arguments(
    backend: str, args: tuple[object, ...], kwargs: dict[str, object], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        tn.Linear(*args, **kwargs)  # type: ignore[arg-type]
