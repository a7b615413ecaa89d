"""tensorflow backend: element-wise math, reductions, shapes and gathers (``Backend`` ops).

Axes arrive non-negative and checked, operands of binary ops with one dtype, indices in range
(the neutral front checks them). Where TensorFlow's rule differs from torch's -- the gradient
of ``maximum``/``minimum`` at a tie, ``argmax`` over NaN -- the torch rule is implemented here,
so both backends give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

exp = tf.exp
log = tf.math.log
log1p = tf.math.log1p


def abs(x: Any) -> Any:
    return x if x.dtype.is_unsigned else tf.abs(x)


def _tensor_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """``(a, b)`` as tensors; a Python number takes the other operand's dtype."""
    if not tf.is_tensor(a):
        a = tf.convert_to_tensor(a, dtype=b.dtype)
    if not tf.is_tensor(b):
        b = tf.convert_to_tensor(b, dtype=a.dtype)
    return a, b


def _sum_to(grad: Any, axes: Any, shape: Any) -> Any:
    return tf.reshape(tf.reduce_sum(grad, axes), shape)


def _split_ties(select: Callable[[Any, Any], Any], beats: Callable[[Any, Any], Any]) -> Any:
    """``select`` (``tf.maximum``) with torch's gradient: the winner gets the gradient, a tie
    sends half to each operand (TensorFlow's own sends all of it to ``a``); ``beats(a, b)``
    is ``a > b`` for the maximum. With NaN both operands get the gradient, as in torch."""

    @tf.custom_gradient  # type: ignore[untyped-decorator]
    def op(a: Any, b: Any) -> Any:
        def grad(dy: Any) -> tuple[Any, Any]:
            zero = tf.zeros_like(dy)
            half = tf.where(tf.equal(a, b), dy * 0.5, dy)
            grad_a = tf.where(beats(b, a), zero, half)
            grad_b = tf.where(beats(a, b), zero, half)
            shape_a, shape_b = tf.shape(a), tf.shape(b)
            axes_a, axes_b = tf.raw_ops.BroadcastGradientArgs(s0=shape_a, s1=shape_b)
            return _sum_to(grad_a, axes_a, shape_a), _sum_to(grad_b, axes_b, shape_b)

        return select(a, b), grad

    return op


_maximum = _split_ties(tf.maximum, tf.greater)
_minimum = _split_ties(tf.minimum, tf.less)


def maximum(a: Any, b: Any) -> Any:
    a, b = _tensor_pair(a, b)
    return _maximum(a, b) if a.dtype.is_floating else tf.maximum(a, b)


def minimum(a: Any, b: Any) -> Any:
    a, b = _tensor_pair(a, b)
    return _minimum(a, b) if a.dtype.is_floating else tf.minimum(a, b)


def where(condition: Any, x: Any, y: Any) -> Any:
    return tf.where(condition, x, y)


def _axes(axis: int | Sequence[int] | None) -> Any:
    return axis if axis is None or isinstance(axis, int) else list(axis)


def max(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    # reduce_max splits the gradient evenly among ties, as torch's amax (measured).
    return tf.reduce_max(x, axis=_axes(axis), keepdims=keepdims)


def min(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    return tf.reduce_min(x, axis=_axes(axis), keepdims=keepdims)


def _first(x: Any, axis: int, extreme: Callable[..., Any]) -> Any:
    """The first index along ``axis`` where ``x`` equals its ``extreme`` (or is NaN: the
    reduction propagates it). ``tf.argmax`` skips NaN and does not promise the first of ties."""
    axis %= x.shape.rank
    hit = tf.equal(x, extreme(x, axis=axis, keepdims=True))
    if x.dtype.is_floating:
        hit = tf.logical_or(hit, tf.math.is_nan(x))
    size = tf.shape(x, out_type=tf.int64)[axis]
    positions = tf.reshape(tf.range(size), [-1] + [1] * (x.shape.rank - axis - 1))
    return tf.reduce_min(tf.where(hit, positions, size), axis=axis)


def argmax(x: Any, axis: int) -> Any:
    return _first(x, axis, tf.reduce_max)


def argmin(x: Any, axis: int) -> Any:
    return _first(x, axis, tf.reduce_min)


def logsumexp(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    return tf.reduce_logsumexp(x, axis=_axes(axis), keepdims=keepdims)


# --- shapes, gathers, dtypes ----------------------------------------------------------------


def transpose(x: Any, axes: Sequence[int]) -> Any:
    return tf.transpose(x, perm=list(axes))


def expand_dims(x: Any, axis: int) -> Any:
    return tf.expand_dims(x, axis)


def squeeze(x: Any, axes: Sequence[int]) -> Any:
    return tf.squeeze(x, axis=list(axes))


def stack(tensors: Sequence[Any], axis: int) -> Any:
    return tf.stack(list(tensors), axis=axis)


def split(x: Any, sizes: Sequence[int], axis: int) -> list[Any]:
    return list(tf.split(x, list(sizes), axis=axis))


def take(x: Any, indices: Any, axis: int) -> Any:
    return tf.gather(x, indices, axis=axis)


def _broadcast_except(x: Any, indices: Any, axis: int) -> tuple[Any, Any]:
    """``x`` and ``indices`` broadcast against each other in every axis but ``axis``."""
    static_x, static_i = x.shape.as_list(), indices.shape.as_list()
    others = [d for d in range(len(static_x)) if d != axis]
    if all(static_x[d] is not None and static_x[d] == static_i[d] for d in others):
        return x, indices
    shape_x, shape_i = tf.shape(x), tf.shape(indices)
    at_axis = tf.constant([d == axis for d in range(len(static_x))])
    common = tf.broadcast_dynamic_shape(
        tf.where(at_axis, 1, shape_x), tf.where(at_axis, 1, shape_i)
    )
    x = tf.broadcast_to(x, tf.where(at_axis, shape_x, common))
    return x, tf.broadcast_to(indices, tf.where(at_axis, shape_i, common))


def take_along_axis(x: Any, indices: Any, axis: int) -> Any:
    axis %= x.shape.rank
    x, indices = _broadcast_except(x, indices, axis)
    rank = x.shape.rank
    if axis == rank - 1:
        return tf.gather(x, indices, axis=axis, batch_dims=axis)
    # gather's batch_dims covers leading axes only: move ``axis`` last and back.
    perm = [d for d in range(rank) if d != axis] + [axis]
    back = [*range(axis), rank - 1, *range(axis, rank - 1)]
    picked = tf.gather(
        tf.transpose(x, perm), tf.transpose(indices, perm), axis=rank - 1, batch_dims=rank - 1
    )
    return tf.transpose(picked, back)


def one_hot(indices: Any, depth: int) -> Any:
    return tf.one_hot(indices, depth, dtype=tf.float32)


def cast(x: Any, dtype: str) -> Any:
    return tf.cast(x, dtype)
