"""Shapes, gathers and dtypes with NumPy's names and semantics: ``transpose``,
``expand_dims``, ``squeeze``, ``stack``, ``split``, ``take``, ``take_along_axis``, ``one_hot``,
``cast``. Each keeps the dtype of its input (``one_hot`` makes float32, ``cast`` any dtype)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twinnn import config
from twinnn._checks import check_positive_int
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError, describe_shape
from twinnn.ops._args import (
    Shape,
    as_int,
    axes_arg,
    axis_of,
    describe,
    index_tensor,
    is_int,
    new_axis,
    require_one_dtype,
)
from twinnn.ops.tensors import TENSOR_DTYPES

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

__all__ = [
    "cast",
    "expand_dims",
    "one_hot",
    "split",
    "squeeze",
    "stack",
    "take",
    "take_along_axis",
    "transpose",
]


def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
    """``x`` with its axes permuted: result axis ``i`` is ``x``'s axis ``axes[i]``; None
    reverses them (a matrix transpose for 2-d ``x``). ``axes`` is a permutation of
    ``range(rank)`` (negative axes count from the end)."""
    impl = config.current()
    x = impl.convert(x, "x")
    shape = impl.static_shape(x)
    rank = len(shape)
    if axes is None:
        return impl.transpose(x, list(range(rank - 1, -1, -1))) if rank > 1 else x
    if not isinstance(axes, (list, tuple)) or not all(is_int(a) for a in axes):
        raise ArgumentTypeError(
            f"transpose(axes) must be None or a list/tuple of ints, got {describe(axes)}"
        )
    perm = [axis_of(a, shape, "transpose(axes)", "x") for a in axes]
    if sorted(perm) != list(range(rank)):
        raise ArgumentError(
            f"transpose(axes) must be a permutation of the {rank} axes of x of shape "
            f"{describe_shape(shape)}, got {tuple(axes)!r}"
        )
    return x if perm == list(range(rank)) else impl.transpose(x, perm)


def expand_dims(x: Any, axis: int | Sequence[int]) -> Any:
    """``x`` with a size-1 axis inserted at ``axis`` (an int or a list/tuple of ints, each an
    axis of the result: ``-(rank+1) <= axis <= rank`` for one), as NumPy."""
    impl = config.current()
    items = axes_arg(axis, "expand_dims(axis)")
    if items is None:
        raise ArgumentTypeError(
            "expand_dims(axis) must be an int or a list/tuple of ints, got None"
        )
    x = impl.convert(x, "x")
    rank = len(impl.static_shape(x)) + len(items)
    axes = [new_axis(a, rank, "expand_dims(axis)") for a in items]
    if len(set(axes)) != len(axes):
        raise ArgumentError(f"expand_dims(axis) must not repeat an axis, got {axis!r}")
    for a in sorted(axes):
        x = impl.expand_dims(x, a)
    return x


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> Any:
    """``x`` without size-1 axes: every one when ``axis`` is None, else the named ones, each
    of which must have size 1 (:class:`~twinnn.errors.ShapeError` otherwise, as NumPy)."""
    impl = config.current()
    items = axes_arg(axis, "squeeze(axis)")
    x = impl.convert(x, "x")
    shape = impl.static_shape(x)
    if items is None:
        if None in shape:
            raise ShapeError(
                f"squeeze(axis=None) needs every dim of x known, got shape "
                f"{describe_shape(shape)} while tracing; name the axes to drop"
            )
        axes = [a for a, d in enumerate(shape) if d == 1]
    else:
        axes = [axis_of(a, shape, "squeeze(axis)", "x") for a in items]
        if len(set(axes)) != len(axes):
            raise ArgumentError(f"squeeze(axis) must not repeat an axis, got {axis!r}")
        for a in axes:
            if shape[a] is not None and shape[a] != 1:
                raise ShapeError(
                    f"squeeze(axis) must name axes of size 1, got axis {a} of size {shape[a]} "
                    f"in x of shape {describe_shape(shape)}"
                )
    return impl.squeeze(x, sorted(axes)) if axes else x


def _tensor_list(op: str, tensors: object) -> list[Any]:
    if not isinstance(tensors, (list, tuple)):
        raise ArgumentTypeError(
            f"{op}(tensors) must be a list or tuple of tensors, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ArgumentError(
            f"{op}(tensors) must hold at least one tensor, got an empty {type(tensors).__name__}"
        )
    impl = config.current()
    return [impl.convert(t, f"tensors[{i}]") for i, t in enumerate(tensors)]


def stack(tensors: Sequence[Any], axis: int = 0) -> Any:
    """Tensors of one shape ``S`` and one dtype joined along a new axis: the result has
    shape ``S[:axis] + (len(tensors),) + S[axis:]`` (``axis`` an axis of the result)."""
    impl = config.current()
    converted = _tensor_list("stack", tensors)
    shapes = [impl.static_shape(t) for t in converted]
    first = shapes[0]
    for i, shape in enumerate(shapes):
        same = len(shape) == len(first) and all(
            a is None or b is None or a == b for a, b in zip(shape, first, strict=True)
        )
        if not same:
            raise ShapeError(
                f"stack(tensors) must hold tensors of one shape, got tensors[0] of shape "
                f"{describe_shape(first)} and tensors[{i}] of shape {describe_shape(shape)}"
            )
    require_one_dtype(impl, converted, "stack(tensors)")
    return impl.stack(converted, new_axis(axis, len(first) + 1, "stack(axis)"))


def split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Any]:
    """``x`` cut along ``axis`` into a list of tensors, as ``np.split``.

    An int ``N`` makes ``N`` equal sections (the dim must divide by ``N``:
    :class:`~twinnn.errors.ArgumentError` otherwise); a list of split points ``[p1, p2, ...]``
    gives ``x[:p1], x[p1:p2], ..., x[pk:]`` along ``axis``. Points must be non-decreasing and
    within ``[0, dim]`` (NumPy also takes out-of-order or out-of-range points and returns
    overlapping or clipped pieces; twinnn refuses them). The dim must be known.
    """
    impl = config.current()
    x = impl.convert(x, "x")
    shape = impl.static_shape(x)
    dim = axis_of(axis, shape, "split(axis)", "x")
    size = shape[dim]
    sections = as_int(indices_or_sections)
    points: list[int] = []
    if sections is None:
        if not isinstance(indices_or_sections, (list, tuple)) or not all(
            is_int(p) for p in indices_or_sections
        ):
            raise ArgumentTypeError(
                f"split(indices_or_sections) must be an int or a list/tuple of ints, got "
                f"{describe(indices_or_sections)}"
            )
        points = [int(p) for p in indices_or_sections]
    elif sections <= 0:
        raise ArgumentError(f"split(indices_or_sections) must be > 0, got {sections}")
    if size is None:
        raise ShapeError(
            f"split(x) needs the size of axis {dim} known, got x of shape "
            f"{describe_shape(shape)} while tracing"
        )
    if sections is not None:
        if size % sections:
            raise ArgumentError(
                f"split(indices_or_sections) must divide the size {size} of axis {dim} of x "
                f"of shape {describe_shape(shape)} into equal sections, got {sections}"
            )
        sizes = [size // sections] * sections
    else:
        bounds = [0, *points, size]
        if any(p < 0 or p > size for p in points) or any(
            a > b for a, b in itertools.pairwise(bounds)
        ):
            raise ArgumentError(
                f"split(indices_or_sections) must hold non-decreasing split points in "
                f"[0, {size}] (the size of axis {dim} of x), got {list(points)}"
            )
        sizes = [b - a for a, b in itertools.pairwise(bounds)]
    return impl.split(x, sizes, dim)


def _gather_axis(
    impl: Backend, x: Any, axis: object, function: str
) -> tuple[Any, int, int | None, str]:
    """``(x, dim, size, what)`` for a gather along ``axis``: ``x`` as a native tensor (made
    1-d when ``axis`` is None), the non-negative axis, its size (None: unknown while tracing)
    and how the id range is described in errors."""
    x = impl.convert(x, "x")
    if axis is None:
        dims = impl.static_shape(x)
        size = None if None in dims else math.prod(d for d in dims if d is not None)
        return impl.reshape(x, [-1]), 0, size, "the size of the flattened x"
    dim = axis_of(axis, impl.static_shape(x), f"{function}(axis)", "x")
    return x, dim, impl.static_shape(x)[dim], f"the size of x along axis {dim}"


def take(x: Any, indices: Any, axis: int | None = None) -> Any:
    """``np.take``: the slices of ``x`` at ``indices`` along ``axis`` (None: of the flattened
    ``x``). The result has shape ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``.

    ``indices`` hold integers in ``[0, x.shape[axis])``; a negative or too large id is an
    :class:`~twinnn.errors.ArgumentError` on both backends -- checked on the host for host
    data, by a graph-safe check for native tensors (TensorFlow's GPU gather would return
    zeros silently; torch raises a device assertion). Gradient: added into ``x`` at the ids
    (a repeated id accumulates).
    """
    impl = config.current()
    x, dim, size, what = _gather_axis(impl, x, axis, "take")
    ids = index_tensor(impl, indices, "take(indices)", size, what)
    return impl.take(x, ids, dim)


def take_along_axis(x: Any, indices: Any, axis: int | None = -1) -> Any:
    """``np.take_along_axis``: ``out[..., j, ...] = x[..., indices[..., j, ...], ...]`` along
    ``axis`` (None: of the flattened ``x``, ``indices`` 1-d).

    ``x`` and ``indices`` have one rank; their other axes broadcast (NumPy's rule), so the
    result has the broadcast shape with ``indices.shape[axis]`` at ``axis``. Ids are checked
    as in :func:`take`. Gradient: added into ``x`` at the ids.
    """
    impl = config.current()
    x, dim, size, what = _gather_axis(impl, x, axis, "take_along_axis")
    ids = index_tensor(impl, indices, "take_along_axis(indices)", size, what)
    _check_along(impl.static_shape(x), impl.static_shape(ids), dim)
    return impl.take_along_axis(x, ids, dim)


def _check_along(x_shape: Shape, ids_shape: Shape, dim: int) -> None:
    both = f"got x of shape {describe_shape(x_shape)} and indices of shape " + describe_shape(
        ids_shape
    )
    if len(ids_shape) != len(x_shape):
        raise ShapeError(f"take_along_axis(indices) must have the rank of x; {both}")
    for d, (a, b) in enumerate(zip(x_shape, ids_shape, strict=True)):
        if d != dim and a is not None and b is not None and a != b and 1 not in (a, b):
            raise ShapeError(
                f"take_along_axis(indices) must broadcast against x in every axis but {dim} "
                f"(equal dims or 1); {both} (axis {d})"
            )


def one_hot(indices: Any, depth: int) -> Any:
    """Float32 ``indices.shape + (depth,)``: ``1.0`` at ``[..., indices[...]]``, else ``0.0``.

    ``indices`` hold integers in ``[0, depth)``; others are an
    :class:`~twinnn.errors.ArgumentError` on both backends (TensorFlow's ``one_hot`` gives a
    row of zeros silently, torch raises), checked as in :func:`take`. No gradient.
    """
    impl = config.current()
    size = check_positive_int(depth, "one_hot(depth)")
    ids = index_tensor(impl, indices, "one_hot(indices)", size, "the depth")
    return impl.one_hot(ids, size)


def cast(x: Any, dtype: str) -> Any:
    """``x`` as ``dtype``, one of :data:`~twinnn.ops.TENSOR_DTYPES` (``"float32"``,
    ``"int64"``, ...).

    Takes native tensors of any of those dtypes (a float64 tensor too: this is how to bring
    one to float32). Floats become integers by truncation toward zero, numbers become bools
    by ``!= 0`` (both frameworks, NumPy); a float out of the integer dtype's range, or NaN,
    gives an undefined value (as in C and NumPy). The gradient flows through float-to-float
    casts and stops at integer or bool results.
    """
    impl = config.current()
    if not isinstance(dtype, str):
        raise ArgumentTypeError(
            f"cast(dtype) must be a dtype name such as 'float32', got {describe(dtype)}"
        )
    if dtype not in TENSOR_DTYPES:
        raise ArgumentError(f"cast(dtype) must be one of {list(TENSOR_DTYPES)}, got {dtype!r}")
    if not impl.is_native(x):
        return impl.convert(x, "x", dtype=dtype)
    x = impl.convert(x, "x", dtype=impl.dtype_name(x))  # checks it, keeps its dtype
    return x if impl.dtype_name(x) == dtype else impl.cast(x, dtype)
