"""Gradient clipping with torch's formulas, applied to the full gradient inside the step.

``clip_norm``: torch's ``clip_grad_norm_``::

    total = sqrt(sum_i ||g_i||**2)          (the norm of the per-tensor L2 norms)
    g_i   = g_i * min(1, max_norm / (total + 1e-6))

The coefficient always multiplies (``x * 1.0`` is exact), so unclipped gradients are unchanged
-- unlike ``tf.clip_by_global_norm``, which rescales by ``c * (1 / c)`` and changes about one
gradient in eight that it does not clip. Keras' ``clipnorm`` clips each tensor on its own and,
under ``tf.distribute``, per replica before the all-reduce; twinnn clips the global gradient.

``clip_value``: torch's ``clip_grad_value_``, every element clamped to ``[-c, c]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twinnn._checks import check_float
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError

__all__ = ["clipper"]

Clip = Callable[[Sequence[Any]], list[Any]]


def clipper(impl: Backend, clip_norm: object, clip_value: object) -> Clip | None:
    """The clipping ``clip(grads) -> grads`` for a step's arguments, or None (no clipping).
    ``clip`` may overwrite ``grads``: the step's own gradients, used by nothing else."""
    if clip_norm is not None and clip_value is not None:
        raise ArgumentError(
            f"train_step takes clip_norm or clip_value, not both; got clip_norm={clip_norm!r}, "
            f"clip_value={clip_value!r}"
        )
    if clip_norm is not None:
        max_norm = check_float(clip_norm, "train_step(clip_norm)", low=0.0)
        if max_norm == 0.0:
            raise ArgumentError("train_step(clip_norm) must be > 0, got 0.0")
        return lambda grads: _clip_norm(impl, grads, max_norm)
    if clip_value is not None:
        limit = check_float(clip_value, "train_step(clip_value)", low=0.0)
        if limit == 0.0:
            raise ArgumentError("train_step(clip_value) must be > 0, got 0.0")
        return lambda grads: [impl.clip(g, -limit, limit) for g in grads]
    return None


def _clip_norm(impl: Backend, grads: Sequence[Any], max_norm: float) -> list[Any]:
    norms = [impl.l2_norm(g) for g in grads]
    total = impl.sqrt(sum((n * n for n in norms[1:]), norms[0] * norms[0]))
    coefficient = impl.clip(max_norm / (total + 1e-6), None, 1.0)
    return impl.vector(grads).scale_(coefficient).as_list()  # g * coefficient, in place
