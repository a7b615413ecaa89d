"""twinnn.interop: exact conversion to and from torch.nn.Linear/LSTM and Keras Dense/LSTM,
checked against each native layer's own forward (torch with packed sequences, Keras with a
mask), on both twinnn backends."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import twinnn
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from twinnn.interop.keras import from_keras, to_keras  # noqa: E402
from twinnn.interop.torch import from_torch, to_torch  # noqa: E402

needs_lstm = pytest.mark.skipif(
    not hasattr(twinnn, "LSTM"), reason="twinnn.LSTM is not in this checkout yet"
)
TOL = {"rtol": 1e-5, "atol": 1e-6}
LENGTHS = np.array([6, 3, 1, 5])  # unsorted, one of full length


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(keras.ops.convert_to_numpy(x))


def _randomize_keras(layer: Any, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.uniform(-0.5, 0.5, tuple(variable.shape)).astype(np.float32))


# --- Linear <-> torch.nn.Linear -------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_from_torch(backend: str, bias: bool) -> None:
    torch.manual_seed(0)
    native = torch.nn.Linear(5, 3, bias=bias)
    layer = from_torch(native)
    assert isinstance(layer, twinnn.Linear) and layer.backend == backend
    state = layer.state_dict()
    np.testing.assert_array_equal(state["weight"], _np(native.weight).T)
    assert ("bias" in state) == bias
    for x in (_x(4, 5), _x(2, 7, 5)):
        expected = _np(native(torch.from_numpy(x)))
        np.testing.assert_allclose(twinnn.to_numpy(layer(x)), expected, **TOL)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_to_torch(backend: str, bias: bool) -> None:
    layer = twinnn.Linear(5, 3, bias=bias, init="torch")
    native = to_torch(layer)
    assert isinstance(native, torch.nn.Linear)
    assert (native.bias is not None) == bias
    np.testing.assert_array_equal(_np(native.weight), layer.state_dict()["weight"].T)
    x = _x(2, 7, 5)
    np.testing.assert_allclose(_np(native(torch.from_numpy(x))), twinnn.to_numpy(layer(x)), **TOL)
    # and back again: bit for bit
    again = from_torch(native).state_dict()
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(again[name], value)


# --- Linear <-> keras Dense -----------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_from_keras(backend: str, bias: bool) -> None:
    dense = keras.layers.Dense(3, use_bias=bias)
    dense.build((None, 5))
    _randomize_keras(dense)
    layer = from_keras(dense)
    assert isinstance(layer, twinnn.Linear) and layer.backend == backend
    np.testing.assert_array_equal(layer.state_dict()["weight"], _np(dense.kernel))
    for x in (_x(4, 5), _x(2, 7, 5)):
        np.testing.assert_allclose(twinnn.to_numpy(layer(x)), _np(dense(x)), **TOL)
    model = keras.Sequential([keras.Input((5,)), dense])
    np.testing.assert_array_equal(from_keras(model).state_dict()["weight"], _np(dense.kernel))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_to_keras(backend: str, bias: bool) -> None:
    layer = twinnn.Linear(5, 3, bias=bias, init="torch")
    dense = to_keras(layer)
    assert isinstance(dense, keras.layers.Dense) and dense.use_bias == bias
    np.testing.assert_array_equal(_np(dense.kernel), layer.state_dict()["weight"])
    x = _x(2, 7, 5)
    np.testing.assert_allclose(_np(dense(x)), twinnn.to_numpy(layer(x)), **TOL)


def test_linear_refusals(backend: str) -> None:
    with pytest.raises(ArgumentError, match=r"Dense\(activation='relu'\)"):
        dense = keras.layers.Dense(3, activation="relu")
        dense.build((None, 2))
        from_keras(dense)
    with pytest.raises(ArgumentError, match=r"Dense\(kernel_regularizer="):
        dense = keras.layers.Dense(3, kernel_regularizer="l2")
        dense.build((None, 2))
        from_keras(dense)
    with pytest.raises(ArgumentError, match="not built"):
        from_keras(keras.layers.Dense(3))
    with pytest.raises(DTypeError, match="compute_dtype='float16'"):
        dense = keras.layers.Dense(3, dtype="mixed_float16")
        dense.build((None, 2))
        from_keras(dense)
    with pytest.raises(ArgumentError, match="exactly one layer"):
        from_keras(
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        )
    with pytest.raises(DTypeError, match="float64"):
        from_torch(torch.nn.Linear(2, 3).double())
    with pytest.raises(
        ArgumentTypeError, match=r"torch\.nn\.LSTM or torch\.nn\.GRU, got ConvTranspose1d"
    ):
        from_torch(torch.nn.ConvTranspose1d(2, 3, 1))
    with pytest.raises(ArgumentTypeError, match=r"torch\.nn\.RNN \(mode 'RNN_TANH'\)"):
        from_torch(torch.nn.RNN(2, 3))
    with pytest.raises(ArgumentTypeError, match="must be a keras Dense, LSTM"):
        rnn = keras.layers.SimpleRNN(3)
        rnn.build((None, None, 2))
        from_keras(rnn)
    with pytest.raises(ArgumentTypeError, match=r"to_torch\(model\) must be a twinnn.Linear"):
        to_torch(torch.nn.Linear(2, 3))  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"to_keras\(model\) must be a twinnn.Linear"):
        to_keras(twinnn.Module())


def test_conversions_draw_no_random_numbers(backend: str) -> None:
    twinnn.seed(3)
    expected = twinnn.Linear(4, 4).state_dict()["weight"]
    twinnn.seed(3)
    from_torch(torch.nn.Linear(2, 2))
    dense = keras.layers.Dense(2)
    dense.build((None, 2))
    from_keras(dense)
    np.testing.assert_array_equal(twinnn.Linear(4, 4).state_dict()["weight"], expected)
    torch_state = torch.get_rng_state()
    to_torch(twinnn.Linear(2, 2))
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_importing_twinnn_interop_imports_no_framework() -> None:
    code = (
        "import sys, twinnn, twinnn.interop\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TWINNN_BACKEND": "torch"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


# --- LSTM <-> torch.nn.LSTM -----------------------------------------------------------------------
def _torch_packed(lstm: Any, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """torch's own forward on a padded batch: pack, run, unpack to the full length."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        out, (h, c) = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return _np(out), _np(h), _np(c)


