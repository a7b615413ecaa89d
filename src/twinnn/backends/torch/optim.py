"""torch backend: what the neutral optimisers (``twinnn.optim``) need from torch.

The update formulas live in ``twinnn.optim``, written once with native arithmetic on these
pieces: slots (plain tensors updated in place under ``no_grad``), a feed of the update's
float32 scalars (Python floats, already rounded once on the host) and a correctly rounded
square root.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from twinnn.backends.torch.core import current_device


class ScalarFeed:
    """The float32 scalars of one update, as 0-d float32 tensors on the device.

    A Python float operand would be wrapped and converted on every operation (a measurable
    share of a small model's update); a float32 tensor already has the operation's dtype, so
    the arithmetic -- and its rounding -- is the same and nothing is converted.
    """

    def __init__(self, count: int) -> None:
        self._values: Sequence[Any] = [torch.zeros((), device=_device())] * count

    def set(self, values: np.ndarray) -> None:
        array = np.ascontiguousarray(values, dtype=np.float32)
        self._values = torch.from_numpy(array).to(_device()).unbind(0)

    def read(self) -> Sequence[Any]:
        return self._values


def _device() -> torch.device:
    device = current_device()
    return torch.device("cpu") if device == "cpu" else torch.device("cuda", int(device[4:]))


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


def clip(x: torch.Tensor, low: float | None, high: float | None) -> torch.Tensor:
    return torch.clamp(x, low, high)


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(sum(x**2))`` in one pass (no squared temporary)."""
    return torch.linalg.vector_norm(x)  # type: ignore[no-any-return]


class TensorVector:
    """A list of tensors with element-wise arithmetic by multi-tensor (``_foreach``) kernels:
    one call per operation for every parameter of a group. Each ``_foreach`` operation rounds
    as the single-tensor one does (no fusion), so results are those of the per-tensor form."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[torch.Tensor]) -> None:
        self.items = list(items)

    def _other(self, other: Any) -> Any:
        return other.items if isinstance(other, TensorVector) else other

    def __add__(self, other: Any) -> TensorVector:
        return TensorVector(torch._foreach_add(self.items, self._other(other)))

    __radd__ = __add__  # float addition is commutative, bit for bit

    def __sub__(self, other: Any) -> TensorVector:
        return TensorVector(torch._foreach_sub(self.items, self._other(other)))

    def __mul__(self, other: Any) -> TensorVector:
        return TensorVector(torch._foreach_mul(self.items, self._other(other)))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> TensorVector:
        return TensorVector(torch._foreach_div(self.items, self._other(other)))

    def sqrt(self) -> TensorVector:
        """The correctly rounded square root (see :func:`sqrt`)."""
        if self.items and self.items[0].device.type == "cuda":
            return TensorVector(torch._foreach_sqrt(self.items))
        doubles = [t.double() for t in self.items]
        return TensorVector([t.float() for t in torch._foreach_sqrt(doubles)])

    def maximum(self, other: Any) -> TensorVector:
        return TensorVector(torch._foreach_maximum(self.items, other.items))

    def scale_(self, factor: Any) -> TensorVector:
        """In place for every tensor that is dense and shares memory with no other (a fresh
        tensor per parameter costs a page fault per page on the CPU: for ``lm_lstm``'s 4.65 M
        parameters, more than the multiplication); ``t * factor`` for the others."""
        ok = _writable(self.items)
        inplace = [t for t, w in zip(self.items, ok, strict=True) if w]
        if inplace:
            torch._foreach_mul_(inplace, factor)
        if all(ok):
            return self
        fresh = iter(
            torch._foreach_mul([t for t, w in zip(self.items, ok, strict=True) if not w], factor)
        )
        return TensorVector([t if w else next(fresh) for t, w in zip(self.items, ok, strict=True)])

    def as_list(self) -> list[torch.Tensor]:
        return list(self.items)

    def write_to(self, variables: Sequence[torch.Tensor]) -> None:
        torch._foreach_copy_(list(variables), self.items)

    def subtract_from(self, variables: Sequence[torch.Tensor]) -> None:
        torch._foreach_sub_(list(variables), self.items)


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its memory span exactly once, in any dimension order
    (an LSTM weight's gradient is a transposed view): not a stride-0 expanded gradient."""
    if t.is_contiguous():
        return True
    expected = 1
    layout = sorted((st, sz) for st, sz in zip(t.stride(), t.shape, strict=True) if sz != 1)
    for stride, size in layout:
        if stride != expected:
            return False
        expected *= size
    return True


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The ``[start, end)`` byte range ``t`` can read."""
    dims = zip(t.shape, t.stride(), strict=True)
    last = sum((size - 1) * stride for size, stride in dims if size > 0)
    start = t.data_ptr()
    return start, start + (last + 1) * t.element_size()


def _writable(tensors: Sequence[torch.Tensor]) -> list[bool]:
    """For each tensor, whether writing it in place is safe: it is dense, and no two of
    ``tensors`` share memory (autograd may hand one buffer to two inputs; then none is
    written, the rare case kept simple)."""
    spans = sorted(_span(t) for t in tensors)
    reach = -1
    for start, end in spans:
        if start < reach:
            return [False] * len(tensors)
        reach = max(reach, end)
    return [_dense(t) for t in tensors]


def vector(tensors: Sequence[Any]) -> TensorVector:
    return TensorVector(tensors)
