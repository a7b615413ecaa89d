"""torch backend: run-time checks (see ``Backend.assert_dims``).

torch shapes are always concrete (eager, and symbolic-but-known under ``torch.compile``), so
shape checks are plain Python. Value checks read one boolean on the host on CPU (free: the
values are already there) and become a device-side assertion on a GPU (no host round trip
per step; CUDA reports it at the next synchronisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from twinnn.errors import BY_NAME, describe_shape


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
    if x.numel() == 0:
        return x
    if x.device.type != "cpu":
        torch._assert_async((x >= 0).all(), message)
        return x
    if not bool((x >= 0).all()):
        raise BY_NAME[error](message)
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
    if x.device.type != "cpu":
        torch._assert_async(ok, message)
        return x
    if not bool(ok):
        raise BY_NAME[error](message)
    return x
