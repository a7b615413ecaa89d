"""Framework-free helpers shared by the backends: how host data (NumPy arrays, nested lists,
Python numbers) become arrays a framework can take, and the errors for data that cannot.

Both backends call :func:`as_array`, so the same bad input gives the same message on both.
"""

from __future__ import annotations

import numpy as np

from twinnn.errors import ArgumentTypeError, DTypeError, ShapeError

__all__ = ["as_array"]

_HINTS = {
    "O": " (None, strings, other objects, or ints beyond int64)",
    "U": " (strings)",
    "S": " (bytes)",
}


def as_array(x: object, name: str, dtype: str | None) -> np.ndarray:
    """``x`` (not a native tensor) as a NumPy array: floats become float32, ``dtype`` forces
    one. Anything that is not a rectangular array of numbers or bools is refused, naming
    ``name``."""
    if x is None:
        raise ArgumentTypeError(
            f"argument {name!r} must be an array-like of numbers (a NumPy array, a nested list "
            "or a native tensor), got None"
        )
    try:
        array = np.asarray(x)
    except ValueError as exc:  # NumPy >= 1.24: inhomogeneous nested lists
        raise ShapeError(
            f"argument {name!r} must be rectangular (every row the same length), got a ragged "
            f"nested sequence ({exc})"
        ) from None
    if array.dtype.kind not in "biuf":
        hint = _HINTS.get(array.dtype.kind, "")
        raise DTypeError(
            f"argument {name!r} must hold numbers or bools, got {type(x).__name__} data of "
            f"dtype {array.dtype}{hint}"
        )
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    return array
