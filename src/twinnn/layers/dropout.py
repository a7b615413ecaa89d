"""``Dropout`` with masks that are identical on both backends, in every run with the same
seed, and for any number of data-parallel processes.

torch and TensorFlow each draw dropout masks from their own generator (torch's global
Philox/MT stream, TF's stateless Philox), so the same seed gives different masks on the two
frameworks, and a batch split over N processes gets other masks than the whole batch. twinnn
computes each mask bit from a counter-based integer hash instead -- a pure function of

* ``seed``: the value of the last :func:`twinnn.seed` call when the layer was built,
* ``layer``: the layer's number among the dropout layers built since that call (0, 1, ...),
* ``update``: how many training-mode forward calls the layer has run before this one (the
  non-persistent int64 buffer ``updates``, read and incremented inside the compiled step),
* ``e``: the element's *global* index ``(row_offset + row) * elements_per_row + j`` (int64),
  ``row`` the index along axis 0 and ``j`` the element's flat index within its row,

evaluated with integer tensor ops on the device (no host round trip, no retrace per step).
The hash is Chris Wellons' ``lowbias32`` (``M`` below), on unsigned 32-bit words::

    M(x):  x ^= x >> 16;  x *= 0x7FEB352D;  x ^= x >> 15;  x *= 0x846CA68B;  x ^= x >> 16
    c      = M(M(M(M(0x9E3779B9 ^ seed_lo) ^ seed_hi) ^ layer_lo) ^ layer_hi)  (host, per layer)
    key    = M(c ^ update_lo ^ (update_hi * 0x9E3779B9))                      (device, per call)
    bits_e = M(e_lo ^ key ^ M(e_hi))                                           (device, per element)
    keep_e = bits_e >= round(p * 2**32)

(all modulo ``2**32``; ``_lo``/``_hi`` are the low and high 32-bit words). ``M(0) == 0``, so
for the first ``2**32`` elements ``bits_e = M(e_lo ^ key)``; beyond, the high word changes the
key rather than being dropped. Kept values are multiplied by ``float32(1 / (1 - p))``
(computed in float64 on the host, rounded once): ``y = x * (keep ? scale : 0)``.

Because ``e`` is the global row's index, a batch split into slices with the right
``row_offset`` gets exactly the masks of the whole batch -- what data-parallel training needs.
The update counter is not in ``state_dict()`` (the names stay torch's), so a model restored
from a checkpoint starts the mask sequence again unless you set ``layer.updates`` yourself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import check_float
from twinnn.backends.base import Backend
from twinnn.distributed import context
from twinnn.errors import ArgumentError, ArgumentTypeError
from twinnn.module import Module

__all__ = [
    "Dropout",
    "apply_dropout",
    "check_rate",
    "keep_mask",
    "layer_constant",
    "mix32",
    "mix32_host",
    "step_key",
]

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: the initial value and the update's high-word factor
_MUL1, _MUL2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers (shifts 16, 15, 16)


def mix32(impl: Backend, words: Any) -> Any:
    """``lowbias32`` on a words tensor of the backend (any shape), on the device."""
    words = impl.xorshift_words(words, 16)
    words = impl.mul_words(words, _MUL1)
    words = impl.xorshift_words(words, 15)
    words = impl.mul_words(words, _MUL2)
    return impl.xorshift_words(words, 16)


def mix32_host(value: int) -> int:
    """``lowbias32`` of one unsigned 32-bit Python int (``mix32`` on the host)."""
    value ^= value >> 16
    value = (value * _MUL1) & _MASK
    value ^= value >> 15
    value = (value * _MUL2) & _MASK
    return value ^ (value >> 16)


def layer_constant(seed: int, layer: int) -> int:
    """The 32-bit constant ``c`` of a dropout layer: ``seed`` and ``layer`` (``0 <= each <
    2**64``) absorbed word by word, low word first, each through ``M``."""
    value = _GOLDEN
    for word in (seed & _MASK, seed >> 32 & _MASK, layer & _MASK, layer >> 32 & _MASK):
        value = mix32_host(value ^ word)
    return value


def step_key(impl: Backend, constant: int, updates: Any) -> Any:
    """The key of one call: ``M(c ^ update_lo ^ update_hi * 0x9E3779B9)``, a words scalar
    computed on the device from the int64 scalar ``updates`` (read, not changed)."""
    low, high = impl.int_words(updates)
    mixed = impl.xor_words(impl.xor_words(low, constant), impl.mul_words(high, _GOLDEN))
    return mix32(impl, mixed)


def check_rate(p: object, argument: str) -> float:
    """``p`` as a float in ``[0, 1]``, else :class:`~twinnn.errors.ArgumentError` (a
    :class:`~twinnn.errors.ArgumentTypeError` for a non-number)."""
    return check_float(p, argument, low=0.0, high=1.0)


def _check_row_offset(row_offset: object) -> int:
    if isinstance(row_offset, bool) or not isinstance(row_offset, (int, np.integer)):
        raise ArgumentTypeError(
            f"row_offset must be an int, got {type(row_offset).__name__} {row_offset!r}"
        )
    if row_offset < 0:
        raise ArgumentError(f"row_offset must be >= 0, got {row_offset}")
    return int(row_offset)


def keep_mask(impl: Backend, x: Any, p: float, key: Any, row_offset: int = 0) -> Any:
    """Bool tensor shaped like ``x``: True where element ``e`` is kept (``bits_e >= round(p *
    2**32)``), ``key`` from :func:`step_key`, ``e`` counted from row ``row_offset`` of axis 0
    (a rank-0 ``x`` is one row of one element)."""
    offset = context.row_offset(_check_row_offset(row_offset))  # + the slice's, when sharded
    index = impl.element_words(x, offset, lambda high: mix32(impl, high))
    bits = mix32(impl, impl.xor_words(index, key))
    return impl.words_at_least(bits, round(p * 2**32))


def apply_dropout(impl: Backend, x: Any, p: float, key: Any, row_offset: int = 0) -> Any:
    """``x * (keep ? float32(1 / (1 - p)) : 0)`` with :func:`keep_mask`'s ``keep``.

    ``x`` a float32 tensor of any shape (batch on axis 0); ``p`` in ``[0, 1]``: ``0`` returns
    ``x`` itself, ``1`` returns ``x * 0`` (zeros; NaN where ``x`` is inf or NaN, as torch). The
    gradient is the same mask: ``dy/dx = keep ? scale : 0``. Recurrent layers call this with
    their own ``key`` (:func:`step_key` of their own constant and counter).
    """
    if p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    scale = float(np.float32(1.0 / (1.0 - p)))
    return impl.apply_keep(x, keep_mask(impl, x, p, key, row_offset), scale)


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode; scale the rest by
    ``float32(1 / (1 - p))``. Eval mode: the identity.

    Args:
        p: the probability of dropping an element, in ``[0, 1]`` (torch's ``nn.Dropout(p)``,
            Keras' ``Dropout(rate)``). ``p=0`` is the identity; ``p=1`` gives zeros.

    Shapes: ``x`` of any shape, the batch on axis 0 -> the same shape.

    Formula: ``y = x * (keep ? float32(1 / (1 - p)) : 0)`` with ``keep_e = M(e_lo ^ key ^
    M(e_hi)) >= round(p * 2**32)``, ``M`` the ``lowbias32`` integer hash and ``e`` the
    element's int64 global index (the whole formula: ``twinnn.layers.dropout``'s module
    docstring, or "Dropout" in docs/layers.md). ``key`` derives from the seed of the last
    ``twinnn.seed`` call, this layer's number among the dropout layers built since then, and
    the number of training-mode calls so far (buffer ``updates``, int64, not saved in
    ``state_dict()``). So the masks are identical on both backends and in every run with the
    same seed, provided the layers are built in the same order (building them in another
    order changes which masks each layer gets). Inside a data-parallel step the element index
    counts from the slice's first global row (supplied by the step), so the masks of a batch
    split over several processes equal those of the whole batch; ``row_offset`` (default 0)
    adds an offset of your own.
    """

    updates: Any  # the int64 buffer (a native tensor or variable)

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_rate(p, "Dropout(p)")
        self.seed, self.layer = config.random_layer()
        self.row_offset = 0
        self._constant = layer_constant(self.seed, self.layer)
        self.register_buffer("updates", np.zeros((), np.int64), persistent=False)

    def forward(self, x: Any) -> Any:
        impl = self._backend
        x = impl.convert_float(x, "x")
        if not self.training:
            return x
        updates = self.updates
        # The key of this call, from the value before the increment (p = 0 or 1 needs none).
        key = step_key(impl, self._constant, updates) if 0.0 < self.p < 1.0 else None
        self.updates = updates + 1
        return apply_dropout(impl, x, self.p, key, self.row_offset)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"
