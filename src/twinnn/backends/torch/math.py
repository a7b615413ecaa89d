"""torch backend: element-wise math, reductions, shapes and gathers (``Backend`` ops section).

Axes arrive non-negative and checked, operands of binary ops with one dtype, indices in range
(the neutral front checks them); these functions only map to torch's kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

exp = torch.exp
log = torch.log
log1p = torch.log1p
abs = torch.abs


def _tensor_pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` as tensors; a Python number takes the other operand's dtype and device."""
    if not isinstance(a, torch.Tensor):
        a = torch.as_tensor(a, dtype=b.dtype, device=b.device)
    if not isinstance(b, torch.Tensor):
        b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
    return a, b


def maximum(a: Any, b: Any) -> Any:
    # torch.maximum's gradient sends half to each operand of a tie.
    return torch.maximum(*_tensor_pair(a, b))


def minimum(a: Any, b: Any) -> Any:
    return torch.minimum(*_tensor_pair(a, b))


def where(condition: Any, x: Any, y: Any) -> Any:
    return torch.where(condition, x, y)


def _dims(x: torch.Tensor, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.dim()))
    return (axis,) if isinstance(axis, int) else tuple(axis)


def max(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    # amax (not max(dim)) splits the gradient evenly among ties, as TensorFlow's reduce_max.
    dims = _dims(x, axis)
    return torch.amax(x, dim=dims, keepdim=keepdims) if dims else x


def min(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    dims = _dims(x, axis)
    return torch.amin(x, dim=dims, keepdim=keepdims) if dims else x


def argmax(x: Any, axis: int) -> Any:
    # torch documents the first maximum among ties; a NaN counts as the maximum (NumPy).
    return torch.argmax(x, dim=axis)


def argmin(x: Any, axis: int) -> Any:
    return torch.argmin(x, dim=axis)


def logsumexp(x: Any, axis: int | Sequence[int] | None, keepdims: bool) -> Any:
    dims = _dims(x, axis)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims) if dims else x


# --- shapes, gathers, dtypes ----------------------------------------------------------------


def transpose(x: Any, axes: Sequence[int]) -> Any:
    return torch.permute(x, tuple(axes))


def expand_dims(x: Any, axis: int) -> Any:
    return torch.unsqueeze(x, axis)


def squeeze(x: Any, axes: Sequence[int]) -> Any:
    return torch.squeeze(x, tuple(axes))


def stack(tensors: Sequence[Any], axis: int) -> Any:
    return torch.stack(list(tensors), dim=axis)


def split(x: Any, sizes: Sequence[int], axis: int) -> list[Any]:
    return list(torch.split(x, list(sizes), dim=axis))


def take(x: Any, indices: Any, axis: int) -> Any:
    axis %= x.dim()
    # index_select takes 1-d indices: gather the flat ids, then restore their shape.
    picked = torch.index_select(x, axis, indices.reshape(-1))
    shape = (*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])
    return picked.reshape(shape)


def take_along_axis(x: Any, indices: Any, axis: int) -> Any:
    # torch.gather does not broadcast (it silently reads a corner of x when indices is
    # smaller): expand both to the broadcast shape first, as NumPy does.
    axis %= x.dim()

    def with_axis(shape: Sequence[int], size: int) -> list[int]:
        return [size if d == axis else int(n) for d, n in enumerate(shape)]

    common = torch.broadcast_shapes(  # type: ignore[no-untyped-call]
        torch.Size(with_axis(x.shape, 1)), torch.Size(with_axis(indices.shape, 1))
    )
    x = x.expand(with_axis(common, x.shape[axis]))
    indices = indices.expand(with_axis(common, indices.shape[axis]))
    return torch.gather(x, axis, indices.to(torch.int64))


def one_hot(indices: Any, depth: int) -> Any:
    # A comparison, not F.one_hot: no host round trip (F.one_hot reads min and max on CPU).
    classes = torch.arange(depth, device=indices.device, dtype=indices.dtype)
    return (indices.unsqueeze(-1) == classes).to(torch.float32)


def cast(x: Any, dtype: str) -> Any:
    return x.to(getattr(torch, dtype))
