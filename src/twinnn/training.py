"""``train_step``, ``eval_step`` and ``predict_step``: forward, loss, gradients and update in
one call.

``train_step`` runs the model in training mode, ``eval_step`` and ``predict_step`` in eval
mode (every sub-module, whatever ``train()``/``eval()`` set; the modes are put back after the
forward). With ``outputs=True`` a train or eval step returns ``(loss, outputs)``, ``outputs``
being what the model returned (logits, an LSTM's carried state, ... any nested tuple, list
or dict of tensors) -- the same structure the loss function received -- from the same
forward pass, detached from the gradient.

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
from twinnn.distributed.step import evaluation_for, gradients_for
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

__all__ = ["eval_step", "predict_step", "train_step"]

Step = Callable[..., Any]
Shape = tuple[int | None, ...]


def _in_mode(model: Module, training: bool) -> Step:
    """``forward(*inputs) = model(*inputs)`` with every module of ``model`` in ``training``
    mode for the call (the modes are put back after it). The modules are listed once, here:
    build a step after the model is complete."""
    modules = model.modules()

    def forward(*inputs: Any) -> Any:
        saved = [m.training for m in modules]
        if all(flag is training for flag in saved):
            return model(*inputs)
        for module in modules:
            object.__setattr__(module, "training", training)
        try:
            return model(*inputs)
        finally:
            for module, flag in zip(modules, saved, strict=True):
                object.__setattr__(module, "training", flag)

    return forward


def _loss_of(
    forward: Step, loss_fn: Callable[[Any, Any], Any], impl: Backend, keep_outputs: bool
) -> Step:
    """``loss_of(*inputs, target) = (loss_fn(outputs, target), outputs or None)`` with
    ``outputs = forward(*inputs)``, the loss checked to be a scalar native tensor."""

    def loss_of(*args: Any) -> tuple[Any, Any]:
        if config.is_current(impl):  # no ContextVar in the common case (torch.compile)
            outputs = forward(*args[:-1])
            loss = loss_fn(outputs, args[-1])
        else:
            with config.using(impl):
                outputs = forward(*args[:-1])
                loss = loss_fn(outputs, args[-1])
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
        return loss, (outputs if keep_outputs else None)

    return loss_of


def _arguments_checker(model: Module, target: bool = True) -> Callable[[Sequence[Shape]], None]:
    """``check(shapes)`` for the shapes of a step's arguments ``(*inputs, target)`` (or
    ``(*inputs)`` without ``target``): their count against ``model.forward``'s signature
    (looked up once per count), no empty batch."""
    accepted: set[int] = set()
    signature = inspect.signature(model.forward)
    call = "step(*inputs, target)" if target else "predict_step(*inputs)"
    extra = 1 if target else 0

    def check(shapes: Sequence[Shape]) -> None:
        count = len(shapes)
        if count not in accepted:
            if count < 1 + extra:
                needs = "one or more inputs, then the target" if target else "the model's inputs"
                least = "2 arguments" if target else "1 argument"
                raise ArgumentError(f"{call} needs at least {least}, got {count} ({needs})")
            inputs = count - extra
            try:
                signature.bind(*shapes[:inputs])
            except TypeError as exc:
                got = f"{inputs} input(s) and a target" if target else f"{inputs} input(s)"
                raise ArgumentTypeError(
                    f"{call} got {got}, but {type(model).__name__}.forward{signature} does "
                    f"not accept {inputs} input(s) ({exc})"
                ) from None
            accepted.add(count)
        for i, shape in enumerate(shapes):
            if shape and shape[0] == 0:
                raise ArgumentError(
                    f"{call}: args[{i}] has an empty batch, shape "
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
    outputs: bool = False,
    reduce: str = "fast",
    shards: int = 1,
) -> Step:
    """Build ``step(*inputs, target) -> loss`` (``(loss, outputs)`` with ``outputs=True``).

    One call runs ``pred = model(*inputs)`` in training mode, ``loss = loss_fn(pred, target)``,
    the gradients of ``loss`` w.r.t. the optimiser's parameters and the optimiser's update,
    and returns the loss as a scalar native tensor (no host round trip). Inputs may be NumPy
    arrays, lists or native tensors.

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
        outputs: also return ``pred``, what the model returned (native tensors in the same
            nested structure, detached): ``loss, (logits, state) = step(x, state, y)``
            carries an LSTM state into the next chunk (truncated back-propagation through
            time) without a second forward pass.
        reduce: under data parallelism (``twinnn run -n N``; every argument is this rank's
            slice of the global batch, :func:`twinnn.distributed.shard`): ``"fast"`` sums the
            ranks' gradients with the framework's native all-reduce (equal to one process on
            the global batch within rounding); ``"deterministic"`` gathers them and sums in
            rank order -- bit-identical to ``shards=N`` in one process.
        shards: ``N > 1`` runs the step as N ranks would, in this process: the arguments are
            the global batch, cut into N contiguous slices on axis 0, each slice's forward and
            backward run in turn and the gradients are summed in slice order (the reference of
            ``reduce="deterministic"``, and a way to debug data parallelism on one machine).
            Global values (loss denominators, BatchNorm statistics) are replayed, so a step
            costs ``K + 1`` forward and backward passes of each slice for ``K`` global
            values. With ``outputs=True`` the outputs are a tuple, one per slice.

    In a world of N processes the step's losses divide by the *global* count (the global sum
    of weights), the returned loss is the global one, clipping sees the summed gradients,
    BatchNorm normalises with the global batch's statistics and dropout masks are keyed on
    the global row (docs/distributed.md).

    A single step does not check the loss for NaN or inf (neither framework does); ``fit``
    stops on a non-finite loss.
    """
    eager_mode = _check_common(model, loss_fn, eager, jit)
    keep = check_bool(outputs, "outputs")
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
    gradients = gradients_for(model, optimizer.params, reduce, shards, "train_step")
    clip = clipper(impl, clip_norm, clip_value)

    def update(grads: Sequence[Any]) -> None:  # the step's own gradients: may be overwritten
        optimizer._apply(grads if clip is None else clip(grads), owned=True)

    return impl.build_train_step(
        _loss_of(_in_mode(model, True), loss_fn, impl, keep),
        optimizer.params,
        update,
        prepare=optimizer._prepare,
        finish=optimizer._finish,
        check_args=_arguments_checker(model),
        missing_gradients=None if unused_ok else _missing_gradients(optimizer.names),
        eager=eager_mode,
        jit=jit,
        gradients=gradients,
    )


def eval_step(
    model: Module,
    loss_fn: Callable[[Any, Any], Any],
    *,
    eager: bool | None = None,
    jit: bool = False,
    outputs: bool = False,
) -> Step:
    """Build ``step(*inputs, target) -> loss`` (``(loss, outputs)`` with ``outputs=True``):
    the forward in eval mode and the loss, no gradients, nothing updated."""
    eager_mode = _check_common(model, loss_fn, eager, jit)
    keep = check_bool(outputs, "outputs")
    impl = model._backend
    loss_of = _loss_of(_in_mode(model, False), loss_fn, impl, keep)

    def evaluate(*args: Any) -> Any:
        loss, pred = loss_of(*args)
        return (loss, pred) if keep else loss

    return impl.build_eval_step(
        evaluation_for(model, evaluate, keep),
        check_args=_arguments_checker(model),
        eager=eager_mode,
        jit=jit,
    )


def predict_step(model: Module, *, eager: bool | None = None, jit: bool = False) -> Step:
    """Build ``step(*inputs) -> outputs``: the forward in eval mode, no gradients, compiled
    like the other steps (one TensorFlow trace for every batch size and sequence length).

    ``outputs`` is what ``model(*inputs)`` returns (native tensors in the same nested
    structure). Inputs may be NumPy arrays, lists or native tensors.
    """
    eager_mode = _check_common(model, lambda *_: None, eager, jit)
    impl = model._backend
    forward = _in_mode(model, False)

    def predict(*inputs: Any) -> Any:
        if config.is_current(impl):
            return forward(*inputs)
        with config.using(impl):
            return forward(*inputs)

    return impl.build_eval_step(
        predict, check_args=_arguments_checker(model, target=False), eager=eager_mode, jit=jit
    )
