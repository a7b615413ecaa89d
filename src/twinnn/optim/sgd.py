"""``SGD``: stochastic gradient descent with torch's formula."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinnn._checks import check_bool, check_float
from twinnn.backends.base import Param
from twinnn.errors import ArgumentError
from twinnn.optim.base import Group, Optimizer
from twinnn.schedules import Schedule

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formula on both backends::

        g = grad + weight_decay * p
        b = g                                     (first update)
        b = momentum * b + (1 - dampening) * g    (later updates)
        p = p - lr * (g + momentum * b if nesterov else b)      (b = g without momentum)

    ``lr`` may change between steps (a float or a :mod:`twinnn.schedules` schedule) without
    recompiling; as in torch the new rate multiplies the whole momentum buffer (Keras applies
    each step's rate to that step's gradient only, which differs under a schedule).

    Args:
        params: a Module, ``model.parameters()``, ``model.named_parameters()``, a list of
            parameters, or parameter groups (dicts with ``"params"`` and overrides).
        lr: learning rate ``>= 0``, or a schedule.
        momentum: in ``[0, 1)``; ``OneCycleLR(cycle_momentum=True)`` cycles it.
        dampening: in ``[0, 1]``.
        weight_decay: L2 penalty coupled into the gradient (torch's), ``>= 0``.
        nesterov: Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    """

    # lr, momentum on the buffer, weight of the gradient, weight decay, and the step's
    # weights of g and b: (1, momentum) with nesterov, (0, 1) without -- fed, not branched on
    SCALARS = 6

    def __init__(
        self,
        params: Any,
        lr: float | Schedule = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, lr, defaults)

    @property
    def momentum(self) -> float:
        return float(self.param_groups[0].options["momentum"])

    @property
    def nesterov(self) -> bool:
        return bool(self.param_groups[0].options["nesterov"])

    @property
    def weight_decay(self) -> float:
        return float(self.param_groups[0].options["weight_decay"])

    def _check_options(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        momentum = check_float(
            options["momentum"], f"{where}(momentum)", low=0.0, high=1.0, high_open=True
        )
        dampening = check_float(options["dampening"], f"{where}(dampening)", low=0.0, high=1.0)
        decay = check_float(options["weight_decay"], f"{where}(weight_decay)", low=0.0)
        nesterov = check_bool(options["nesterov"], f"{where}(nesterov)")
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ArgumentError(
                f"{where}(nesterov=True) needs momentum > 0 and dampening == 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        return {
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": decay,
            "nesterov": nesterov,
        }

    def _slots_for(self, group: Group) -> dict[str, float]:
        return {"momentum_buffer": 0.0} if group.options["momentum"] != 0.0 else {}

    _structure_doc = "momentum on or off"

    def _structure(self, group: Group) -> tuple[Any, ...]:
        return (group.options["momentum"] != 0.0,)

    def _scalars(self, group: Group, k: int) -> list[float]:
        o = group.options
        momentum = o["momentum"]
        momentum = group.momentum_at(k, momentum)
        first = k == 0
        nesterov = o["nesterov"]
        return [
            group.lr_at(k),
            0.0 if first else momentum,
            1.0 if first else 1.0 - o["dampening"],
            o["weight_decay"],
            1.0 if nesterov else 0.0,
            momentum if nesterov else 1.0,
        ]

    def _update(
        self,
        group: Group,
        params: list[Param],
        grads: list[Any],
        slots: dict[str, list[Param]],
        s: Sequence[Any],
    ) -> None:
        lr, buffer_momentum, grad_weight, decay, g_weight, b_weight = s
        vector = self._backend.vector
        p = vector(params)
        given = vector(grads)
        g = self._coupled_decay(group, given, p, decay)
        if "momentum_buffer" in slots:
            b = buffer_momentum * vector(slots["momentum_buffer"]) + grad_weight * g
            b.write_to(slots["momentum_buffer"])
            # nesterov: g + momentum * b; else 0 * g + 1 * b == b (exact for finite g)
            g = g * g_weight + b_weight * b
        # p - lr * g, written in place; lr * g over g itself unless g is the caller's
        (g.scale_(lr) if g is not given or self._grads_owned else lr * g).subtract_from(params)
