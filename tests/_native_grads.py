"""Gradients of a twinnn layer's output taken with the backend's own autograd (torch.autograd
or tf.GradientTape), for the layer tests: ``loss = sum(layer(x) * g)``."""

from __future__ import annotations

from typing import Any

import numpy as np

import twinnn as tn


def grads(
    backend: str, layer: tn.Module, x: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """``(out, d loss / d x, {parameter name: d loss / d parameter})`` for
    ``loss = sum(layer(x) * g)``; ``d x`` is None for integer ``x`` (ids)."""
    names = [n for n, _ in layer.named_parameters()]
    params = [p for _, p in layer.named_parameters()]
    floating = x.dtype.kind == "f"
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=floating)
        out = layer(xt)
        loss = (out * torch.tensor(g)).sum()
        wrt = [xt, *params] if floating else params
        found: list[Any] = list(torch.autograd.grad(loss, wrt))
        arrays = [f.detach().numpy() for f in found]
        out_array = out.detach().numpy()
    else:
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            if floating:
                tape.watch(xt)
            out = layer(xt)
            loss = tf.reduce_sum(out * tf.constant(g))
        wrt = [xt, *params] if floating else params
        found = tape.gradient(loss, wrt)
        arrays = [tf.convert_to_tensor(f).numpy() for f in found]
        out_array = out.numpy()
    dx = arrays.pop(0) if floating else None
    return out_array, dx, dict(zip(names, arrays, strict=True))
