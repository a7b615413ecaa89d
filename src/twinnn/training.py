"""``train_step`` and ``eval_step``: forward, loss, gradients and update in one call.

TensorFlow compiles the step with ``tf.function``: one trace serves every batch size and
sequence length (all axes but the last are traced as ``None``). torch runs eagerly unless
``jit=True`` (``torch.compile(dynamic=True)``). ``eager=True`` or ``TWINNN_EAGER=1`` runs
eagerly on both, so a breakpoint inside ``forward`` stops on every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinnn import config
from twinnn._checks import check_bool
from twinnn.backends.base import Backend
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendMismatchError,
    ShapeError,
    describe_shape,
)
from twinnn.module import Module
from twinnn.optim import SGD

__all__ = ["eval_step", "train_step"]

Step = Callable[..., Any]


def _loss_of(model: Module, loss_fn: Callable[[Any, Any], Any], impl: Backend) -> Step:
    """``loss_of(*inputs, target) = loss_fn(model(*inputs), target)``, checked to be a scalar."""

    def loss_of(*args: Any) -> Any:
        if len(args) < 2:
            raise ArgumentError(
                f"step(*inputs, target) needs at least 2 arguments, got {len(args)}"
            )
        with config.using(impl):
            loss = loss_fn(model(*args[:-1]), args[-1])
        if impl.static_shape(loss) != ():
            raise ShapeError(
                f"loss_fn must return a scalar, got shape {describe_shape(impl.static_shape(loss))}"
            )
        return loss

    return loss_of


def _check_common(model: object, loss_fn: object, eager: object, jit: object) -> bool:
    if not isinstance(model, Module):
        raise ArgumentTypeError(f"model must be a twinnn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ArgumentTypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    check_bool(jit, "jit")
    return config.eager_default() if eager is None else check_bool(eager, "eager")


def train_step(
    model: Module,
    loss_fn: Callable[[Any, Any], Any],
    optimizer: SGD,
    *,
    eager: bool | None = None,
    jit: bool = False,
) -> Step:
    """Build ``step(*inputs, target) -> loss``.

    One call runs ``pred = model(*inputs)``, ``loss = loss_fn(pred, target)``, the gradients
    of ``loss`` w.r.t. the optimiser's parameters and the optimiser's update, and returns the
    loss as a scalar native tensor (no host round trip). Inputs may be NumPy arrays, lists or
    native tensors.

    Args:
        eager: run without compilation (default: ``TWINNN_EAGER``).
        jit: compile harder -- ``torch.compile`` on torch, XLA (``jit_compile``) on TensorFlow.
    """
    eager_mode = _check_common(model, loss_fn, eager, jit)
    if not isinstance(optimizer, SGD):
        raise ArgumentTypeError(f"optimizer must be a twinnn.SGD, got {type(optimizer).__name__}")
    impl = model._backend
    if optimizer._backend is not impl:
        raise BackendMismatchError(
            f"optimizer was created on backend {optimizer.backend!r}, model on {model.backend!r}"
        )
    return impl.build_train_step(
        _loss_of(model, loss_fn, impl),
        optimizer.params,
        optimizer._kernel.apply,
        eager=eager_mode,
        jit=jit,
    )


def eval_step(
    model: Module,
    loss_fn: Callable[[Any, Any], Any],
    *,
    eager: bool | None = None,
    jit: bool = False,
) -> Step:
    """Build ``step(*inputs, target) -> loss``: forward and loss only, no gradients."""
    eager_mode = _check_common(model, loss_fn, eager, jit)
    impl = model._backend
    return impl.build_eval_step(_loss_of(model, loss_fn, impl), eager=eager_mode, jit=jit)
