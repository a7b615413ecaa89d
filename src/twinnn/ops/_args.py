"""Argument checks shared by the ops (host-side, against the shapes known before an op runs).

Each raises the same ``twinnn.errors`` exception with the same message on both backends,
naming the argument (``take(indices)``), what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np

from twinnn._checks import INTEGER_DTYPES
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError, describe_shape

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

Shape = tuple[int | None, ...]

#: Index dtypes every backend gathers with; other integer indices are cast to int64.
INDEX_DTYPES = frozenset({"int32", "int64"})


def as_int(value: object) -> int | None:
    """``value`` as an int when it is one (``np.int64`` too, ``bool`` not), else None."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    return None


def is_int(value: object) -> bool:
    return as_int(value) is not None


def describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def axis_of(value: object, shape: Shape, argument: str, of: str) -> int:
    """``value`` as a non-negative axis of a tensor ``of`` with static ``shape``."""
    index = as_int(value)
    if index is None:
        raise ArgumentTypeError(f"{argument} must be an int, got {describe(value)}")
    rank = len(shape)
    if not -rank <= index < rank:
        allowed = f"-{rank} <= axis < {rank}" if rank else "a 0-d tensor has no axes"
        raise ArgumentError(
            f"{argument} must be an axis of {of} of shape {describe_shape(shape)} "
            f"({allowed}), got {index}"
        )
    return index % rank


def new_axis(value: object, rank: int, argument: str) -> int:
    """``value`` as a non-negative axis of a result of rank ``rank`` (an inserted axis)."""
    index = as_int(value)
    if index is None:
        raise ArgumentTypeError(f"{argument} must be an int, got {describe(value)}")
    if not -rank <= index < rank:
        raise ArgumentError(
            f"{argument} must be an axis of the result of rank {rank} "
            f"(-{rank} <= axis < {rank}), got {index}"
        )
    return index % rank


def axes_arg(axis: object, argument: str) -> list[object] | None:
    """Type check of an ``axis`` argument (None, an int or a list/tuple of ints)."""
    if axis is None:
        return None
    if is_int(axis):
        return [axis]
    if isinstance(axis, (list, tuple)) and all(is_int(a) for a in axis):
        return list(axis)
    raise ArgumentTypeError(
        f"{argument} must be None, an int or a list/tuple of ints, got {describe(axis)}"
    )


def reduced_axes(
    op: str, shape: Shape, items: list[object] | None, axis: object
) -> tuple[int, ...] | None:
    """The non-negative axes a reduction ``op`` reduces (None: all; ``()``: none)."""
    if items is None:
        return None
    axes = [axis_of(a, shape, f"{op}(axis)", "x") for a in items]
    for position, a in enumerate(axes):
        if a in axes[:position]:
            raise ArgumentError(f"{op}(axis) must not repeat an axis, got {axis!r} (axis {a})")
    return tuple(axes)


def require_elements(op: str, shape: Shape, axes: Sequence[int] | None) -> None:
    """A reduction without identity (``max``, ``argmax``) needs an element to reduce."""
    reduced = range(len(shape)) if axes is None else axes
    if any(shape[a] == 0 for a in reduced):
        which = "" if axes is None else f" (axis {tuple(axes) if len(axes) > 1 else axes[0]})"
        raise ShapeError(
            f"{op}(x) must have elements along the reduced axes{which}, got x of shape "
            f"{describe_shape(shape)} (an empty reduction has no value)"
        )


def int_tensor(impl: Backend, value: object, name: str, argument: str) -> Any:
    """``value`` as a native integer tensor; floats and bools raise DTypeError (never cut)."""
    if impl.is_native(value) and impl.dtype_name(value) not in INTEGER_DTYPES:
        raise DTypeError(
            f"{argument} must hold integers, got a tensor of dtype {impl.dtype_name(value)}"
        )
    tensor_ = impl.convert(value, name)
    if impl.dtype_name(tensor_) not in INTEGER_DTYPES:
        dtype = np.asarray(value).dtype  # value is an array-like here (convert accepted it)
        raise DTypeError(f"{argument} must hold integers, got {type(value).__name__} of {dtype}")
    return tensor_


