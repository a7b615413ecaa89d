"""``Adam`` and ``AdamW`` with torch's formula (epsilon after the bias correction)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from twinnn._checks import check_bool, check_float
from twinnn.backends.base import Param
from twinnn.errors import ArgumentTypeError
from twinnn.optim.base import Group, Optimizer, bias_correction
from twinnn.schedules import Schedule

__all__ = ["Adam", "AdamW"]


def _check_betas(value: object, where: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ArgumentTypeError(f"{where}(betas) must be a pair (beta1, beta2), got {value!r}")
    b1 = check_float(value[0], f"{where}(betas[0])", low=0.0, high=1.0, high_open=True)
    b2 = check_float(value[1], f"{where}(betas[1])", low=0.0, high=1.0, high_open=True)
    return b1, b2


class Adam(Optimizer):
    """Adam, PyTorch's formula on both backends (``t = k + 1`` for update ``k``)::

        g  = grad + weight_decay * p                  (Adam: L2 coupled into the gradient)
        p  = p * (1 - lr * weight_decay)              (AdamW: decoupled, before the moments)
        m  = m + (1 - beta1) * (g - m)
        v  = v * beta2 + ((1 - beta2) * g) * g
        v^ = max(v^, v) if amsgrad else v
        p  = p - (lr / bc1 * m) / (sqrt(v^) / sqrt(bc2) + eps)
             with bc1 = 1 - beta1**t, bc2 = 1 - beta2**t

    Keras' Adam adds its epsilon *before* the bias correction (an "epsilon hat") and decouples
    ``weight_decay``: a different algorithm under the same name (docs/why-they-differ.md).
    The scalars (``lr / bc1``, ``sqrt(bc2)``, ...) are float64 on the host, rounded once.

    Args:
        params: a Module, parameters, or parameter groups (dicts with ``"params"``).
        lr: ``>= 0`` or a schedule; ``OneCycleLR(cycle_momentum=True)`` also cycles beta1.
        betas: ``(beta1, beta2)``, each in ``[0, 1)``.
        eps: ``>= 0``, added after the bias correction.
        weight_decay: ``>= 0``; L2 for Adam, decoupled for AdamW.
        amsgrad: keep the running maximum of ``v`` (slot ``max_exp_avg_sq``).
    """

    SCALARS = 8
    DECOUPLED = False

    def __init__(
        self,
        params: Any,
        lr: float | Schedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = {"betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        super().__init__(params, lr, defaults)

    def _check_options(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        b1, b2 = _check_betas(options["betas"], where)
        eps = check_float(options["eps"], f"{where}(eps)", low=0.0)
        decay = check_float(options["weight_decay"], f"{where}(weight_decay)", low=0.0)
        amsgrad = check_bool(options["amsgrad"], f"{where}(amsgrad)")
        return {"betas": (b1, b2), "eps": eps, "weight_decay": decay, "amsgrad": amsgrad}

    def _slots_for(self, group: Group) -> dict[str, float]:
        slots = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
        if group.options["amsgrad"]:
            slots["max_exp_avg_sq"] = 0.0
        return slots

    _structure_doc = "amsgrad"

    def _structure(self, group: Group) -> tuple[Any, ...]:
        return (group.options["amsgrad"],)

    def _scalars(self, group: Group, k: int) -> list[float]:
        o = group.options
        b1, b2 = o["betas"]
        b1 = group.momentum_at(k, b1)
        lr, t = group.lr_at(k), k + 1
        bc1, bc2 = bias_correction(b1, t), bias_correction(b2, t)
        decay = o["weight_decay"]
        return [1.0 - b1, b2, 1.0 - b2, math.sqrt(bc2), o["eps"], lr / bc1, decay, 1.0 - lr * decay]

    def _update(
        self,
        group: Group,
        params: list[Param],
        grads: list[Any],
        slots: dict[str, list[Param]],
        s: Sequence[Any],
    ) -> None:
        one_minus_b1, b2, one_minus_b2, sqrt_bc2, eps, step_size, decay, shrink = s
        vector = self._backend.vector
        param, grad = vector(params), vector(grads)
        decoupled = self.DECOUPLED and self._decays(group)
        g = grad if self.DECOUPLED else self._coupled_decay(group, grad, param, decay)
        m_old, v_old = vector(slots["exp_avg"]), vector(slots["exp_avg_sq"])
        m = m_old + one_minus_b1 * (g - m_old)
        v = v_old * b2 + (one_minus_b2 * g) * g
        m.write_to(slots["exp_avg"])
        v.write_to(slots["exp_avg_sq"])
        if group.options["amsgrad"]:
            v = vector(slots["max_exp_avg_sq"]).maximum(v)
            v.write_to(slots["max_exp_avg_sq"])
        denom = v.sqrt() / sqrt_bc2 + eps
        step = (step_size * m) / denom
        if decoupled:  # p * (1 - lr * decay) - step
            (param * shrink - step).write_to(params)
        else:  # p - step, written in place
            step.subtract_from(params)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch's ``AdamW``: default ``weight_decay=1e-2``;
    ``p = p * (1 - lr * weight_decay)`` before the moment updates)."""

    DECOUPLED = True

    def __init__(
        self,
        params: Any,
        lr: float | Schedule = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
