"""Independent float64 NumPy references for convolutions and pooling (channels last), written
from the definitions, not from twinnn's code: TensorFlow's documented SAME rule, a direct
sum over kernel taps, and window-by-window pooling with explicit padding."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

Array = np.ndarray
Pads = list[tuple[int, int]]


def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (tensorflow/core/framework/kernel_shape_util.cc)."""
    out = math.ceil(n / s)
    needed = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return needed // 2, needed - needed // 2


def pads_of(
    padding: str | int | tuple[int, ...],
    sizes: Sequence[int],
    k: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
) -> Pads:
    if padding == "valid":
        return [(0, 0)] * len(sizes)
    if padding == "same":
        return [tf_same(*args) for args in zip(sizes, k, s, d, strict=True)]
    p = (padding,) * len(sizes) if isinstance(padding, int) else tuple(padding)  # type: ignore[arg-type]
    return [(q, q) for q in p]


def conv(
    x: Array, w: Array, b: Array | None, s: Sequence[int], d: Sequence[int], pads: Pads
) -> Array:
    """``x`` ``(B, *S, C)``, ``w`` ``(*k, C, O)`` -> ``(B, *S', O)`` in float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n = x.ndim - 2
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    k = w.shape[:n]
    out = [(xp.shape[1 + i] - (k[i] - 1) * d[i] - 1) // s[i] + 1 for i in range(n)]
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for tap in itertools.product(*(range(kk) for kk in k)):
        index = tuple(
            slice(tap[i] * d[i], tap[i] * d[i] + (out[i] - 1) * s[i] + 1, s[i]) for i in range(n)
        )
        y += xp[(slice(None), *index, slice(None))] @ w[tap]
    return y if b is None else y + np.asarray(b, np.float64)


def _windows(
    x: Array, k: Sequence[int], s: Sequence[int], pads: Pads
) -> tuple[list[int], list[tuple[tuple[slice, ...], tuple[slice, ...]]]]:
    """Output sizes and, per output position, (output index, the window's valid input
    slices)."""
    n = x.ndim - 2
    out = [(x.shape[1 + i] + sum(pads[i]) - k[i]) // s[i] + 1 for i in range(n)]
    cells = []
    for position in itertools.product(*(range(o) for o in out)):
        window = []
        for i, p in enumerate(position):
            start = p * s[i] - pads[i][0]
            window.append(slice(max(start, 0), min(start + k[i], x.shape[1 + i])))
        cells.append((position, tuple(window)))
    return out, cells  # type: ignore[return-value]


def pool(kind: str, x: Array, k: Sequence[int], s: Sequence[int], pads: Pads) -> Array:
    """Max or mean over the *valid* elements of each window (padding never counts)."""
    x = np.asarray(x, np.float64)
    out, cells = _windows(x, k, s, pads)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for position, window in cells:
        block = x[(slice(None), *window, slice(None))].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *position, slice(None))] = (
            block.max(axis=1) if kind == "max" else block.mean(axis=1)
        )
    return y


def pool_grad(
    kind: str, x: Array, g: Array, k: Sequence[int], s: Sequence[int], pads: Pads
) -> Array:
    """d sum(pool(x) * g) / dx: each window's ``g`` to its first maximum (max) or spread
    evenly over its valid elements (mean)."""
    x = np.asarray(x, np.float64)
    dx = np.zeros_like(x)
    _, cells = _windows(x, k, s, pads)
    for position, window in cells:
        block = x[(slice(None), *window, slice(None))]
        grad = g[(slice(None), *position, slice(None))]
        if kind == "mean":
            count = math.prod(sl.stop - sl.start for sl in window)
            dx[(slice(None), *window, slice(None))] += (
                grad[(slice(None), *([None] * len(window)))] / count
            )
            continue
        flat = block.reshape(x.shape[0], -1, x.shape[-1])
        first = flat.argmax(axis=1)  # (B, C)
        shape = tuple(sl.stop - sl.start for sl in window)
        for bi in range(x.shape[0]):
            for c in range(x.shape[-1]):
                offset = np.unravel_index(first[bi, c], shape)
                where = tuple(sl.start + o for sl, o in zip(window, offset, strict=True))
                dx[(bi, *where, c)] += grad[bi, c]
    return dx


def conv_grads(
    x: Array, w: Array, g: Array, s: Sequence[int], d: Sequence[int], pads: Pads
) -> tuple[Array, Array, Array]:
    """``(dx, dw, db)`` of ``sum(conv(x, w, b) * g)`` in float64 (the adjoint of each tap)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    n = x.ndim - 2
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    k, out = w.shape[:n], g.shape[1 : 1 + n]
    for tap in itertools.product(*(range(kk) for kk in k)):
        index = (
            slice(None),
            *(
                slice(tap[i] * d[i], tap[i] * d[i] + (out[i] - 1) * s[i] + 1, s[i])
                for i in range(n)
            ),
            slice(None),
        )
        patch = xp[index].reshape(-1, x.shape[-1])
        dw[tap] = patch.T @ g.reshape(-1, g.shape[-1])
        dxp[index] += g @ w[tap].T
    crop = (
        slice(None),
        *(slice(b, b + x.shape[1 + i]) for i, (b, _) in enumerate(pads)),
        slice(None),
    )
    return dxp[crop], dw, g.reshape(-1, g.shape[-1]).sum(axis=0)
