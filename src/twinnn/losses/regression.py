"""Regression losses: ``mse_loss``, ``l1_loss``, ``huber_loss`` (torch's formulas).

Each compares ``pred`` and ``target`` of exactly the same shape element by element and
reduces with the rules of :mod:`twinnn.losses._reduce`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinnn import config
from twinnn._checks import check_float
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError
from twinnn.losses._reduce import (
    check_nonempty,
    check_reduction,
    checked_weight,
    reduce,
    require_same_shape,
)

__all__ = ["huber_loss", "l1_loss", "mse_loss"]


def _elementwise(
    function: str,
    pred: Any,
    target: Any,
    weight: Any,
    reduction: str,
    error: Callable[[Backend, Any], Any],
) -> Any:
    """``error(impl, pred - target)`` per element, weighted and reduced."""
    impl = config.current()
    check_reduction(reduction, function)
    pred = impl.convert_float(pred, "pred")
    target = impl.convert_float(target, "target")
    pred, target = require_same_shape(impl, pred, target, function)
    check_nonempty(impl, pred, reduction, function, "pred")
    err = error(impl, pred - target)
    if weight is None:
        return reduce(impl, err, None, reduction)
    weight = checked_weight(impl, weight, pred, function)
    return reduce(impl, err * weight, weight, reduction)


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
    return _elementwise("mse_loss", pred, target, weight, reduction, lambda impl, d: impl.square(d))


def l1_loss(pred: Any, target: Any, weight: Any = None, reduction: str = "mean") -> Any:
    """Mean absolute error ``|pred - target|``, reduced (torch's ``F.l1_loss``).

    ``pred``, ``target``, ``weight`` and ``reduction`` as in :func:`mse_loss` (same shapes,
    no broadcasting; weighted mean ``sum(w * l) / sum(broadcast w)``). The gradient at
    ``pred == target`` is 0 (``sign(0)``, as torch).

    Returns:
        A scalar tensor (or the per-element tensor for ``"none"``).
    """
    return _elementwise("l1_loss", pred, target, weight, reduction, lambda impl, d: impl.abs(d))


def huber_loss(
    pred: Any, target: Any, delta: float = 1.0, weight: Any = None, reduction: str = "mean"
) -> Any:
    """Huber loss (torch's ``HuberLoss``) of ``d = pred - target``, reduced:

    ``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 * delta)``.

    Args:
        delta: the threshold, a float ``> 0`` (torch's default 1.0). With ``delta=1`` it is
            torch's ``smooth_l1_loss(beta=1)``; Keras' ``Huber`` is the same formula.
        pred, target, weight, reduction: as in :func:`mse_loss`.

    Returns:
        A scalar tensor (or the per-element tensor for ``"none"``).
    """
    threshold = check_float(delta, "huber_loss(delta)", low=0.0)
    if threshold == 0.0:
        raise ArgumentError(f"huber_loss(delta) must be > 0, got {delta!r}")

    def error(impl: Backend, d: Any) -> Any:
        size = impl.abs(d)
        quadratic = 0.5 * impl.square(d)
        linear = threshold * (size - 0.5 * threshold)
        return impl.where(size < threshold, quadratic, linear)

    return _elementwise("huber_loss", pred, target, weight, reduction, error)
