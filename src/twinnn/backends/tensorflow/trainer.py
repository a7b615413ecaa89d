"""tensorflow backend: train and eval steps compiled with ``tf.function``.

Each step keeps one ``tf.function`` per *structure* of its arguments (rank, last dimension,
dtype). Every axis but the last of a tensor of rank >= 2 is traced as ``None``, and the one axis
of a rank-1 tensor (per-example lengths or targets, ``(B,)``) too, so a new batch size or
sequence length reuses the same graph: no retracing. ``eager=True`` skips ``tf.function``
altogether, so the Python body of ``forward`` runs (and stops at breakpoints) on every step.

Checks on dims that are ``None`` while tracing (``pred`` against ``target``, an LSTM's
``lengths`` against ``x``) and on tensor *values* (an LSTM's lengths, a loss weight's sign) run
inside the graph as ``tf.debugging.Assert`` ops (``checks.py``) whose message is tagged with
the twinnn error class; a failed one is re-raised as that class with the same message eager
code gives, not as a TensorFlow error, and nothing after it (the update) has run.

``jit=True`` (XLA) traces with the full input shapes: XLA compiles one executable per input
shape anyway, and it drops graph assertions, so every shape check runs in Python while
tracing. Value checks are not run under XLA (documented in ``docs/errors.md``).

Tracing runs with ``autograph=False``: twinnn's own errors (shape checks in layers and losses)
reach the caller unchanged instead of wrapped in autograph's ``StagingError``, and model code
must not branch in Python on tensor *values* (as with ``torch.compile(fullgraph=True)``).

Speed: the graph for a structure is traced once (``get_concrete_function``) and then called
directly with its flat tensor list. Calling the ``tf.function`` itself would re-bind the
arguments to its signature and look the graph up in its cache on every step -- work that
twinnn's structure key has already done -- which costs about as much as the whole step of a
small model on a CPU (``python -m benchmarks --workload linear_seed``; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, cast

import tensorflow as tf

from twinnn.backends.tensorflow.checks import raise_graph_check, tracing_for_xla
from twinnn.backends.tensorflow.core import convert, device_scope
from twinnn.backends.tensorflow.distributed import active, failed, in_replica
from twinnn.errors import TwinnnError

Shape = tuple[int | None, ...]
_Key = tuple[Hashable, tuple[tuple[Shape, str], ...]]  # (prepare()'s value, arguments)


def _flat_caller(concrete: Any) -> Callable[..., Any]:
    """``call(*tensors)`` running ``concrete`` on exactly its flat tensor inputs.

    ``ConcreteFunction._call_flat(inputs, captured_inputs)`` is where the public call ends
    after re-checking the arguments against the signature; twinnn's structure key has already
    matched them, so it is called directly (TensorFlow 2.x has it with this signature). The
    public call is the fallback where it is missing. The captured inputs are read on every
    call, as the public path does (deferred captures may change between calls).
    """
    call_flat = getattr(concrete, "_call_flat", None)
    if not callable(call_flat):
        return cast("Callable[..., Any]", concrete)

    def call(*tensors: Any) -> Any:
        return call_flat(list(tensors), concrete.captured_inputs)

    return call


class CompiledStep:
    """Callable ``step(*args) -> loss`` that converts its arguments and dispatches to the
    graph traced for their structure (created once, traced once)."""

    def __init__(
        self,
        body: Callable[..., Any],
        diagnose: Callable[..., Any],
        check_args: Callable[[Sequence[Shape]], None],
        eager: bool,
        jit: bool,
        prepare: Callable[[], Hashable] = lambda: None,
        finish: Callable[[], None] = lambda: None,
        pair: bool = False,
    ) -> None:
        self._body = body
        self._pair = pair
        self._prepare = prepare
        self._finish = finish
        self._diagnose = diagnose
        self._check_args = check_args
        self._eager = eager
        self._jit = jit
        self._functions: dict[_Key, Any] = {}
        self._callers: dict[_Key, Callable[..., Any]] = {}

    @property
    def trace_count(self) -> int:
        """How many graphs were traced so far (0 when eager)."""
        return sum(int(f.experimental_get_tracing_count()) for f in self._functions.values())

    def _caller_for(
        self, args: Sequence[Any], shapes: Sequence[Shape], variant: Hashable
    ) -> Callable[..., Any]:
        arguments = tuple(
            (_traced_shape(shape, self._jit), a.dtype.name)
            for a, shape in zip(args, shapes, strict=True)
        )
        key: _Key = (variant, arguments)
        caller = self._callers.get(key)
        if caller is None:
            signature = [tf.TensorSpec(shape, dtype) for shape, dtype in arguments]
            function = tf.function(
                self._body,
                input_signature=signature,
                jit_compile=self._jit or None,
                autograph=False,
            )
            self._functions[key] = function
            with tracing_for_xla(self._jit):
                concrete = function.get_concrete_function()
            caller = _flat_caller(concrete)
            self._callers[key] = caller
        return caller

    def __call__(self, *args: Any) -> Any:
        with device_scope():
            tensors = [_as_tensor(convert(a, f"args[{i}]")) for i, a in enumerate(args)]
            shapes = [tuple(t.shape.as_list()) for t in tensors]
            self._check_args(shapes)
            variant = self._prepare()
            if self._eager:
                result = self._body(*tensors)
                self._finish()
                return self._result(result)
            try:
                caller = self._caller_for(tensors, shapes, variant)
            except TwinnnError:
                # A check failed while tracing, where batch dims read "?": run the forward and
                # loss eagerly (no update) for the same error with the run-time shapes.
                self._diagnose(*tensors)
                raise
            try:
                result = caller(*tensors)
            except tf.errors.InvalidArgumentError as exc:
                raise_graph_check(exc.message)
                if active():
                    raise failed("a step's collective", exc) from exc
                raise
            except tf.errors.OpError as exc:
                if active():  # a peer gone, a collective timed out
                    raise failed("a step's collective", exc) from exc
                raise
            self._finish()
            return self._result(result)

    def _result(self, result: Any) -> Any:
        # A train step's body returns (loss, outputs or None): the loss alone when None.
        if self._pair and result[1] is None:
            return result[0]
        return result


def _traced_shape(shape: Shape, jit: bool) -> Shape:
    """The shape a step is traced with: every axis ``None`` but the last of a tensor of rank
    >= 2; with ``jit`` the full shape (XLA compiles one executable per input shape anyway and
    drops graph assertions, so every shape check then runs in Python while tracing)."""
    if jit:
        return tuple(shape)
    return (*([None] * (len(shape) - 1)), shape[-1]) if len(shape) >= 2 else (None,) * len(shape)


def _as_tensor(x: Any) -> Any:
    # A tf.Variable given as an argument is read: the traced graph takes tensors.
    return x.read_value() if isinstance(x, tf.Variable) else x


def build_train_step(
    loss_of: Callable[..., Any],
    params: Sequence[Any],
    apply_gradients: Callable[[Sequence[Any]], None],
    *,
    prepare: Callable[[], Hashable],
    finish: Callable[[], None],
    check_args: Callable[[Sequence[Shape]], None],
    missing_gradients: Callable[[list[int]], None] | None,
    eager: bool,
    jit: bool,
    gradients: Callable[..., tuple[Any, Any, list[Any]]] | None = None,
) -> CompiledStep:
    params = list(params)

    def grads_of(*args: Any) -> tuple[Any, Any, list[Any]]:
        with tf.GradientTape() as tape:
            loss, outputs = loss_of(*args)
        grads = tape.gradient(loss, params)
        if missing_gradients is not None:  # known while tracing: no run-time cost
            missing = [i for i, g in enumerate(grads) if g is None]
            if missing:
                missing_gradients(missing)
        zeros_for_none = [
            tf.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
        ]
        return loss, outputs, zeros_for_none

    def body(*args: Any) -> Any:
        if gradients is None:
            loss, outputs, grads = grads_of(*args)
        else:
            loss, outputs, grads = gradients(grads_of, *args)
        apply_gradients(grads)
        return loss, outputs

    return CompiledStep(
        in_replica(body), in_replica(loss_of), check_args, eager, jit, prepare, finish, pair=True
    )


def build_eval_step(
    forward: Callable[..., Any],
    *,
    check_args: Callable[[Sequence[Shape]], None],
    eager: bool,
    jit: bool,
) -> CompiledStep:
    return CompiledStep(in_replica(forward), in_replica(forward), check_args, eager, jit)
