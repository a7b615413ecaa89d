"""``twinnn.report(step=..., **metrics)``: hand per-step metrics to ``twinnn compare``.

Outside ``twinnn compare`` it checks its arguments and does nothing else (no host round trip,
no file). Under ``twinnn compare`` each call appends one JSON line
``{"step": 3, "loss": 0.125, ...}`` to the file named by ``TWINNN_REPORT_FILE``, which
``compare`` sets for each run before the script starts; the environment is read once, at the
first call.

``compare`` also sets ``TWINNN_SEED`` (``--seed``, default 0) for both runs. A script that
wants both runs to start from the same weights seeds with it:

```python
twinnn.seed(int(os.environ.get("TWINNN_SEED", "0")))
```
"""

from __future__ import annotations

import json
import math
import os
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, TextIO, cast

import numpy as np

from twinnn import backends as _registry
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError, describe_shape

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

__all__ = ["REPORT_ENV", "SEED_ENV", "report"]

#: Environment variable naming the JSON-lines file ``report`` appends to (set by ``compare``).
REPORT_ENV = "TWINNN_REPORT_FILE"
#: Environment variable holding the seed ``compare`` gives both runs.
SEED_ENV = "TWINNN_SEED"

_UNREAD = object()
_sink: TextIO | object | None = _UNREAD  # the open report file, None when inactive


def _target() -> TextIO | None:
    """The report file, opened (line-buffered, append) at the first call; None if inactive."""
    global _sink
    if _sink is _UNREAD:
        path = os.environ.get(REPORT_ENV, "")
        _sink = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115
    return cast("TextIO | None", _sink)


def _check_value(name: str, value: Any) -> Backend | None:
    """Return the backend that must convert ``value`` (None for host numbers), after checks."""
    if isinstance(value, (bool, str, bytes)):
        raise ArgumentTypeError(
            f"report({name}=...) must be a number or a scalar tensor, got "
            f"{type(value).__name__} {value!r}"
        )
    if isinstance(value, (Real, np.generic)):
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ShapeError(
                f"report({name}=...) must be a scalar, got an array of shape "
                f"{describe_shape(value.shape)}"
            )
        return None
    for impl in _registry.loaded().values():
        if impl.is_native(value):
            shape = impl.static_shape(value)
            if None in shape or math.prod(d for d in shape if d is not None) != 1:
                raise ShapeError(
                    f"report({name}=...) must be a scalar tensor, got shape {describe_shape(shape)}"
                )
            return impl
    raise ArgumentTypeError(
        f"report({name}=...) must be a Python number, a NumPy scalar or a scalar "
        f"tensor of a loaded backend, got {type(value).__module__}.{type(value).__name__}"
    )


def _to_float(value: Any, impl: Backend | None) -> float:
    array = np.asarray(value if impl is None else impl.to_numpy(value))
    if array.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"report() metric values must be real numbers, got {array.dtype}")
    return float(array.reshape(()))


def report(*, step: int, **metrics: Any) -> None:
    """Record ``metrics`` at ``step`` for ``twinnn compare``; a no-op otherwise.

    Args:
        step: a non-negative int; ``compare`` lines both runs up by it. Reporting the same
            metric twice at one step keeps the last value.
        **metrics: name -> value; a Python/NumPy number or a native scalar tensor (converted
            with the backend's ``to_numpy``, only when ``compare`` is listening: one
            device-to-host copy per tensor then). Call it outside compiled code (not inside
            ``forward``): it needs the value on the host.

    Example:
        ```python
        for i in range(100):
            loss = step(x, y)
            twinnn.report(step=i, loss=loss)
        ```
    """
    if isinstance(step, bool) or not isinstance(step, Integral):
        raise ArgumentTypeError(f"report(step) must be an int, got {type(step).__name__} {step!r}")
    if step < 0:
        raise ArgumentError(f"report(step) must be >= 0, got {step}")
    if not metrics:
        raise ArgumentError("report() needs at least one metric, e.g. report(step=i, loss=loss)")
    converters = {name: _check_value(name, value) for name, value in metrics.items()}
    sink = _target()
    if sink is None:
        return
    record: dict[str, float | int] = {"step": int(step)}
    for name, value in metrics.items():
        record[name] = _to_float(value, converters[name])
    sink.write(json.dumps(record) + "\n")
