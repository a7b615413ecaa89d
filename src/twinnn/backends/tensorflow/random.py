"""tensorflow backend: the integer primitives of the counter-based dropout hash.

A *words* tensor is a ``uint32`` tensor: TensorFlow has unsigned shifts, multiplication
(wrapping modulo ``2**32``) and comparisons on it, on the CPU and the GPU, so each primitive
is one op. The bits equal the torch backend's (which works on ``int32`` bit patterns); tests
check both against NumPy.

Speed: Python ints are passed to the ops as they are (TensorFlow converts them to the other
operand's dtype in C), and a few ops are called as ``tf.raw_ops``: in eager mode a
``tf.constant`` per call, or the Python wrappers of ``*``, ``tf.range`` and ``tf.reshape``,
cost more than the op itself. Element indices below ``2**31`` -- every
tensor in practice -- come from one ``int32`` range reinterpreted as ``uint32`` (no copy);
larger ones take the ``int64`` route that also mixes in the high words. In a traced step every
axis but the last is unknown, so the route is picked by a ``tf.cond`` at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

_U32 = tf.uint32
_FAST_END = 2**31  # indices below this fit an int32


def element_words(x: Any, row_offset: Any, mix_high: Callable[[Any], Any]) -> Any:
    shape = x.shape
    if isinstance(row_offset, tf.Tensor) and not tf.executing_eagerly():
        row_offset = tf.cast(row_offset, tf.int64)  # a data-parallel offset, known at run time
    elif not isinstance(row_offset, int):
        row_offset = int(row_offset)
    if shape.is_fully_defined() and isinstance(
        row_offset, int
    ):  # eager, or XLA: the host knows every index
        n = shape.num_elements()
        rows = shape[0] if shape.rank else 1
        start = row_offset * (n // rows if rows else 0)
        low = (
            _narrow(start, start + n)
            if start + n <= _FAST_END
            else _wide(start, start + n, mix_high)
        )
        return tf.raw_ops.Reshape(tensor=low, shape=shape.as_list())
    size = tf.size(x, out_type=tf.int64)
    rows = tf.maximum(tf.shape(x, out_type=tf.int64)[0], 1)
    start = row_offset * (size // rows)
    end = start + size
    low = tf.cond(
        end <= _FAST_END,
        lambda: _narrow(tf.cast(start, tf.int32), tf.cast(end, tf.int32)),
        lambda: _wide(start, end, mix_high),
    )
    return tf.reshape(low, tf.shape(x))


def _narrow(start: Any, end: Any) -> Any:
    """Words of ``start, ..., end - 1`` (``end <= 2**31``): one int32 range, reinterpreted."""
    return tf.bitcast(tf.raw_ops.Range(start=start, limit=end, delta=1), _U32)


def _wide(start: Any, end: Any, mix_high: Callable[[Any], Any]) -> Any:
    """``e_lo ^ mix_high(e_hi)`` for ``e`` in ``start, ..., end - 1`` (int64)."""
    index = tf.range(start, end, dtype=tf.int64)
    return tf.bitwise.bitwise_xor(tf.cast(index, _U32), mix_high(_high(index)))


def _high(x: Any) -> Any:
    return tf.cast(tf.bitwise.right_shift(x, tf.constant(32, tf.int64)), _U32)


def int_words(x: Any) -> tuple[Any, Any]:
    value = tf.convert_to_tensor(x)  # one read of a variable
    return tf.cast(value, _U32), _high(value)  # the cast keeps the low 32 bits


def xor_words(a: Any, b: Any) -> Any:
    return tf.bitwise.bitwise_xor(a, b)


def xorshift_words(x: Any, shift: int) -> Any:
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, shift))


def mul_words(x: Any, factor: int) -> Any:
    return tf.raw_ops.Mul(x=x, y=factor)


def words_at_least(x: Any, threshold: int) -> Any:
    if threshold <= 0:
        return tf.ones_like(x, dtype=tf.bool)
    if threshold >= 2**32:
        return tf.zeros_like(x, dtype=tf.bool)
    return tf.math.greater_equal(x, threshold)


def apply_keep(x: Any, keep: Any, scale: float) -> Any:
    return tf.math.multiply(x, tf.where(keep, scale, 0.0))
