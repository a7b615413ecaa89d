"""torch backend: convolutions and pooling on channels-last tensors (``Backend.conv``,
``max_pool``, ``avg_pool``, ``flatten``).

twinnn's tensors are channels last, ``(B, W, C)`` / ``(B, H, W, C)``. A 1-D input runs as a 2-D
one of height 1. ``x.permute(0, 3, 1, 2)`` of a contiguous ``(B, H, W, C)`` tensor is torch's
``channels_last`` memory format: the conv and pooling kernels read that view without a copy
and write a ``channels_last`` result, whose permute back to ``(B, H', W', C')`` is contiguous
again. (On a CPU, forward + backward of three 3x3 convs on ``(64, 32, 32, 3)`` measured 0.83x
the time of the same net in contiguous NCHW; copying to NCHW and back was 1.1x.)

Padding: the symmetric part of each dim's ``(before, after)`` goes to the kernel's own
``padding`` argument (no copy); only an asymmetric remainder (TensorFlow's SAME puts the extra
element at the end) is added by ``F.pad`` first -- zeros for convolutions, ``-inf`` for max
pooling. Average pooling divides by the number of valid (unpadded) elements, as TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from twinnn.backends.window import same_pads
from twinnn.errors import BY_NAME, describe_shape

Pads = list[tuple[int, int]]


def _pads(
    x: torch.Tensor,
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
) -> Pads:
    """``(before, after)`` per spatial dim of the 4-D ``x`` (TensorFlow's SAME for "same");
    the settings are Python ints already (:func:`_as_2d`)."""
    if isinstance(padding, str):
        dims = zip(x.shape[1:3], window, strides, dilation, strict=True)
        return [same_pads(_size(n, s), k, s, d) for n, k, s, d in dims]
    return list(padding)


def _int(value: Any) -> int:
    """``value`` as a Python int. Under ``torch.compile(dynamic=True)`` ints (sizes, and the
    layer's strides read from its attributes) are symbolic, and symbolic pad amounts or conv
    settings break inductor's lowering of the conv; ``len(range(v))`` makes dynamo specialise
    (a guard on ``v``). Eagerly it is ``v``."""
    return len(range(value))


def _size(n: Any, stride: int) -> int:
    """A Python int with the SAME pads of size ``n``: they depend on ``n`` only through
    ``n % stride`` (``total = max(e - r, 0)`` for ``n = q * stride + r``, ``1 <= r <=
    stride``), so a compiled step has one graph per remainder, not per size."""
    return _int(n % stride) or stride


def _pad_rest(x: torch.Tensor, pads: Pads, value: float) -> tuple[torch.Tensor, list[int]]:
    """``(x with the asymmetric part of pads added, the symmetric part)`` for a 4-D NHWC ``x``."""
    low = [min(pair) for pair in pads]
    (top, bottom), (left, right) = ((b - m, a - m) for (b, a), m in zip(pads, low, strict=True))
    if top or bottom or left or right:
        x = F.pad(x, (0, 0, left, right, top, bottom), value=value)
    return x, low


def _as_2d(
    x: torch.Tensor,
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
) -> tuple[torch.Tensor, list[int], list[int], list[int], str | Pads]:
    """A 1-D problem ``(B, W, C)`` as a 2-D one of height 1; a 2-D one as it is."""
    pairs = padding if isinstance(padding, str) else [(_int(b), _int(a)) for b, a in padding]
    window, strides, dilation = ([_int(v) for v in a] for a in (window, strides, dilation))
    if x.dim() == 4:
        return x, window, strides, dilation, pairs
    pairs = pairs if isinstance(pairs, str) else [(0, 0), *pairs]
    return x.unsqueeze(1), [1, *window], [1, *strides], [1, *dilation], pairs


def _compiling() -> bool:
    """Inside ``torch.compile``: inductor (torch 2.13, CPU) fails to compile the backward of
    convolutions and pooling on permuted (channels_last) views with dynamic shapes, so there
    the operands are made contiguous NCHW / NHWC copies -- the layout native torch code uses,
    which compiles (and inductor may fuse the copies)."""
    return bool(torch.compiler.is_compiling())


def _nchw(x: torch.Tensor) -> torch.Tensor:
    first = x.permute(0, 3, 1, 2)
    return first.contiguous() if _compiling() else first


def _back(y: torch.Tensor, one_d: bool) -> torch.Tensor:
    y = y.permute(0, 2, 3, 1)
    if _compiling():
        y = y.contiguous()
    return y.squeeze(1) if one_d else y


def conv(
    x: Any,
    weight: Any,
    bias: Any | None,
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
) -> Any:
    """N-d convolution (N = 1, 2), channels last; ``weight`` ``(k..., in, out)``."""
    one_d = x.dim() == 3
    window = tuple(weight.shape[:-2])
    x, size, step, dilate, pairs = _as_2d(x, window, strides, dilation, padding)
    kernel = weight.unsqueeze(0) if one_d else weight
    x, low = _pad_rest(x, _pads(x, size, step, dilate, pairs), 0.0)
    kernel = kernel.permute(3, 2, 0, 1)
    if _compiling():
        kernel = kernel.contiguous()
    y = F.conv2d(_nchw(x), kernel, bias, step, low, dilate)
    return _back(y, one_d)


def _pool_window(
    x: torch.Tensor, window: Sequence[int], strides: Sequence[int], same: bool
) -> tuple[torch.Tensor, list[int], list[int], Pads]:
    """``(4-D x, window, strides, pads)`` of a 1-D or 2-D pooling."""
    spatial = len(window)
    mode: str | Pads = "same" if same else [(0, 0)] * spatial
    x, size, step, ones, pairs = _as_2d(x, window, strides, [1] * spatial, mode)
    return x, size, step, _pads(x, size, step, ones, pairs)


def max_pool(x: Any, window: Sequence[int], strides: Sequence[int], same: bool) -> Any:
    """Max over each window (``-inf`` padding)."""
    one_d = x.dim() == 3
    x, size, step, pads = _pool_window(x, window, strides, same)
    x, low = _pad_rest(x, pads, -float("inf"))
    return _back(F.max_pool2d(_nchw(x), size, step, low), one_d)


def avg_pool(x: Any, window: Sequence[int], strides: Sequence[int], same: bool) -> Any:
    """Mean over the valid (unpadded) elements of each window."""
    one_d = x.dim() == 3
    x, size, step, pads = _pool_window(x, window, strides, same)
    symmetric = all(b == a for b, a in pads)
    # torch's kernel excludes symmetric padding itself -- on CPU: CUDA's channels-last
    # avg_pool2d backward with padding and count_include_pad=False sends the gradient to the
    # wrong rows (seen on torch 2.11, H200), so there padding takes the explicit path below.
    if symmetric and (x.device.type == "cpu" or not any(b for b, _ in pads)):
        low = [b for b, _ in pads]
        y = F.avg_pool2d(_nchw(x), size, step, low, count_include_pad=False)
        return _back(y, one_d)
    # Asymmetric (SAME's extra element at the end), or padded on a GPU: window sums over the
    # zero-padded input, divided by each window's count of valid elements -- one rounding
    # each, as TensorFlow.
    # The counts are the window sums of a ones map (1, H, W, 1): computed on the device, so
    # nothing depends on host tables of the sizes (torch.compile with dynamic shapes).
    flat = (0, 0, pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    ones = torch.ones_like(x[:1, :, :, :1])
    counts = F.avg_pool2d(_nchw(F.pad(ones, flat)), size, step, 0, divisor_override=1)
    sums = F.avg_pool2d(_nchw(F.pad(x, flat)), size, step, 0, divisor_override=1)
    return _back(sums / counts, one_d)


def flatten(x: Any) -> Any:
    """``(B, ...)`` -> ``(B, prod(...))``."""
    return torch.flatten(x, 1)


def assert_min_dims(x: Any, minimums: Sequence[tuple[int, int]], error: str, template: str) -> Any:
    # Every dim is known in torch: the front has checked them; kept for the contract.
    shape = tuple(int(d) for d in x.shape)
    if any(shape[axis] < low for axis, low in minimums):
        raise BY_NAME[error](template.replace("{x}", describe_shape(shape)))
    return x
