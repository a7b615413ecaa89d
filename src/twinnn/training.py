"""``train_step`` and ``eval_step``: forward, loss, gradients and update in one call.

TensorFlow compiles the step with ``tf.function``: one trace serves every batch size and
sequence length (all axes but the last are traced as ``None``). torch runs eagerly unless
``jit=True`` (``torch.compile(dynamic=True)``). ``eager=True`` or ``TWINNN_EAGER=1`` runs
eagerly on both, so a breakpoint inside ``forward`` stops on every step.

Every call is checked before anything runs (the same errors on both backends): at least one
input and a target, as many inputs as ``model.forward`` takes, no empty batch. Checks that
need the model's outputs (``pred`` against ``target`` in a loss, an LSTM's ``lengths``
against its ``x``) run inside the compiled step when a dim is only known at run time, ahead
of the update: a failed step changes nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from twinnn import config
from twinnn._checks import check_bool
from twinnn.backends.base import Backend
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendMismatchError,
    GradientError,
    ShapeError,
    describe_shape,
)
from twinnn.module import Module
from twinnn.optim import Optimizer
from twinnn.optim.clip import clipper

__all__ = ["eval_step", "train_step"]

Step = Callable[..., Any]
Shape = tuple[int | None, ...]


def _loss_of(model: Module, loss_fn: Callable[[Any, Any], Any], impl: Backend) -> Step:
    """``loss_of(*inputs, target) = loss_fn(model(*inputs), target)``, checked to be a scalar
    native tensor."""

    def loss_of(*args: Any) -> Any:
        if config.is_current(impl):  # no ContextVar in the common case (torch.compile)
            loss = loss_fn(model(*args[:-1]), args[-1])
        else:
            with config.using(impl):
                loss = loss_fn(model(*args[:-1]), args[-1])
        if not impl.is_native(loss):
            raise ArgumentTypeError(
                "loss_fn must return a scalar native tensor computed from its inputs, got "
                f"{type(loss).__module__}.{type(loss).__name__} {loss!r} (a Python number has "
                "no gradient)"
            )
        if impl.static_shape(loss) != ():
            raise ShapeError(
                f"loss_fn must return a scalar, got shape {describe_shape(impl.static_shape(loss))}"
            )
        return loss

    return loss_of


def _arguments_checker(model: Module) -> Callable[[Sequence[Shape]], None]:
    """``check(shapes)`` for the shapes of a step's arguments ``(*inputs, target)``: their
    count against ``model.forward``'s signature (looked up once per count), no empty batch."""
    accepted: set[int] = set()
    signature = inspect.signature(model.forward)

    def check(shapes: Sequence[Shape]) -> None:
        count = len(shapes)
        if count not in accepted:
            if count < 2:
                raise ArgumentError(
                    f"step(*inputs, target) needs at least 2 arguments, got {count} (one or "
                    "more inputs, then the target)"
                )
            try:
                signature.bind(*shapes[:-1])
            except TypeError as exc:
                raise ArgumentTypeError(
                    f"step(*inputs, target) got {count - 1} input(s) and a target, but "
                    f"{type(model).__name__}.forward{signature} does not accept "
                    f"{count - 1} input(s) ({exc})"
                ) from None
            accepted.add(count)
        for i, shape in enumerate(shapes):
            if shape and shape[0] == 0:
                raise ArgumentError(
                    f"step(*inputs, target): args[{i}] has an empty batch, shape "
                    f"{describe_shape(shape)}; a step needs at least one example"
                )

    return check


def _missing_gradients(names: Sequence[str]) -> Callable[[list[int]], None]:
    def report(indices: list[int]) -> None:
        missing = [names[i] for i in indices]
        raise GradientError(
            f"train_step: the loss has no gradient path to the parameters {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''} (the model does not use them, or the loss "
            "does not depend on the model's output); pass allow_unused=True to train the "
            "others and leave these unchanged"
        )

    return report


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
    optimizer: Optimizer,
    *,
    eager: bool | None = None,
    jit: bool = False,
    allow_unused: bool = False,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> Step:
    """Build ``step(*inputs, target) -> loss``.

    One call runs ``pred = model(*inputs)``, ``loss = loss_fn(pred, target)``, the gradients
    of ``loss`` w.r.t. the optimiser's parameters and the optimiser's update, and returns the
    loss as a scalar native tensor (no host round trip). Inputs may be NumPy arrays, lists or
    native tensors.

    Args:
        optimizer: a twinnn optimizer (``SGD``, ``Adam``, ...) over parameters of ``model``
            (all or some of them).
        eager: run without compilation (default: ``TWINNN_EAGER``).
        jit: compile harder -- ``torch.compile`` on torch, XLA (``jit_compile``) on TensorFlow.
        allow_unused: let parameters the loss does not depend on get a zero gradient (as
            ``torch.autograd.grad(allow_unused=True)``). By default that is a
            :class:`~twinnn.errors.GradientError` naming them, on both backends.
        clip_norm: clip the full gradient to this global L2 norm, torch's
            ``clip_grad_norm_`` formula (see :mod:`twinnn.optim.clip`), inside the step.
        clip_value: clamp every gradient element to ``[-clip_value, clip_value]`` (torch's
            ``clip_grad_value_``). At most one of the two.

    A single step does not check the loss for NaN or inf (neither framework does); ``fit``
    stops on a non-finite loss.
    """
    eager_mode = _check_common(model, loss_fn, eager, jit)
    if not isinstance(optimizer, Optimizer):
        raise ArgumentTypeError(
            f"optimizer must be a twinnn optimizer (SGD, Adam, ...), got {type(optimizer).__name__}"
        )
    unused_ok = check_bool(allow_unused, "allow_unused")
    impl = model._backend
    if optimizer._backend is not impl:
        raise BackendMismatchError(
            f"optimizer was created on backend {optimizer.backend!r}, model on {model.backend!r}"
        )
    optimizer.check_params_of(model, "train_step")
    clip = clipper(impl, clip_norm, clip_value)
    update = optimizer._apply if clip is None else lambda grads: optimizer._apply(clip(grads))
    return impl.build_train_step(
        _loss_of(model, loss_fn, impl),
        optimizer.params,
        update,
        prepare=optimizer._prepare,
        finish=optimizer._finish,
        check_args=_arguments_checker(model),
        missing_gradients=None if unused_ok else _missing_gradients(optimizer.names),
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
    return impl.build_eval_step(
        _loss_of(model, loss_fn, impl),
        check_args=_arguments_checker(model),
        eager=eager_mode,
        jit=jit,
    )
