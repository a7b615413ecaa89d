"""``Adagrad`` with torch's formula (accumulator from 0, epsilon outside the square root)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinnn._checks import check_float
from twinnn.backends.base import Param
from twinnn.optim.base import Group, Optimizer
from twinnn.schedules import Schedule

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad, PyTorch's formula on both backends (``t = k + 1`` for update ``k``)::

        g   = grad + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s   = s + g * g                       (s starts at initial_accumulator_value)
        p   = p - (clr * g) / (sqrt(s) + eps)

    Keras' Adagrad starts the accumulator at 0.1 and puts epsilon inside the square root.

    Args:
        lr: ``>= 0`` or a schedule (default 1e-2, torch's).
        lr_decay: ``>= 0``.
        weight_decay: L2 coupled into the gradient, ``>= 0``.
        initial_accumulator_value: ``>= 0`` (slot ``sum``).
        eps: ``>= 0`` (default 1e-10).
    """

    SCALARS = 3

    def __init__(
        self,
        params: Any,
        lr: float | Schedule = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        defaults = {
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
        super().__init__(params, lr, defaults)

    def _check_options(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        return {
            "lr_decay": check_float(options["lr_decay"], f"{where}(lr_decay)", low=0.0),
            "weight_decay": check_float(options["weight_decay"], f"{where}(weight_decay)", low=0.0),
            "initial_accumulator_value": check_float(
                options["initial_accumulator_value"],
                f"{where}(initial_accumulator_value)",
                low=0.0,
            ),
            "eps": check_float(options["eps"], f"{where}(eps)", low=0.0),
        }

    def _slots_for(self, group: Group) -> dict[str, float]:
        return {"sum": group.options["initial_accumulator_value"]}

    def _scalars(self, group: Group, k: int) -> list[float]:
        o = group.options
        clr = group.lr_at(k) / (1.0 + k * o["lr_decay"])
        return [clr, o["eps"], o["weight_decay"]]

    def _update(
        self,
        group: Group,
        params: list[Param],
        grads: list[Any],
        slots: dict[str, list[Param]],
        s: Sequence[Any],
    ) -> None:
        clr, eps, decay = s
        vector = self._backend.vector
        param = vector(params)
        g = self._coupled_decay(group, vector(grads), param, decay)
        total = vector(slots["sum"]) + g * g
        total.write_to(slots["sum"])
        ((clr * g) / (total.sqrt() + eps)).subtract_from(params)