def _twinnn_run(layer: Any, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    out, (h, c) = layer(x, lengths=lengths)
    return twinnn.to_numpy(out), twinnn.to_numpy(h), twinnn.to_numpy(c)


@needs_lstm
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, False), (2, True)])
def test_lstm_from_torch_matches_packed_forward(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(0)  # torch's init: every weight and both biases random
    native = torch.nn.LSTM(
        3, 4, num_layers=num_layers, bidirectional=bidirectional, batch_first=True
    )
    layer = from_torch(native)
    assert layer.backend == backend
    state = layer.state_dict()
    np.testing.assert_array_equal(state["w_ih_l0"], _np(native.weight_ih_l0).T)
    # torch's two biases stay two (recurrent_bias=True): bit for bit, and trained as in torch
    np.testing.assert_array_equal(state["bias_ih_l0"], _np(native.bias_ih_l0))
    np.testing.assert_array_equal(state["bias_hh_l0"], _np(native.bias_hh_l0))
    x = _x(4, 6, 3)
    for got, want in zip(
        _twinnn_run(layer, x, LENGTHS), _torch_packed(native, x, LENGTHS), strict=True
    ):
        np.testing.assert_allclose(got, want, **TOL)


@needs_lstm
@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, True), (2, False)])
def test_lstm_to_torch_matches_packed_forward(
    backend: str, num_layers: int, bidirectional: bool
) -> None:
    layer = twinnn.LSTM(3, 4, num_layers, bidirectional, init="torch")
    native = to_torch(layer)
    assert native.batch_first and native.num_layers == num_layers
    assert native.bidirectional == bidirectional
    np.testing.assert_array_equal(_np(native.bias_hh_l0), 0.0)
    x = _x(4, 6, 3)
    for got, want in zip(
        _torch_packed(native, x, LENGTHS), _twinnn_run(layer, x, LENGTHS), strict=True
    ):
        np.testing.assert_allclose(got, want, **TOL)
    again = from_torch(native).state_dict()  # exact round trip: bias_ih is twinnn's bias
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(again[name.replace("bias_l", "bias_ih_l")], value)


@needs_lstm
def test_lstm_from_torch_time_major(backend: str) -> None:
    torch.manual_seed(1)
    native = torch.nn.LSTM(3, 4, batch_first=False)
    layer = from_torch(native)
    x = _x(4, 6, 3)
    with torch.no_grad():
        out, (h, c) = native(torch.from_numpy(x.transpose(1, 0, 2).copy()))
    got_out, (got_h, got_c) = layer(x)
    np.testing.assert_allclose(twinnn.to_numpy(got_out), _np(out).transpose(1, 0, 2), **TOL)
    np.testing.assert_allclose(twinnn.to_numpy(got_h), _np(h), **TOL)
    np.testing.assert_allclose(twinnn.to_numpy(got_c), _np(c), **TOL)


