"""Losses with one definition on both backends."""

from __future__ import annotations

from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import fill_shapes, require_dims
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError, ShapeError, describe_shape

__all__ = ["mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def require_same_shape(impl: Backend, pred: Any, target: Any, function: str) -> tuple[Any, Any]:
    """``(pred, target)``, checked to have exactly the same shape (no broadcasting)."""
    template = (
        f"{function}: 'target' must have the shape of 'pred' {{x}}, got {{y}} (twinnn does "
        "not broadcast pred against target; reshape one of them)"
    )
    rank = len(impl.static_shape(pred))
    if len(impl.static_shape(target)) != rank:
        raise ShapeError(fill_shapes(template, impl.static_shape(pred), impl.static_shape(target)))
    return require_dims(impl, pred, target, [(i, i) for i in range(rank)], template)


def _checked_weight(impl: Backend, weight: Any, pred: Any, function: str) -> Any:
    """``weight`` as a float32 tensor that broadcasts to ``pred``, every element ``>= 0``."""
    template = f"{function}: 'weight' must broadcast to the shape of 'pred' {{y}}, got {{x}}"
    negative = (
        f"{function}: 'weight' must be >= 0 everywhere (a weighted mean divides by the sum of "
        "the weights), got negative or NaN values"
    )
    if not impl.is_native(weight):  # host data: check the values for free, before converting
        values = np.asarray(weight)
        if values.dtype.kind in "biuf" and not bool(np.all(values >= 0)):
            raise ArgumentError(negative)
    weight = impl.convert_float(weight, "weight")
    rank, pred_rank = len(impl.static_shape(weight)), len(impl.static_shape(pred))
    if rank > pred_rank:
        raise ShapeError(fill_shapes(template, impl.static_shape(weight), impl.static_shape(pred)))
    pairs = [(i, i + pred_rank - rank) for i in range(rank)]
    weight, _ = require_dims(impl, weight, pred, pairs, template, broadcast=True)
    return impl.assert_nonnegative(weight, "ArgumentError", negative)


def mse_loss(pred: Any, target: Any, reduction: str = "mean", weight: Any = None) -> Any:
    """Mean squared error ``(pred - target) ** 2``, reduced.

    Args:
        pred, target: tensors of exactly the same shape. ``(N, 1)`` against ``(N,)`` is an
            error (torch would silently broadcast to ``(N, N)``). Integer or bool inputs are
            cast to float32 (on both backends); native floating tensors must be float32.
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"`` (per element).
            The mean of zero elements is an error (it is undefined; torch gives NaN).
        weight: optional tensor of non-negative weights that broadcasts to ``pred``'s shape
            (e.g. a ``(B, T, 1)`` sequence mask). With ``"mean"`` the result is
            ``sum(weight * err) / sum(broadcast(weight))`` -- the weighted mean over valid
            elements (Keras divides by the element count instead) -- and ``0`` when every
            weight is 0 (nothing to average: no NaN, zero gradients). A negative weight is an
            :class:`~twinnn.errors.ArgumentError`.

    Returns:
        A scalar tensor (or the per-element tensor for ``"none"``).
    """
    impl = config.current()
    if reduction not in _REDUCTIONS:
        raise ArgumentError(
            f"mse_loss(reduction=...) must be one of {list(_REDUCTIONS)}, got {reduction!r}"
        )
    pred = impl.convert_float(pred, "pred")
    target = impl.convert_float(target, "target")
    pred, target = require_same_shape(impl, pred, target, "mse_loss")
    if reduction == "mean" and 0 in impl.static_shape(pred):
        raise ShapeError(
            f"mse_loss: 'pred' has no elements (shape {describe_shape(impl.static_shape(pred))}); "
            "the mean of nothing is undefined"
        )
    err = impl.square(pred - target)
    if weight is None:
        if reduction == "mean":
            return impl.mean(err)
        return impl.sum(err) if reduction == "sum" else err
    weight = _checked_weight(impl, weight, pred, "mse_loss")
    weighted = err * weight
    if reduction == "none":
        return weighted
    total = impl.sum(weighted)
    if reduction == "sum":
        return total
    return impl.divide_no_nan(total, impl.sum(impl.broadcast_like(weight, err)))
