"""Neutral tensor helpers with NumPy argument names (``axis``, ``keepdims``, never ``dim``).

Each accepts NumPy arrays, Python lists and native tensors of the current backend and returns
a native tensor (``torch.Tensor`` / ``tf.Tensor``) on the current device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from twinnn import config

__all__ = [
    "concat",
    "matmul",
    "mean",
    "relu",
    "reshape",
    "sequence_mask",
    "sigmoid",
    "sum",
    "tanh",
    "tensor",
    "to_numpy",
]


def tensor(data: Any, dtype: str = "float32") -> Any:
    """A native tensor of ``dtype`` holding ``data``, on the current device."""
    return config.current().convert(data, "data", dtype=str(np.dtype(dtype)))


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a native tensor (or of any array-like)."""
    return config.current().to_numpy(x)


def relu(x: Any) -> Any:
    """``max(x, 0)`` element-wise."""
    impl = config.current()
    return impl.relu(impl.convert(x, "x"))


def tanh(x: Any) -> Any:
    """``tanh(x)`` element-wise."""
    impl = config.current()
    return impl.tanh(impl.convert(x, "x"))


def sigmoid(x: Any) -> Any:
    """``1 / (1 + exp(-x))`` element-wise."""
    impl = config.current()
    return impl.sigmoid(impl.convert(x, "x"))


def matmul(a: Any, b: Any) -> Any:
    """Matrix product with NumPy's broadcasting of leading axes."""
    impl = config.current()
    return impl.matmul(impl.convert(a, "a"), impl.convert(b, "b"))


def concat(tensors: Sequence[Any], axis: int = -1) -> Any:
    """Join tensors along ``axis``."""
    impl = config.current()
    return impl.concat([impl.convert(t, f"tensors[{i}]") for i, t in enumerate(tensors)], axis)


def reshape(x: Any, shape: Sequence[int]) -> Any:
    """``x`` with a new shape (one ``-1`` allowed)."""
    impl = config.current()
    return impl.reshape(impl.convert(x, "x"), shape)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (all axes when None)."""
    impl = config.current()
    return impl.mean(impl.convert(x, "x"), axis, keepdims)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Sum over ``axis`` (all axes when None)."""
    impl = config.current()
    return impl.sum(impl.convert(x, "x"), axis, keepdims)


def sequence_mask(lengths: Any, time: int) -> Any:
    """Float32 mask ``(batch, time)``: ``1.0`` where ``t < lengths[b]``, else ``0.0``."""
    impl = config.current()
    return impl.sequence_mask(impl.convert(lengths, "lengths", dtype="int64"), time)
