"""``LSTM``: multi-layer, optionally bidirectional, with per-sequence lengths (batch first)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinnn import initializers as init_
from twinnn._checks import (
    INTEGER_DTYPES,
    check_bool,
    check_positive_int,
    fill_shapes,
    require_dims,
)
from twinnn.backends.base import Backend, LSTMWeights
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    DTypeError,
    ShapeError,
    describe_shape,
)
from twinnn.module import Module, parameter

__all__ = ["LSTM"]


def _initial_values(preset: str, in_size: int, hidden: int) -> list[np.ndarray]:
    """``[w_ih (in, 4H), w_hh (H, 4H), bias (4H,)]``, drawn in that order from twinnn's
    generator.

    ``"keras"``: ``w_ih`` Glorot-uniform, ``w_hh`` orthogonal (the whole ``(H, 4H)`` matrix),
    ``bias`` zeros but the forget block ``[H:2H]`` ones. ``"torch"``: every tensor
    ``U(-1/sqrt(H), 1/sqrt(H))``; the bias is the sum of two such draws (torch's ``b_ih`` and
    ``b_hh``), so its distribution is torch's.
    """
    if preset == "torch":
        bound = 1.0 / math.sqrt(hidden)
        w_ih = init_.uniform((in_size, 4 * hidden), bound)
        w_hh = init_.uniform((hidden, 4 * hidden), bound)
        b_ih = init_.uniform((4 * hidden,), bound)
        b_hh = init_.uniform((4 * hidden,), bound)
        return [w_ih, w_hh, b_ih + b_hh]
    w_ih = init_.glorot_uniform((in_size, 4 * hidden))
    w_hh = init_.orthogonal((hidden, 4 * hidden))
    bias = init_.zeros((4 * hidden,))
    bias[hidden : 2 * hidden] = 1.0
    return [w_ih, w_hh, bias]


class LSTM(Module):
    """Long short-term memory over batch-first sequences of different lengths.

    Per layer and direction, with gates ``i, f, g, o`` (PyTorch's and Keras' order)::

        z = x_t @ w_ih + h @ w_hh + bias           # (B, 4H)
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
        c = f * c + i * g;  h = o * tanh(c)

    Args:
        input_size: features ``F`` of ``x``.
        hidden_size: ``H``.
        num_layers: ``L`` stacked layers; layer ``k > 0`` reads the ``H * D`` outputs below.
        bidirectional: add a backward direction (``D = 2``) that reads each sequence from its
            own last valid step back to step 0.
        init: ``"default"``/``"keras"`` (``w_ih`` Glorot-uniform, ``w_hh`` orthogonal, ``bias``
            zeros with the forget block ones) or ``"torch"`` (all ``U(+-1/sqrt(H))``, the bias
            the sum of two such draws, as torch's ``b_ih + b_hh``).

    Parameters, in this order, per layer ``k`` and direction (suffix ``_reverse`` for the
    backward one): ``w_ih_l{k}`` ``(in, 4H)``, ``w_hh_l{k}`` ``(H, 4H)``, ``bias_l{k}``
    ``(4H,)`` -- torch's names with Keras' layout (``w_ih = weight_ih.T``, ``bias = b_ih +
    b_hh``; ``w_ih`` is Keras' ``kernel``).

    Call ``outputs, (h, c) = lstm(x, lengths=None, initial_state=None)``:

    * ``x`` ``(B, T, F)``; ``lengths`` ``(B,)`` integers with ``0 <= len <= T``, any order
      (None: every sequence has length ``T``); ``initial_state`` ``(h0, c0)``, each
      ``(L * D, B, H)`` (None: zeros).
    * ``outputs`` ``(B, T, H * D)``, exactly zero at ``t >= len``; ``h``, ``c``
      ``(L * D, B, H)``, layer by layer, forward before backward, the state after each
      sequence's step ``len - 1`` (the initial state for ``len == 0``).
    * Values in the padding (``t >= len``) never influence any output, state or gradient.

    Lengths given as NumPy arrays or lists are checked on the host before anything runs.
    Native tensors are checked by the backend: an :class:`~twinnn.errors.ArgumentError` on
    CPU and when eager; inside a compiled TensorFlow step a graph assertion, which the step
    re-raises as the same ArgumentError; on a torch GPU a device-side assertion (no host round
    trip per step).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        *,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int(input_size, "LSTM(input_size)")
        self.hidden_size = check_positive_int(hidden_size, "LSTM(hidden_size)")
        self.num_layers = check_positive_int(num_layers, "LSTM(num_layers)")
        self.bidirectional = check_bool(bidirectional, "LSTM(bidirectional)")
        preset = init_.check_preset(init, "LSTM")
        self.directions = 2 if self.bidirectional else 1
        names: list[tuple[str, str, str]] = []
        for layer in range(self.num_layers):
            in_size = self.input_size if layer == 0 else self.hidden_size * self.directions
            for suffix in ("", "_reverse")[: self.directions]:
                triple = (
                    f"w_ih_l{layer}{suffix}",
                    f"w_hh_l{layer}{suffix}",
                    f"bias_l{layer}{suffix}",
                )
                for name, value in zip(
                    triple, _initial_values(preset, in_size, self.hidden_size), strict=True
                ):
                    setattr(self, name, parameter(value))
                names.append(triple)
        self._weight_names: tuple[tuple[str, str, str], ...] = tuple(names)

    def _weights(self) -> list[LSTMWeights]:
        """``(w_ih, w_hh, bias)`` per layer and direction, in the backend's order."""
        return [
            (getattr(self, a), getattr(self, b), getattr(self, c)) for a, b, c in self._weight_names
        ]

    def forward(
        self, x: Any, lengths: Any = None, initial_state: Any = None
    ) -> tuple[Any, tuple[Any, Any]]:
        """``outputs (B, T, H*D), (h (L*D, B, H), c (L*D, B, H))``; see the class doc."""
        impl = self._backend
        x = self._check_x(impl, x)
        native_lengths = None if lengths is None else self._check_lengths(impl, lengths, x)
        state = None if initial_state is None else self._check_state(impl, initial_state, x)
        outputs, h, c = impl.lstm(
            x, native_lengths, state, self._weights(), self.num_layers, self.bidirectional
        )
        return outputs, (h, c)

    # --- input checks -----------------------------------------------------------------------------
    def _check_x(self, impl: Backend, x: Any) -> Any:
        x = impl.convert_float(x, "x")
        shape = impl.static_shape(x)
        if len(shape) != 3 or shape[2] != self.input_size:
            raise ShapeError(
                f"LSTM.forward: argument 'x' must have shape (batch, time, {self.input_size}) "
                f"(input_size={self.input_size}), got {describe_shape(shape)}"
            )
        return x

    def _check_lengths(self, impl: Backend, lengths: Any, x: Any) -> Any:
        where = "LSTM.forward: argument 'lengths'"
        if impl.is_native(lengths):
            values = None
            native = impl.convert(lengths, "lengths")
        else:
            values = np.asarray(lengths)
            if values.size == 0 and values.ndim == 1:
                values = values.astype(np.int64)
            native = None
        dtype = impl.dtype_name(native) if values is None else str(values.dtype)
        if dtype not in INTEGER_DTYPES:
            raise DTypeError(f"{where} must hold integers, got dtype {dtype}")
        if values is not None:
            native = impl.convert(values, "lengths", dtype="int64")
        template = (
            f"{where} must have shape (batch,), one length per sequence of x {{y}}, got {{x}}"
        )
        if len(impl.static_shape(native)) != 1:
            raise ShapeError(fill_shapes(template, impl.static_shape(native), impl.static_shape(x)))
        native, _ = require_dims(impl, native, x, [(0, 0)], template)
        time = impl.static_shape(x)[1]
        if values is not None and time is not None:
            bad = values[(values < 0) | (values > time)]
            if bad.size:
                raise ArgumentError(
                    f"{where} must be in [0, {time}] (0 <= len <= time of x), "
                    f"got values {bad[:5].tolist()}"
                )
        return native  # native tensors: the backend checks the values

    def _check_state(self, impl: Backend, state: Any, x: Any) -> tuple[Any, Any]:
        if not isinstance(state, Sequence) or isinstance(state, str) or len(state) != 2:
            raise ArgumentTypeError(
                "LSTM.forward: argument 'initial_state' must be a pair (h0, c0), "
                f"got {type(state).__name__}"
            )
        layers = self.num_layers * self.directions
        pair = []
        for name, value in zip(("h0", "c0"), state, strict=True):
            tensor = impl.convert_float(value, f"initial_state {name}")
            template = (
                f"LSTM.forward: initial_state {name} must have shape ({layers}, batch, "
                f"{self.hidden_size}) (num_layers * directions, batch of x {{y}}, hidden_size), "
                "got {x}"
            )
            shape = impl.static_shape(tensor)
            known_layers = shape[0] if len(shape) == 3 else None
            if (
                len(shape) != 3
                or known_layers not in (layers, None)
                or shape[2] != self.hidden_size
            ):
                raise ShapeError(fill_shapes(template, shape, impl.static_shape(x)))
            if known_layers is None:  # a state carried into a compiled TF step: check at run time
                like = impl.convert(np.zeros((layers,), np.float32), "layers")
                own = template.replace("batch of x {y}", "batch")
                tensor, _ = require_dims(impl, tensor, like, [(0, 0)], own)
            tensor, _ = require_dims(impl, tensor, x, [(1, 0)], template)
            pair.append(tensor)
        return pair[0], pair[1]

    def __repr__(self) -> str:
        return (
            f"LSTM(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional})"
        )
