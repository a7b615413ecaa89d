"""tensorflow backend: train and eval steps compiled with ``tf.function``.

Each step keeps one ``tf.function`` per *structure* of its arguments (rank, last dimension,
dtype). Every axis but the last of a tensor of rank >= 2 is traced as ``None``, and the one axis
of a rank-1 tensor (per-example lengths or targets, ``(B,)``) too, so a new batch size or
sequence length reuses the same graph: no retracing. ``eager=True`` skips ``tf.function``
altogether, so the Python body of ``forward`` runs (and stops at breakpoints) on every step.

Checks on tensor *values* (an LSTM's lengths) run inside the graph as ``tf.debugging``
assertions tagged with ``GRAPH_CHECK_TAG``; a failed one is re-raised as
``twinnn.errors.ArgumentError`` with the same message, not as a TensorFlow error.

Tracing runs with ``autograph=False``: twinnn's own errors (shape checks in layers and losses)
reach the caller unchanged instead of wrapped in autograph's ``StagingError``, and model code
must not branch in Python on tensor *values* (as with ``torch.compile(fullgraph=True)``).

Speed: the graph for a structure is traced once (``get_concrete_function``) and then called
directly with its flat tensor list. Calling the ``tf.function`` itself would re-bind the
arguments to its signature and look the graph up in its cache on every step -- work that
twinnn's structure key has already done -- which costs 100-150 µs per call on one CPU core,
as much as the whole step of a small model (see ``docs/performance.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import tensorflow as tf

from twinnn.backends.tensorflow.core import GRAPH_CHECK_END, convert, device_scope, graph_check_tag
from twinnn.errors import BY_NAME

_Key = tuple[tuple[int, int | None, str], ...]
_GRAPH_CHECK = re.compile(
    re.escape(graph_check_tag("@")).replace("@", r"(\w+)") + r"(.*?)" + re.escape(GRAPH_CHECK_END),
    re.DOTALL,
)


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

    def __init__(self, body: Callable[..., Any], eager: bool, jit: bool) -> None:
        self._body = body
        self._eager = eager
        self._jit = jit
        self._functions: dict[_Key, Any] = {}
        self._callers: dict[_Key, Callable[..., Any]] = {}

    @property
    def trace_count(self) -> int:
        """How many graphs were traced so far (0 when eager)."""
        return sum(int(f.experimental_get_tracing_count()) for f in self._functions.values())

    def _caller_for(self, args: Sequence[Any]) -> Callable[..., Any]:
        key: _Key = tuple(
            (a.shape.rank, a.shape[-1] if a.shape.rank >= 2 else None, a.dtype.name) for a in args
        )
        caller = self._callers.get(key)
        if caller is None:
            signature = [
                tf.TensorSpec([*([None] * (rank - 1)), last] if rank else [], dtype)
                for rank, last, dtype in key
            ]
            function = tf.function(
                self._body,
                input_signature=signature,
                jit_compile=self._jit or None,
                autograph=False,
            )
            self._functions[key] = function
            caller = _flat_caller(function.get_concrete_function())
            self._callers[key] = caller
        return caller

    def __call__(self, *args: Any) -> Any:
        with device_scope():
            tensors = [_as_tensor(convert(a, f"args[{i}]")) for i, a in enumerate(args)]
            if self._eager:
                return self._body(*tensors)
            caller = self._caller_for(tensors)
            try:
                return caller(*tensors)
            except tf.errors.InvalidArgumentError as exc:
                check = _GRAPH_CHECK.search(exc.message)
                if check is None or check.group(1) not in BY_NAME:
                    raise
                error = BY_NAME[check.group(1)]
                raise error(check.group(2).replace("\\'", "'")) from None


def _as_tensor(x: Any) -> Any:
    # A tf.Variable given as an argument is read: the traced graph takes tensors.
    return x.read_value() if isinstance(x, tf.Variable) else x


def build_train_step(
    loss_of: Callable[..., Any],
    params: Sequence[Any],
    apply_gradients: Callable[[Sequence[Any]], None],
    *,
    eager: bool,
    jit: bool,
) -> CompiledStep:
    params = list(params)

    def body(*args: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_of(*args)
        grads = tape.gradient(loss, params)
        apply_gradients(
            [tf.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        )
        return loss

    return CompiledStep(body, eager, jit)


def build_eval_step(loss_of: Callable[..., Any], *, eager: bool, jit: bool) -> CompiledStep:
    return CompiledStep(loss_of, eager, jit)
