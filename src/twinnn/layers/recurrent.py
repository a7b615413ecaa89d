"""What the LSTM and the GRU share: argument checks, lengths, left padding, dropout between
stacked layers (DESIGN.md §4, §13, §18: "the LSTM and GRU share their lengths machinery").

A subclass names itself (``KIND``), registers its parameters (their names per layer and
direction in ``_weight_names``), then calls :meth:`Recurrent._add_dropout`; it supplies
:meth:`Recurrent._kernel` (one backend call over ``num_layers`` layers) and
:meth:`Recurrent._check_states`. Everything else
-- checks, left padding, the layer-by-layer path with dropout -- is here, once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from twinnn._checks import (
    INTEGER_DTYPES,
    check_bool,
    check_float,
    check_positive_int,
    fill_shapes,
    require_dims,
)
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError, DTypeError, ShapeError, describe_shape
from twinnn.module import Module

__all__ = ["PADDINGS", "Recurrent"]

#: The accepted ``padding=`` values: where the padding of each sequence is.
PADDINGS = ("right", "left")


class Recurrent(Module):
    """Base of :class:`~twinnn.LSTM` and :class:`~twinnn.GRU` (see their docs).

    Calls run ``outputs, states = self._run(x, lengths, initial_state, padding)``:

    * ``padding="right"`` (torch's ``pad_sequence`` / ``pack_padded_sequence`` layout): the
      valid steps of sequence ``b`` are ``x[b, :len]``. ``"left"`` (Keras' ``pad_sequences``
      default, ``padding="pre"``): they are ``x[b, T - len:]``. A left-padded batch is rolled
      row by row into the right-padded layout (one gather on the device,
      ``Backend.roll_time``), run, and its outputs rolled back: exact, bit for bit the
      right-padded result moved, gradients included.
    * ``dropout > 0`` in training mode: the layers run one at a time and the outputs of each
      layer but the last go through a :class:`~twinnn.layers.dropout.Dropout` (torch's
      semantics; masks identical on both backends). Otherwise one backend call runs every
      layer (the fused multi-layer kernel where the backend has one).
    """

    KIND: ClassVar[str] = "RNN"
    _dropouts: tuple[Module, ...]
    #: Parameter names per layer and direction (set by the subclass).
    _weight_names: tuple[tuple[str, ...], ...]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        kind = self.KIND
        self.input_size = check_positive_int(input_size, f"{kind}(input_size)")
        self.hidden_size = check_positive_int(hidden_size, f"{kind}(hidden_size)")
        self.num_layers = check_positive_int(num_layers, f"{kind}(num_layers)")
        self.bidirectional = check_bool(bidirectional, f"{kind}(bidirectional)")
        self.dropout = check_float(dropout, f"{kind}(dropout)", low=0.0, high=1.0)
        self.directions = 2 if self.bidirectional else 1
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                f"{kind}(dropout={dropout!r}, num_layers=1): dropout is applied between stacked "
                f"layers (to the outputs of every layer but the last), so with one layer it "
                f"does nothing (torch warns the same)",
                UserWarning,
                stacklevel=3,
            )
        object.__setattr__(self, "_dropouts", ())  # filled by _add_dropout

    def _layer_inputs(self, layer: int) -> int:
        """Features read by ``layer``: ``input_size`` for 0, ``H * D`` above."""
        return self.input_size if layer == 0 else self.hidden_size * self.directions

    def _add_dropout(self) -> None:
        """Register ``dropout_l{k}`` (a ``Dropout(p)`` on layer ``k``'s outputs) for every layer
        but the last; call after the parameters (their order and names stay the same)."""
        if self.dropout == 0.0 or self.num_layers == 1:
            return
        from twinnn.layers.dropout import Dropout

        drops = []
        for layer in range(self.num_layers - 1):
            drop = Dropout(self.dropout)
            setattr(self, f"dropout_l{layer}", drop)
            drops.append(drop)
        object.__setattr__(self, "_dropouts", tuple(drops))  # registered above, by name

    # --- the run ----------------------------------------------------------------------------------
    def _kernel(
        self,
        impl: Backend,
        x: Any,
        lengths: Any | None,
        states: list[Any] | None,
        weights: Sequence[tuple[Any, ...]],
        num_layers: int,
    ) -> tuple[Any, list[Any]]:
        """One backend call over ``num_layers`` layers: ``(outputs, final states)``."""
        raise NotImplementedError

    def _weights(self) -> list[tuple[Any, ...]]:
        """The parameters of each layer and direction (``_weight_names``), in the backend's
        order."""
        return [tuple(getattr(self, n) for n in group) for group in self._weight_names]

    def _run(self, x: Any, lengths: Any, initial_state: Any, padding: Any) -> tuple[Any, list[Any]]:
        """Checked ``(outputs (B, T, H*D), final states (each (L*D, B, H)))``."""
        impl = self._backend
        left = self._check_padding(padding) == "left"
        x = self._check_x(impl, x)
        native_lengths = None if lengths is None else self._check_lengths(impl, lengths, x)
        states = None if initial_state is None else self._check_states(impl, initial_state, x)
        shifts = None
        if left and native_lengths is not None:  # without lengths every row is full: no-op
            shifts = impl.cast(native_lengths, "int64")
            x = impl.roll_time(x, shifts)  # valid steps first: the right-padded layout
        outputs, finals = self._stack(impl, x, native_lengths, states)
        if shifts is not None:
            outputs = impl.roll_time(outputs, -shifts)  # back to the caller's left padding
        return outputs, finals

    def _stack(
        self, impl: Backend, x: Any, lengths: Any | None, states: list[Any] | None
    ) -> tuple[Any, list[Any]]:
        weights = self._weights()
        if not self._dropouts or not self.training:
            return self._kernel(impl, x, lengths, states, weights, self.num_layers)
        # Dropout between layers: one layer at a time (the fused multi-layer kernels would draw
        # their masks from the framework's own generator).
        dirs = self.directions
        per_layer: list[list[Any]] = []
        for layer in range(self.num_layers):
            rows = slice(layer * dirs, (layer + 1) * dirs)
            part = None if states is None else [s[rows] for s in states]
            x, finals = self._kernel(impl, x, lengths, part, weights[rows], 1)
            if layer < self.num_layers - 1:
                x = self._dropouts[layer](x)
            per_layer.append(finals)
        joined = [impl.concat([f[i] for f in per_layer], axis=0) for i in range(len(per_layer[0]))]
        return x, joined

    # --- input checks -----------------------------------------------------------------------------
    def _check_padding(self, padding: Any) -> str:
        if not isinstance(padding, str) or padding not in PADDINGS:
            raise ArgumentError(
                f"{self.KIND}.forward: argument 'padding' must be 'right' or 'left' (where "
                f"each sequence's padding is), got {padding!r}"
            )
        return padding

    def _check_x(self, impl: Backend, x: Any) -> Any:
        x = impl.convert_float(x, "x")
        shape = impl.static_shape(x)
        if len(shape) != 3 or shape[2] != self.input_size:
            raise ShapeError(
                f"{self.KIND}.forward: argument 'x' must have shape (batch, time, "
                f"{self.input_size}) (input_size={self.input_size}), got {describe_shape(shape)}"
            )
        return x

    def _check_lengths(self, impl: Backend, lengths: Any, x: Any) -> Any:
        where = f"{self.KIND}.forward: argument 'lengths'"
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

    def _check_states(self, impl: Backend, initial_state: Any, x: Any) -> list[Any]:
        """The initial states, each ``(L*D, B, H)``; a subclass unpacks ``initial_state``."""
        raise NotImplementedError

    def _check_state(self, impl: Backend, value: Any, x: Any, argument: str, what: str) -> Any:
        """One state ``(L*D, B, H)``; ``argument`` names it in dtype errors, ``what`` in shape
        errors (``"initial_state h0"``)."""
        tensor = impl.convert_float(value, argument)
        layers = self.num_layers * self.directions
        template = (
            f"{self.KIND}.forward: {what} must have shape ({layers}, batch, "
            f"{self.hidden_size}) (num_layers * directions, batch of x {{y}}, hidden_size), "
            "got {x}"
        )
        shape = impl.static_shape(tensor)
        known_layers = shape[0] if len(shape) == 3 else None
        if len(shape) != 3 or known_layers not in (layers, None) or shape[2] != self.hidden_size:
            raise ShapeError(fill_shapes(template, shape, impl.static_shape(x)))
        if known_layers is None:  # a state carried into a compiled TF step: check at run time
            like = impl.convert(np.zeros((layers,), np.float32), "layers")
            own = template.replace("batch of x {y}", "batch")
            tensor, _ = require_dims(impl, tensor, like, [(0, 0)], own)
        tensor, _ = require_dims(impl, tensor, x, [(1, 0)], template)
        return tensor

    def _repr_extra(self) -> str:
        return f", dropout={self.dropout}" if self.dropout else ""

    def __repr__(self) -> str:
        return (
            f"{self.KIND}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional}"
            f"{self._repr_extra()})"
        )
