"""The weight and reduction rules every loss shares (DESIGN.md section 14), written once.

A loss computes its per-item losses ``l``, weighted by whatever weights it has (the per-item
``weight=`` argument, class weights, the ignore mask), and calls :func:`reduce` with those
weighted losses and the weights its mean divides by:

- ``"none"``: the weighted per-item losses;
- ``"sum"``: their sum;
- ``"mean"``: ``sum(w * l) / sum(broadcast w)`` -- the weighted mean -- and ``0`` when every
  weight is 0 (nothing to average: no NaN, zero gradients); without weights the plain mean.
  In a data-parallel step (one slice of a global batch) the divisor is the *global* sum of
  the weights (the global count): ``sum(w * l over the slice) / global_sum(sum(w))``, so the
  slices' losses add up to the global batch's loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinnn._checks import fill_shapes, require_dims
from twinnn.backends.base import Backend
from twinnn.distributed import context
from twinnn.errors import ArgumentError, ShapeError, describe_shape

__all__ = ["REDUCTIONS", "check_reduction", "checked_weight", "reduce", "require_same_shape"]

#: The ``reduction=`` values every loss accepts.
REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object, function: str) -> str:
    """``reduction``, checked to be one of :data:`REDUCTIONS`."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ArgumentError(
            f"{function}(reduction=...) must be one of {list(REDUCTIONS)}, got {reduction!r}"
        )
    return reduction


def require_same_shape(
    impl: Backend, pred: Any, target: Any, function: str, pred_name: str = "pred"
) -> tuple[Any, Any]:
    """``(pred, target)``, checked to have exactly the same shape (no broadcasting)."""
    template = (
        f"{function}: 'target' must have the shape of {pred_name!r} {{x}}, got {{y}} (twinnn does "
        "not broadcast pred against target; reshape one of them)"
    )
    rank = len(impl.static_shape(pred))
    if len(impl.static_shape(target)) != rank:
        raise ShapeError(fill_shapes(template, impl.static_shape(pred), impl.static_shape(target)))
    return require_dims(impl, pred, target, [(i, i) for i in range(rank)], template)


def check_nonempty(impl: Backend, x: Any, reduction: str, function: str, name: str) -> None:
    """The mean of zero items is undefined (torch gives NaN): an error, for ``"mean"``."""
    shape = impl.static_shape(x)
    if reduction == "mean" and 0 in shape:
        raise ShapeError(
            f"{function}: {name!r} has no elements (shape {describe_shape(shape)}); "
            "the mean of nothing is undefined"
        )


def checked_weight(
    impl: Backend,
    weight: Any,
    like: Any,
    function: str,
    like_name: str = "the shape of 'pred'",
    argument: str = "weight",
) -> Any:
    """``weight`` (the argument named ``argument``) as a float32 tensor that broadcasts to
    ``like`` (the per-item losses' shape, named ``like_name`` in messages), every element
    ``>= 0`` (checked on the host for host data, by a graph-safe backend check for native
    tensors)."""
    template = f"{function}: {argument!r} must broadcast to {like_name} {{y}}, got {{x}}"
    why = " (a weighted mean divides by the sum of the weights)" if argument == "weight" else ""
    negative = f"{function}: {argument!r} must be >= 0 everywhere{why}, got negative or NaN values"
    if not impl.is_native(weight):  # host data: check the values for free, before converting
        values = np.asarray(weight)
        if values.dtype.kind in "biuf" and not bool(np.all(values >= 0)):
            raise ArgumentError(negative)
    weight = impl.convert_float(weight, argument)
    rank, like_rank = len(impl.static_shape(weight)), len(impl.static_shape(like))
    if rank > like_rank:
        raise ShapeError(fill_shapes(template, impl.static_shape(weight), impl.static_shape(like)))
    pairs = [(i, i + like_rank - rank) for i in range(rank)]
    weight, _ = require_dims(impl, weight, like, pairs, template, broadcast=True)
    return impl.assert_nonnegative(weight, "ArgumentError", negative)


def _count(impl: Backend, weighted: Any, count: Any) -> Any:
    """``count`` (the sum of the weights), or the number of elements of ``weighted``."""
    if count is not None:
        return count
    shape = impl.static_shape(weighted)
    if None not in shape:
        return impl.convert_float(
            float(np.prod([d or 0 for d in shape], dtype=np.float64)), "count"
        )
    return impl.sum(impl.broadcast_like(impl.convert_float(1.0, "one"), weighted))


def reduce(impl: Backend, weighted: Any, weights: Any, reduction: str) -> Any:
    """Reduce the per-item losses ``weighted`` (already multiplied by their weights).

    ``weights`` (None: unweighted) broadcasts to ``weighted``'s shape; ``"mean"`` divides by
    the sum of the broadcast weights, giving 0 when that sum is 0.
    """
    if reduction == "none":
        return weighted
    total = impl.sum(weighted)
    if reduction == "sum":
        return total
    piece = context.current()
    if piece is not None:  # one slice of a global batch: divide by the global count
        count = impl.sum(impl.broadcast_like(weights, weighted)) if weights is not None else None
        return impl.divide_no_nan(total, piece.global_sum(_count(impl, weighted, count)))
    if weights is None:
        return impl.mean(weighted)
    return impl.divide_no_nan(total, impl.sum(impl.broadcast_like(weights, weighted)))
