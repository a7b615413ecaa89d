"""Exact conversion between twinnn layers and ``torch.nn.Linear`` / ``LSTM`` / ``GRU`` /
``Embedding`` / ``LayerNorm`` / ``BatchNorm1d``.

Importing this module imports torch; ``import twinnn`` never does. The twinnn layer may live
on either twinnn backend.

Layouts (twinnn's is the neutral one, DESIGN.md §4):

* ``Linear``: twinnn ``weight`` ``(in, out)`` = torch ``weight.T`` (torch stores
  ``(out, in)``); ``bias`` as is.
* ``LSTM``, per layer ``k`` and direction suffix ``s`` (``""`` / ``"_reverse"``), gate order
  ``i, f, g, o`` on both sides: ``w_ih_l{k}{s}`` ``(in, 4H)`` = ``weight_ih_l{k}{s}.T``,
  ``w_hh_l{k}{s}`` ``(H, 4H)`` = ``weight_hh_l{k}{s}.T``. ``from_torch`` builds
  ``twinnn.LSTM(recurrent_bias=True)``: torch's two biases stay two parameters of the same
  names, ``bias_ih_l{k}{s}`` and ``bias_hh_l{k}{s}``, so the conversion is bit for bit and the
  converted model *trains* like the original (each bias gets the full gradient; one summed
  bias would move at half the rate). ``dropout`` is copied (twinnn's masks are its own hash,
  not torch's generator). ``to_torch`` of ``recurrent_bias=True`` copies both biases; of the
  single-bias LSTM it gives ``bias_ih`` = twinnn's ``bias_l{k}{s}`` and ``bias_hh`` = 0 (the
  same forward; trained in torch, the two would then move at twice the single bias's rate).
* ``GRU``, gate order ``r, z, n`` on both sides: ``w_ih_l{k}{s}`` ``(in, 3H)`` =
  ``weight_ih_l{k}{s}.T``, ``w_hh_l{k}{s}`` ``(H, 3H)`` = ``weight_hh_l{k}{s}.T``,
  ``bias_ih_l{k}{s}``, ``bias_hh_l{k}{s}`` as they are; ``dropout`` copied. Bit for bit, both
  ways.

``torch.nn.LSTM(batch_first=False)`` (and ``GRU``) is accepted: the weights do not depend on
it. The twinnn layers always take ``(batch, time, features)``, so call them with
``x.transpose(0, 1)``.
``to_torch`` builds ``batch_first=True``. For variable lengths, twinnn's ``lengths=`` matches
torch's ``pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)`` followed
by ``pad_packed_sequence(..., total_length=T)``.

``Embedding``, ``LayerNorm``, ``BatchNorm`` (bit for bit, both ways): ``nn.Embedding.weight``
``(N, D)`` = twinnn ``weight``, ``padding_idx`` carried over (both keep that row out of the
gradient); ``nn.LayerNorm(F).weight``/``bias`` and ``eps``; ``nn.BatchNorm1d(F)``
``weight``, ``bias``, ``running_mean``, ``running_var``, ``momentum`` and ``eps`` (same
convention: ``running = (1 - momentum) * running + momentum * batch``, unbiased running
variance). ``BatchNorm2d``/``3d`` convert too (twinnn's layer is channels last: permute the
input from ``(B, C, ...)`` to ``(B, ..., C)``); ``to_torch`` builds ``BatchNorm1d``, whose
``num_batches_tracked`` is 0. ``nn.Embedding(sparse=True)`` converts: twinnn's gradient is the
dense form of torch's sparse one. Refused (:class:`~twinnn.errors.ArgumentError`):
``Embedding(max_norm=...)``, ``scale_grad_by_freq=True``; ``LayerNorm`` over more than the last
axis, ``elementwise_affine=False``, ``bias=False``; ``BatchNorm`` with ``affine=False``,
``track_running_stats=False`` or ``momentum=None`` (torch's cumulative average).

``Conv1d``, ``Conv2d`` <-> ``twinnn.Conv1D``, ``Conv2D`` (bit for bit, both ways): torch's
``weight`` ``(O, C, k...)`` is twinnn's ``(k..., C, O)`` transposed (``weight.permute(2, 3, 1,
0)`` in 2-D), ``bias`` as is; ``kernel_size``, ``stride``, ``dilation`` carried over. Padding
maps exactly: torch's ``padding=p`` (an int or tuple, zeros on both sides) is twinnn's explicit
``padding=p``, ``"valid"`` / ``0`` is ``"valid"``, and ``"same"`` (torch allows it at stride 1
only, with the extra zero at the end for an even span) is twinnn's ``"same"`` (TensorFlow's
rule, the same pads at stride 1). ``to_torch`` of ``padding="same"`` with a stride > 1 is
refused: TensorFlow's SAME pads then depend on the input size (``k=3, s=2``: 8 -> ``(0, 1)``,
9 -> ``(1, 1)``), which no fixed torch padding reproduces (pad with ``F.pad`` yourself or use
explicit ``padding=``). Layout: the twinnn layer is channels last, the torch module channels
first, so call the torch module on ``x.permute(0, 3, 1, 2)`` (``(0, 2, 1)`` in 1-D) and
permute its output back; the weights need no other change. Refused: ``groups != 1``,
``padding_mode`` other than ``"zeros"`` (an :class:`~twinnn.errors.ArgumentError` naming it).

Refused, with an :class:`~twinnn.errors.ArgumentError` naming the setting: ``proj_size > 0``,
``bias=False`` on an LSTM or GRU (twinnn's always train their biases), ``nn.RNN`` modules (a
:class:`~twinnn.errors.ArgumentTypeError`); a parameter that is not float32 is a
:class:`~twinnn.errors.DTypeError`.

``MultiheadAttention`` <-> ``twinnn.MultiHeadAttention`` (bit for bit, both ways): torch packs
the three input projections in ``in_proj_weight`` ``(3E, E)`` (row blocks ``q, k, v``) and
``in_proj_bias`` ``(3E,)``; twinnn's ``w_q, w_k, w_v`` are the row blocks transposed, ``b_q,
b_k, b_v`` the bias blocks, ``w_o`` = ``out_proj.weight.T``, ``b_o`` = ``out_proj.bias``;
``dropout`` copied (twinnn's masks are its hash). ``batch_first=False`` converts (call the
twinnn layer with ``x.transpose(0, 1)``); ``to_torch`` builds ``batch_first=True``. Masks:
torch's boolean ``attn_mask`` and ``key_padding_mask`` mean True = *blocked*, twinnn's ``mask``
True = *may attend*: pass ``mask=~attn_mask`` and ``key_lengths`` (or
``mask=~key_padding_mask[:, None, :]``); torch's ``is_causal=True`` is ``causal=True``.
Refused: ``kdim``/``vdim`` other than ``embed_dim``, ``add_bias_kv=True``,
``add_zero_attn=True``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError
from twinnn.interop import GRUSpec, LSTMSpec, build, check_setting, kind_of, lstm_spec
from twinnn.layers import BatchNorm, Conv1D, Conv2D, Embedding, LayerNorm, Linear
from twinnn.layers.attention import MultiHeadAttention
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
        module: a ``torch.nn.Linear``, ``torch.nn.LSTM``, ``torch.nn.GRU``,
            ``torch.nn.Embedding``, ``torch.nn.LayerNorm`` or ``torch.nn.BatchNorm1d``
            (float32, any device).

    Returns:
        ``twinnn.Linear(in, out, bias)``, ``twinnn.LSTM(input_size, hidden_size, num_layers,
        bidirectional, dropout, recurrent_bias=True)`` or ``twinnn.GRU(input_size,
        hidden_size, num_layers, bidirectional, dropout)``: ``Linear`` reproduces ``module``'s
        forward, ``LSTM`` / ``GRU`` its packed-sequence forward with ``batch_first=True`` and
        its training (both biases trained); ``twinnn.Embedding(N, D,
        padding_idx)``, ``twinnn.LayerNorm(F, eps)``, ``twinnn.BatchNorm(F, momentum, eps)``.
    """
    if isinstance(module, torch.nn.Linear):
        state = {"weight": _array(module.weight, "torch.nn.Linear.weight").T.copy()}
        if module.bias is not None:
            state["bias"] = _array(module.bias, "torch.nn.Linear.bias")
        args = (module.in_features, module.out_features, module.bias is not None)
        return build(Linear, args, state)
    if isinstance(module, (torch.nn.LSTM, torch.nn.GRU)):
        return _rnn_from(module)
    if isinstance(module, _CONVS):
        return _conv_from(module)
    converted = _layer_from(module)
    if converted is None:
        converted = _attention_from(module)
    if converted is not None:
        return converted
    if isinstance(module, torch.nn.RNNBase):
        raise ArgumentTypeError(
            f"from_torch(module): torch.nn.{type(module).__name__} (mode {module.mode!r}) has "
            f"no twinnn equivalent; twinnn converts torch.nn.LSTM and torch.nn.GRU"
        )
    raise ArgumentTypeError(
        f"from_torch(module) must be a torch.nn.Conv1d, Conv2d, Embedding, LayerNorm, BatchNorm1d, "
        f"MultiheadAttention, torch.nn.Linear, torch.nn.LSTM or torch.nn.GRU, got "
        f"{type(module).__name__} (convert a bigger model layer by layer)"
    )


