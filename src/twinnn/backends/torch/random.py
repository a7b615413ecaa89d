"""torch backend: the integer primitives of the counter-based dropout hash.

A *words* tensor holds unsigned 32-bit values. torch has no unsigned shift or comparison on
its ``uint32`` dtype, so words are ``int32`` tensors holding the same bit pattern (two's
complement): multiplication wraps modulo ``2**32`` exactly as unsigned multiplication does, a
logical right shift is an arithmetic shift with the sign-extended bits masked off, and an
unsigned comparison flips the sign bit first. The bits are those of the unsigned formula
(the TensorFlow backend computes it on ``uint32``; tests check both against NumPy).

``int32`` rather than ``int64``: half the memory traffic per pass, and no overflow to avoid.
Element indices below ``2**31`` -- every tensor in practice -- come from one ``int32`` range;
larger ones take an ``int64`` route that also mixes in the high words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_WORD = 2**32
_SIGN = -(2**31)  # the int32 with only the sign bit set


def _signed(value: int) -> int:
    """The int32 holding the bits of ``value`` (``0 <= value < 2**32``)."""
    return value - _WORD if value >= 2**31 else value


def element_words(x: torch.Tensor, row_offset: Any, mix_high: Callable[[Any], Any]) -> Any:
    row_offset = int(row_offset)  # a data-parallel offset may come as a 0-d tensor
    n = x.numel()
    rows = x.shape[0] if x.dim() else 1
    start = row_offset * (n // rows if rows else 0)
    end = start + n
    if end <= 2**31:  # every index fits an int32 (every tensor in practice): one pass
        return torch.arange(start, end, dtype=torch.int32, device=x.device).view(x.shape)
    index = torch.arange(start, end, dtype=torch.int64, device=x.device)
    low = index.to(torch.int32)  # the low 32 bits (the conversion wraps)
    return (low ^ mix_high((index >> 32).to(torch.int32))).view(x.shape)


def int_words(x: torch.Tensor) -> tuple[Any, Any]:
    return x.to(torch.int32), (x >> 32).to(torch.int32)


def xor_words(a: Any, b: Any) -> Any:
    return a ^ (_signed(b) if isinstance(b, int) else b)


def xorshift_words(x: Any, shift: int) -> Any:
    shifted = x >> shift
    shifted &= (1 << (32 - shift)) - 1  # arithmetic -> logical shift
    shifted ^= x
    return shifted


def mul_words(x: Any, factor: int) -> Any:
    return x * _signed(factor)


def words_at_least(x: Any, threshold: int) -> Any:
    if threshold <= 0:
        return torch.ones_like(x, dtype=torch.bool)
    if threshold >= _WORD:
        return torch.zeros_like(x, dtype=torch.bool)
    return (x ^ _SIGN) >= threshold - 2**31  # unsigned order = signed order with the sign flipped


def apply_keep(x: Any, keep: Any, scale: float) -> Any:
    # (x * keep) * scale has the bits of x * (keep ? scale : 0) -- multiplying by 1 or 0 is
    # exact -- and skips torch.where, several times slower on the CPU for large tensors.
    return torch.mul(x, keep).mul_(scale)
