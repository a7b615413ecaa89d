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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import tensorflow as tf

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


# A failed check's message: ``twinnn[<class>|<formats>]: <template> ~twinnn`` followed by the
# values TensorFlow prints for the data tensors (``[4 1]``); ``template`` holds ``{0}``,
# ``{1}``, ... for them and ``formats`` says how each is written back in Python.
_MESSAGE = re.compile(r"twinnn\[(\w+)\|([\w,]*)\]: (.*?) ~twinnn\]((?: \[[^\]]*\])*)", re.DOTALL)
_FORMATS: dict[str, Callable[[list[int]], str]] = {
    "shape": describe_shape,
    "list": str,
    "int": lambda values: str(values[0]),
}


def graph_check(ok: Any, error: str, template: str, values: Sequence[tuple[str, Any]]) -> Any:
    """A ``tf.debugging.Assert`` that fails when ``ok`` is False; :func:`raise_graph_check`
    turns its error into ``twinnn.errors.<error>`` with ``template``'s ``{k}`` replaced by the
    run-time value ``values[k]`` written as its format says (``"shape"``: ``(4, 1)``,
    ``"list"``: ``[7, -1]``, ``"int"``: ``5``). The data are int32 tensors and one constant
    string, so the op needs no string formatting and no ``cond`` on the success path."""
    formats = ",".join(kind for kind, _ in values)
    data = [tf.cast(v, tf.int32) for _, v in values]
    head = f"twinnn[{error}|{formats}]: {template} ~twinnn"
    return tf.debugging.Assert(ok, [head, *data], summarize=1 << 16)


def raise_graph_check(message: str) -> None:
    """Raise the twinnn error a failed :func:`graph_check` stands for, if ``message`` (a
    TensorFlow error's) holds one; return otherwise."""
    match = _MESSAGE.search(message)
    if match is None or match.group(1) not in BY_NAME:
        return
    text = match.group(3).replace("\\'", "'")
    kinds = match.group(2).split(",") if match.group(2) else []
    printed = re.findall(r"\[([^\]]*)\]", match.group(4))
    for k, (kind, numbers) in enumerate(zip(kinds, printed, strict=False)):
        values = [int(n) for n in numbers.split()]
        text = text.replace(f"{{{k}}}", _FORMATS[kind](values))
    raise BY_NAME[match.group(1)](text) from None


def _gated(check: Any, tensors: Sequence[Any]) -> list[Any]:
    with tf.control_dependencies([check]):
        return [tf.identity(t) for t in tensors]


def assert_dims(
    x: Any, y: Any, pairs: Sequence[tuple[int, int]], broadcast: bool, error: str, template: str
) -> tuple[Any, Any]:
    if tf.executing_eagerly():  # every dim is known: the front has checked them
        return x, y
    x_dims, y_dims = tf.shape(x), tf.shape(y)
    conditions = []
    for i, j in pairs:
        same = tf.equal(x_dims[i], y_dims[j])
        conditions.append(tf.logical_or(same, tf.equal(x_dims[i], 1)) if broadcast else same)
    ok = conditions[0] if len(conditions) == 1 else tf.reduce_all(tf.stack(conditions))
    template = template.replace("{x}", "{0}").replace("{y}", "{1}")
    check = graph_check(ok, error, template, [("shape", x_dims), ("shape", y_dims)])
    return _gated(check, [x])[0], y


def assert_nonnegative(x: Any, error: str, message: str) -> Any:
    if not value_checks_enabled():
        return x
    ok = tf.reduce_all(x >= 0)
    if tf.executing_eagerly():
        if not bool(ok):
            raise BY_NAME[error](message)
        return x
    return _gated(graph_check(ok, error, message, []), [x])[0]


def divide_no_nan(a: Any, b: Any) -> Any:
    return tf.math.divide_no_nan(a, b)


def assert_in_range(x: Any, low: int, high: int, error: str, message: str) -> Any:
    if not value_checks_enabled():
        return x
    values = tf.cast(x, tf.int32) if x.dtype.is_bool else x
    checks = []
    if values.dtype.is_floating or low > values.dtype.min:
        checks.append(values >= tf.constant(low, values.dtype))
    if values.dtype.is_floating or high <= values.dtype.max:
        checks.append(values < tf.constant(high, values.dtype))
    if not checks:
        return x
    ok = tf.reduce_all(tf.logical_and(*checks) if len(checks) == 2 else checks[0])
    if tf.executing_eagerly():
        if not bool(ok):
            raise BY_NAME[error](message)
        return x
    return _gated(graph_check(ok, error, message, []), [x])[0]
