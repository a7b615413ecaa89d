"""``SGD`` with PyTorch's formulas on both backends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from twinnn import backends as _registry
from twinnn import config
from twinnn._checks import check_bool, check_float
from twinnn.backends.base import Backend, Param, SGDKernel
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendMismatchError,
    ShapeError,
    StateDictError,
    describe_shape,
)
from twinnn.module import Module

__all__ = ["SGD"]


def _named(params: object) -> list[tuple[str, Param]]:
    """Accept a Module, ``module.parameters()``, ``named_parameters()`` or plain parameters."""
    if isinstance(params, Module):
        return params.named_parameters()
    names = getattr(params, "names", None)
    if not isinstance(params, Iterable):
        raise ArgumentError(
            f"SGD(params) must be a Module or an iterable of parameters, "
            f"got {type(params).__name__}"
        )
    items = list(params)
    if names is not None and len(names) == len(items):
        return list(zip(names, items, strict=True))
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items):
        return [(str(n), p) for n, p in items]
    return [(str(i), p) for i, p in enumerate(items)]


def _backend_of(params: Sequence[Param]) -> Backend:
    for impl in [config.current(), *_registry.loaded().values()]:
        if all(impl.is_parameter(p) for p in params):
            return impl
    raise BackendMismatchError(
        "SGD(params) must all be parameters of one backend (made by twinnn layers or "
        "twinnn.parameter); got " + ", ".join(sorted({type(p).__name__ for p in params}))
    )


def _check_unique(names: Sequence[str], params: Sequence[Param]) -> None:
    """A parameter listed twice would be updated twice per step: refuse it (torch warns)."""
    first: dict[int, str] = {}
    for name, param in zip(names, params, strict=True):
        if id(param) in first:
            raise ArgumentError(
                f"SGD(params) lists the same parameter twice ({first[id(param)]!r} and "
                f"{name!r}); each parameter may appear once (it would be updated twice per step)"
            )
        first[id(param)] = name


class SGD:
    """Stochastic gradient descent, PyTorch's formula on both backends::

        g = grad + weight_decay * p
        v = momentum * v + g            (v starts as g)
        p = p - lr * (g + momentum * v if nesterov else v)

    ``lr`` may be changed between steps (a schedule) without recompiling; as in torch the new
    rate multiplies the whole momentum buffer (Keras applies each step's rate to that step's
    gradient only, which gives different results under a schedule).

    Args:
        params: a Module, ``model.parameters()``, ``model.named_parameters()`` or a list of
            parameters. Names (for ``state_dict``) come from the first three; a plain list is
            named ``"0"``, ``"1"``, ...
        lr: learning rate, ``>= 0``.
        momentum: in ``[0, 1)``.
        nesterov: Nesterov momentum; needs ``momentum > 0``.
        weight_decay: L2 penalty coupled into the gradient (torch's ``weight_decay``), ``>= 0``.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        named = _named(params)
        if not named:
            raise ArgumentError("SGD(params) must contain at least one parameter, got none")
        self._lr = check_float(lr, "SGD(lr)", low=0.0)
        self.momentum = check_float(momentum, "SGD(momentum)", low=0.0, high=1.0, high_open=True)
        self.nesterov = check_bool(nesterov, "SGD(nesterov)")
        if self.nesterov and self.momentum == 0.0:
            raise ArgumentError("SGD(nesterov=True) needs momentum > 0, got momentum=0.0")
        self.weight_decay = check_float(weight_decay, "SGD(weight_decay)", low=0.0)
        self.names: tuple[str, ...] = tuple(n for n, _ in named)
        self.params: list[Param] = [p for _, p in named]
        _check_unique(self.names, self.params)
        self._backend = _backend_of(self.params)
        self._kernel: SGDKernel = self._backend.make_sgd(
            self.params, self._lr, self.momentum, self.nesterov, self.weight_decay
        )

    @property
    def backend(self) -> str:
        return self._backend.NAME

    @property
    def lr(self) -> float:
        """The learning rate used by the next step."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_float(value, "SGD.lr", low=0.0)
        self._kernel.set_lr(self._lr)

    def check_params_of(self, model: Module, function: str) -> None:
        """Raise :class:`~twinnn.errors.ArgumentError` unless every parameter this optimiser
        updates is a parameter of ``model`` (the same object; a subset is fine).

        ``function`` names the call in the message (``"train_step"``, ``"save"``).
        """
        own = {id(p) for _, p in model.named_parameters()}
        foreign = [n for n, p in zip(self.names, self.params, strict=True) if id(p) not in own]
        if foreign:
            raise ArgumentError(
                f"{function}(optimizer) must update parameters of the model "
                f"({type(model).__name__}); its parameters {foreign[:5]}"
                f"{' ...' if len(foreign) > 5 else ''} are not the model's (an optimiser built "
                "for another model?)"
            )

    def apply_gradients(self, grads: Sequence[Any]) -> None:
        """Update the parameters from ``grads`` (same order as ``params``), for custom loops.

        Each gradient is a native tensor of this optimiser's backend or an array-like (cast to
        float32) of its parameter's shape. Everything is checked before anything changes: on a
        bad gradient neither the parameters nor the momentum buffers move.
        """
        if isinstance(grads, (str, bytes)) or not isinstance(grads, Sequence):
            raise ArgumentTypeError(
                "SGD.apply_gradients(grads) must be a list of gradients in parameter order, "
                f"got {type(grads).__name__}"
            )
        if len(grads) != len(self.params):
            raise ArgumentError(
                f"SGD.apply_gradients(grads) needs {len(self.params)} gradients, got {len(grads)}"
            )
        impl = self._backend
        checked = []
        for i, (name, param, grad) in enumerate(zip(self.names, self.params, grads, strict=True)):
            tensor = impl.convert_float(grad, f"grads[{i}]")
            expected, got = impl.static_shape(param), impl.static_shape(tensor)
            if got != expected:
                raise ShapeError(
                    f"SGD.apply_gradients: grads[{i}] (for parameter {name!r}) must have shape "
                    f"{describe_shape(expected)}, got {describe_shape(got)}"
                )
            checked.append(tensor)
        self._kernel.apply(checked)

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and momentum buffers (``{"momentum_buffers": {name: ndarray}}``)."""
        buffers = self._kernel.get_buffers()
        return {
            "lr": self._lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "momentum_buffers": {}
            if buffers is None
            else dict(zip(self.names, buffers, strict=True)),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``lr`` and the momentum buffers; checks everything before changing anything.

        ``momentum``, ``nesterov`` and ``weight_decay`` must equal this optimiser's (they are
        compiled into the step).
        """
        if not isinstance(state, Mapping):
            raise StateDictError(
                f"SGD.load_state_dict(state) must be a mapping, got {type(state).__name__}"
            )
        problems: list[str] = []
        for key in ("momentum", "nesterov", "weight_decay"):
            if key in state and state[key] != getattr(self, key):
                problems.append(
                    f"{key}: this optimiser has {getattr(self, key)!r}, got {state[key]!r}"
                )
        lr = state.get("lr", self._lr)
        try:
            lr = check_float(lr, "state['lr']", low=0.0)
        except ValueError as exc:
            problems.append(str(exc))
        buffers = state.get("momentum_buffers", {})
        staged: list[np.ndarray] = []
        if self.momentum != 0.0:
            if not isinstance(buffers, Mapping):
                problems.append(
                    f"momentum_buffers: expected a mapping, got {type(buffers).__name__}"
                )
                buffers = {}
            missing = [n for n in self.names if n not in buffers]
            unexpected = [n for n in buffers if n not in self.names]
            if missing:
                problems.append(f"missing momentum buffers {missing}")
            if unexpected:
                problems.append(f"unexpected momentum buffers {unexpected}")
            for name, param in zip(self.names, self.params, strict=True):
                if name not in buffers:
                    continue
                array = np.asarray(buffers[name])
                expected = self._backend.static_shape(param)
                if array.shape != expected:
                    problems.append(
                        f"momentum buffer {name!r}: expected shape {describe_shape(expected)}, "
                        f"got {describe_shape(array.shape)}"
                    )
                elif array.dtype != np.float32:
                    problems.append(
                        f"momentum buffer {name!r}: expected dtype float32, got {array.dtype}"
                    )
                staged.append(array)
        if problems:
            raise StateDictError(
                "SGD.load_state_dict: " + "; ".join(problems) + " (nothing was loaded)"
            )
        if self.momentum != 0.0:
            self._kernel.set_buffers(staged)
        self.lr = lr
