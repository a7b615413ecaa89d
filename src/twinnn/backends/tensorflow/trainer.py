"""tensorflow backend: train and eval steps compiled with ``tf.function``.

Each step keeps one ``tf.function`` per *structure* of its arguments (rank, last dimension,
dtype). Every axis but the last of a tensor of rank >= 2 is traced as ``None``, and the one axis
of a rank-1 tensor (per-example lengths or targets, ``(B,)``) too, so a new batch size or
sequence length reuses the same graph: no retracing. ``eager=True`` skips ``tf.function`` altogether, so the
Python body of ``forward`` runs (and stops at breakpoints) on every step.

Tracing runs with ``autograph=False``: twinnn's own errors (shape checks in layers and losses)
reach the caller unchanged instead of wrapped in autograph's ``StagingError``, and model code
must not branch in Python on tensor *values* (as with ``torch.compile(fullgraph=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from twinnn.backends.tensorflow.core import convert, device_scope

_Key = tuple[tuple[int, int | None, str], ...]


class CompiledStep:
    """Callable ``step(*args) -> loss`` that converts its arguments and dispatches to the
    ``tf.function`` for their structure (created once, traced once)."""

    def __init__(self, body: Callable[..., Any], eager: bool, jit: bool) -> None:
        self._body = body
        self._eager = eager
        self._jit = jit
        self._functions: dict[_Key, Any] = {}

    @property
    def trace_count(self) -> int:
        """How many graphs were traced so far (0 when eager)."""
        return sum(int(f.experimental_get_tracing_count()) for f in self._functions.values())

    def _function_for(self, args: Sequence[Any]) -> Any:
        key: _Key = tuple(
            (a.shape.rank, a.shape[-1] if a.shape.rank >= 2 else None, a.dtype.name) for a in args
        )
        function = self._functions.get(key)
        if function is None:
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
        return function

    def __call__(self, *args: Any) -> Any:
        with device_scope():
            tensors = [convert(a, f"args[{i}]") for i, a in enumerate(args)]
            if self._eager:
                return self._body(*tensors)
            return self._function_for(tensors)(*tensors)


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
