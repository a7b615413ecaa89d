"""``LSTM``: multi-layer, optionally bidirectional, with per-sequence lengths (batch first)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinnn import initializers as init_
from twinnn._checks import check_bool
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentTypeError
from twinnn.layers.recurrent import Recurrent
from twinnn.module import parameter

__all__ = ["LSTM"]


def _initial_values(preset: str, in_size: int, hidden: int, two_biases: bool) -> list[np.ndarray]:
    """``[w_ih (in, 4H), w_hh (H, 4H), bias (4H,)]`` (``two_biases``: ``[..., bias_ih,
    bias_hh]``), drawn in that order from twinnn's generator.

    ``"keras"``: ``w_ih`` Glorot-uniform, ``w_hh`` orthogonal (the whole ``(H, 4H)`` matrix),
    ``bias`` zeros but the forget block ``[H:2H]`` ones (two biases: ``bias_ih`` that,
    ``bias_hh`` zeros). ``"torch"``: every tensor ``U(-1/sqrt(H), 1/sqrt(H))``; the single
    bias is the sum of two such draws (torch's ``b_ih`` and ``b_hh``), so its distribution is
    torch's; two biases are those two draws.
    """
    if preset == "torch":
        bound = 1.0 / math.sqrt(hidden)
        w_ih = init_.uniform((in_size, 4 * hidden), bound)
        w_hh = init_.uniform((hidden, 4 * hidden), bound)
        b_ih = init_.uniform((4 * hidden,), bound)
        b_hh = init_.uniform((4 * hidden,), bound)
        return [w_ih, w_hh, b_ih, b_hh] if two_biases else [w_ih, w_hh, b_ih + b_hh]
    w_ih = init_.glorot_uniform((in_size, 4 * hidden))
    w_hh = init_.orthogonal((hidden, 4 * hidden))
    bias = init_.zeros((4 * hidden,))
    bias[hidden : 2 * hidden] = 1.0
    return [w_ih, w_hh, bias, init_.zeros((4 * hidden,))] if two_biases else [w_ih, w_hh, bias]


class LSTM(Recurrent):
    """Long short-term memory over batch-first sequences of different lengths.

    Per layer and direction, with gates ``i, f, g, o`` (PyTorch's and Keras' order)::

        z = x_t @ w_ih + h @ w_hh + bias           # (B, 4H); + bias_hh with recurrent_bias
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
        c = f * c + i * g;  h = o * tanh(c)

    Args:
        input_size: features ``F`` of ``x``.
        hidden_size: ``H``.
        num_layers: ``L`` stacked layers; layer ``k > 0`` reads the ``H * D`` outputs below.
        bidirectional: add a backward direction (``D = 2``) that reads each sequence from its
            own last valid step back to step 0.
        dropout: ``p`` in ``[0, 1]``: in training mode the outputs of every layer but the last
            go through ``Dropout(p)`` (torch's semantics; twinnn's hash masks, identical on
            both backends). With one layer it does nothing and warns, as torch does.
        recurrent_bias: ``True`` gives each layer torch's second bias ``bias_hh`` as its own
            trainable parameter (``z = x_t @ w_ih + bias_ih + h @ w_hh + bias_hh``). The
            forward is the same function as one summed bias, but training is not: each bias
            gets the full gradient, so the sum moves twice as fast. ``interop.from_torch``
            sets it, so a converted ``nn.LSTM`` trains like the original.
        init: ``"default"``/``"keras"`` (``w_ih`` Glorot-uniform, ``w_hh`` orthogonal, ``bias``
            zeros with the forget block ones; with two biases ``bias_hh`` is zeros) or
            ``"torch"`` (all ``U(+-1/sqrt(H))``; one bias is the sum of two such draws, as
            torch's ``b_ih + b_hh``; two biases are the two draws).

    Parameters, in this order, per layer ``k`` and direction (suffix ``_reverse`` for the
    backward one): ``w_ih_l{k}`` ``(in, 4H)``, ``w_hh_l{k}`` ``(H, 4H)``, ``bias_l{k}``
    ``(4H,)`` -- torch's names with Keras' layout (``w_ih = weight_ih.T``, ``bias = b_ih +
    b_hh``; ``w_ih`` is Keras' ``kernel``). With ``recurrent_bias`` the bias is two
    parameters named as torch's, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(4H,)``. With
    ``dropout`` the sub-modules ``dropout_l{k}`` (no parameters) follow the parameters.

    Call ``outputs, (h, c) = lstm(x, lengths=None, initial_state=None, padding="right")``:

    * ``x`` ``(B, T, F)``; ``lengths`` ``(B,)`` integers with ``0 <= len <= T``, any order
      (None: every sequence has length ``T``); ``initial_state`` ``(h0, c0)``, each
      ``(L * D, B, H)`` (None: zeros).
    * ``padding``: ``"right"`` when sequence ``b`` is ``x[b, :len]`` (torch's
      ``pad_sequence``), ``"left"`` when it is ``x[b, T - len:]`` (Keras' ``pad_sequences``
      default); the outputs come back in the same layout.
    * ``outputs`` ``(B, T, H * D)``, exactly zero at padded steps; ``h``, ``c``
      ``(L * D, B, H)``, layer by layer, forward before backward, the state after each
      sequence's last valid step (the initial state for ``len == 0``).
    * Values in the padding never influence any output, state or gradient.

    Lengths given as NumPy arrays or lists are checked on the host before anything runs.
    Native tensors are checked by the backend: an :class:`~twinnn.errors.ArgumentError` on
    CPU and when eager; inside a compiled TensorFlow step a graph assertion, which the step
    re-raises as the same ArgumentError; on a torch GPU the same ArgumentError, read with the
    step's other checks before the update (docs/errors.md).
    """

    KIND = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        recurrent_bias: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout)
        self.recurrent_bias = check_bool(recurrent_bias, "LSTM(recurrent_bias)")
        preset = init_.check_preset(init, "LSTM")
        biases = ("bias_ih", "bias_hh") if self.recurrent_bias else ("bias",)
        names: list[tuple[str, ...]] = []
        for layer in range(self.num_layers):
            in_size = self._layer_inputs(layer)
            for suffix in ("", "_reverse")[: self.directions]:
                group = tuple(f"{p}_l{layer}{suffix}" for p in ("w_ih", "w_hh", *biases))
                values = _initial_values(preset, in_size, self.hidden_size, self.recurrent_bias)
                for name, value in zip(group, values, strict=True):
                    setattr(self, name, parameter(value))
                names.append(group)
        self._weight_names = tuple(names)
        self._add_dropout()

    def forward(
        self, x: Any, lengths: Any = None, initial_state: Any = None, padding: str = "right"
    ) -> tuple[Any, tuple[Any, Any]]:
        """``outputs (B, T, H*D), (h (L*D, B, H), c (L*D, B, H))``; see the class doc."""
        outputs, (h, c) = self._run(x, lengths, initial_state, padding)
        return outputs, (h, c)

    def _kernel(
        self,
        impl: Backend,
        x: Any,
        lengths: Any | None,
        states: list[Any] | None,
        weights: Sequence[tuple[Any, ...]],
        num_layers: int,
    ) -> tuple[Any, list[Any]]:
        state = None if states is None else (states[0], states[1])
        outputs, h, c = impl.lstm(x, lengths, state, weights, num_layers, self.bidirectional)
        return outputs, [h, c]

    def _check_states(self, impl: Backend, initial_state: Any, x: Any) -> list[Any]:
        state = initial_state
        if not isinstance(state, Sequence) or isinstance(state, str) or len(state) != 2:
            raise ArgumentTypeError(
                "LSTM.forward: argument 'initial_state' must be a pair (h0, c0), "
                f"got {type(state).__name__}"
            )
        return [
            self._check_state(impl, value, x, f"initial_state {name}", f"initial_state {name}")
            for name, value in zip(("h0", "c0"), state, strict=True)
        ]

    def _repr_extra(self) -> str:
        extra = super()._repr_extra()
        return extra + (", recurrent_bias=True" if self.recurrent_bias else "")
