"""``MultiHeadAttention``: scaled dot-product attention over ``num_heads`` heads, batch first,
boolean masks with **True = may attend** (DESIGN.md §13)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from twinnn import config
from twinnn import initializers as init_
from twinnn._checks import INTEGER_DTYPES, check_bool, check_positive_int, fill_shapes, require_dims
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError, DTypeError, ShapeError, describe_shape
from twinnn.layers.dropout import apply_dropout, check_rate, layer_constant, step_key
from twinnn.module import Module, parameter

__all__ = ["MultiHeadAttention"]

_WHERE = "MultiHeadAttention.forward: argument"
#: Which axes of a mask of each rank are (batch, heads, time_q, time_k); None: absent.
_MASK_AXES = {2: (None, None, 0, 1), 3: (0, None, 1, 2), 4: (0, 1, 2, 3)}


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention (torch's ``nn.MultiheadAttention(embed_dim,
    num_heads, dropout, bias, batch_first=True)``; Keras' ``MultiHeadAttention(num_heads,
    key_dim=embed_dim // num_heads)``)::

        q = query @ w_q + b_q;  k = key @ w_k + b_k;  v = value @ w_v + b_v     # (B, T, E)
        head h (columns h*D:(h+1)*D, D = E / num_heads):
            p_h = softmax over the allowed keys of (q_h @ k_h^T) / sqrt(D)     # (B, Tq, Tk)
            o_h = dropout(p_h) @ v_h
        out = concat(o_0, ..., o_{H-1}) @ w_o + b_o                             # (B, Tq, E)

    Args:
        embed_dim: ``E``, the feature size of query, key, value and output.
        num_heads: ``H``; must divide ``E``.
        dropout: ``p`` in ``[0, 1]``, dropout on the attention probabilities in training mode,
            with :class:`~twinnn.Dropout`'s hash masks (identical on both backends;
            ``row_offset`` as there).
        bias: whether the four projections have biases.
        init: ``"default"``/``"keras"``: every ``w`` Glorot-uniform on ``(E, E)``, limit
            ``sqrt(6 / (2E))`` -- what Keras 3 draws for its per-head kernels (it computes the
            fans from the input and output axes) -- biases zeros; ``"torch"``: ``w_q, w_k, w_v``
            ``U(+-sqrt(6 / (4E)))`` (torch's Xavier on the packed ``(3E, E)`` ``in_proj``),
            ``w_o`` ``U(+-1/sqrt(E))`` (``out_proj``'s Linear init), biases zeros.

    Parameters: ``w_q, w_k, w_v, w_o`` ``(E, E)`` (``x @ w``, the layout of
    :class:`~twinnn.Linear`), then ``b_q, b_k, b_v, b_o`` ``(E,)`` (absent with
    ``bias=False``). Buffer ``updates`` (int64, not saved) when ``dropout > 0``.

    Call: ``mha(query, key=None, value=None, mask=None, key_lengths=None, causal=False)``.

    * ``query`` ``(B, Tq, E)``; ``key`` ``(B, Tk, E)`` (default: ``query``); ``value``
      ``(B, Tk, E)`` (default: ``key``) -> ``(B, Tq, E)``.
    * ``mask``: bool, **True = may attend**, of shape ``(Tq, Tk)``, ``(B, Tq, Tk)`` or
      ``(B, H, Tq, Tk)`` (each dim its size or 1). torch's boolean ``attn_mask`` is the
      opposite (True = blocked): pass ``~attn_mask``. Keras' ``attention_mask`` is the same.
    * ``key_lengths``: ``(B,)`` integers in ``[0, Tk]``; keys at ``j >= key_lengths[b]`` are
      masked (torch's ``key_padding_mask`` is ``j >= key_lengths[b]``, True = padding).
    * ``causal=True``: query ``i`` attends keys ``j <= i`` (top-left aligned, as torch's
      ``is_causal``).

    The three are combined with AND. A query row with no allowed key attends to nothing: its
    attention result is zero, so its output is ``b_o`` -- never NaN, with finite gradients
    (torch's SDPA gives NaN on some kernels; Keras gives zeros or, on its dot-product fast
    path, a uniform average).
    """

    updates: Any  # the int64 dropout counter (only when dropout > 0)

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.embed_dim = check_positive_int(embed_dim, "MultiHeadAttention(embed_dim)")
        self.num_heads = check_positive_int(num_heads, "MultiHeadAttention(num_heads)")
        if self.embed_dim % self.num_heads:
            raise ArgumentError(
                f"MultiHeadAttention(num_heads) must divide embed_dim={self.embed_dim} (each "
                f"head gets embed_dim / num_heads features), got num_heads={self.num_heads}"
            )
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = check_rate(dropout, "MultiHeadAttention(dropout)")
        use_bias = check_bool(bias, "MultiHeadAttention(bias)")
        preset = init_.check_preset(init, "MultiHeadAttention")
        e = self.embed_dim
        if preset == "torch":
            bounds = [math.sqrt(6.0 / (4 * e))] * 3 + [1.0 / math.sqrt(e)]
        else:
            bounds = [math.sqrt(6.0 / (2 * e))] * 4
        self.w_q, self.w_k, self.w_v, self.w_o = (
            parameter(init_.uniform((e, e), bound)) for bound in bounds
        )
        biases = [parameter(init_.zeros((e,))) if use_bias else None for _ in range(4)]
        self.b_q, self.b_k, self.b_v, self.b_o = biases
        self.scale = 1.0 / math.sqrt(self.head_dim)
        #: The global index of this process's first row (data-parallel slices; see Dropout).
        self.row_offset = 0
        if self.dropout > 0.0:
            self.seed, self.layer = config.random_layer()
            self._constant = layer_constant(self.seed, self.layer)
            self.register_buffer("updates", np.zeros((), np.int64), persistent=False)

    def forward(
        self,
        query: Any,
        key: Any = None,
        value: Any = None,
        mask: Any = None,
        key_lengths: Any = None,
        causal: bool = False,
    ) -> Any:
        impl = self._backend
        query = self._sequence(impl, query, "query")
        key = query if key is None else self._sequence(impl, key, "key")
        value = key if value is None else self._sequence(impl, value, "value")
        is_causal = check_bool(causal, "MultiHeadAttention.forward(causal)")
        if key is not query:
            template = f"{_WHERE} 'key' must have the batch size of query {{y}}, got {{x}}"
            key, _ = require_dims(impl, key, query, [(0, 0)], template)
        if value is not key:
            template = f"{_WHERE} 'value' must have the batch and time of key {{y}}, got {{x}}"
            value, _ = require_dims(impl, value, key, [(0, 0), (1, 1)], template)
        allowed = None if mask is None else self._mask(impl, mask, query, key)
        lengths, message = (None, None)
        if key_lengths is not None:
            lengths, message = self._lengths(impl, key_lengths, query, key)
        q = impl.linear(query, self.w_q, self.b_q)
        k = impl.linear(key, self.w_k, self.b_k)
        v = impl.linear(value, self.w_v, self.b_v)
        dropout = self._dropout(impl)
        heads = impl.attention(
            q, k, v, self.num_heads, allowed, lengths, is_causal, self.scale, dropout, message
        )
        return impl.linear(heads, self.w_o, self.b_o)

    # --- argument checks ------------------------------------------------------------------------
    def _sequence(self, impl: Backend, x: Any, name: str) -> Any:
        tensor = impl.convert_float(x, name)
        shape = impl.static_shape(tensor)
        if len(shape) != 3 or shape[-1] != self.embed_dim:
            raise ShapeError(
                f"{_WHERE} '{name}' must have shape (batch, time, {self.embed_dim}) "
                f"(embed_dim={self.embed_dim}), got {describe_shape(shape)}"
            )
        return tensor

    def _mask(self, impl: Backend, mask: Any, query: Any, key: Any) -> Any:
        """``mask`` as a bool tensor of rank 4 (size-1 axes added), its dims checked."""
        where = f"{_WHERE} 'mask'"
        native = impl.is_native(mask)
        if native:
            dtype = impl.dtype_name(mask)
        else:
            tensor = impl.convert(mask, "mask")  # refuses what is not numbers or bools
            dtype = str(np.asarray(mask).dtype)
        if dtype != "bool":
            raise DTypeError(
                f"{where} must hold bools (True = may attend), got dtype {dtype} (torch's "
                f"boolean attn_mask is the opposite, True = blocked: pass ~attn_mask)"
            )
        if native:
            tensor = impl.convert(mask, "mask")  # on the device (or a BackendMismatchError)
        heads = self.num_heads
        layouts = (
            f"(time_q, time_k), (batch, time_q, time_k) or (batch, {heads}, time_q, time_k), "
            "each dim its size or 1"
        )
        shape = impl.static_shape(tensor)
        if len(shape) not in _MASK_AXES:
            raise ShapeError(f"{where} must have shape {layouts}, got {describe_shape(shape)}")
        batch, head, time_q, time_k = _MASK_AXES[len(shape)]
        of_query = [(a, j) for a, j in ((batch, 0), (time_q, 1)) if a is not None]
        template = f"{where} must have shape {layouts} (batch, time_q of query {{y}}), got {{x}}"
        tensor, _ = require_dims(impl, tensor, query, of_query, template, broadcast=True)
        template = f"{where} must have shape {layouts} (time_k of key {{y}}), got {{x}}"
        tensor, _ = require_dims(impl, tensor, key, [(time_k, 1)], template, broadcast=True)
        template = f"{where} must have shape {layouts} (num_heads={heads}), got {{x}}"
        if head is not None and shape[head] is None:  # traced: checked when the step runs
            like = impl.convert(np.zeros((heads,), np.float32), "heads")
            tensor, _ = require_dims(impl, tensor, like, [(head, 0)], template, broadcast=True)
        elif head is not None and shape[head] not in (1, heads):
            raise ShapeError(template.replace("{x}", describe_shape(shape)))
        if len(shape) == 2:  # (Tq, Tk) -> (1, 1, Tq, Tk)
            return impl.expand_dims(impl.expand_dims(tensor, 0), 0)
        return impl.expand_dims(tensor, 1) if len(shape) == 3 else tensor  # (B, 1, Tq, Tk)

    def _lengths(self, impl: Backend, lengths: Any, query: Any, key: Any) -> tuple[Any, str | None]:
        """``(key_lengths as int64, message)``: ``message`` None when the values are checked
        here, else the backend's (``Tk`` unknown while tracing)."""
        where = f"{_WHERE} 'key_lengths'"
        values = None if impl.is_native(lengths) else np.asarray(lengths)
        if values is not None and values.size == 0:
            values = values.astype(np.int64)  # [] is float64 to NumPy
        dtype = impl.dtype_name(lengths) if values is None else str(values.dtype)
        if dtype not in INTEGER_DTYPES:
            raise DTypeError(f"{where} must hold integers, got dtype {dtype}")
        tensor = impl.convert(lengths if values is None else values, "key_lengths", "int64")
        template = f"{where} must have shape (batch,), the batch of query {{y}}, got {{x}}"
        shape = impl.static_shape(tensor)
        if len(shape) != 1:
            raise ShapeError(fill_shapes(template, shape, impl.static_shape(query)))
        tensor, _ = require_dims(impl, tensor, query, [(0, 0)], template)
        time = impl.static_shape(key)[1]
        bound = "{time}" if time is None else str(time)
        expected = f"{where} must be in [0, {bound}] (0 <= length <= time of key)"
        if values is not None and time is not None:
            bad = values[(values < 0) | (values > time)]
            if bad.size:
                raise ArgumentError(f"{expected}, got values {bad[:5].tolist()}")
            return tensor, None
        message = f"{expected}, got lengths outside that range"
        if time is None:
            return tensor, message  # the backend checks when the step runs
        return impl.assert_in_range(tensor, 0, time + 1, "ArgumentError", message), None

    def _dropout(self, impl: Backend) -> Callable[[Any], Any] | None:
        """The dropout of this call's attention probabilities (None: none)."""
        if not self.training or self.dropout == 0.0:
            return None
        p, offset = self.dropout, self.row_offset
        updates = self.updates
        key = step_key(impl, self._constant, updates) if p < 1.0 else None
        self.updates = updates + 1
        return lambda probs: apply_dropout(impl, probs, p, key, offset)

    def __repr__(self) -> str:
        return (
            f"MultiHeadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"dropout={self.dropout}, bias={self.b_q is not None})"
        )