def _rnn_from(rnn: torch.nn.LSTM | torch.nn.GRU) -> Module:
    """``twinnn.LSTM(recurrent_bias=True)`` / ``twinnn.GRU`` holding ``rnn``'s values."""
    is_lstm = isinstance(rnn, torch.nn.LSTM)
    kind = "LSTM" if is_lstm else "GRU"
    name = f"torch.nn.{kind}"
    if is_lstm:
        check_setting(
            rnn.proj_size == 0,
            name,
            "proj_size",
            rnn.proj_size,
            "twinnn.LSTM has no output projection (proj_size must be 0)",
        )
    check_setting(
        bool(rnn.bias),
        name,
        "bias",
        rnn.bias,
        f"twinnn.{kind} always has trainable biases (bias must be True)",
    )
    sizes = (rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional)
    dropout = float(rnn.dropout)
    spec = LSTMSpec(*sizes, dropout, True) if is_lstm else GRUSpec(*sizes, dropout)
    state: dict[str, np.ndarray] = {}
    for k, s in spec.slots():
        w_ih, w_hh, b_ih, b_hh = (
            _array(getattr(rnn, f"{p}_l{k}{s}"), f"{name}.{p}_l{k}{s}")
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        state[f"w_ih_l{k}{s}"] = w_ih.T.copy()
        state[f"w_hh_l{k}{s}"] = w_hh.T.copy()
        state[f"bias_ih_l{k}{s}"] = b_ih
        state[f"bias_hh_l{k}{s}"] = b_hh
    return spec.make(state)


def to_torch(model: Module) -> torch.nn.Module:
    """A native torch layer (CPU, float32) holding ``model``'s values exactly.

    Args:
        model: a ``twinnn.Linear``, ``twinnn.LSTM``, ``twinnn.Embedding``,
            ``twinnn.LayerNorm`` or ``twinnn.BatchNorm`` of either backend.

    Returns:
        ``torch.nn.Linear``, ``torch.nn.LSTM(batch_first=True)`` (``bias_hh`` all zeros unless
        ``recurrent_bias``), ``torch.nn.GRU(batch_first=True)``, with ``dropout`` copied. Move
        it with ``.to(device)`` as usual; ``nn.Embedding``, ``nn.LayerNorm``,
        ``nn.BatchNorm1d``.
    """
    if isinstance(model, (Conv1D, Conv2D)):
        return _conv_to(model)
    native = _layer_to(model)
    if native is None:
        native = _attention_to(model)
    if native is not None:
        return native
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
    rnn = _skip_init(
        torch.nn.GRU if kind == "gru" else torch.nn.LSTM,
        spec.input_size,
        spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        dropout=spec.dropout,
        batch_first=True,
    )
    values = {}
    for k, s in spec.slots():
        values[f"weight_ih_l{k}{s}"] = state[f"w_ih_l{k}{s}"].T.copy()
        values[f"weight_hh_l{k}{s}"] = state[f"w_hh_l{k}{s}"].T.copy()
        if kind == "gru" or spec.recurrent_bias:
            values[f"bias_ih_l{k}{s}"] = state[f"bias_ih_l{k}{s}"]
            values[f"bias_hh_l{k}{s}"] = state[f"bias_hh_l{k}{s}"]
        else:
            values[f"bias_ih_l{k}{s}"] = state[f"bias_l{k}{s}"]
            values[f"bias_hh_l{k}{s}"] = np.zeros_like(state[f"bias_l{k}{s}"])
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            param.copy_(torch.from_numpy(values[name]))
    return rnn


def _skip_init(cls: type[_M], *args: object, **kwargs: object) -> _M:
    """``cls(*args, **kwargs)`` on the CPU without running (or drawing random numbers for) its
    initialisers: built on the meta device, then given uninitialised CPU storage."""
    return cls(*args, **kwargs, device="meta").to_empty(device="cpu")


# --- Embedding, LayerNorm, BatchNorm -------------------------------------------------------------

_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def _layer_from(module: torch.nn.Module) -> Module | None:
    """The twinnn ``Embedding`` / ``LayerNorm`` / ``BatchNorm`` for ``module``, or None when
    ``module`` is none of ``nn.Embedding``, ``nn.LayerNorm``, ``nn.BatchNorm{1,2,3}d``."""
    if isinstance(module, torch.nn.Embedding):
        name = "torch.nn.Embedding"
        check_setting(
            module.max_norm is None,
            name,
            "max_norm",
            module.max_norm,
            "twinnn.Embedding does not renormalise looked-up rows in place (max_norm must be None)",
        )
        check_setting(
            not module.scale_grad_by_freq,
            name,
            "scale_grad_by_freq",
            module.scale_grad_by_freq,
            "twinnn.Embedding's gradient is the plain sum over lookups",
        )
        weight = _array(module.weight, f"{name}.weight")
        sizes = (module.num_embeddings, module.embedding_dim, module.padding_idx)
        return build(Embedding, sizes, {"weight": weight})
    if isinstance(module, torch.nn.LayerNorm):
        name = "torch.nn.LayerNorm"
        shape = tuple(module.normalized_shape)
        check_setting(
            len(shape) == 1,
            name,
            "normalized_shape",
            shape,
            "twinnn.LayerNorm normalises over the last axis only (one dim)",
        )
        check_setting(
            module.elementwise_affine,
            name,
            "elementwise_affine",
            module.elementwise_affine,
            "twinnn.LayerNorm always has a trainable weight and bias",
        )
        check_setting(
            module.bias is not None,
            name,
            "bias",
            False,
            "twinnn.LayerNorm always has a trainable bias",
        )
        state = {
            "weight": _array(module.weight, f"{name}.weight"),
            "bias": _array(module.bias, f"{name}.bias"),
        }
        return build(LayerNorm, (shape[0], float(module.eps)), state)
    if isinstance(module, _BATCH_NORMS):
        name = f"torch.nn.{type(module).__name__}"
        check_setting(
            module.affine,
            name,
            "affine",
            module.affine,
            "twinnn.BatchNorm always has a trainable weight and bias",
        )
        check_setting(
            module.track_running_stats,
            name,
            "track_running_stats",
            module.track_running_stats,
            "twinnn.BatchNorm keeps running statistics and uses them in eval mode",
        )
        check_setting(
            module.momentum is not None,
            name,
            "momentum",
            module.momentum,
            "twinnn.BatchNorm has no cumulative moving average; give a float momentum",
        )
        state = {
            key: _array(getattr(module, key), f"{name}.{key}")
            for key in ("weight", "bias", "running_mean", "running_var")
        }
        momentum = float(module.momentum)  # type: ignore[arg-type]  # None refused above
        return build(BatchNorm, (module.num_features, momentum, float(module.eps)), state)
    return None


def _layer_to(model: Module) -> torch.nn.Module | None:
    """The native layer for a twinnn ``Embedding`` / ``LayerNorm`` / ``BatchNorm``, else None."""
    state = model.state_dict()
    native: torch.nn.Module
    if isinstance(model, Embedding):
        native = _skip_init(
            torch.nn.Embedding,
            model.num_embeddings,
            model.embedding_dim,
            padding_idx=model.padding_idx,
        )
    elif isinstance(model, LayerNorm):
        native = _skip_init(torch.nn.LayerNorm, model.features, eps=model.eps)
    elif isinstance(model, BatchNorm):
        native = _skip_init(
            torch.nn.BatchNorm1d, model.features, eps=model.eps, momentum=model.momentum
        )
    else:
        return None
    with torch.no_grad():
        for key, value in state.items():
            getattr(native, key).copy_(torch.from_numpy(value))
        tracked = getattr(native, "num_batches_tracked", None)
        if tracked is not None:
            tracked.zero_()  # uninitialised storage otherwise
    return native


# --- Conv1d, Conv2d ------------------------------------------------------------------------------

_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d)


