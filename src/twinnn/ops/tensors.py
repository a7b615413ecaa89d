"""Tensors and the first ops: ``tensor``, ``to_numpy``, ``relu``, ``tanh``, ``sigmoid``,
``matmul``, ``concat``, ``reshape``, ``mean``, ``sum``, ``sequence_mask``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import INTEGER_DTYPES, check_bool
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError, describe_shape
from twinnn.ops._args import (
    as_int,
    axes_arg,
    axis_of,
    describe,
    drop_axes,
    int_tensor,
    is_int,
    reduced_axes,
    require_one_dtype,
)

#: The dtypes :func:`tensor` makes (both frameworks support each fully).
TENSOR_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "float16",
    "float32",
    "float64",
)


def tensor(data: Any, dtype: str = "float32") -> Any:
    """A native tensor of ``dtype`` (one of :data:`TENSOR_DTYPES`) holding ``data``, on the
    current device."""
    if not isinstance(dtype, (str, np.dtype, type)):
        raise ArgumentTypeError(
            f"tensor(dtype) must be a dtype name such as 'float32', got {describe(dtype)}"
        )
    try:
        name: str | None = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in TENSOR_DTYPES:
        raise ArgumentError(f"tensor(dtype) must be one of {list(TENSOR_DTYPES)}, got {dtype!r}")
    return config.current().convert(data, "data", dtype=name)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a native tensor (or of any array-like)."""
    return config.current().to_numpy(x)


def relu(x: Any) -> Any:
    """``max(x, 0)`` element-wise."""
    impl = config.current()
    return impl.relu(impl.convert_float(x, "x"))


def tanh(x: Any) -> Any:
    """``tanh(x)`` element-wise."""
    impl = config.current()
    return impl.tanh(impl.convert_float(x, "x"))


def sigmoid(x: Any) -> Any:
    """``1 / (1 + exp(-x))`` element-wise."""
    impl = config.current()
    return impl.sigmoid(impl.convert_float(x, "x"))


def matmul(a: Any, b: Any) -> Any:
    """Matrix product with NumPy's rules: leading (batch) axes broadcast; a 1-d ``a`` is a row
    vector and a 1-d ``b`` a column vector, their added axis dropped from the result."""
    impl = config.current()
    a = impl.convert_float(a, "a")
    b = impl.convert_float(b, "b")
    shape_a, shape_b = impl.static_shape(a), impl.static_shape(b)
    for argument, shape in (("a", shape_a), ("b", shape_b)):
        if not shape:
            raise ShapeError(f"matmul({argument}) must have rank >= 1, got a 0-d tensor")
    both = f"got a of shape {describe_shape(shape_a)} and b of shape {describe_shape(shape_b)}"
    matrix_a = shape_a if len(shape_a) >= 2 else (1, shape_a[0])
    matrix_b = shape_b if len(shape_b) >= 2 else (shape_b[0], 1)
    inner_a, inner_b = matrix_a[-1], matrix_b[-2]
    if inner_a is not None and inner_b is not None and inner_a != inner_b:
        which = "only" if len(shape_b) == 1 else "second-to-last"
        raise ShapeError(
            f"matmul(a, b): a's last dim ({inner_a}) must equal b's {which} dim ({inner_b}); "
            + both
        )
    for dim_a, dim_b in zip(reversed(matrix_a[:-2]), reversed(matrix_b[:-2]), strict=False):
        if dim_a is None or dim_b is None or dim_a == dim_b or 1 in (dim_a, dim_b):
            continue
        raise ShapeError(
            f"matmul(a, b): the batch dims (all but the last two) must broadcast, "
            f"{dim_a} vs {dim_b}; {both}"
        )
    if len(shape_a) >= 2 and len(shape_b) >= 2:
        return impl.matmul(a, b)
    out = impl.matmul(
        impl.reshape(a, (1, -1)) if len(shape_a) == 1 else a,
        impl.reshape(b, (-1, 1)) if len(shape_b) == 1 else b,
    )
    rank = len(impl.static_shape(out))
    added = (rank - 2,) * (len(shape_a) == 1) + (rank - 1,) * (len(shape_b) == 1)
    return drop_axes(impl, out, added)


