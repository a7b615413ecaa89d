"""Argument checks shared by the neutral front; each raises a ``twinnn.errors`` exception that
names the argument, the expected and the received value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    ShapeError,
    TwinnnError,
    describe_shape,
)

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

#: dtype names (``Backend.dtype_name``) that count as integers: lengths, indices, ``time``.
INTEGER_DTYPES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)

__all__ = [
    "INTEGER_DTYPES",
    "check_bool",
    "check_float",
    "check_positive_int",
    "fill_shapes",
    "require_dims",
]


def check_positive_int(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ArgumentTypeError(f"{argument} must be an int, got {type(value).__name__} {value!r}")
    if int(value) <= 0:
        raise ArgumentError(f"{argument} must be > 0, got {value}")
    return int(value)


def check_bool(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{argument} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_float(
    value: object,
    argument: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    high_open: bool = False,
) -> float:
    """A finite real in ``[low, high]`` (``[low, high)`` when ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentTypeError(f"{argument} must be a float, got {type(value).__name__} {value!r}")
    number = float(value)
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or number < low or too_high:
        upper = f"{high})" if high_open else f"{high}]"
        raise ArgumentError(f"{argument} must be in [{low}, {upper}, got {value!r}")
    return number


def fill_shapes(template: str, x_shape: object, y_shape: object) -> str:
    """``template`` with ``{x}`` and ``{y}`` replaced by the shapes (``describe_shape``)."""
    return template.replace("{x}", describe_shape(x_shape)).replace("{y}", describe_shape(y_shape))


def require_dims(
    impl: Backend,
    x: Any,
    y: Any,
    pairs: Sequence[tuple[int, int]],
    template: str,
    *,
    broadcast: bool = False,
    error: type[TwinnnError] = ShapeError,
) -> tuple[Any, Any]:
    """``(x, y)`` checked to have ``x.shape[i] == y.shape[j]`` for each ``(i, j)`` in ``pairs``
    (or ``x.shape[i] == 1`` with ``broadcast``); ranks must already be right.

    Known dims are checked here; dims unknown while tracing (a compiled TensorFlow step) by
    the backend when the step runs, with the same error class and the same message
    (``template`` with the run-time shapes for ``{x}`` and ``{y}``). Use the returned ``x``:
    it is behind that run-time check, so nothing computed from it -- the loss, the update --
    runs when the check fails.
    """
    x_shape, y_shape = impl.static_shape(x), impl.static_shape(y)
    unknown = []
    for i, j in pairs:
        a, b = x_shape[i], y_shape[j]
        if a is None or b is None:
            unknown.append((i, j))
        elif a != b and not (broadcast and a == 1):
            raise error(fill_shapes(template, x_shape, y_shape))
    if unknown:
        return impl.assert_dims(x, y, unknown, broadcast, error.__name__, template)
    return x, y
