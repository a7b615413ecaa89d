"""Argument checks shared by the neutral front; each raises a ``twinnn.errors`` exception that
names the argument, the expected and the received value."""

from __future__ import annotations

import math
from numbers import Integral, Real

from twinnn.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_bool", "check_float", "check_positive_int"]


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
