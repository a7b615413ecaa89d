"""torch backend: multi-head scaled dot-product attention (``Backend.attention``).

Without dropout the heads run through ``F.scaled_dot_product_attention`` (SDPA), the fused
kernel ``nn.MultiheadAttention`` uses too: no mask, ``is_causal=True`` for a causal mask
alone, else an additive float mask (0 where allowed, ``-inf`` elsewhere, measured faster on
the CPU than SDPA's own conversion of a bool mask). With dropout (training mode) the
probabilities must exist as a tensor to take twinnn's hash mask, so the same formula runs as
explicit matmul / softmax ops.

A query row with no allowed key: SDPA's result for such rows depends on the kernel and
version (zeros on the CPU, NaN on some CUDA kernels), so the row is given every key (finite
values) and its result multiplied by 0 afterwards -- zero output, zero (finite) gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from twinnn.backends.torch import checks


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, E)`` -> ``(B, H, T, E / H)`` (a view where the layout allows)."""
    batch, time, embed = x.shape
    return x.reshape(batch, time, num_heads, embed // num_heads).transpose(1, 2)


def _check_lengths(lengths: torch.Tensor, time: int, message: str) -> None:
    """``0 <= lengths <= time``, else an ArgumentError (see :func:`checks.require`)."""
    if lengths.numel() != 0:
        ok = ((lengths >= 0) & (lengths <= time)).all()
        checks.require(ok, "ArgumentError", message.replace("{time}", str(time)))


def attention(
    q: Any,
    k: Any,
    v: Any,
    num_heads: int,
    mask: Any | None,
    key_lengths: Any | None,
    causal: bool,
    scale: float,
    dropout: Callable[[Any], Any] | None,
    lengths_message: str | None,
) -> Any:
    batch, time_q, embed = q.shape
    time_k = k.shape[1]
    heads_q, heads_k, heads_v = (_heads(t, num_heads) for t in (q, k, v))
    allowed = mask
    if key_lengths is not None:
        if lengths_message is not None:
            _check_lengths(key_lengths, time_k, lengths_message)
        steps = torch.arange(time_k, device=k.device)
        keys = (steps.unsqueeze(0) < key_lengths.unsqueeze(1)).view(batch, 1, 1, time_k)
        allowed = keys if allowed is None else allowed & keys
    may_be_empty = allowed is not None  # a row can be fully masked only by mask / lengths
    if causal and (allowed is not None or dropout is not None):
        tril = torch.ones(time_q, time_k, dtype=torch.bool, device=q.device).tril()
        allowed = tril if allowed is None else allowed & tril
        causal = False
    valid = bias = None
    if allowed is not None:
        if may_be_empty:
            valid = allowed.any(dim=-1, keepdim=True)
            allowed = allowed | ~valid  # an empty row attends to every key (finite values)
        bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
        bias.masked_fill_(~allowed, float("-inf"))
    if dropout is None:
        out = F.scaled_dot_product_attention(
            heads_q, heads_k, heads_v, attn_mask=bias, is_causal=causal, scale=scale
        )
    else:
        scores = torch.matmul(heads_q, heads_k.transpose(-2, -1)).mul_(scale)
        if bias is not None:
            scores = scores + bias
        out = torch.matmul(dropout(torch.softmax(scores, dim=-1)), heads_v)
    if valid is not None:
        out = out * valid  # empty rows: zero, with zero gradients
    return out.transpose(1, 2).reshape(batch, time_q, embed)
