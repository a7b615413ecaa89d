"""Neutral tensor helpers with NumPy argument names (``axis``, ``keepdims``, never ``dim``).

Each accepts NumPy arrays, Python lists and native tensors of the current backend and returns
a native tensor (``torch.Tensor`` / ``tf.Tensor``) on the current device.

Arguments are checked here, once for both backends, against the shapes known before the op
runs (host-side Python, no device work); a bad axis, shape or dtype raises the same
``twinnn.errors`` exception with the same message on both backends. Inside a traced
TensorFlow graph, dims unknown while tracing are not checked.

Float ops (``relu``, ``tanh``, ``sigmoid``, ``matmul``, ``mean``) cast integer and bool inputs
to float32 on both backends; a native floating tensor that is not float32 (float64, say) is
refused with :class:`~twinnn.errors.DTypeError` rather than cast silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np

from twinnn import config
from twinnn._checks import INTEGER_DTYPES, check_bool
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError, describe_shape

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

__all__ = [
    "TENSOR_DTYPES",
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

Shape = tuple[int | None, ...]


# --- argument checks (host-side, static shapes) -------------------------------------------------


def _as_int(value: object) -> int | None:
    """``value`` as an int when it is one (``np.int64`` too, ``bool`` not), else None."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    return None


def _is_int(value: object) -> bool:
    return _as_int(value) is not None


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _axis(value: object, shape: Shape, argument: str, of: str) -> int:
    """``value`` as a non-negative axis of a tensor ``of`` with static ``shape``."""
    index = _as_int(value)
    if index is None:
        raise ArgumentTypeError(f"{argument} must be an int, got {_describe(value)}")
    rank = len(shape)
    if not -rank <= index < rank:
        allowed = f"-{rank} <= axis < {rank}" if rank else "a 0-d tensor has no axes"
        raise ArgumentError(
            f"{argument} must be an axis of {of} of shape {describe_shape(shape)} "
            f"({allowed}), got {index}"
        )
    return index % rank


def _axes_arg(axis: object, argument: str) -> list[object] | None:
    """Type check of an ``axis`` argument (None, an int or a list/tuple of ints)."""
    if axis is None:
        return None
    if _is_int(axis):
        return [axis]
    if isinstance(axis, (list, tuple)) and all(_is_int(a) for a in axis):
        return list(axis)
    raise ArgumentTypeError(
        f"{argument} must be None, an int or a list/tuple of ints, got {_describe(axis)}"
    )


def _int_tensor(impl: Backend, value: object, name: str, argument: str) -> Any:
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


def _drop_axes(impl: Backend, x: Any, axes: tuple[int, ...]) -> Any:
    """``x`` without its size-1 ``axes`` (non-negative): a reshape when the shape is known, a
    sum over the size-1 axes (exact) when tracing leaves dims unknown."""
    shape = impl.static_shape(x)
    if None in shape:
        return impl.sum(x, axes, False)
    return impl.reshape(x, [int(d or 0) for i, d in enumerate(shape) if i not in axes])


# --- ops ----------------------------------------------------------------------------------------


def tensor(data: Any, dtype: str = "float32") -> Any:
    """A native tensor of ``dtype`` (one of :data:`TENSOR_DTYPES`) holding ``data``, on the
    current device."""
    if not isinstance(dtype, (str, np.dtype, type)):
        raise ArgumentTypeError(
            f"tensor(dtype) must be a dtype name such as 'float32', got {_describe(dtype)}"
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
    return _drop_axes(impl, out, added)


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
    if not _is_int(axis):
        raise ArgumentTypeError(f"concat(axis) must be an int, got {_describe(axis)}")
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
    dim = _axis(axis, first, "concat(axis)", "the tensors")
    for i, shape in enumerate(shapes):
        for d, (size, size0) in enumerate(zip(shape, first, strict=True)):
            if d != dim and size is not None and size0 is not None and size != size0:
                raise ShapeError(
                    f"concat(tensors) must match in every dim but axis {dim}, got tensors[0] "
                    f"of shape {describe_shape(first)} and tensors[{i}] of shape "
                    f"{describe_shape(shape)} (dim {d})"
                )
    dtypes = [impl.dtype_name(t) for t in converted]
    for i, dtype in enumerate(dtypes):
        if dtype != dtypes[0]:
            raise DTypeError(
                f"concat(tensors) must hold tensors of one dtype, got tensors[0] of dtype "
                f"{dtypes[0]} and tensors[{i}] of dtype {dtype}"
            )
    return impl.concat(converted, dim)


def reshape(x: Any, shape: int | Sequence[int]) -> Any:
    """``x`` with a new shape of the same size (one ``-1`` allowed, inferred)."""
    impl = config.current()
    dims = [shape] if _is_int(shape) else shape
    if not isinstance(dims, (list, tuple)):
        raise ArgumentTypeError(
            f"reshape(shape) must be an int or a list/tuple of ints, got {_describe(shape)}"
        )
    new: list[int] = []
    for d in dims:
        value = _as_int(d)
        if value is None:
            raise ArgumentTypeError(
                f"reshape(shape) must hold ints, got {_describe(d)} in {tuple(dims)!r}"
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


def _reduced_axes(
    op: str, shape: Shape, items: list[object] | None, axis: object
) -> tuple[int, ...] | None:
    """The non-negative axes ``mean``/``sum`` reduce (None: all; ``()``: none)."""
    if items is None:
        return None
    axes = [_axis(a, shape, f"{op}(axis)", "x") for a in items]
    for position, a in enumerate(axes):
        if a in axes[:position]:
            raise ArgumentError(f"{op}(axis) must not repeat an axis, got {axis!r} (axis {a})")
    return tuple(axes)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (all axes when None, none when ``()``), as float32."""
    impl = config.current()
    keep = check_bool(keepdims, "mean(keepdims)")
    items = _axes_arg(axis, "mean(axis)")
    x = impl.convert_float(x, "x")
    axes = _reduced_axes("mean", impl.static_shape(x), items, axis)
    # torch reads dim=() as "every axis", TensorFlow as "no axis": NumPy's is the latter.
    return x if axes == () else impl.mean(x, axes, keep)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Sum over ``axis`` (all axes when None, none when ``()``), in ``x``'s dtype."""
    impl = config.current()
    keep = check_bool(keepdims, "sum(keepdims)")
    items = _axes_arg(axis, "sum(axis)")
    x = impl.convert(x, "x")
    axes = _reduced_axes("sum", impl.static_shape(x), items, axis)
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
        steps = _as_int(time)
        if steps is None:
            raise ArgumentTypeError(f"sequence_mask(time) must be an int, got {_describe(time)}")
        if steps < 0:
            raise ArgumentError(f"sequence_mask(time) must be >= 0, got {steps}")
        time = steps
    values = _int_tensor(impl, lengths, "lengths", "sequence_mask(lengths)")
    shape = impl.static_shape(values)
    if len(shape) != 1:
        raise ShapeError(
            f"sequence_mask(lengths) must be 1-d (batch,), got shape {describe_shape(shape)}"
        )
    return impl.sequence_mask(impl.convert(values, "lengths", dtype="int64"), time)
