"""Metrics: numbers to report, not to differentiate."""

from __future__ import annotations

from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import INTEGER_DTYPES, fill_shapes, require_dims
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError, ShapeError
from twinnn.losses._reduce import check_nonempty, checked_weight, reduce
from twinnn.losses.classification import class_ids, class_scores, target_kind

__all__ = ["accuracy"]

_ITEMS = "the item shape (the shape of 'logits' without its last axis)"


def accuracy(logits: Any, target: Any, weight: Any = None) -> Any:
    """The fraction of items classified right, as a float32 scalar tensor (no gradient).

    - **Several classes** (``logits`` ``(..., C)`` with ``C >= 2``): an item is right when
      the argmax over the last axis (the first of tied maxima, on both backends) equals its
      integer class id. ``target`` is an integer tensor of shape ``(...)`` with ids in
      ``[0, C)`` (else an :class:`~twinnn.errors.ArgumentError`).
    - **Binary** (``logits`` ``(..., 1)``, one logit per item as for
      :func:`~twinnn.losses.binary_cross_entropy`): the prediction is class 1 where the logit
      is ``> 0`` (probability ``> 0.5``), and the target is class 1 where it is ``> 0.5``.
      ``target`` has the shape ``(..., 1)`` of the logits or ``(...)``; integer targets must
      be 0 or 1, float targets are read as their nearest class (0/1 labels; a soft label of
      exactly 0.5 counts as class 0).

    Args:
        weight: optional non-negative per-item weights that broadcast to the item shape
            ``(...)``: the result is ``sum(w * right) / sum(broadcast w)``, 0 when every
            weight is 0 (a mask of valid items, say).

    Returns:
        A float32 scalar in ``[0, 1]``. An empty batch is a :class:`~twinnn.errors.ShapeError`.
    """
    function = "accuracy"
    impl = config.current()
    x, classes = class_scores(impl, logits, function, "logits")
    axis = len(impl.static_shape(x)) - 1
    if classes > 1:
        target_kind(impl, target, function)  # bool targets: a DTypeError
        _, labels = class_ids(impl, target, x, classes, None, function, "logits")
        right = impl.argmax(x, axis) == labels
    else:
        labels = _binary_labels(impl, target, x, axis, function)
        right = (impl.squeeze(x, [axis]) > 0.0) == (labels > 0.5)
    right = impl.cast(right, "float32")  # (...)
    check_nonempty(impl, right, "mean", function, "target")
    if weight is None:
        return impl.mean(right)
    weight = checked_weight(impl, weight, right, function, _ITEMS)
    return reduce(impl, right * weight, weight, "mean")


def _binary_labels(impl: Backend, target: object, x: Any, axis: int, function: str) -> Any:
    """Binary targets as float32 of the item shape ``(...)``; integer ones checked to be 0/1."""
    message = f"{function}: a binary 'target' (logits of shape (..., 1)) must hold 0 or 1"
    native = impl.is_native(target)
    integer = (impl.dtype_name(target) if native else _host_dtype(target)) in INTEGER_DTYPES
    if integer and not native:
        values = np.asarray(target)
        bad = (values < 0) | (values > 1)
        if bool(np.any(bad)):
            raise ArgumentError(f"{message}, got {int(values[bad].flat[0])}")
    if integer and native:
        target = impl.assert_in_range(target, 0, 2, "ArgumentError", f"{message}, got another id")
    labels = impl.convert_float(target, "target")
    shape, target_shape = impl.static_shape(x), impl.static_shape(labels)
    template = (
        f"{function}: 'target' must have the shape of the binary 'logits' {{y}} or that shape "
        "without its last axis, got {x}"
    )
    if len(target_shape) == len(shape):
        labels, _ = require_dims(impl, labels, x, [(axis, axis)], template)
        labels = impl.squeeze(labels, [axis])
    elif len(target_shape) != axis:
        raise ShapeError(fill_shapes(template, target_shape, shape))
    labels, _ = require_dims(impl, labels, x, [(i, i) for i in range(axis)], template)
    return labels


def _host_dtype(value: object) -> str:
    try:
        return str(np.asarray(value).dtype.name)
    except (TypeError, ValueError):  # ragged: convert_float names the argument
        return "object"
