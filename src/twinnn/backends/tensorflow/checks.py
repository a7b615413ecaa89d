"""tensorflow backend: run-time checks (see ``Backend.assert_dims``).

Eagerly every shape is known and a failed check raises the twinnn error at once. Inside a
traced step the unknown (``None``) dims are checked by a ``tf.debugging.Assert`` whose message
is built in the graph from the run-time shapes and tagged with the error class
(``twinnn[ShapeError]: ...``); the tensors are returned behind it, so nothing computed from
them -- the loss, the gradients, the update -- runs when it fails, and the compiled step
re-raises it as that class with that message (``trainer.py``): the same error and text as eager.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

from twinnn.backends.tensorflow.core import GRAPH_CHECK_END, graph_check_tag
from twinnn.errors import BY_NAME, describe_shape

_in_xla = False  # True while a jit_compile (XLA) step is traced


@contextmanager
def tracing_for_xla(enabled: bool) -> Iterator[None]:
    """Mark the tracing of an XLA step: XLA drops ``Assert`` ops and cannot compile the string
    ops that build their messages, so value checks are left out of such graphs (shape checks
    run in Python there: an XLA step is traced with full static shapes)."""
    global _in_xla
    previous, _in_xla = _in_xla, enabled
    try:
        yield
    finally:
        _in_xla = previous


def value_checks_enabled() -> bool:
    """Whether run-time value checks go into the graph being built (not under XLA)."""
    return not _in_xla


def _shape_text(x: Any) -> Any:
    """The run-time shape of ``x`` as ``describe_shape`` writes it: ``(4, 1)``, ``(4,)``."""
    dims = tf.strings.reduce_join(tf.strings.as_string(tf.shape(x)), separator=", ")
    trailing = "," if x.shape.rank == 1 else ""
    return tf.strings.join(["(", dims, trailing, ")"])


def _gated(check: Any, tensors: Sequence[Any]) -> list[Any]:
    with tf.control_dependencies([check]):
        return [tf.identity(t) for t in tensors]


def assert_dims(
    x: Any, y: Any, pairs: Sequence[tuple[int, int]], broadcast: bool, error: str, template: str
) -> tuple[Any, Any]:
    if tf.executing_eagerly() or all(
        x.shape[i] is not None and y.shape[j] is not None for i, j in pairs
    ):
        for i, j in pairs:
            dim = x.shape[i]
            if dim != y.shape[j] and not (broadcast and dim == 1):
                message = template.replace("{x}", describe_shape(x.shape.as_list()))
                raise BY_NAME[error](message.replace("{y}", describe_shape(y.shape.as_list())))
        return x, y
    x_dims, y_dims = tf.shape(x), tf.shape(y)
    ok = tf.constant(True)
    for i, j in pairs:
        same = tf.equal(x_dims[i], y_dims[j])
        if broadcast:
            same = tf.logical_or(same, tf.equal(x_dims[i], 1))
        ok = tf.logical_and(ok, same)
    shapes = {"{x}": _shape_text(x), "{y}": _shape_text(y)}
    parts = [shapes.get(part, part) for part in re.split(r"(\{x\}|\{y\})", template)]
    message = tf.strings.join([graph_check_tag(error), *parts, GRAPH_CHECK_END])
    check = tf.debugging.Assert(ok, [message], summarize=1)
    gx, gy = _gated(check, [x, y])
    return gx, gy


def assert_nonnegative(x: Any, error: str, message: str) -> Any:
    if not value_checks_enabled():
        return x
    ok = tf.reduce_all(x >= 0)
    if tf.executing_eagerly():
        if not bool(ok):
            raise BY_NAME[error](message)
        return x
    check = tf.debugging.Assert(ok, [graph_check_tag(error) + message + GRAPH_CHECK_END])
    return _gated(check, [x])[0]


def divide_no_nan(a: Any, b: Any) -> Any:
    return tf.math.divide_no_nan(a, b)
