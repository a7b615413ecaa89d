"""torch backend: run-time checks (see ``Backend.assert_dims``).

torch shapes are always concrete (eager, and symbolic-but-known under ``torch.compile``), so
shape checks are plain Python. Value checks (:func:`require`) read one boolean on the host on
CPU (free: the values are already there). On a GPU a host read waits for the device, so inside
a step (:func:`run_checked`) the checks are collected and read together, once, after the
backward pass and before the update: a failed check raises the same error as on CPU and the
step changes nothing, for one device synchronisation per step (only in steps that have value
checks). A device-side assertion (``torch._assert_async``) would cost nothing but cannot be
caught: it leaves the process's CUDA context unusable. Inside ``torch.compile`` graphs
(``jit=True``), where a host read would break the graph, the check is that assertion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from twinnn.errors import BY_NAME, describe_shape

_R = TypeVar("_R")
_state = threading.local()  # .pending: the checks a running step has deferred (None outside)


def read_is_free(ok: torch.Tensor) -> bool:
    """Whether reading ``ok`` on the host costs nothing (it is in host memory already)."""
    return ok.device.type == "cpu"


Message = str | Callable[[], str]  # a callable is called only when the check fails


def require(ok: torch.Tensor, error: str, message: Message) -> bool:
    """Raise ``BY_NAME[error](message)`` unless the bool scalar ``ok`` is true: at once on the
    CPU or outside a step; on a GPU inside a step, when :func:`run_checked` reads it. Returns
    whether the check is still unread (deferred, or a device assertion under
    ``torch.compile``): until it is, the values it guards may be out of range."""
    if not read_is_free(ok):
        if torch.compiler.is_compiling():
            torch._assert_async(ok, _text(message))
            return True
        pending = getattr(_state, "pending", None)
        if pending is not None:
            pending.append((ok, error, message))
            return True
    if not bool(ok):
        raise BY_NAME[error](_text(message))
    return False


def _text(message: Message) -> str:
    return message if isinstance(message, str) else message()


def run_checked(fn: Callable[..., _R], *args: Any) -> _R:
    """``fn(*args)``, then the value checks it deferred, read in one host transfer: the first
    that failed raises its error (in the order they were made)."""
    outer = getattr(_state, "pending", None)
    pending: list[tuple[torch.Tensor, str, Message]] = []
    _state.pending = pending
    try:
        result = fn(*args)
    finally:
        _state.pending = outer
    if pending:
        flags = torch.stack([ok for ok, _, _ in pending]).cpu().tolist()
        for (_, error, message), good in zip(pending, flags, strict=True):
            if not good:
                raise BY_NAME[error](_text(message))
    return result


def assert_dims(
    x: torch.Tensor,
    y: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    broadcast: bool,
    error: str,
    template: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    for i, j in pairs:
        dim = x.shape[i]
        if dim != y.shape[j] and not (broadcast and dim == 1):
            message = template.replace("{x}", describe_shape(x.shape))
            raise BY_NAME[error](message.replace("{y}", describe_shape(y.shape)))
    return x, y


def assert_nonnegative(x: torch.Tensor, error: str, message: str) -> torch.Tensor:
    if x.numel() != 0:
        require((x >= 0).all(), error, message)
    return x


def divide_no_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    nonzero = b != 0
    return torch.where(nonzero, a / torch.where(nonzero, b, torch.ones_like(b)), 0.0)


def _within(x: torch.Tensor, low: int, high: int) -> torch.Tensor | None:
    """The bool ``low <= x < high`` for every element, bounds outside ``x``'s dtype skipped
    (every value of the dtype satisfies them); None when neither bound is checked."""
    info = torch.iinfo(x.dtype) if not (x.is_floating_point() or x.dtype == torch.bool) else None
    checks = []
    if info is None or low > info.min:
        checks.append(x >= low)
    if info is None or high <= info.max:
        checks.append(x < high)
    if not checks:
        return None
    return (checks[0] & checks[1] if len(checks) == 2 else checks[0]).all()


def assert_in_range(x: torch.Tensor, low: int, high: int, error: str, message: str) -> torch.Tensor:
    if x.numel() == 0:
        return x
    ok = _within(x, low, high)
    if ok is None:
        return x
    if not require(ok, error, message) or torch.compiler.is_compiling():
        return x  # read already, or a device assertion (torch.compile): nothing to guard
    # Read later (see the module doc): until then nothing may index with a value out of range.
    return torch.where(ok, x, torch.full_like(x, low))
