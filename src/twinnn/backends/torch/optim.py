"""torch backend: what the neutral optimisers (``twinnn.optim``) need from torch.

The update formulas live in ``twinnn.optim``, written once with native arithmetic on these
pieces: slots (plain tensors updated in place under ``no_grad``), a feed of the update's
float32 scalars (Python floats, already rounded once on the host) and a correctly rounded
square root.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch


class ScalarFeed:
    """The float32 scalars of one update, as Python floats (exact float32 values)."""

    def __init__(self, count: int) -> None:
        self._values: list[float] = [0.0] * count

    def set(self, values: np.ndarray) -> None:
        self._values = np.asarray(values, dtype=np.float32).tolist()

    def read(self) -> Sequence[Any]:
        return self._values


def make_scalar_feed(count: int) -> ScalarFeed:
    return ScalarFeed(count)


def make_slot(param: Any, fill: float) -> torch.Tensor:
    return torch.full_like(param.detach(), fill, memory_format=torch.preserve_format)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded float32 square root. torch's CPU kernel (MKL VML) is off by one
    ulp for about 17% of elements; the float64 root rounded to float32 is exact (a double
    rounding cannot occur: float64 has more than 2 * 24 + 2 bits). CUDA's ``sqrtf`` is
    correctly rounded."""
    if x.device.type == "cuda":
        return torch.sqrt(x)
    return torch.sqrt(x.double()).float()


maximum = torch.maximum


def clip(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    return torch.clamp(x, low, high)


def write(variable: torch.Tensor, value: torch.Tensor) -> None:
    variable.copy_(value)


def updating() -> AbstractContextManager[Any]:
    return torch.no_grad()
