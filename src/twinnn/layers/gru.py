"""``GRU``: multi-layer, optionally bidirectional, with per-sequence lengths (batch first)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinnn import initializers as init_
from twinnn.backends.base import Backend
from twinnn.layers.recurrent import Recurrent
from twinnn.module import parameter

__all__ = ["GRU"]


def _initial_values(preset: str, in_size: int, hidden: int) -> list[np.ndarray]:
    """``[w_ih (in, 3H), w_hh (H, 3H), bias_ih (3H,), bias_hh (3H,)]``, drawn in that order
    from twinnn's generator.

    ``"keras"``: ``w_ih`` Glorot-uniform, ``w_hh`` orthogonal (the whole ``(H, 3H)`` matrix),
    both biases zeros (Keras' ``GRU`` defaults). ``"torch"``: every tensor
    ``U(-1/sqrt(H), 1/sqrt(H))`` (``nn.GRU.reset_parameters``).
    """
    if preset == "torch":
        bound = 1.0 / math.sqrt(hidden)
        return [
            init_.uniform((in_size, 3 * hidden), bound),
            init_.uniform((hidden, 3 * hidden), bound),
            init_.uniform((3 * hidden,), bound),
            init_.uniform((3 * hidden,), bound),
        ]
    return [
        init_.glorot_uniform((in_size, 3 * hidden)),
        init_.orthogonal((hidden, 3 * hidden)),
        init_.zeros((3 * hidden,)),
        init_.zeros((3 * hidden,)),
    ]


class GRU(Recurrent):
    """Gated recurrent unit over batch-first sequences of different lengths.

    torch's equations, per layer and direction, gates in torch's order ``r, z, n`` (the
    reset gate applied after the hidden matmul: Keras' ``reset_after=True``)::

        r = sigmoid(x_t @ w_ir + b_ir + h @ w_hr + b_hr)
        z = sigmoid(x_t @ w_iz + b_iz + h @ w_hz + b_hz)
        n = tanh(x_t @ w_in + b_in + r * (h @ w_hn + b_hn))
        h = (1 - z) * n + z * h

    where ``w_ir, w_iz, w_in`` are the column blocks ``[0:H], [H:2H], [2H:3H]`` of ``w_ih``
    (likewise ``w_hh``, ``bias_ih``, ``bias_hh``).

    Args:
        input_size: features ``F`` of ``x``.
        hidden_size: ``H``.
        num_layers: ``L`` stacked layers; layer ``k > 0`` reads the ``H * D`` outputs below.
        bidirectional: add a backward direction (``D = 2``) that reads each sequence from its
            own last valid step back to step 0.
        dropout: ``p`` in ``[0, 1]``: in training mode the outputs of every layer but the last
            go through ``Dropout(p)`` (torch's semantics; twinnn's hash masks, identical on
            both backends). With one layer it does nothing and warns, as torch does.
        init: ``"default"``/``"keras"`` (``w_ih`` Glorot-uniform, ``w_hh`` orthogonal, biases
            zeros) or ``"torch"`` (every tensor ``U(+-1/sqrt(H))``).

    Parameters, in this order, per layer ``k`` and direction (suffix ``_reverse`` for the
    backward one): ``w_ih_l{k}`` ``(in, 3H)``, ``w_hh_l{k}`` ``(H, 3H)``, ``bias_ih_l{k}``
    ``(3H,)``, ``bias_hh_l{k}`` ``(3H,)`` -- torch's names (``w_ih = weight_ih.T``; the biases
    as they are), both biases trained as in torch. With ``dropout`` the sub-modules
    ``dropout_l{k}`` (no parameters) follow the parameters.

    Call ``outputs, h = gru(x, lengths=None, initial_state=None, padding="right")``:

    * ``x`` ``(B, T, F)``; ``lengths`` ``(B,)`` integers with ``0 <= len <= T``, any order
      (None: every sequence has length ``T``); ``initial_state`` ``h0`` ``(L * D, B, H)``
      (None: zeros).
    * ``padding``: ``"right"`` when sequence ``b`` is ``x[b, :len]`` (torch's
      ``pad_sequence``), ``"left"`` when it is ``x[b, T - len:]`` (Keras' ``pad_sequences``
      default); the outputs come back in the same layout.
    * ``outputs`` ``(B, T, H * D)``, exactly zero at padded steps; ``h`` ``(L * D, B, H)``,
      layer by layer, forward before backward, the state after each sequence's last valid
      step (``h0`` for ``len == 0``).
    * Values in the padding never influence any output, state or gradient.

    Lengths are checked as the LSTM's are (see :class:`~twinnn.LSTM`).
    """

    KIND = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        *,
        init: str = "default",
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout)
        preset = init_.check_preset(init, "GRU")
        names: list[tuple[str, ...]] = []
        for layer in range(self.num_layers):
            in_size = self._layer_inputs(layer)
            for suffix in ("", "_reverse")[: self.directions]:
                group = tuple(
                    f"{p}_l{layer}{suffix}" for p in ("w_ih", "w_hh", "bias_ih", "bias_hh")
                )
                values = _initial_values(preset, in_size, self.hidden_size)
                for name, value in zip(group, values, strict=True):
                    setattr(self, name, parameter(value))
                names.append(group)
        self._weight_names = tuple(names)
        self._add_dropout()

    def forward(
        self, x: Any, lengths: Any = None, initial_state: Any = None, padding: str = "right"
    ) -> tuple[Any, Any]:
        """``outputs (B, T, H*D), h (L*D, B, H)``; see the class doc."""
        outputs, (h,) = self._run(x, lengths, initial_state, padding)
        return outputs, h

    def _kernel(
        self,
        impl: Backend,
        x: Any,
        lengths: Any | None,
        states: list[Any] | None,
        weights: Sequence[tuple[Any, ...]],
        num_layers: int,
    ) -> tuple[Any, list[Any]]:
        h0 = None if states is None else states[0]
        quads = [(w[0], w[1], w[2], w[3]) for w in weights]
        outputs, h = impl.gru(x, lengths, h0, quads, num_layers, self.bidirectional)
        return outputs, [h]

    def _check_states(self, impl: Backend, initial_state: Any, x: Any) -> list[Any]:
        return [
            self._check_state(impl, initial_state, x, "initial_state", "argument 'initial_state'")
        ]
