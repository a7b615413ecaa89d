"""Exact conversion between twinnn layers and Keras 3 ``Dense`` / ``LSTM`` / ``GRU`` /
``Bidirectional(LSTM or GRU)``.

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
  ``twinnn.LSTM(num_layers=1)`` converts. Keras' LSTM has one bias: ``to_keras`` refuses
  ``twinnn.LSTM(recurrent_bias=True)`` (torch's two biases train differently from one).
* ``GRU(reset_after=True)`` (Keras 3's default; torch's equations): Keras' gate order is
  ``z, r, h``, twinnn's (torch's) ``r, z, n``, so the first two column blocks of ``kernel``
  ``(in, 3H)``, ``recurrent_kernel`` ``(H, 3H)`` and of each row of ``bias`` ``(2, 3H)`` swap
  places: ``w_ih_l0 = kernel[:, [H:2H, 0:H, 2H:3H]]``, likewise ``w_hh_l0``, ``bias_ih_l0``
  (``bias[0]``) and ``bias_hh_l0`` (``bias[1]``). A copy, bit for bit, both ways.
  ``reset_after=False`` applies the reset gate before the hidden matmul
  (``(r * h) @ w_hn``), a different model with no twinnn (or torch) equivalent: refused.

Masked steps: Keras' generic (non-cuDNN) loop returns a *copy of the last valid output* at
masked steps, twinnn (and cuDNN, and torch's packed sequences) return zeros. Valid steps and
the final states agree. ``to_keras`` therefore builds its LSTM / GRU with
``zero_output_for_mask=True``, so the Keras layer returns zeros there too.

Refused, with an :class:`~twinnn.errors.ArgumentError` naming the setting: an activation other than
``tanh`` (LSTM, GRU) or ``linear`` (Dense), a ``recurrent_activation`` other than ``sigmoid``
(``hard_sigmoid`` included), ``use_bias=False`` on an LSTM or GRU, ``GRU(reset_after=False)``,
``go_backwards=True`` outside ``Bidirectional``, ``stateful=True``, non-zero ``dropout`` /
``recurrent_dropout`` (Keras masks each step's inputs and states; twinnn's ``dropout`` is between
stacked layers), regularisers (they change the training loss), a LoRA-enabled ``Dense``, and
``Bidirectional`` with a ``merge_mode`` other than ``"concat"``. Other layers are an
:class:`~twinnn.errors.ArgumentTypeError`; a compute dtype other than float32 (mixed precision) a
:class:`~twinnn.errors.DTypeError`. ``return_sequences``, ``return_state``, ``unroll`` and
``use_cudnn`` do not change the weights or the valid outputs and are accepted.

``Embedding``, ``LayerNormalization``, ``BatchNormalization`` (values bit for bit, both ways):

* ``Embedding``: ``embeddings`` ``(N, D)`` = twinnn ``weight``. ``mask_zero=True`` converts
  (the outputs are the same; the mask it passes downstream is ``lengths=`` in twinnn); Keras
  has no ``padding_idx``, so ``to_keras`` of an Embedding with one gives a layer whose padding
  row trains (the outputs are the same).
* ``LayerNormalization(axis=-1)``: ``gamma``/``beta`` = ``weight``/``bias``, ``epsilon`` =
  ``eps`` (the value is carried over: Keras' default is 1e-3, torch's and twinnn's 1e-5). The
  formula is the same (biased variance); Keras' TensorFlow backend rounds differently (it
  folds the mean into the offset), within float32 rounding.
* ``BatchNormalization(axis=-1)``: ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` =
  ``weight``, ``bias``, ``running_mean``, ``running_var``; ``epsilon`` = ``eps``; Keras'
  ``momentum`` ``m_k`` (``moving = m_k * moving + (1 - m_k) * batch``) is twinnn's ``1 -
  momentum``. Eval mode (inference) agrees. **Training does not convert exactly**: Keras
  updates ``moving_variance`` with the *biased* batch variance, twinnn (as torch) with the
  unbiased one (``n / (n - 1)`` larger); the normalisation of the batch itself agrees.

Refused as well: ``center=False`` / ``scale=False``, an ``axis`` other than the last,
``rms_scaling``, ``renorm``, a quantised or LoRA Embedding, and regularisers.

``Conv1D``, ``Conv2D`` (values bit for bit, both ways; the same channels-last layout):
``kernel`` ``(k..., C, O)`` = twinnn ``weight``, ``bias`` ``(O,)``; ``kernel_size``,
``strides``, ``dilation_rate`` and ``padding`` (``"valid"`` / ``"same"``: the same SAME rule)
carried over. Refused: ``data_format="channels_first"`` (twinnn's layers are channels last;
TensorFlow's CPU kernels are too), ``padding="causal"``, ``groups != 1``, an activation other
than ``linear``, LoRA, regularisers. ``to_keras`` refuses twinnn's explicit ``padding=p``
(Keras' convolutions have only ``"valid"`` / ``"same"``: put ``keras.layers.ZeroPadding2D(p)``
before a ``"valid"`` one).

``MultiHeadAttention`` (values bit for bit, both ways): Keras' per-head kernels ``(E, H, D)``
reshaped to ``(E, E)`` are ``w_q``, ``w_k``, ``w_v`` (head ``h`` = columns ``h*D:(h+1)*D``),
its biases ``(H, D)`` flattened are ``b_q``, ``b_k``, ``b_v``; the output kernel ``(H, D, E)``
reshaped to ``(E, E)`` is ``w_o``, its bias ``b_o``; ``dropout`` copied. Keras scales the query
by ``1/sqrt(key_dim)``, twinnn the scores by ``1/sqrt(E/H)``: the same factor. Masks: Keras'
``attention_mask`` means True = may attend, as twinnn's ``mask``; ``use_causal_mask=True`` is
``causal=True``. Where every key of a query is masked Keras' masked softmax gives zeros but its
``dot_product_attention`` path (no dropout) may not; twinnn always gives zeros. Refused:
``key_dim * num_heads`` other than the query's features ``E``, ``value_dim != key_dim``, key or
value inputs of other than ``E`` features, an ``output_shape`` other than ``E``,
``attention_axes`` other than the time axis, ``use_gate``, ``sliding_window``, regularisers
and constraints.
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np

from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError
from twinnn.interop import GRUSpec, LSTMSpec, build, check_setting, float32, kind_of, lstm_spec
from twinnn.layers import BatchNorm, Conv1D, Conv2D, Embedding, LayerNorm, Linear
from twinnn.layers.attention import MultiHeadAttention
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
        layer_or_model: a built ``keras.layers.Dense``, ``keras.layers.LSTM``,
            ``keras.layers.GRU(reset_after=True)`` or ``keras.layers.Bidirectional`` of one of
            those two, or a Keras model whose only layer is one.

    Returns:
        ``twinnn.Linear(in, out, bias=use_bias)``, ``twinnn.LSTM(in, H, 1, bidirectional)``
        or ``twinnn.GRU(in, H, 1, bidirectional)``.
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
    if isinstance(layer, keras.layers.GRU):
        _check_lstm(layer, "keras.layers.GRU", backward=False)
        spec = GRUSpec(*_lstm_sizes(layer), 1, False)
        return spec.make(_lstm_state(layer, ""))
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        return _conv_from(layer)
    converted = _layer_from(layer)
    if converted is None:
        converted = _attention_from(layer)
    if converted is not None:
        return converted
    raise ArgumentTypeError(
        f"from_keras(layer_or_model) must be a keras Dense, LSTM, GRU, Bidirectional(LSTM or "
        f"GRU), Conv1D, Conv2D, "
        f"Embedding, LayerNormalization, BatchNormalization or MultiHeadAttention layer, "
        f"got {type(layer).__name__}"
    )


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
    """The checks of a Keras ``LSTM`` or ``GRU`` (``name`` says which)."""
    _check_common(layer, name)
    twin = "twinnn.GRU" if isinstance(layer, keras.layers.GRU) else "twinnn.LSTM"
    activation = _activation_name(layer.activation)
    recurrent = _activation_name(layer.recurrent_activation)
    if twin == "twinnn.GRU":
        check_setting(
            bool(layer.reset_after),
            name,
            "reset_after",
            layer.reset_after,
            "twinnn.GRU (as torch) applies the reset gate after the hidden matmul, "
            "n = tanh(x W_in + b_in + r * (h W_hn + b_hn)); reset_after=False computes "
            "tanh(x W_in + (r * h) W_hn + b), a different model (use reset_after=True, "
            "Keras 3's default)",
        )
    check_setting(
        activation == "tanh",
        name,
        "activation",
        activation,
        f"{twin} uses tanh for the candidate (cell input and output)",
    )
    check_setting(
        recurrent == "sigmoid",
        name,
        "recurrent_activation",
        recurrent,
        f"{twin} gates use the logistic sigmoid (Keras 2.2's hard_sigmoid, "
        "clip(0.2x+0.5, 0, 1), and Keras 3's relu6(x+3)/6 both differ)",
    )
    check_setting(
        bool(layer.use_bias),
        name,
        "use_bias",
        layer.use_bias,
        f"{twin} always has a trainable bias",
    )
    check_setting(
        bool(layer.go_backwards) == backward,
        name,
        "go_backwards",
        layer.go_backwards,
        f"{twin} reads forward; a backward pass exists only as the _reverse "
        "direction of a bidirectional layer (use keras.layers.Bidirectional)",
    )
    check_setting(
        not layer.stateful,
        name,
        "stateful",
        layer.stateful,
        f"{twin} takes the carried state explicitly (initial_state=)",
    )
    for attr in ("dropout", "recurrent_dropout"):
        value = float(getattr(layer, attr))
        check_setting(
            value == 0.0,
            name,
            attr,
            value,
            f"{twin}'s dropout is between stacked layers only; Keras' masks each step's "
            "inputs or states",
        )


def _lstm_sizes(layer: Any) -> tuple[int, int]:
    kernel_shape = tuple(layer.cell.kernel.shape)
    return int(kernel_shape[0]), int(layer.units)


def _lstm_state(layer: Any, suffix: str) -> dict[str, np.ndarray]:
    """The twinnn values of a Keras ``LSTM`` or ``GRU`` (``GRU``: gate blocks reordered)."""
    cell = layer.cell
    gru = isinstance(layer, keras.layers.GRU)
    where = f"keras.layers.{'GRU' if gru else 'LSTM'} {layer.name!r}"
    arrays = {
        f"w_ih_l0{suffix}": cell.kernel,
        f"w_hh_l0{suffix}": cell.recurrent_kernel,
        f"bias_l0{suffix}": cell.bias,
    }
    values = {
        key: np.array(float32(keras.ops.convert_to_numpy(v), f"{where} {key}"), copy=True)
        for key, v in arrays.items()
    }
    if not gru:
        return values
    bias = values.pop(f"bias_l0{suffix}")  # (2, 3H): input bias, recurrent bias
    values[f"bias_ih_l0{suffix}"], values[f"bias_hh_l0{suffix}"] = bias[0], bias[1]
    return {key: _swap_gates(value) for key, value in values.items()}


def _swap_gates(value: np.ndarray) -> np.ndarray:
    """Swap the first two of three gate blocks on the last axis: Keras' ``z, r, h`` <->
    torch's ``r, z, n`` (the permutation is its own inverse)."""
    first, second, third = np.split(value, 3, axis=-1)
    return np.ascontiguousarray(np.concatenate([second, first, third], axis=-1))


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
    kind = type(forward)
    for inner in (forward, backward):
        if type(inner) not in (keras.layers.LSTM, keras.layers.GRU) or type(inner) is not kind:
            raise ArgumentTypeError(
                f"from_keras: Bidirectional must wrap two keras.layers.LSTM or two "
                f"keras.layers.GRU, got {type(forward).__name__} and {type(backward).__name__}"
            )
    what = kind.__name__
    _check_lstm(forward, f"keras.layers.Bidirectional forward {what}", backward=False)
    _check_lstm(backward, f"keras.layers.Bidirectional backward {what}", backward=True)
    sizes = _lstm_sizes(forward)
    if _lstm_sizes(backward) != sizes:
        raise ArgumentError(
            f"from_keras: Bidirectional's two {what}s must have the same sizes (input, units), "
            f"got {sizes} and {_lstm_sizes(backward)}"
        )
    spec = GRUSpec(*sizes, 1, True) if what == "GRU" else LSTMSpec(*sizes, 1, True)
    return spec.make({**_lstm_state(forward, ""), **_lstm_state(backward, "_reverse")})


