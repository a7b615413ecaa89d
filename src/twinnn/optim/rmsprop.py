"""``RMSprop`` with torch's formula (epsilon outside the square root)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinnn._checks import check_bool, check_float
from twinnn.backends.base import Param
from twinnn.optim.base import Group, Optimizer
from twinnn.schedules import Schedule

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, PyTorch's formula on both backends::

        g   = grad + weight_decay * p
        v   = alpha * v + ((1 - alpha) * g) * g
        a   = a + (1 - alpha) * (g - a)                       (centered only)
        d   = sqrt(v - a * a) + eps if centered else sqrt(v) + eps
        b   = momentum * b + g / d;  p = p - lr * b           (momentum > 0)
        p   = p - (lr * g) / d                                (momentum == 0)

    Keras' RMSprop puts epsilon inside the square root, defaults to ``rho=0.9`` and keeps the
    learning rate inside its momentum buffer: a different algorithm under the same name.

    Args:
        lr: ``>= 0`` or a schedule (default 1e-2, torch's).
        alpha: smoothing constant in ``[0, 1)``.
        eps: ``>= 0``.
        weight_decay: L2 coupled into the gradient, ``>= 0``.
        momentum: in ``[0, 1)``; with momentum the slot ``momentum_buffer`` is kept.
        centered: normalise by the variance estimate (slot ``grad_avg``).
    """

    SCALARS = 6

    def __init__(
        self,
        params: Any,
        lr: float | Schedule = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = {
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, lr, defaults)

    def _check_options(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        return {
            "alpha": check_float(
                options["alpha"], f"{where}(alpha)", low=0.0, high=1.0, high_open=True
            ),
            "eps": check_float(options["eps"], f"{where}(eps)", low=0.0),
            "weight_decay": check_float(options["weight_decay"], f"{where}(weight_decay)", low=0.0),
            "momentum": check_float(
                options["momentum"], f"{where}(momentum)", low=0.0, high=1.0, high_open=True
            ),
            "centered": check_bool(options["centered"], f"{where}(centered)"),
        }

    def _slots_for(self, group: Group) -> dict[str, float]:
        slots = {"square_avg": 0.0}
        if group.options["momentum"] != 0.0:
            slots["momentum_buffer"] = 0.0
        if group.options["centered"]:
            slots["grad_avg"] = 0.0
        return slots

    _structure_doc = "momentum on or off, centered"

    def _structure(self, group: Group) -> tuple[Any, ...]:
        return (group.options["momentum"] != 0.0, group.options["centered"])

    def _scalars(self, group: Group, k: int) -> list[float]:
        o = group.options
        momentum = o["momentum"]
        momentum = group.momentum_at(k, momentum)
        alpha = o["alpha"]
        return [alpha, 1.0 - alpha, o["eps"], group.lr_at(k), o["weight_decay"], momentum]

    def _update(
        self,
        group: Group,
        params: list[Param],
        grads: list[Any],
        slots: dict[str, list[Param]],
        s: Sequence[Any],
    ) -> None:
        alpha, one_minus_alpha, eps, lr, decay, momentum = s
        vector = self._backend.vector
        param = vector(params)
        g = self._coupled_decay(group, vector(grads), param, decay)
        v = alpha * vector(slots["square_avg"]) + (one_minus_alpha * g) * g
        v.write_to(slots["square_avg"])
        if group.options["centered"]:
            a_old = vector(slots["grad_avg"])
            a = a_old + one_minus_alpha * (g - a_old)
            a.write_to(slots["grad_avg"])
            denom = (v - a * a).sqrt() + eps
        else:
            denom = v.sqrt() + eps
        if "momentum_buffer" in slots:
            b = momentum * vector(slots["momentum_buffer"]) + g / denom
            b.write_to(slots["momentum_buffer"])
            (lr * b).subtract_from(params)
        else:
            ((lr * g) / denom).subtract_from(params)
