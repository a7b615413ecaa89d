"""Exact weight conversion between twinnn layers and native PyTorch / Keras layers.

* ``twinnn.Linear`` <-> ``torch.nn.Linear`` and ``keras.layers.Dense``;
* ``twinnn.LSTM`` <-> ``torch.nn.LSTM`` (multi-layer, bidirectional, dropout; torch's two
  biases kept as two, ``recurrent_bias=True``) and ``keras.layers.LSTM`` /
  ``keras.layers.Bidirectional(LSTM)`` (one layer, one bias);
* ``twinnn.GRU`` <-> ``torch.nn.GRU`` (multi-layer, bidirectional, dropout) and
  ``keras.layers.GRU(reset_after=True)`` / ``keras.layers.Bidirectional(GRU)`` (one layer);
* ``twinnn.Conv1D`` / ``Conv2D`` <-> ``torch.nn.Conv1d`` / ``Conv2d`` (weights transposed; the
  torch module is channels first) and ``keras.layers.Conv1D`` / ``Conv2D`` (channels last);
* ``twinnn.Embedding`` / ``LayerNorm`` / ``BatchNorm`` <-> ``torch.nn.Embedding`` /
  ``LayerNorm`` / ``BatchNorm1d`` and ``keras.layers.Embedding`` / ``LayerNormalization`` /
  ``BatchNormalization`` (Keras' epsilon and momentum conventions converted; see
  ``docs/layers.md`` for what differs in training).

Use::

    from twinnn.interop.torch import from_torch, to_torch
    from twinnn.interop.keras import from_keras, to_keras

Only those two modules import torch / keras, and only when you import them: ``import twinnn``
and ``import twinnn.interop`` import neither. ``from_*`` builds the twinnn layer on the current
twinnn backend (either one) and copies the values exactly; ``to_*`` builds a native layer on
the CPU in float32. Building either side never draws from twinnn's or the framework's random
generator, so a conversion does not change the initial weights of layers created later.

A native setting twinnn's layer cannot represent (a projection, recurrent dropout, another
activation, Keras' ``GRU(reset_after=False)``) raises a :mod:`twinnn.errors` exception naming
the setting; nothing is approximated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

import twinnn
from twinnn import config
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError
from twinnn.layers import GRU, LSTM
from twinnn.module import Module

__all__ = ["from_keras", "from_torch", "to_keras", "to_torch"]


def __getattr__(name: str) -> Any:
    """``twinnn.interop.from_torch`` etc., importing the framework only on first use."""
    if name in ("from_torch", "to_torch"):
        from twinnn.interop import torch as _torch

        return getattr(_torch, name)
    if name in ("from_keras", "to_keras"):
        from twinnn.interop import keras as _keras

        return getattr(_keras, name)
    raise AttributeError(f"module 'twinnn.interop' has no attribute {name!r}")


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Build layers inside the block without advancing twinnn's NumPy generator."""
    generator = config.generator()
    state = generator.bit_generator.state
    try:
        yield
    finally:
        generator.bit_generator.state = state


def float32(value: Any, what: str) -> np.ndarray:
    """``value`` as a float32 array; any other dtype is refused (it would not be exact)."""
    array = np.asarray(value)
    if array.dtype != np.float32:
        raise DTypeError(
            f"{what} has dtype {array.dtype}; twinnn layers hold float32 and a conversion "
            f"must be exact: cast the native layer to float32 first"
        )
    return array


def build(
    cls: type[Module],
    args: tuple[Any, ...],
    state: Mapping[str, np.ndarray],
    kwargs: Mapping[str, Any] | None = None,
) -> Module:
    """``cls(*args, **kwargs)`` on the current backend, holding exactly ``state``."""
    with rng_untouched():
        layer = cls(*args, **(kwargs or {}))
    layer.load_state_dict(dict(state))
    return layer


def check_setting(ok: bool, native: str, setting: str, got: object, why: str) -> None:
    """Raise :class:`ArgumentError` naming ``native``'s ``setting`` unless ``ok``."""
    if not ok:
        raise ArgumentError(f"{native}({setting}={got!r}) cannot be converted: {why}")


@dataclass(frozen=True)
class LSTMSpec:
    """Settings of a twinnn LSTM (neutral layout, DESIGN.md §4, §13).

    Per layer ``k`` and direction suffix ``s`` (``""``, ``"_reverse"``): ``w_ih_l{k}{s}``
    ``(in_k, 4H)``, ``w_hh_l{k}{s}`` ``(H, 4H)``, ``bias_l{k}{s}`` ``(4H,)`` (with
    ``recurrent_bias``: ``bias_ih_l{k}{s}`` and ``bias_hh_l{k}{s}``), gates ``i, f, g, o``;
    ``in_0 = input_size`` and ``in_k = H * directions`` for ``k > 0``.
    """

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dropout: float = 0.0
    recurrent_bias: bool = False

    @property
    def suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def slots(self) -> Iterator[tuple[int, str]]:
        """``(layer, suffix)`` in PyTorch's parameter order."""
        for k in range(self.num_layers):
            for suffix in self.suffixes:
                yield k, suffix

    def make(self, state: Mapping[str, np.ndarray]) -> Module:
        """A twinnn LSTM of these settings on the current backend holding ``state``."""
        args = (self.input_size, self.hidden_size, self.num_layers, self.bidirectional)
        extra = {"recurrent_bias": self.recurrent_bias}
        return build(LSTM, (*args, self.dropout), state, extra)


@dataclass(frozen=True)
class GRUSpec(LSTMSpec):
    """Settings of a twinnn GRU: :class:`LSTMSpec`'s slots with ``(in_k, 3H)``, ``(H, 3H)``
    weights and always two biases ``bias_ih_l{k}{s}``, ``bias_hh_l{k}{s}`` (gates ``r, z,
    n``); ``recurrent_bias`` is unused."""

    def make(self, state: Mapping[str, np.ndarray]) -> Module:
        """A twinnn GRU of these settings on the current backend holding ``state``."""
        args = (self.input_size, self.hidden_size, self.num_layers, self.bidirectional)
        return build(GRU, (*args, self.dropout), state)


def lstm_spec(model: Module) -> LSTMSpec:
    """The :class:`LSTMSpec` of a twinnn LSTM (a :class:`GRUSpec` for a twinnn GRU)."""
    if isinstance(model, GRU):
        return GRUSpec(
            model.input_size,
            model.hidden_size,
            model.num_layers,
            model.bidirectional,
            model.dropout,
        )
    if not isinstance(model, LSTM):
        raise ArgumentTypeError(
            f"expected a twinnn.LSTM (parameters w_ih_l0, ...), got {type(model).__name__} "
            f"with parameters {list(model.state_dict())}"
        )
    return LSTMSpec(
        model.input_size,
        model.hidden_size,
        model.num_layers,
        model.bidirectional,
        model.dropout,
        model.recurrent_bias,
    )


def kind_of(model: object, argument: str) -> str:
    """``"linear"``, ``"lstm"`` or ``"gru"`` for a twinnn layer; a clear error for anything
    else."""
    if isinstance(model, twinnn.Linear):
        return "linear"
    if isinstance(model, GRU):
        return "gru"
    lstm = getattr(twinnn, "LSTM", None)
    if lstm is not None and isinstance(model, lstm):
        return "lstm"
    raise ArgumentTypeError(
        f"{argument} must be a twinnn.Linear, LSTM, GRU, Embedding, LayerNorm or BatchNorm, got "
        f"{type(model).__name__} "
        f"(convert a bigger model layer by layer)"
    )