def to_keras(model: Module, *, input_rank: int = 2) -> Any:
    """A built Keras layer (float32) holding ``model``'s values exactly.

    Args:
        model: a ``twinnn.Linear``, a one-layer ``twinnn.LSTM`` (one bias) or ``twinnn.GRU``,
            a ``twinnn.Embedding``,
            ``twinnn.LayerNorm`` or ``twinnn.BatchNorm``, of either backend.
        input_rank: ``BatchNorm`` only: the rank of the inputs the Keras layer will see
            (Keras fixes its input rank and reduction axes when it is built; default 2,
            ``(batch, features)``; 3 for ``(batch, time, features)``).

    Returns:
        ``keras.layers.Dense`` (``activation=None``); for an LSTM,
        ``keras.layers.LSTM(H, return_sequences=True, return_state=True,
        zero_output_for_mask=True)`` -- called on ``x`` with ``mask=`` it returns
        ``[outputs, h, c]`` -- or ``Bidirectional`` of two of them with
        ``merge_mode="concat"``, returning ``[outputs, h_fw, c_fw, h_bw, c_bw]``; for a GRU,
        ``keras.layers.GRU(H, reset_after=True, ...)`` alike, returning ``[outputs, h]`` (or
        ``[outputs, h_fw, h_bw]``). Pass lengths as ``mask = keras.ops.arange(T)[None, :] <
        lengths[:, None]``. ``Embedding``,
        ``LayerNormalization(axis=-1)``, ``BatchNormalization(axis=-1)`` for the twinnn layers
        of those names (Keras' ``epsilon`` = twinnn's ``eps``, Keras' ``momentum`` = ``1 -
        momentum``).
    """
    if isinstance(model, (Conv1D, Conv2D)):
        return _conv_to(model)
    native = _layer_to(model, input_rank)
    if native is None:
        native = _attention_to(model)
    if native is not None:
        return native
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
    what = "GRU" if kind == "gru" else "LSTM"
    if spec.num_layers != 1:
        raise ArgumentError(
            f"to_keras(model): twinnn.{what}(num_layers={spec.num_layers}) has no single Keras "
            f"layer (keras.layers.{what} is one layer); use num_layers=1 layers or to_torch"
        )
    if spec.recurrent_bias:
        raise ArgumentError(
            "to_keras(model): twinnn.LSTM(recurrent_bias=True) trains two biases (torch's) and "
            "keras.layers.LSTM has one, which trains differently (one summed bias moves at half "
            "the rate); build twinnn.LSTM(recurrent_bias=False) with bias_l0 = bias_ih_l0 + "
            "bias_hh_l0 if the forward is all you need, or use to_torch"
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
    """A Keras ``LSTM`` or ``GRU`` (for a ``GRUSpec``) shaped like ``spec``, weights unset."""
    common: dict[str, Any] = {
        "return_sequences": True,
        "return_state": True,
        "go_backwards": go_backwards,
        "zero_output_for_mask": True,
        "kernel_initializer": "zeros",  # the values are assigned next: draw no random numbers
        "recurrent_initializer": "zeros",
        "dtype": "float32",
    }
    if isinstance(spec, GRUSpec):
        return keras.layers.GRU(spec.hidden_size, reset_after=True, **common)
    return keras.layers.LSTM(spec.hidden_size, unit_forget_bias=False, **common)


def _assign_lstm(layer: Any, state: dict[str, np.ndarray], suffix: str) -> None:
    if isinstance(layer, keras.layers.GRU):
        layer.cell.kernel.assign(_swap_gates(state[f"w_ih_l0{suffix}"]))
        layer.cell.recurrent_kernel.assign(_swap_gates(state[f"w_hh_l0{suffix}"]))
        biases = [state[f"bias_ih_l0{suffix}"], state[f"bias_hh_l0{suffix}"]]
        layer.cell.bias.assign(_swap_gates(np.stack(biases)))
        return
    layer.cell.kernel.assign(state[f"w_ih_l0{suffix}"])
    layer.cell.recurrent_kernel.assign(state[f"w_hh_l0{suffix}"])
    layer.cell.bias.assign(state[f"bias_l0{suffix}"])


# --- Embedding, LayerNormalization, BatchNormalization -------------------------------------------


def _values(layer: Any, where: str, **variables: Any) -> dict[str, np.ndarray]:
    """``{twinnn name: float32 copy}`` of Keras variables."""
    return {
        key: np.array(float32(keras.ops.convert_to_numpy(v), f"{where}.{key}"), copy=True)
        for key, v in variables.items()
    }


def _check_norm(
    layer: Any, name: str, regularizers: tuple[str, ...], *, affine: bool = True
) -> None:
    """The common checks, the layer's own regularisers, and (``affine``) center/scale."""
    _check_common(layer, name)
    for attr in regularizers:
        value = getattr(layer, attr, None)
        check_setting(
            value is None,
            name,
            attr,
            value,
            "twinnn layers carry no regulariser (add the penalty to your loss)",
        )
    for attr, why in (("center", "bias (beta)"), ("scale", "weight (gamma)"))[: 2 * affine]:
        check_setting(
            bool(getattr(layer, attr)),
            name,
            attr,
            getattr(layer, attr),
            f"twinnn's layer always has a trainable {why}",
        )


def _complement(momentum: float) -> float:
    """``1 - momentum``, Keras' momentum from torch's and back, rounded to 12 significant
    digits so that 0.99 gives 0.01 (not 0.010000000000000009) and a round trip gives the
    value back; both are rounded to float32 when used anyway."""
    return float(f"{1.0 - momentum:.12g}")


def _last_axis(axis: Any, ndim: int | None) -> bool:
    """True for ``-1`` or ``[-1]`` (or the last axis of a known rank ``ndim``)."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and (axes[0] == -1 or (ndim is not None and axes[0] == ndim - 1))


def _layer_from(layer: Any) -> Module | None:
    """The twinnn ``Embedding`` / ``LayerNorm`` / ``BatchNorm`` for a Keras ``Embedding`` /
    ``LayerNormalization`` / ``BatchNormalization``, else None."""
    if isinstance(layer, keras.layers.Embedding):
        name = "keras.layers.Embedding"
        _check_norm(layer, name, ("embeddings_regularizer",), affine=False)
        mode = getattr(layer, "quantization_mode", None)
        check_setting(
            mode is None, name, "quantization_mode", mode, "twinnn.Embedding holds float32"
        )
        check_setting(
            not bool(getattr(layer, "lora_enabled", False)),
            name,
            "lora_rank",
            getattr(layer, "lora_rank", None),
            "twinnn.Embedding has no LoRA factors (merge them into the table first)",
        )
        state = _values(layer, name, weight=layer.embeddings)
        return build(Embedding, (int(layer.input_dim), int(layer.output_dim)), state)
    if isinstance(layer, keras.layers.LayerNormalization):
        name = "keras.layers.LayerNormalization"
        _check_norm(layer, name, ("beta_regularizer", "gamma_regularizer"))
        check_setting(
            _last_axis(layer.axis, None),
            name,
            "axis",
            layer.axis,
            "twinnn.LayerNorm normalises over the last axis only (axis=-1)",
        )
        check_setting(
            not layer.rms_scaling,
            name,
            "rms_scaling",
            layer.rms_scaling,
            "twinnn.LayerNorm subtracts the mean",
        )
        state = _values(layer, name, weight=layer.gamma, bias=layer.beta)
        return build(LayerNorm, (state["weight"].shape[0], float(layer.epsilon)), state)
    if isinstance(layer, keras.layers.BatchNormalization):
        name = "keras.layers.BatchNormalization"
        _check_norm(layer, name, ("beta_regularizer", "gamma_regularizer"))
        ndim = getattr(layer.input_spec, "ndim", None) if layer.input_spec else None
        check_setting(
            _last_axis(layer.axis, ndim),
            name,
            "axis",
            layer.axis,
            "twinnn.BatchNorm normalises each channel of the last axis (channels last, axis=-1)",
        )
        check_setting(
            not layer.renorm, name, "renorm", layer.renorm, "twinnn.BatchNorm has no renorm"
        )
        state = _values(
            layer,
            name,
            weight=layer.gamma,
            bias=layer.beta,
            running_mean=layer.moving_mean,
            running_var=layer.moving_variance,
        )
        # Keras: moving = m_k * moving + (1 - m_k) * batch; twinnn (torch): momentum = 1 - m_k
        momentum = _complement(float(layer.momentum))
        args = (state["weight"].shape[0], momentum, float(layer.epsilon))
        return build(BatchNorm, args, state)
    return None


def _layer_to(model: Module, input_rank: int) -> Any:
    """The built Keras layer for a twinnn ``Embedding`` / ``LayerNorm`` / ``BatchNorm``, else
    None."""
    state = model.state_dict()
    if isinstance(model, Embedding):
        embedding = keras.layers.Embedding(
            model.num_embeddings,
            model.embedding_dim,
            embeddings_initializer="zeros",  # the values are assigned next
            dtype="float32",
        )
        embedding.build()
        embedding.embeddings.assign(state["weight"])
        return embedding
    if isinstance(model, LayerNorm):
        norm = keras.layers.LayerNormalization(axis=-1, epsilon=model.eps, dtype="float32")
        norm.build((None, model.features))
        norm.gamma.assign(state["weight"])
        norm.beta.assign(state["bias"])
        return norm
    if isinstance(model, BatchNorm):
        if isinstance(input_rank, bool) or not isinstance(input_rank, int) or input_rank < 2:
            raise ArgumentError(
                f"to_keras(input_rank) must be an int >= 2 (the rank of the inputs the Keras "
                f"BatchNormalization will see), got {input_rank!r}"
            )
        batch_norm = keras.layers.BatchNormalization(
            axis=-1, momentum=_complement(model.momentum), epsilon=model.eps, dtype="float32"
        )
        batch_norm.build((*([None] * (input_rank - 1)), model.features))
        batch_norm.gamma.assign(state["weight"])
        batch_norm.beta.assign(state["bias"])
        batch_norm.moving_mean.assign(state["running_mean"])
        batch_norm.moving_variance.assign(state["running_var"])
        return batch_norm
    return None


# --- Conv1D, Conv2D ------------------------------------------------------------------------------


def _conv_from(layer: Any) -> Module:
    """``twinnn.Conv1D`` / ``Conv2D`` holding a Keras ``Conv1D`` / ``Conv2D``'s values."""
    kind = "Conv1D" if isinstance(layer, keras.layers.Conv1D) else "Conv2D"
    name = f"keras.layers.{kind}"
    _check_common(layer, name)
    settings = (
        ("data_format", layer.data_format, "channels_last", "twinnn's layers are channels last"),
        ("padding", layer.padding, ("valid", "same"), "twinnn pads 'valid', 'same' or both sides"),
        ("groups", layer.groups, 1, f"twinnn.{kind} connects every input channel to every output"),
        ("activation", _activation_name(layer.activation), "linear", "apply it in forward"),
        (
            "lora_rank",
            getattr(layer, "lora_rank", None) if layer.lora_enabled else None,
            None,
            f"twinnn.{kind} has no LoRA factors (merge them into the kernel first)",
        ),
    )
    for setting, value, allowed, why in settings:
        ok = value in allowed if isinstance(allowed, tuple) else value == allowed
        check_setting(ok, name, setting, value, why)
    state = _values(layer, name, weight=layer.kernel)
    if layer.use_bias:
        state.update(_values(layer, name, bias=layer.bias))
    shape = state["weight"].shape
    args = (shape[-2], shape[-1], tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    cls = Conv1D if kind == "Conv1D" else Conv2D
    return build(cls, (*args, tuple(layer.dilation_rate), bool(layer.use_bias)), state)


def _conv_to(model: Conv1D | Conv2D) -> Any:
    """A built Keras ``Conv1D`` / ``Conv2D`` (channels last) holding ``model``'s values."""
    kind = type(model).__name__
    if not isinstance(model.padding, str):
        raise ArgumentError(
            f"to_keras(model): twinnn.{kind}(padding={model.padding!r}) pads explicitly and "
            f"keras.layers.{kind} has only 'valid' and 'same'; use "
            f"keras.layers.ZeroPadding{kind[-2:]}({model.padding!r}) before a 'valid' "
            f"keras.layers.{kind}"
        )
    state = model.state_dict()
    cls = keras.layers.Conv1D if kind == "Conv1D" else keras.layers.Conv2D
    layer = cls(
        model.out_channels,
        model.kernel_size,
        strides=model.strides,
        padding=model.padding,
        dilation_rate=model.dilation,
        use_bias="bias" in state,
        kernel_initializer="zeros",  # the values are assigned next
        dtype="float32",
    )
    layer.build((None, *([None] * len(model.strides)), model.in_channels))
    layer.kernel.assign(state["weight"])
    if "bias" in state:
        layer.bias.assign(state["bias"])
    return layer


# --- MultiHeadAttention --------------------------------------------------------------------------

_ATTENTION_SETTINGS = (
    ("_kernel_regularizer", "kernel_regularizer", "twinnn layers carry no regulariser"),
    ("_bias_regularizer", "bias_regularizer", "twinnn layers carry no regulariser"),
    ("_activity_regularizer", "activity_regularizer", "twinnn layers carry no regulariser"),
    ("_kernel_constraint", "kernel_constraint", "twinnn optimisers apply no constraint"),
    ("_bias_constraint", "bias_constraint", "twinnn optimisers apply no constraint"),
    ("_sliding_window", "sliding_window", "use an explicit mask= for a banded attention"),
)


def _attention_from(layer: Any) -> Module | None:
    """The twinnn ``MultiHeadAttention`` for a built Keras ``MultiHeadAttention``, else None."""
    if not isinstance(layer, keras.layers.MultiHeadAttention):
        return None
    name = "keras.layers.MultiHeadAttention"
    _check_common(layer, name)
    for attr, setting, why in _ATTENTION_SETTINGS:
        value = getattr(layer, attr, None)
        check_setting(value is None, name, setting, value, why)
    gate = bool(getattr(layer, "_use_gate", False))
    check_setting(not gate, name, "use_gate", gate, "twinnn.MultiHeadAttention has no gate")
    heads, key_dim, value_dim = int(layer.num_heads), int(layer.key_dim), int(layer.value_dim)
    embed = int(layer.query_dense.kernel.shape[0])
    why = (
        f"twinnn.MultiHeadAttention splits the query's {embed} features into num_heads={heads} "
        f"heads (key_dim * num_heads must equal {embed}, and value_dim key_dim)"
    )
    check_setting(key_dim * heads == embed, name, "key_dim", key_dim, why)
    check_setting(value_dim == key_dim, name, "value_dim", value_dim, why)
    axes = tuple(layer.attention_axes or ())
    check_setting(
        axes == (1,),
        name,
        "attention_axes",
        layer.attention_axes,
        "twinnn.MultiHeadAttention attends over the time axis of (batch, time, features) inputs",
    )
    dense = {"q": layer.query_dense, "k": layer.key_dense, "v": layer.value_dense}
    state: dict[str, np.ndarray] = {}
    for s, sub in dense.items():
        kernel = _values(sub, f"{name}.{sub.name}", kernel=sub.kernel)["kernel"]
        check_setting(
            kernel.shape[0] == embed,
            name,
            f"{sub.name} input features",
            kernel.shape[0],
            f"twinnn.MultiHeadAttention takes query, key and value of {embed} features",
        )
        state[f"w_{s}"] = np.ascontiguousarray(kernel.reshape(embed, embed))  # (E, H, D)
    output = _values(layer.output_dense, f"{name}.output", kernel=layer.output_dense.kernel)
    out_kernel = output["kernel"]  # (H, D, E_out)
    check_setting(
        out_kernel.shape[-1] == embed and out_kernel.ndim == 3,
        name,
        "output_shape",
        getattr(layer, "_output_shape", None),
        f"twinnn.MultiHeadAttention outputs the query's {embed} features",
    )
    state["w_o"] = np.ascontiguousarray(out_kernel.reshape(embed, embed))
    if layer.use_bias:
        for s, sub in dense.items():
            bias = _values(sub, f"{name}.{sub.name}", bias=sub.bias)["bias"]  # (H, D)
            state[f"b_{s}"] = np.ascontiguousarray(bias.reshape(embed))
        out_bias = _values(layer.output_dense, f"{name}.output", bias=layer.output_dense.bias)
        state["b_o"] = out_bias["bias"]
    args = (embed, heads, float(layer.dropout), bool(layer.use_bias))
    return build(MultiHeadAttention, args, state)


def _attention_to(model: Module) -> Any:
    """The built Keras ``MultiHeadAttention`` for a twinnn ``MultiHeadAttention``, else None."""
    if not isinstance(model, MultiHeadAttention):
        return None
    state = model.state_dict()
    embed, heads, dim = model.embed_dim, model.num_heads, model.head_dim
    bias = "b_q" in state
    layer = keras.layers.MultiHeadAttention(
        num_heads=heads,
        key_dim=dim,
        value_dim=dim,
        dropout=model.dropout,
        use_bias=bias,
        kernel_initializer="zeros",  # the values are assigned next
        dtype="float32",
    )
    layer.build((None, None, embed), (None, None, embed))
    dense = {"q": layer.query_dense, "k": layer.key_dense, "v": layer.value_dense}
    for s, sub in dense.items():
        sub.kernel.assign(state[f"w_{s}"].reshape(embed, heads, dim))
        if bias:
            sub.bias.assign(state[f"b_{s}"].reshape(heads, dim))
    layer.output_dense.kernel.assign(state["w_o"].reshape(heads, dim, embed))
    if bias:
        layer.output_dense.bias.assign(state["b_o"])
    return layer
