"""Exact conversion between twinnn layers and ``torch.nn.Linear`` / ``torch.nn.LSTM``.

Importing this module imports torch; ``import twinnn`` never does. The twinnn layer may live
on either twinnn backend.

Layouts (twinnn's is the neutral one, DESIGN.md §4):

* ``Linear``: twinnn ``weight`` ``(in, out)`` = torch ``weight.T`` (torch stores
  ``(out, in)``); ``bias`` as is.
* ``LSTM``, per layer ``k`` and direction suffix ``s`` (``""`` / ``"_reverse"``), gate order
  ``i, f, g, o`` on both sides: ``w_ih_l{k}{s}`` ``(in, 4H)`` = ``weight_ih_l{k}{s}.T``,
  ``w_hh_l{k}{s}`` ``(H, 4H)`` = ``weight_hh_l{k}{s}.T``, and twinnn's single
  ``bias_l{k}{s}`` = ``bias_ih_l{k}{s} + bias_hh_l{k}{s}`` (one float32 rounding: the
  converted LSTM agrees with torch's to rounding, not bit for bit). The way back is exact:
  ``bias_ih`` = twinnn's bias, ``bias_hh`` = 0.

``torch.nn.LSTM(batch_first=False)`` is accepted: the weights do not depend on it. The twinnn
LSTM always takes ``(batch, time, features)``, so call it with ``x.transpose(0, 1)``.
``to_torch`` builds ``batch_first=True``. For variable lengths, twinnn's ``lengths=`` matches
torch's ``pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)`` followed
by ``pad_packed_sequence(..., total_length=T)``.

Refused, with an :class:`~twinnn.errors.ArgumentError` naming the setting: ``proj_size > 0``,
``dropout > 0``, ``bias=False`` on an LSTM (twinnn's LSTM always trains a bias), GRU and RNN
modules (a :class:`~twinnn.errors.ArgumentTypeError`); a parameter that is not float32 is a
:class:`~twinnn.errors.DTypeError`.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from twinnn.errors import ArgumentTypeError, DTypeError
from twinnn.interop import LSTMSpec, build, check_setting, kind_of, lstm_spec
from twinnn.layers import Linear
from twinnn.module import Module

__all__ = ["from_torch", "to_torch"]

_M = TypeVar("_M", bound=torch.nn.Module)


def _array(tensor: torch.Tensor, what: str) -> np.ndarray:
    if tensor.dtype != torch.float32:
        raise DTypeError(
            f"{what} has dtype {tensor.dtype}; twinnn layers hold float32 and a conversion must "
            f"be exact: convert the module with .float() first"
        )
    return np.array(tensor.detach().cpu().numpy(), dtype=np.float32, copy=True)


def from_torch(module: torch.nn.Module) -> Module:
    """A twinnn layer (current backend) holding ``module``'s values.

    Args:
        module: a ``torch.nn.Linear`` or ``torch.nn.LSTM`` (float32, any device).

    Returns:
        ``twinnn.Linear(in, out, bias)`` or ``twinnn.LSTM(input_size, hidden_size,
        num_layers, bidirectional)``: ``Linear`` reproduces ``module``'s forward, ``LSTM`` its
        packed-sequence forward with ``batch_first=True``.
    """
    if isinstance(module, torch.nn.Linear):
        state = {"weight": _array(module.weight, "torch.nn.Linear.weight").T.copy()}
        if module.bias is not None:
            state["bias"] = _array(module.bias, "torch.nn.Linear.bias")
        args = (module.in_features, module.out_features, module.bias is not None)
        return build(Linear, args, state)
    if isinstance(module, torch.nn.LSTM):
        return _lstm_from(module)
    if isinstance(module, torch.nn.RNNBase):
        raise ArgumentTypeError(
            f"from_torch(module): torch.nn.{type(module).__name__} (mode {module.mode!r}) has "
            f"no twinnn equivalent; twinnn converts torch.nn.LSTM and torch.nn.Linear"
        )
    raise ArgumentTypeError(
        f"from_torch(module) must be a torch.nn.Linear or torch.nn.LSTM, got "
        f"{type(module).__name__} (convert a bigger model layer by layer)"
    )


def _lstm_from(lstm: torch.nn.LSTM) -> Module:
    name = "torch.nn.LSTM"
    check_setting(
        lstm.proj_size == 0,
        name,
        "proj_size",
        lstm.proj_size,
        "twinnn.LSTM has no output projection (proj_size must be 0)",
    )
    check_setting(
        float(lstm.dropout) == 0.0,
        name,
        "dropout",
        lstm.dropout,
        "twinnn.LSTM has no dropout between layers (dropout must be 0)",
    )
    check_setting(
        bool(lstm.bias),
        name,
        "bias",
        lstm.bias,
        "twinnn.LSTM always has a trainable bias (bias must be True)",
    )
    spec = LSTMSpec(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bidirectional)
    state: dict[str, np.ndarray] = {}
    for k, s in spec.slots():
        w_ih, w_hh, b_ih, b_hh = (
            _array(getattr(lstm, f"{p}_l{k}{s}"), f"{name}.{p}_l{k}{s}")
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        state[f"w_ih_l{k}{s}"] = w_ih.T.copy()
        state[f"w_hh_l{k}{s}"] = w_hh.T.copy()
        state[f"bias_l{k}{s}"] = b_ih + b_hh  # float32 + float32, as torch adds them
    return spec.make(state)


def to_torch(model: Module) -> torch.nn.Module:
    """A native torch layer (CPU, float32) holding ``model``'s values exactly.

    Args:
        model: a ``twinnn.Linear`` or ``twinnn.LSTM`` of either backend.

    Returns:
        ``torch.nn.Linear`` or ``torch.nn.LSTM(batch_first=True)`` (``bias_hh`` all zeros). Move
        it with ``.to(device)`` as usual.
    """
    kind = kind_of(model, "to_torch(model)")
    state = model.state_dict()
    if kind == "linear":
        out_features, in_features = state["weight"].shape[1], state["weight"].shape[0]
        linear = _skip_init(torch.nn.Linear, in_features, out_features, bias="bias" in state)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(state["weight"].T.copy()))
            if "bias" in state:
                linear.bias.copy_(torch.from_numpy(state["bias"]))
        return linear
    spec = lstm_spec(model)
    lstm = _skip_init(
        torch.nn.LSTM,
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        batch_first=True,
    )
    values = {}
    for k, s in spec.slots():
        values[f"weight_ih_l{k}{s}"] = state[f"w_ih_l{k}{s}"].T.copy()
        values[f"weight_hh_l{k}{s}"] = state[f"w_hh_l{k}{s}"].T.copy()
        values[f"bias_ih_l{k}{s}"] = state[f"bias_l{k}{s}"]
        values[f"bias_hh_l{k}{s}"] = np.zeros_like(state[f"bias_l{k}{s}"])
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            param.copy_(torch.from_numpy(values[name]))
    return lstm


def _skip_init(cls: type[_M], *args: object, **kwargs: object) -> _M:
    """``cls(*args, **kwargs)`` on the CPU without running (or drawing random numbers for) its
    initialisers: built on the meta device, then given uninitialised CPU storage."""
    return cls(*args, **kwargs, device="meta").to_empty(device="cpu")