def index_tensor(impl: Backend, value: object, argument: str, high: int | None, what: str) -> Any:
    """``value`` as an int32/int64 tensor of ids in ``[0, high)`` (``high`` None: unknown
    while tracing, only ``>= 0`` is checked). Host data are checked here (the first bad id
    is named); a native tensor by ``impl.assert_in_range`` (graph-safe)."""
    indices = int_tensor(impl, value, "indices", argument)
    bound = "?" if high is None else str(high)
    expected = f"{argument} must hold ids in [0, {bound}) ({what}; negative ids are refused)"
    if not impl.is_native(value):
        ids = np.asarray(value)
        bad = (ids < 0) if high is None else (ids < 0) | (ids >= high)
        if bad.any():
            raise ArgumentError(f"{expected}, got {ids[bad].flat[0]}")
    if impl.dtype_name(indices) not in INDEX_DTYPES:
        indices = impl.cast(indices, "int64")
    if impl.is_native(value):
        top = 2**63 if high is None else high  # beyond the dtype: not checked
        indices = impl.assert_in_range(
            indices, 0, top, "ArgumentError", f"{expected}, got ids outside that range"
        )
    return indices


def drop_axes(impl: Backend, x: Any, axes: tuple[int, ...]) -> Any:
    """``x`` without its size-1 ``axes`` (non-negative): a reshape when the shape is known, a
    sum over the size-1 axes (exact) when tracing leaves dims unknown."""
    shape = impl.static_shape(x)
    if None in shape:
        return impl.sum(x, axes, False)
    return impl.reshape(x, [int(d or 0) for i, d in enumerate(shape) if i not in axes])


def check_broadcast(op: str, named: Sequence[tuple[str, Shape]]) -> None:
    """The static shapes ``named`` broadcast against each other (NumPy's rule; unknown dims
    pass)."""
    rank = max((len(shape) for _, shape in named), default=0)
    for d in range(1, rank + 1):
        sizes = {s[-d] for _, s in named if len(s) >= d and s[-d] is not None and s[-d] != 1}
        if len(sizes) > 1:
            shapes = ", ".join(f"{name} of shape {describe_shape(s)}" for name, s in named)
            raise ShapeError(
                f"{op}: the shapes must broadcast (NumPy's rule: equal dims or 1, from the "
                f"right), got {shapes}"
            )


def one_dtype(impl: Backend, op: str, named: Sequence[tuple[str, Any]]) -> list[Any]:
    """The operands of an element-wise ``op`` converted to one dtype.

    Equal dtypes stay; when one operand is float32 every operand becomes float32 (integers
    and bools cast, as the float ops do); otherwise host data (Python numbers, arrays) take
    the dtype of the native operands when their values fit it. Two native tensors of
    different integer dtypes raise :class:`~twinnn.errors.DTypeError`.
    """
    tensors = [impl.convert(value, name) for name, value in named]
    dtypes = [impl.dtype_name(t) for t in tensors]
    if len(set(dtypes)) == 1:
        return tensors
    if "float32" in dtypes:
        return [impl.convert_float(t, name) for (name, _), t in zip(named, tensors, strict=True)]
    native = {
        impl.dtype_name(t): name
        for (name, value), t in zip(named, tensors, strict=True)
        if impl.is_native(value)
    }
    if len(native) > 1:
        listed = " and ".join(f"{name} of dtype {dtype}" for dtype, name in native.items())
        raise DTypeError(
            f"{op} must get tensors of one dtype, got {listed}; cast one with twinnn.cast"
        )
    if native:
        ((target, owner),) = native.items()
    else:
        target, owner = np.result_type(*dtypes).name, ""
    out = []
    for (name, value), t in zip(named, tensors, strict=True):
        if owner and not impl.is_native(value) and not _fits(np.asarray(value), target):
            raise DTypeError(
                f"{op}: {name} must fit the dtype {target} of {owner}, got {type(value).__name__} "
                f"of {np.asarray(value).dtype} with values outside it; cast with twinnn.cast"
            )
        out.append(t if impl.dtype_name(t) == target else impl.cast(t, target))
    return out


def _fits(values: np.ndarray, dtype: str) -> bool:
    if values.size == 0:
        return True
    if dtype == "bool":
        return bool(np.isin(values, (0, 1)).all())
    info = np.iinfo(dtype)
    return bool(info.min <= values.min() and values.max() <= info.max)


def require_one_dtype(impl: Backend, tensors: Sequence[Any], argument: str) -> None:
    """Refuse a list of tensors of mixed dtypes (``concat``, ``stack``) with DTypeError."""
    dtypes = [impl.dtype_name(t) for t in tensors]
    for i, dtype in enumerate(dtypes):
        if dtype != dtypes[0]:
            raise DTypeError(
                f"{argument} must hold tensors of one dtype, got tensors[0] of dtype "
                f"{dtypes[0]} and tensors[{i}] of dtype {dtype}"
            )
