"""Independent NumPy float64 references for the neutral contract (DESIGN.md §4-§6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Array = np.ndarray


def linear(x: Array, weight: Array, bias: Array | None) -> Array:
    y = np.asarray(x, np.float64) @ np.asarray(weight, np.float64)
    return y if bias is None else y + np.asarray(bias, np.float64)


def mse(pred: Array, target: Array, reduction: str = "mean", weight: Array | None = None) -> Array:
    err = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    if weight is None:
        return {"mean": err.mean, "sum": err.sum, "none": lambda: err}[reduction]()
    w = np.asarray(weight, np.float64)
    weighted = err * w
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    return weighted.sum() / np.broadcast_to(w, err.shape).sum()


def linear_mse_grads(x: Array, y: Array, weight: Array, bias: Array) -> tuple[float, Array, Array]:
    """Loss and gradients of ``mean((x @ W + b - y)**2)`` w.r.t. ``W`` and ``b``."""
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    diff = linear(x64, weight, bias) - y64
    scale = 2.0 / diff.size
    return float((diff**2).mean()), x64.T @ diff * scale, diff.sum(axis=0) * scale


class SGD:
    """PyTorch's SGD (dampening 0) in float64."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, wd: float = 0.0):
        self.lr, self.momentum, self.nesterov, self.wd = lr, momentum, nesterov, wd
        self.buffers: list[Array] | None = None

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> list[Array]:
        grads = [g + self.wd * p for p, g in zip(params, grads, strict=True)]
        if self.momentum == 0.0:
            return [p - self.lr * g for p, g in zip(params, grads, strict=True)]
        if self.buffers is None:
            self.buffers = [g.copy() for g in grads]
        else:
            self.buffers = [self.momentum * b + g for b, g in zip(self.buffers, grads, strict=True)]
        updates = (
            [g + self.momentum * b for g, b in zip(grads, self.buffers, strict=True)]
            if self.nesterov
            else self.buffers
        )
        return [p - self.lr * u for p, u in zip(params, updates, strict=True)]


def train_linear(
    x: Array,
    y: Array,
    weight: Array,
    bias: Array,
    optimizer: SGD,
    steps: int,
    lr_at: Callable[[int], float] | None = None,
) -> list[float]:
    """Losses of ``steps`` full-batch SGD steps on a linear model (float64)."""
    params = [np.asarray(weight, np.float64), np.asarray(bias, np.float64)]
    losses = []
    for i in range(steps):
        if lr_at is not None:
            optimizer.lr = lr_at(i)
        loss, g_w, g_b = linear_mse_grads(x, y, params[0], params[1])
        losses.append(loss)
        params = optimizer.step(params, [g_w, g_b])
    return losses
