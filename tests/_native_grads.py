"""Gradients of a twinnn layer's output taken with the backend's own autograd (torch.autograd
or tf.GradientTape), for the layer tests: ``loss = sum(layer(x) * g)``."""

from __future__ import annotations

from typing import Any

import numpy as np

import twinnn as tn


def torch_device() -> Any:
    """The ``torch.device`` twinnn's torch backend puts new tensors on (``cuda:N`` under
    ``TWINNN_DEVICE=gpu``); the torch backend must be the current one."""
    import torch

    where = tn.device()
    return torch.device("cpu") if where == "cpu" else torch.device("cuda", int(where[4:]))


def torch_tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Any:
    """``torch.tensor(data, dtype=dtype, requires_grad=requires_grad)`` on twinnn's device: a
    native tensor that goes into (or meets the output of) a twinnn layer, op or loss."""
    import torch

    return torch.tensor(data, dtype=dtype, device=torch_device(), requires_grad=requires_grad)


def torch_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor's values as a NumPy array, from any device."""
    return tensor.detach().cpu().numpy()


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

        xt = torch_tensor(x, requires_grad=floating)
        out = layer(xt)
        loss = (out * torch_tensor(g)).sum()
        wrt = [xt, *params] if floating else params
        found: list[Any] = list(torch.autograd.grad(loss, wrt))
        arrays = [torch_numpy(f) for f in found]
        out_array = torch_numpy(out)
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


def f32_tol(rtol: float, atol: float) -> dict[str, float]:
    """Tolerances of a float32 result against a float64 reference: as given on the CPU; on a
    GPU at least ``rtol=1e-4, atol=5e-5`` (cuDNN's RNNs and cuBLAS sum in other orders; seen:
    up to 2.1e-5 on the GRU's gradients, TF32 off)."""
    if tn.device().startswith("gpu"):
        return {"rtol": max(rtol, 1e-4), "atol": max(atol, 5e-5)}
    return {"rtol": rtol, "atol": atol}
