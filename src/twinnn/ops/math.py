"""Element-wise math and reductions with NumPy's names and semantics.

Float ops (``exp``, ``log``, ``log1p``, ``sqrt``) cast integer and bool inputs to float32.
``abs``, ``square``, ``maximum``, ``minimum``, ``where``, ``clip``, ``max`` and ``min`` keep
the dtype, as NumPy does (see :func:`maximum` for operands of different dtypes); their
gradients exist for float32 inputs.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import INTEGER_DTYPES, check_bool
from twinnn.errors import ArgumentError, ArgumentTypeError
from twinnn.ops._args import (
    axes_arg,
    axis_of,
    check_broadcast,
    describe,
    one_dtype,
    reduced_axes,
    require_elements,
)

__all__ = [
    "abs",
    "argmax",
    "argmin",
    "clip",
    "exp",
    "log",
    "log1p",
    "max",
    "maximum",
    "min",
    "minimum",
    "sqrt",
    "square",
    "where",
]

_UNSIGNED = frozenset({"bool", "uint8", "uint16", "uint32", "uint64"})


def exp(x: Any) -> Any:
    """``e ** x`` element-wise, float32."""
    impl = config.current()
    return impl.exp(impl.convert_float(x, "x"))


def log(x: Any) -> Any:
    """Natural logarithm element-wise, float32 (``-inf`` at 0, NaN for negative ``x``, as
    NumPy without its warning)."""
    impl = config.current()
    return impl.log(impl.convert_float(x, "x"))


def log1p(x: Any) -> Any:
    """``log(1 + x)`` element-wise, float32, accurate where ``|x|`` is small."""
    impl = config.current()
    return impl.log1p(impl.convert_float(x, "x"))


def sqrt(x: Any) -> Any:
    """Square root element-wise, float32, correctly rounded on both backends (the same bits);
    gradient ``1 / (2 sqrt(x))``."""
    impl = config.current()
    return impl.sqrt(impl.convert_float(x, "x"))


def abs(x: Any) -> Any:
    """``|x|`` element-wise in ``x``'s dtype; gradient ``sign(x)`` (0 at 0, on both
    backends)."""
    impl = config.current()
    x = impl.convert(x, "x")
    return x if impl.dtype_name(x) in _UNSIGNED else impl.abs(x)


def square(x: Any) -> Any:
    """``x * x`` element-wise in ``x``'s dtype (integers wrap on overflow; bools give int8
    0/1, as NumPy)."""
    impl = config.current()
    x = impl.convert(x, "x")
    return impl.cast(x, "int8") if impl.dtype_name(x) == "bool" else impl.square(x)


def _binary(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    impl = config.current()
    a, b = one_dtype(impl, op, [("a", a), ("b", b)])
    check_broadcast(op, [("a", impl.static_shape(a)), ("b", impl.static_shape(b))])
    return a, b


def _on_bools(impl: Any, op: Any, *tensors: Any) -> Any:
    """``op`` on bool tensors through uint8 (no framework reduces or compares bools both)."""
    out = op(*(impl.cast(t, "uint8") for t in tensors))
    return impl.cast(out, "bool")


def maximum(a: Any, b: Any) -> Any:
    """Element-wise maximum of ``a`` and ``b``, broadcast with NumPy's rule; NaN propagates.

    Operands of different dtypes: if one is float32 both become float32; a Python number or
    array takes the dtype of a native integer operand when its values fit; two native tensors
    of different integer dtypes are a :class:`~twinnn.errors.DTypeError`.

    Gradient: the larger operand gets it; a tie sends half to each (torch's rule; TensorFlow
    gives all of it to ``a``: twinnn applies torch's rule on both backends).
    """
    impl = config.current()
    a, b = _binary("maximum(a, b)", a, b)
    if impl.dtype_name(a) == "bool":
        return _on_bools(impl, impl.maximum, a, b)
    return impl.maximum(a, b)


def minimum(a: Any, b: Any) -> Any:
    """Element-wise minimum; broadcasting, dtypes, NaN and ties as :func:`maximum`."""
    impl = config.current()
    a, b = _binary("minimum(a, b)", a, b)
    if impl.dtype_name(a) == "bool":
        return _on_bools(impl, impl.minimum, a, b)
    return impl.minimum(a, b)


def where(condition: Any, x: Any, y: Any) -> Any:
    """``x`` where ``condition`` holds, else ``y``; the three broadcast with NumPy's rule.

    ``condition`` is bool, or numbers read as ``!= 0`` (NumPy). ``x`` and ``y`` get one dtype
    as in :func:`maximum`. Gradient: ``x`` receives it where ``condition`` holds, ``y``
    elsewhere. A NaN or infinite gradient in the branch not taken still poisons the result's
    gradient (``0 * inf``) on both frameworks: guard the input of ``log``/``sqrt`` with an
    inner ``where`` too.
    """
    impl = config.current()
    cond = impl.convert(condition, "condition")
    if impl.dtype_name(cond) != "bool":
        cond = impl.cast(cond, "bool")
    x, y = one_dtype(impl, "where(condition, x, y)", [("x", x), ("y", y)])
    named = [("condition", cond), ("x", x), ("y", y)]
    check_broadcast("where(condition, x, y)", [(n, impl.static_shape(t)) for n, t in named])
    return impl.where(cond, x, y)


def _bound(value: object, argument: str) -> float | int | None:
    """A clip bound: None, an int (kept exact) or a float (not NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentTypeError(f"{argument} must be a number or None, got {describe(value)}")
    if isinstance(value, Integral):
        return int(value)
    if math.isnan(float(value)):
        raise ArgumentError(f"{argument} must not be NaN, got {value!r}")
    return float(value)


def _limit(bound: float | int | None, dtype: str) -> int | None:
    """An int bound brought into ``dtype``'s range (a bound beyond it limits nothing)."""
    if bound is None:
        return None
    info = np.iinfo(dtype)
    return builtins.min(builtins.max(int(bound), int(info.min)), int(info.max))


def clip(x: Any, a_min: float | None, a_max: float | None) -> Any:
    """``x`` limited to ``[a_min, a_max]`` element-wise: ``minimum(maximum(x, a_min), a_max)``
    (NumPy); either bound may be None (no limit on that side), not both. ``a_min > a_max``
    gives ``a_max`` everywhere (NumPy, torch). NaN stays NaN.

    Integer ``x`` with integer bounds keeps its dtype; otherwise (a float bound, bool ``x``)
    the result is float32. Gradient: 1 where ``a_min <= x <= a_max`` -- bounds included, as
    ``torch.clamp`` (unlike :func:`maximum`, which splits a tie) -- else 0.
    """
    impl = config.current()
    low, high = _bound(a_min, "clip(a_min)"), _bound(a_max, "clip(a_max)")
    if low is None and high is None:
        raise ArgumentError("clip(a_min, a_max) must set at least one bound, got both None")
    x = impl.convert(x, "x")
    dtype = impl.dtype_name(x)
    integral = all(b is None or isinstance(b, int) for b in (low, high))
    if dtype in INTEGER_DTYPES and integral:
        low, high = _limit(low, dtype), _limit(high, dtype)
    else:
        x = impl.convert_float(x, "x")
        low = None if low is None else float(low)
        high = None if high is None else float(high)
    return impl.clip(x, low, high)


def _reduce(
    op: str, x: Any, axis: Any, keepdims: Any
) -> tuple[Any, Any, tuple[int, ...] | None, bool]:
    impl = config.current()
    keep = check_bool(keepdims, f"{op}(keepdims)")
    items = axes_arg(axis, f"{op}(axis)")
    x = impl.convert(x, "x")
    axes = reduced_axes(op, impl.static_shape(x), items, axis)
    return impl, x, axes, keep


def max(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Maximum over ``axis`` (all axes when None, none when ``()``), in ``x``'s dtype; NaN
    propagates. An empty reduction is a :class:`~twinnn.errors.ShapeError` (NumPy raises).

    Gradient: split evenly among the elements equal to the maximum (``torch.amax`` and
    TensorFlow's ``reduce_max`` agree: a tie of 3 gives each a third).
    """
    impl, x, axes, keep = _reduce("max", x, axis, keepdims)
    if axes == ():
        return x
    require_elements("max", impl.static_shape(x), axes)
    if impl.dtype_name(x) == "bool":
        return _on_bools(impl, lambda t: impl.max(t, axes, keep), x)
    return impl.max(x, axes, keep)


def min(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """Minimum over ``axis``; everything else as :func:`max`."""
    impl, x, axes, keep = _reduce("min", x, axis, keepdims)
    if axes == ():
        return x
    require_elements("min", impl.static_shape(x), axes)
    if impl.dtype_name(x) == "bool":
        return _on_bools(impl, lambda t: impl.min(t, axes, keep), x)
    return impl.min(x, axes, keep)


def _arg(op: str, x: Any, axis: Any) -> tuple[Any, Any, int]:
    impl = config.current()
    x = impl.convert(x, "x")
    if axis is None:
        shape = impl.static_shape(x)
        require_elements(op, shape, None)
        x = impl.reshape(x, [-1])
        dim = 0
    else:
        dim = axis_of(axis, impl.static_shape(x), f"{op}(axis)", "x")
        require_elements(op, impl.static_shape(x), (dim,))
    if impl.dtype_name(x) == "bool":
        x = impl.cast(x, "uint8")
    return impl, x, dim


def argmax(x: Any, axis: int | None = None) -> Any:
    """int64 index of the maximum along ``axis`` (None: of the flattened ``x``, NumPy);
    the shape of ``x`` without ``axis``. Ties give the first index and a NaN counts as the
    maximum (the first NaN wins), as NumPy -- on both backends (``tf.argmax`` skips NaN).
    No gradient."""
    impl, x, dim = _arg("argmax", x, axis)
    return impl.argmax(x, dim)


def argmin(x: Any, axis: int | None = None) -> Any:
    """int64 index of the minimum along ``axis``; ties and NaN as :func:`argmax`."""
    impl, x, dim = _arg("argmin", x, axis)
    return impl.argmin(x, dim)
