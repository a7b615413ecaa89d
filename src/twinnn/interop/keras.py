"""Exact conversion between twinnn layers and Keras 3 ``Dense`` / ``LSTM`` /
``Bidirectional(LSTM)``.

Importing this module imports keras (and its backend); ``import twinnn`` never does. Keras
may run on any of its backends, and the twinnn layer on either twinnn backend: values move as
NumPy arrays.

Layouts: Keras already stores twinnn's neutral layout, so every value is copied as is, both
ways, bit for bit.

* ``Dense``: ``kernel`` ``(in, out)`` = twinnn ``weight``; ``bias`` ``(out,)``.
* ``LSTM``: ``kernel`` ``(in, 4H)`` = ``w_ih_l0``, ``recurrent_kernel`` ``(H, 4H)`` =
  ``w_hh_l0``, ``bias`` ``(4H,)`` = ``bias_l0``; Keras' gate order ``i, f, c, o`` is twinnn's
  ``i, f, g, o``. ``Bidirectional(LSTM, merge_mode="concat")``: the forward layer gives the
  plain names, the backward layer the ``_reverse`` ones. Keras' LSTM is one layer, so only
  ``twinnn.LSTM(num_layers=1)`` converts.

Masked steps: Keras' generic (non-cuDNN) loop returns a *copy of the last valid output* at
masked steps, twinnn (and cuDNN, and torch's packed sequences) return zeros. Valid steps and
the final states agree. ``to_keras`` therefore builds its LSTM with
``zero_output_for_mask=True``, so the Keras layer returns zeros there too.

Refused, with an :class:`~twinnn.errors.ArgumentError` naming the setting: an activation other
than ``tanh`` (LSTM) or ``linear`` (Dense), a ``recurrent_activation`` other than ``sigmoid``
(``hard_sigmoid`` included), ``use_bias=False`` on an LSTM, ``go_backwards=True`` outside
``Bidirectional``, ``stateful=True``, non-zero ``dropout`` / ``recurrent_dropout``,
regularisers (they change the training loss), a LoRA-enabled ``Dense``, and ``Bidirectional``
with a ``merge_mode`` other than ``"concat"``. GRU and other layers are an
:class:`~twinnn.errors.ArgumentTypeError`; a compute dtype other than float32 (mixed precision)
a :class:`~twinnn.errors.DTypeError`. ``return_sequences``, ``return_state``, ``unroll`` and
``use_cudnn`` do not change the weights or the valid outputs and are accepted.
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np

from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError
from twinnn.interop import LSTMSpec, build, check_setting, float32, kind_of, lstm_spec
from twinnn.layers import Linear
from twinnn.module import Module

__all__ = ["from_keras", "to_keras"]

_REGULARIZERS = (
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "activity_regularizer",
)


def from_keras(layer_or_model: Any) -> Module:
    """A twinnn layer (current backend) holding a built Keras layer's values.

    Args:
        layer_or_model: a built ``keras.layers.Dense``, ``keras.layers.LSTM`` or
            ``keras.layers.Bidirectional(LSTM)``, or a Keras model whose only layer is one.

    Returns:
        ``twinnn.Linear(in, out, bias=use_bias)`` or ``twinnn.LSTM(in, H, 1, bidirectional)``.
    """
    layer = _single_layer(layer_or_model)
    if isinstance(layer, keras.layers.Dense):
        return _dense_from(layer)
    if isinstance(layer, keras.layers.Bidirectional):
        return _bidirectional_from(layer)
    if isinstance(layer, keras.layers.LSTM):
        _check_lstm(layer, "keras.layers.LSTM", backward=False)
        spec = LSTMSpec(*_lstm_sizes(layer), 1, False)
        return spec.make(_lstm_state(layer, ""))
    raise ArgumentTypeError(
        f"from_keras(layer_or_model) must be a keras Dense, LSTM or Bidirectional(LSTM) layer, "
        f"got {type(layer).__name__}"
        + (" (Keras' GRU uses gate order z, r, h; twinnn has no GRU)" if _is_gru(layer) else "")
    )


def _is_gru(layer: Any) -> bool:
    return isinstance(layer, keras.layers.GRU)


def _single_layer(obj: Any) -> Any:
    if isinstance(obj, keras.Model):
        layers = [la for la in obj.layers if not isinstance(la, keras.layers.InputLayer)]
        if len(layers) != 1:
            raise ArgumentError(
                f"from_keras(layer_or_model): a model must hold exactly one layer to convert, "
                f"got {[type(la).__name__ for la in layers]}; convert its layers one by one"
            )
        return layers[0]
    return obj


def _check_common(layer: Any, name: str) -> None:
    if not layer.built:
        raise ArgumentError(
            f"from_keras: the {name} {layer.name!r} is not built (it has no weights yet); call "
            f"it on an input or call layer.build(input_shape) first"
        )
    for dtype_attr in ("compute_dtype", "variable_dtype"):
        dtype = getattr(layer, dtype_attr, "float32")
        if dtype != "float32":
            raise DTypeError(
                f"{name}({dtype_attr}={dtype!r}) cannot be converted exactly: twinnn computes "
                f"in float32 (use dtype='float32', no mixed-precision policy)"
            )
    for attr in _REGULARIZERS:
        value = getattr(layer, attr, None)
        check_setting(
            value is None,
            name,
            attr,
            value,
            "twinnn layers carry no regulariser (add the penalty to your loss)",
        )


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", fn))


def _dense_from(layer: Any) -> Module:
    name = "keras.layers.Dense"
    _check_common(layer, name)
    activation = _activation_name(layer.activation)
    check_setting(
        activation == "linear",
        name,
        "activation",
        activation,
        "twinnn.Linear is affine only (apply the activation in forward)",
    )
    lora = bool(getattr(layer, "lora_enabled", False))
    check_setting(
        not lora,
        name,
        "lora_rank",
        getattr(layer, "lora_rank", None),
        "twinnn.Linear has no LoRA factors (merge them into the kernel first)",
    )
    kernel = float32(keras.ops.convert_to_numpy(layer.kernel), f"{name}.kernel")
    state = {"weight": np.array(kernel, copy=True)}
    if layer.use_bias:
        state["bias"] = np.array(
            float32(keras.ops.convert_to_numpy(layer.bias), f"{name}.bias"), copy=True
        )
    return build(Linear, (kernel.shape[0], kernel.shape[1], bool(layer.use_bias)), state)


def _check_lstm(layer: Any, name: str, *, backward: bool) -> None:
    _check_common(layer, name)
    activation = _activation_name(layer.activation)
    recurrent = _activation_name(layer.recurrent_activation)
    check_setting(
        activation == "tanh",
        name,
        "activation",
        activation,
        "twinnn.LSTM uses tanh for the cell input and output",
    )
    check_setting(
        recurrent == "sigmoid",
        name,
        "recurrent_activation",
        recurrent,
        "twinnn.LSTM gates use the logistic sigmoid (Keras 2.2's hard_sigmoid, "
        "clip(0.2x+0.5, 0, 1), and Keras 3's relu6(x+3)/6 both differ)",
    )
    check_setting(
        bool(layer.use_bias),
        name,
        "use_bias",
        layer.use_bias,
        "twinnn.LSTM always has a trainable bias",
    )
    check_setting(
        bool(layer.go_backwards) == backward,
        name,
        "go_backwards",
        layer.go_backwards,
        "twinnn.LSTM reads forward; a backward pass exists only as the _reverse "
        "direction of a bidirectional LSTM (use keras.layers.Bidirectional)",
    )
    check_setting(
        not layer.stateful,
        name,
        "stateful",
        layer.stateful,
        "twinnn.LSTM takes the carried state explicitly (initial_state=)",
    )
    for attr in ("dropout", "recurrent_dropout"):
        value = float(getattr(layer, attr))
        check_setting(value == 0.0, name, attr, value, "twinnn.LSTM has no dropout")


def _lstm_sizes(layer: Any) -> tuple[int, int]:
    kernel_shape = tuple(layer.cell.kernel.shape)
    return int(kernel_shape[0]), int(layer.units)


def _lstm_state(layer: Any, suffix: str) -> dict[str, np.ndarray]:
    cell = layer.cell
    where = f"keras.layers.LSTM {layer.name!r}"
    arrays = {
        f"w_ih_l0{suffix}": cell.kernel,
        f"w_hh_l0{suffix}": cell.recurrent_kernel,
        f"bias_l0{suffix}": cell.bias,
    }
    return {
        key: np.array(float32(keras.ops.convert_to_numpy(v), f"{where} {key}"), copy=True)
        for key, v in arrays.items()
    }


def _bidirectional_from(layer: Any) -> Module:
    name = "keras.layers.Bidirectional"
    check_setting(
        layer.merge_mode == "concat",
        name,
        "merge_mode",
        layer.merge_mode,
        "twinnn.LSTM concatenates the two directions (forward first)",
    )
    forward, backward = layer.forward_layer, layer.backward_layer
    for inner in (forward, backward):
        if not isinstance(inner, keras.layers.LSTM):
            raise ArgumentTypeError(
                f"from_keras: Bidirectional must wrap keras.layers.LSTM, got {type(inner).__name__}"
            )
    _check_lstm(forward, "keras.layers.Bidirectional forward LSTM", backward=False)
    _check_lstm(backward, "keras.layers.Bidirectional backward LSTM", backward=True)
    sizes = _lstm_sizes(forward)
    if _lstm_sizes(backward) != sizes:
        raise ArgumentError(
            f"from_keras: Bidirectional's two LSTMs must have the same sizes (input, units), "
            f"got {sizes} and {_lstm_sizes(backward)}"
        )
    spec = LSTMSpec(*sizes, 1, True)
    return spec.make({**_lstm_state(forward, ""), **_lstm_state(backward, "_reverse")})


def to_keras(model: Module) -> Any:
    """A built Keras layer (float32) holding ``model``'s values exactly.

    Args:
        model: a ``twinnn.Linear`` or a one-layer ``twinnn.LSTM`` of either backend.

    Returns:
        ``keras.layers.Dense`` (``activation=None``); for an LSTM,
        ``keras.layers.LSTM(H, return_sequences=True, return_state=True,
        zero_output_for_mask=True)`` -- called on ``x`` with ``mask=`` it returns
        ``[outputs, h, c]`` -- or ``Bidirectional`` of two of them with
        ``merge_mode="concat"``, returning ``[outputs, h_fw, c_fw, h_bw, c_bw]``. Pass lengths
        as ``mask = keras.ops.arange(T)[None, :] < lengths[:, None]``.
    """
    kind = kind_of(model, "to_keras(model)")
    state = model.state_dict()
    if kind == "linear":
        weight = state["weight"]
        dense = keras.layers.Dense(
            weight.shape[1], use_bias="bias" in state, kernel_initializer="zeros", dtype="float32"
        )
        dense.build((None, weight.shape[0]))
        dense.kernel.assign(weight)
        if "bias" in state:
            dense.bias.assign(state["bias"])
        return dense
    spec = lstm_spec(model)
    if spec.num_layers != 1:
        raise ArgumentError(
            f"to_keras(model): twinnn.LSTM(num_layers={spec.num_layers}) has no single Keras "
            f"layer (keras.layers.LSTM is one layer); use num_layers=1 layers or to_torch"
        )
    if not spec.bidirectional:
        lstm = _keras_lstm(spec, go_backwards=False)
        lstm.build((None, None, spec.input_size))
        _assign_lstm(lstm, state, "")
        return lstm
    bidirectional = keras.layers.Bidirectional(
        _keras_lstm(spec, go_backwards=False),
        backward_layer=_keras_lstm(spec, go_backwards=True),
        merge_mode="concat",
    )
    bidirectional.build((None, None, spec.input_size))
    _assign_lstm(bidirectional.forward_layer, state, "")
    _assign_lstm(bidirectional.backward_layer, state, "_reverse")
    return bidirectional


def _keras_lstm(spec: LSTMSpec, *, go_backwards: bool) -> Any:
    return keras.layers.LSTM(
        spec.hidden_size,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        zero_output_for_mask=True,
        kernel_initializer="zeros",  # the values are assigned next: draw no random numbers
        recurrent_initializer="zeros",
        unit_forget_bias=False,
        dtype="float32",
    )


def _assign_lstm(layer: Any, state: dict[str, np.ndarray], suffix: str) -> None:
    layer.cell.kernel.assign(state[f"w_ih_l0{suffix}"])
    layer.cell.recurrent_kernel.assign(state[f"w_hh_l0{suffix}"])
    layer.cell.bias.assign(state[f"bias_l0{suffix}"])