def _conv_from(module: torch.nn.Conv1d | torch.nn.Conv2d) -> Module:
    """``twinnn.Conv1D`` / ``Conv2D`` holding ``module``'s values (weight transposed)."""
    name = f"torch.nn.{type(module).__name__}"
    check_setting(
        module.groups == 1,
        name,
        "groups",
        module.groups,
        "twinnn's Conv1D/Conv2D connect every input channel to every output (groups=1)",
    )
    check_setting(
        module.padding_mode == "zeros",
        name,
        "padding_mode",
        module.padding_mode,
        "twinnn's Conv1D/Conv2D pad with zeros",
    )
    padding = module.padding
    if not isinstance(padding, str):
        padding = tuple(int(p) for p in padding) if any(padding) else "valid"
    weight = _array(module.weight, f"{name}.weight")  # (O, C, k...)
    state = {"weight": np.ascontiguousarray(np.moveaxis(weight, (0, 1), (-1, -2)))}
    if module.bias is not None:
        state["bias"] = _array(module.bias, f"{name}.bias")
    cls = Conv1D if isinstance(module, torch.nn.Conv1d) else Conv2D
    sizes = (module.in_channels, module.out_channels, tuple(module.kernel_size))
    args = (*sizes, tuple(module.stride), padding, tuple(module.dilation), module.bias is not None)
    return build(cls, args, state)


