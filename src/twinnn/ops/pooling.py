"""Pooling and ``flatten`` on channels-last tensors: ``max_pool``, ``avg_pool``, ``flatten``.

``x`` is ``(batch, width, channels)`` (1-D pooling) or ``(batch, height, width, channels)``
(2-D): the rank decides. Windows of ``pool_size`` move by ``strides`` (default: ``pool_size``,
non-overlapping) over each spatial dim; ``padding="valid"`` uses only complete windows,
``padding="same"`` TensorFlow's SAME rule on both backends: ``ceil(n / strides)`` outputs,
``total = max((ceil(n / s) - 1) * s + k - n, 0)`` padded elements, ``total // 2`` before and
the rest after (``twinnn.backends.window``). Padded elements never count: max pooling pads with
``-inf``, and SAME average pooling divides each window's sum by the number of *valid* elements
it holds, as TensorFlow does (``torch.nn.AvgPool2d(count_include_pad=True)``, torch's default,
divides by the window size instead).
"""

from __future__ import annotations

from typing import Any

from twinnn import config
from twinnn.errors import ShapeError, describe_shape
from twinnn.ops._window import padding_arg, spatial_arg, spatial_rank, window_input

__all__ = ["avg_pool", "flatten", "max_pool"]


def _pool(op: str, x: Any, pool_size: Any, strides: Any, padding: Any) -> Any:
    impl = config.current()
    x = impl.convert_float(x, "x")
    spatial = spatial_rank(impl, x, op)
    window = spatial_arg(pool_size, spatial, f"{op}(pool_size)")
    step = window if strides is None else spatial_arg(strides, spatial, f"{op}(strides)")
    mode = padding_arg(padding, spatial, f"{op}(padding)", explicit=False)
    ones = (1,) * spatial
    x, _ = window_input(impl, x, op, ("pool_size", window), step, ones, mode)
    pool = impl.max_pool if op == "max_pool" else impl.avg_pool
    return pool(x, window, step, mode == "same")


def max_pool(
    x: Any,
    pool_size: int | tuple[int, ...],
    strides: int | tuple[int, ...] | None = None,
    padding: str = "valid",
) -> Any:
    """Maximum over windows of ``pool_size``: float32 ``(B, W', C)`` / ``(B, H', W', C)``.

    ``pool_size`` and ``strides`` are an int or one int per spatial dim (``strides`` defaults
    to ``pool_size``); ``padding`` ``"valid"`` (``W' = (W - k) // s + 1``) or ``"same"``
    (``W' = ceil(W / s)``, TensorFlow's SAME padding, which never wins the maximum). The
    gradient goes to the first maximum of each window (both frameworks' kernels).
    """
    return _pool("max_pool", x, pool_size, strides, padding)


def avg_pool(
    x: Any,
    pool_size: int | tuple[int, ...],
    strides: int | tuple[int, ...] | None = None,
    padding: str = "valid",
) -> Any:
    """Mean over windows of ``pool_size``, shapes as :func:`max_pool`. With ``"same"`` a
    window that overlaps the padding is the mean of its valid elements only (TensorFlow's
    rule; torch's ``avg_pool2d`` counts the padding unless ``count_include_pad=False``)."""
    return _pool("avg_pool", x, pool_size, strides, padding)


def flatten(x: Any) -> Any:
    """``(B, d1, ..., dn)`` -> ``(B, d1 * ... * dn)`` in row-major (C) order, keeping the
    dtype; a ``(B,)`` tensor becomes ``(B, 1)`` (Keras' ``Flatten``). Channels last, so the
    features of a ``(B, H, W, C)`` map are ordered ``h, w, c`` (``torch.flatten`` of an NCHW
    map orders them ``c, h, w``: permute before flattening to port weights)."""
    impl = config.current()
    x = impl.convert(x, "x")
    shape = impl.static_shape(x)
    if not shape:
        raise ShapeError(
            f"flatten: argument 'x' must have a batch axis (rank >= 1), got {describe_shape(shape)}"
        )
    if len(shape) == 1:
        return impl.expand_dims(x, 1)
    if len(shape) == 2:
        return x
    return impl.flatten(x)