@needs_lstm
@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"proj_size": 2}, "proj_size=2"),
        ({"bias": False}, "bias=False"),
    ],
)
def test_lstm_from_torch_refusals(backend: str, kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ArgumentError, match=rf"torch\.nn\.LSTM\({setting}\) cannot be converted"):
        from_torch(torch.nn.LSTM(3, 4, batch_first=True, **kwargs))


# --- LSTM <-> keras LSTM / Bidirectional ----------------------------------------------------------
def _mask(lengths: np.ndarray, time: int) -> np.ndarray:
    return np.arange(time)[None, :] < lengths[:, None]


def _valid(out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return out * _mask(lengths, out.shape[1])[:, :, None]


@needs_lstm
def test_lstm_from_keras_matches_masked_forward(backend: str) -> None:
    native = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    native.build((None, None, 3))
    _randomize_keras(native)
    layer = from_keras(native)
    assert layer.backend == backend
    x = _x(4, 6, 3)
    out, h, c = (_np(t) for t in native(x, mask=_mask(LENGTHS, 6)))
    got_out, got_h, got_c = _twinnn_run(layer, x, LENGTHS)
    # Keras' CPU loop copies the last valid output into masked steps; compare valid steps
    np.testing.assert_allclose(got_out, _valid(out, LENGTHS), **TOL)
    np.testing.assert_allclose(got_h[0], h, **TOL)
    np.testing.assert_allclose(got_c[0], c, **TOL)


@needs_lstm
def test_lstm_to_keras_matches_including_masked_steps(backend: str) -> None:
    layer = twinnn.LSTM(3, 4)
    native = to_keras(layer)
    x = _x(4, 6, 3)
    out, h, c = (_np(t) for t in native(x, mask=_mask(LENGTHS, 6)))
    got_out, got_h, got_c = _twinnn_run(layer, x, LENGTHS)
    np.testing.assert_allclose(out, got_out, **TOL)  # zero_output_for_mask=True: zeros too
    np.testing.assert_allclose(h, got_h[0], **TOL)
    np.testing.assert_allclose(c, got_c[0], **TOL)
    np.testing.assert_array_equal(_np(native.cell.bias), layer.state_dict()["bias_l0"])


@needs_lstm
def test_bidirectional_keras_both_ways(backend: str) -> None:
    native = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True, return_state=True)
    )
    native.build((None, None, 3))
    _randomize_keras(native)
    layer = from_keras(native)
    x = _x(4, 6, 3)
    out, h_fw, c_fw, h_bw, c_bw = (_np(t) for t in native(x, mask=_mask(LENGTHS, 6)))
    got_out, got_h, got_c = _twinnn_run(layer, x, LENGTHS)
    np.testing.assert_allclose(got_out, _valid(out, LENGTHS), **TOL)
    np.testing.assert_allclose(got_h, np.stack([h_fw, h_bw]), **TOL)
    np.testing.assert_allclose(got_c, np.stack([c_fw, c_bw]), **TOL)
    back = to_keras(layer)
    out2, *states = (_np(t) for t in back(x, mask=_mask(LENGTHS, 6)))
    np.testing.assert_allclose(out2, got_out, **TOL)
    np.testing.assert_allclose(np.stack(states[0::2]), got_h, **TOL)


@needs_lstm
def test_lstm_keras_refusals(backend: str) -> None:
    cases = [
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation='hard_sigmoid'"),
        ({"activation": "relu"}, "activation='relu'"),
        ({"go_backwards": True}, "go_backwards=True"),
        ({"use_bias": False}, "use_bias=False"),
        ({"dropout": 0.2}, "dropout=0.2"),
        ({"recurrent_dropout": 0.1}, "recurrent_dropout=0.1"),
    ]
    for kwargs, setting in cases:
        native = keras.layers.LSTM(4, **kwargs)
        native.build((None, None, 3))
        with pytest.raises(ArgumentError, match=rf"keras\.layers\.LSTM\({setting}\)"):
            from_keras(native)
    summed = keras.layers.Bidirectional(keras.layers.LSTM(4), merge_mode="sum")
    summed.build((None, None, 3))
    with pytest.raises(ArgumentError, match=r"Bidirectional\(merge_mode='sum'\)"):
        from_keras(summed)
    with pytest.raises(ArgumentError, match=r"num_layers=2"):
        to_keras(twinnn.LSTM(3, 4, 2))
