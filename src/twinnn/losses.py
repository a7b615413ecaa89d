"""Losses with one definition on both backends."""

from __future__ import annotations

from typing import Any

from twinnn import config
from twinnn.errors import ArgumentError, ShapeError, describe_shape

__all__ = ["mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _same_shape(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=False)
    )


def _broadcasts_to(w: tuple[int | None, ...], shape: tuple[int | None, ...]) -> bool:
    if len(w) > len(shape):
        return False
    return all(
        d in (1, None) or s is None or d == s for d, s in zip(w[::-1], shape[::-1], strict=False)
    )


def mse_loss(pred: Any, target: Any, reduction: str = "mean", weight: Any = None) -> Any:
    """Mean squared error ``(pred - target) ** 2``, reduced.

    Args:
        pred, target: tensors of exactly the same shape. ``(N, 1)`` against ``(N,)`` is an
            error (torch would silently broadcast to ``(N, N)``).
        reduction: ``"mean"`` (over all elements), ``"sum"`` or ``"none"`` (per element).
        weight: optional tensor that broadcasts to ``pred``'s shape (e.g. a ``(B, T, 1)``
            sequence mask). With ``"mean"`` the result is
            ``sum(weight * err) / sum(broadcast(weight))`` -- the weighted mean over valid
            elements (Keras divides by the element count instead).

    Returns:
        A scalar tensor (or the per-element tensor for ``"none"``).
    """
    impl = config.current()
    if reduction not in _REDUCTIONS:
        raise ArgumentError(
            f"mse_loss(reduction=...) must be one of {list(_REDUCTIONS)}, got {reduction!r}"
        )
    pred = impl.convert(pred, "pred")
    target = impl.convert(target, "target")
    pred_shape, target_shape = impl.static_shape(pred), impl.static_shape(target)
    if not _same_shape(pred_shape, target_shape):
        raise ShapeError(
            f"mse_loss: 'target' must have the shape of 'pred' {describe_shape(pred_shape)}, "
            f"got {describe_shape(target_shape)} (twinnn does not broadcast pred against target; "
            "reshape one of them)"
        )
    err = impl.square(pred - target)
    if weight is None:
        if reduction == "mean":
            return impl.mean(err)
        return impl.sum(err) if reduction == "sum" else err
    weight = impl.convert(weight, "weight")
    weight_shape = impl.static_shape(weight)
    if not _broadcasts_to(weight_shape, pred_shape):
        raise ShapeError(
            f"mse_loss: 'weight' must broadcast to the shape of 'pred' "
            f"{describe_shape(pred_shape)}, got {describe_shape(weight_shape)}"
        )
    weighted = err * weight
    if reduction == "none":
        return weighted
    total = impl.sum(weighted)
    if reduction == "sum":
        return total
    return total / impl.sum(impl.broadcast_like(weight, err))
