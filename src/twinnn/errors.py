"""twinnn's exceptions.

Every error twinnn raises for bad input is a :class:`TwinnnError` that also subclasses the
builtin a Python user would expect (``ValueError``, ``TypeError``, ``ImportError``), so
``except ValueError`` keeps working. Messages name the argument, what was expected and what was
received.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "BackendError",
    "BackendMismatchError",
    "BackendNotInstalledError",
    "CheckpointError",
    "DTypeError",
    "DeviceError",
    "DistributedError",
    "GradientError",
    "ModuleError",
    "NonFiniteLossError",
    "ShapeError",
    "StateDictError",
    "TwinnnError",
]


class TwinnnError(Exception):
    """Base class of every twinnn error.

    twinnn never raises a bare ``TwinnnError``: every error it raises is one of the subclasses
    below, each also a ``ValueError``, ``TypeError`` or ``ImportError``.
    """


class BackendError(TwinnnError, ValueError):
    """An unknown backend name (``TWINNN_BACKEND`` or ``set_backend``)."""


class BackendNotInstalledError(BackendError, ImportError):
    """The backend's framework (torch or tensorflow) cannot be imported."""


class BackendMismatchError(TwinnnError, TypeError):
    """An object of one backend met a tensor or object of another."""


class DeviceError(TwinnnError, ValueError):
    """An unknown device string, or a GPU asked for where the backend sees none."""


class ShapeError(TwinnnError, ValueError):
    """A tensor whose shape does not match what the operation needs."""


class DTypeError(TwinnnError, TypeError):
    """A tensor whose dtype twinnn will not use silently."""


class ArgumentError(TwinnnError, ValueError):
    """An argument outside its allowed values (a negative learning rate, say)."""


class ArgumentTypeError(TwinnnError, TypeError):
    """An argument of the wrong Python type (a string where an int is needed, say)."""


class StateDictError(TwinnnError, ValueError):
    """A state dict with missing, unexpected, mis-shaped or wrongly typed entries."""


class CheckpointError(TwinnnError, ValueError):
    """A checkpoint file that cannot be read or does not fit the model (names the path)."""


class ModuleError(TwinnnError, TypeError):
    """A Module defined or used wrongly: no ``forward``, ``super().__init__()`` not called, or
    an attribute twinnn cannot register (a plain list of layers, another backend's parameter)."""


class GradientError(TwinnnError, ValueError):
    """A loss with no gradient path to some trained parameters (see ``allow_unused``)."""


class NonFiniteLossError(TwinnnError, ValueError):
    """``fit`` met a NaN or infinite loss (names the epoch and step)."""


class DistributedError(TwinnnError, RuntimeError):
    """Data-parallel training went wrong across processes: a rank could not join, another
    rank died or stalled past the timeout, or the ranks disagree (initial parameters, the
    number of steps). Names the rank(s)."""


#: Error classes by name: a graph assertion carries the name of the class a failed check
#: raises (``twinnn[ShapeError]: ...``), so a compiled step re-raises the same class as eager.
BY_NAME: dict[str, type[TwinnnError]] = {
    cls.__name__: cls
    for cls in (
        ArgumentError,
        ArgumentTypeError,
        BackendError,
        BackendMismatchError,
        CheckpointError,
        DTypeError,
        DeviceError,
        GradientError,
        ModuleError,
        ShapeError,
        StateDictError,
    )
}


def describe_shape(shape: object) -> str:
    """``(2, 3)``-style text for a shape, ``None`` dims shown as ``?``."""
    if not isinstance(shape, Iterable):
        return repr(shape)
    dims = tuple(shape)
    text = ", ".join("?" if d is None else str(int(d)) for d in dims)
    return f"({text},)" if len(dims) == 1 else f"({text})"
