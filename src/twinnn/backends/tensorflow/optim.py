"""tensorflow backend: what the neutral optimisers (``twinnn.optim``) need from TensorFlow.

The update formulas live in ``twinnn.optim``, written once with native arithmetic on these
pieces: slots (``tf.Variable``), a feed of the update's float32 scalars (one ``tf.Variable``
the host writes before each update, so a new learning rate never retraces a compiled step) and
the square root (``tf.sqrt`` is correctly rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from twinnn.backends.tensorflow.core import device_scope


class ScalarFeed:
    """The float32 scalars of one update in a ``tf.Variable``: written on the host, read (in
    the graph, when traced) by the update."""

    def __init__(self, count: int) -> None:
        with device_scope():
            self._variable = tf.Variable(tf.zeros([count], tf.float32), trainable=False)
        self._count = count

    def set(self, values: np.ndarray) -> None:
        self._variable.assign(np.asarray(values, dtype=np.float32))

    def read(self) -> Sequence[Any]:
        return tf.unstack(self._variable.read_value(), num=self._count) if self._count else []


def make_scalar_feed(count: int) -> ScalarFeed:
    return ScalarFeed(count)


def make_slot(param: Any, fill: float) -> tf.Variable:
    with device_scope():
        return tf.Variable(tf.fill(tf.shape(param), tf.constant(fill, tf.float32)), trainable=False)


sqrt = tf.sqrt


def clip(x: Any, low: float | None, high: float | None) -> Any:
    if low is not None:
        x = tf.maximum(x, tf.constant(low, x.dtype))
    if high is not None:
        x = tf.minimum(x, tf.constant(high, x.dtype))
    return x


def l2_norm(x: Any) -> Any:
    """``sqrt(sum(x**2))`` in one pass (``l2_loss`` is ``sum(x**2) / 2``, fused; times 2 is
    exact)."""
    return tf.sqrt(2.0 * tf.nn.l2_loss(x))


class TensorVector:
    """A list of tensors with element-wise arithmetic, one TensorFlow op per tensor (inside
    a traced step they are graph ops; the per-tensor loop costs nothing at run time)."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)

    def _zip(self, other: Any, op: Any) -> TensorVector:
        if isinstance(other, TensorVector):
            return TensorVector([op(a, b) for a, b in zip(self.items, other.items, strict=True)])
        return TensorVector([op(a, other) for a in self.items])

    def __add__(self, other: Any) -> TensorVector:
        return self._zip(other, lambda a, b: a + b)

    __radd__ = __add__

    def __sub__(self, other: Any) -> TensorVector:
        return self._zip(other, lambda a, b: a - b)

    def __mul__(self, other: Any) -> TensorVector:
        return self._zip(other, lambda a, b: a * b)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> TensorVector:
        return self._zip(other, lambda a, b: a / b)

    def sqrt(self) -> TensorVector:
        return TensorVector([tf.sqrt(t) for t in self.items])

    def maximum(self, other: Any) -> TensorVector:
        return self._zip(other, tf.maximum)

    def scale_(self, factor: Any) -> TensorVector:
        return self.__mul__(factor)  # tensors are immutable: nothing to reuse

    def as_list(self) -> list[Any]:
        return list(self.items)

    def write_to(self, variables: Sequence[Any]) -> None:
        for variable, value in zip(variables, self.items, strict=True):
            variable.assign(value)

    def subtract_from(self, variables: Sequence[Any]) -> None:
        for variable, value in zip(variables, self.items, strict=True):
            variable.assign_sub(value)


def vector(tensors: Sequence[Any]) -> TensorVector:
    return TensorVector(tensors)