def concat(tensors: Sequence[Any], axis: int = -1) -> Any:
    """Join tensors of the same rank and dtype along ``axis``; every other dim must match."""
    impl = config.current()
    if not isinstance(tensors, (list, tuple)):
        raise ArgumentTypeError(
            f"concat(tensors) must be a list or tuple of tensors, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ArgumentError(
            f"concat(tensors) must hold at least one tensor, got an empty {type(tensors).__name__}"
        )
    if not is_int(axis):
        raise ArgumentTypeError(f"concat(axis) must be an int, got {describe(axis)}")
    converted = [impl.convert(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    shapes = [impl.static_shape(t) for t in converted]
    first = shapes[0]
    if not first:
        raise ShapeError("concat(tensors) must hold tensors of rank >= 1, got a 0-d tensors[0]")
    for i, shape in enumerate(shapes):
        if len(shape) != len(first):
            raise ShapeError(
                f"concat(tensors) must hold tensors of one rank, got tensors[0] of shape "
                f"{describe_shape(first)} and tensors[{i}] of shape {describe_shape(shape)}"
            )
    dim = axis_of(axis, first, "concat(axis)", "the tensors")
    for i, shape in enumerate(shapes):
        for d, (size, size0) in enumerate(zip(shape, first, strict=True)):
            if d != dim and size is not None and size0 is not None and size != size0:
                raise ShapeError(
                    f"concat(tensors) must match in every dim but axis {dim}, got tensors[0] "
                    f"of shape {describe_shape(first)} and tensors[{i}] of shape "
                    f"{describe_shape(shape)} (dim {d})"
                )
    require_one_dtype(impl, converted, "concat(tensors)")
    return impl.concat(converted, dim)


def reshape(x: Any, shape: int | Sequence[int]) -> Any:
    """``x`` with a new shape of the same size (one ``-1`` allowed, inferred)."""
    impl = config.current()
    dims = [shape] if is_int(shape) else shape
    if not isinstance(dims, (list, tuple)):
        raise ArgumentTypeError(
            f"reshape(shape) must be an int or a list/tuple of ints, got {describe(shape)}"
        )
    new: list[int] = []
    for d in dims:
        value = as_int(d)
        if value is None:
            raise ArgumentTypeError(
                f"reshape(shape) must hold ints, got {describe(d)} in {tuple(dims)!r}"
            )
        new.append(value)
    if any(d < -1 for d in new) or new.count(-1) > 1:
        raise ArgumentError(
            f"reshape(shape) must hold dims >= 0 and at most one -1, got {tuple(new)}"
        )
    x = impl.convert(x, "x")
    old = impl.static_shape(x)
    if None not in old:
        size = math.prod(d for d in old if d is not None)
        known = math.prod(d for d in new if d != -1)
        fits = known != 0 and size % known == 0 if -1 in new else known == size
        if not fits:
            raise ShapeError(
                f"reshape(shape) must keep the {size} elements of x of shape "
                f"{describe_shape(old)}, got shape {describe_shape(new)}"
            )
    return impl.reshape(x, new)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (all axes when None, none when ``()``), as float32."""
    impl = config.current()
    keep = check_bool(keepdims, "mean(keepdims)")
    items = axes_arg(axis, "mean(axis)")
    x = impl.convert_float(x, "x")
    axes = reduced_axes("mean", impl.static_shape(x), items, axis)
    # torch reads dim=() as "every axis", TensorFlow as "no axis": NumPy's is the latter.
    return x if axes == () else impl.mean(x, axes, keep)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Sum over ``axis`` (all axes when None, none when ``()``), in ``x``'s dtype."""
    impl = config.current()
    keep = check_bool(keepdims, "sum(keepdims)")
    items = axes_arg(axis, "sum(axis)")
    x = impl.convert(x, "x")
    axes = reduced_axes("sum", impl.static_shape(x), items, axis)
    return x if axes == () else impl.sum(x, axes, keep)


def sequence_mask(lengths: Any, time: int) -> Any:
    """Float32 mask ``(batch, time)``: ``1.0`` where ``t < lengths[b]``, else ``0.0``.

    ``lengths`` is 1-d and holds integers (floats raise :class:`~twinnn.errors.DTypeError`
    rather than being cut); ``time`` is an int ``>= 0`` (or, inside a traced step, a native
    0-d integer tensor), independent of ``max(lengths)``.
    """
    impl = config.current()
    if impl.is_native(time):
        if impl.dtype_name(time) not in INTEGER_DTYPES or impl.static_shape(time) != ():
            raise DTypeError(
                f"sequence_mask(time) must be an int or a 0-d integer tensor, got a tensor of "
                f"dtype {impl.dtype_name(time)} and shape {describe_shape(impl.static_shape(time))}"
            )
    else:
        steps = as_int(time)
        if steps is None:
            raise ArgumentTypeError(f"sequence_mask(time) must be an int, got {describe(time)}")
        if steps < 0:
            raise ArgumentError(f"sequence_mask(time) must be >= 0, got {steps}")
        time = steps
    values = int_tensor(impl, lengths, "lengths", "sequence_mask(lengths)")
    shape = impl.static_shape(values)
    if len(shape) != 1:
        raise ShapeError(
            f"sequence_mask(lengths) must be 1-d (batch,), got shape {describe_shape(shape)}"
        )
    return impl.sequence_mask(impl.convert(values, "lengths", dtype="int64"), time)