def _conv_to(model: Conv1D | Conv2D) -> torch.nn.Module:
    """``torch.nn.Conv1d`` / ``Conv2d`` (channels first) computing ``model``'s convolution."""
    padding: str | int | tuple[int, ...] = model.padding
    if padding == "valid":
        padding = 0
    elif padding == "same" and set(model.strides) != {1}:
        raise ArgumentError(
            f"to_torch(model): twinnn.{type(model).__name__}(padding='same', "
            f"strides={model.strides}) has no torch equivalent: at a stride > 1 TensorFlow's SAME "
            f"pads depend on the input size (kernel 3, stride 2: 8 -> (0, 1), 9 -> (1, 1)) and "
            f"torch's padding is fixed (its 'same' needs stride 1); pad with "
            f"torch.nn.functional.pad before a padding=0 conv, or give twinnn explicit padding="
        )
    cls = torch.nn.Conv1d if isinstance(model, Conv1D) else torch.nn.Conv2d
    state = model.state_dict()
    native = _skip_init(
        cls,
        model.in_channels,
        model.out_channels,
        model.kernel_size,
        stride=model.strides,
        padding=padding,
        dilation=model.dilation,
        bias="bias" in state,
    )
    with torch.no_grad():
        weight = np.moveaxis(state["weight"], (-1, -2), (0, 1))  # (k..., C, O) -> (O, C, k...)
        native.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if native.bias is not None:
            native.bias.copy_(torch.from_numpy(state["bias"]))
    return native


