"""tensorflow backend: convolutions and pooling on channels-last tensors (``Backend.conv``,
``max_pool``, ``avg_pool``, ``flatten``, ``assert_min_dims``).

TensorFlow is channels last already (``NHWC``, kernel ``(k..., in, out)``: twinnn's layouts).
A 1-D problem runs as a 2-D one of height 1 (what ``tf.nn.conv1d`` does too); a dilated
one through ``tf.nn.convolution`` (space to batch), whose gradient runs on a CPU. ``"same"`` is
TensorFlow's own ``SAME`` (computed from the run-time sizes, so it works on dims unknown while
tracing); explicit pads go to ``tf.nn.conv2d``'s explicit ``padding`` list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from twinnn.backends.tensorflow.checks import graph_check, value_checks_enabled
from twinnn.errors import BY_NAME, describe_shape


def _padding(padding: str | Sequence[tuple[int, int]], one_d: bool) -> Any:
    if isinstance(padding, str):
        return padding.upper()
    pairs = [(0, 0), *padding] if one_d else list(padding)
    if not any(b or a for b, a in pairs):
        return "VALID"
    return [[0, 0], *[[int(b), int(a)] for b, a in pairs], [0, 0]]


def conv(
    x: Any,
    weight: Any,
    bias: Any | None,
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
) -> Any:
    """N-d convolution (N = 1, 2), channels last; ``weight`` ``(k..., in, out)``."""
    one_d = x.shape.rank == 3
    if one_d:
        x, weight = tf.expand_dims(x, 1), tf.expand_dims(weight, 0)
    lead = [1, 1] if one_d else [1]
    pads = _padding(padding, one_d)
    if set(dilation) == {1}:
        y = tf.nn.conv2d(x, weight, strides=[*lead, *strides, 1], padding=pads)
    else:
        # The CPU Conv2D kernels have no gradient for dilation > 1: tf.nn.convolution's
        # space-to-batch form has (Keras' path too). The front refuses strides > 1 with it.
        if isinstance(pads, list):
            x, pads = tf.pad(x, pads), "VALID"
        y = tf.nn.convolution(x, weight, padding=pads, dilations=[*lead[1:], *dilation])
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    return tf.squeeze(y, 1) if one_d else y


def _pool(op: Any, x: Any, window: Sequence[int], strides: Sequence[int], same: bool) -> Any:
    one_d = x.shape.rank == 3
    lead = [1] if one_d else []
    y = op(
        tf.expand_dims(x, 1) if one_d else x,
        [*lead, *window],
        [*lead, *strides],
        "SAME" if same else "VALID",
    )
    return tf.squeeze(y, 1) if one_d else y


def max_pool(x: Any, window: Sequence[int], strides: Sequence[int], same: bool) -> Any:
    """Max over each window (padding never wins)."""
    return _pool(tf.nn.max_pool2d, x, window, strides, same)


def avg_pool(x: Any, window: Sequence[int], strides: Sequence[int], same: bool) -> Any:
    """Mean over the valid (unpadded) elements of each window: TensorFlow's SAME rule."""
    return _pool(tf.nn.avg_pool2d, x, window, strides, same)


def flatten(x: Any) -> Any:
    """``(B, ...)`` -> ``(B, prod(...))``; the last dim is static when the others are."""
    dims = tf.shape(x)
    rest = x.shape[1:].num_elements()
    size = tf.reduce_prod(dims[1:]) if rest is None else rest
    return tf.reshape(x, tf.stack([dims[0], size]))


def assert_min_dims(x: Any, minimums: Sequence[tuple[int, int]], error: str, template: str) -> Any:
    """``x``, checked to have ``x.shape[axis] >= low`` for each ``(axis, low)``."""
    if tf.executing_eagerly():
        shape = tuple(x.shape.as_list())
        if any(shape[axis] < low for axis, low in minimums):
            raise BY_NAME[error](template.replace("{x}", describe_shape(shape)))
        return x
    if not value_checks_enabled() or not minimums:
        return x
    dims = tf.shape(x)
    ok = tf.reduce_all(tf.stack([dims[axis] >= low for axis, low in minimums]))
    check = graph_check(ok, error, template.replace("{x}", "{0}"), [("shape", dims)])
    with tf.control_dependencies([check]):
        return tf.identity(x)