# --- MultiheadAttention --------------------------------------------------------------------------


def _attention_from(module: torch.nn.Module) -> Module | None:
    """The twinnn ``MultiHeadAttention`` for a ``torch.nn.MultiheadAttention``, else None."""
    if not isinstance(module, torch.nn.MultiheadAttention):
        return None
    name = "torch.nn.MultiheadAttention"
    embed = module.embed_dim
    check_setting(
        module.kdim == embed and module.vdim == embed,
        name,
        "kdim, vdim",
        (module.kdim, module.vdim),
        f"twinnn.MultiHeadAttention projects keys and values of embed_dim={embed} features",
    )
    check_setting(
        module.bias_k is None,
        name,
        "add_bias_kv",
        True,
        "twinnn.MultiHeadAttention appends no learned key and value to the sequence",
    )
    check_setting(
        not module.add_zero_attn,
        name,
        "add_zero_attn",
        True,
        "twinnn.MultiHeadAttention appends no zero key and value to the sequence",
    )
    packed = _array(module.in_proj_weight, f"{name}.in_proj_weight")  # (3E, E), rows q, k, v
    state = {f"w_{s}": packed[i * embed : (i + 1) * embed].T.copy() for i, s in enumerate("qkv")}
    state["w_o"] = _array(module.out_proj.weight, f"{name}.out_proj.weight").T.copy()
    bias = module.in_proj_bias is not None
    if bias:
        packed = _array(module.in_proj_bias, f"{name}.in_proj_bias")
        for i, s in enumerate("qkv"):
            state[f"b_{s}"] = packed[i * embed : (i + 1) * embed].copy()
        state["b_o"] = _array(module.out_proj.bias, f"{name}.out_proj.bias")
    args = (embed, module.num_heads, float(module.dropout), bias)
    return build(MultiHeadAttention, args, state)


def _attention_to(model: Module) -> torch.nn.Module | None:
    """``torch.nn.MultiheadAttention(batch_first=True)`` for a twinnn ``MultiHeadAttention``,
    else None."""
    if not isinstance(model, MultiHeadAttention):
        return None
    state = model.state_dict()
    bias = "b_q" in state
    native = _skip_init(
        torch.nn.MultiheadAttention,
        model.embed_dim,
        model.num_heads,
        dropout=model.dropout,
        bias=bias,
        batch_first=True,
    )
    values = {
        "in_proj_weight": np.concatenate([state[f"w_{s}"].T for s in "qkv"]),
        "out_proj.weight": state["w_o"].T.copy(),
    }
    if bias:
        values["in_proj_bias"] = np.concatenate([state[f"b_{s}"] for s in "qkv"])
        values["out_proj.bias"] = state["b_o"]
    with torch.no_grad():
        for key, param in native.named_parameters():
            param.copy_(torch.from_numpy(values[key]))
    return native
