"""Classification losses with torch's formulas, the class axis last: ``cross_entropy``,
``nll_loss`` and ``binary_cross_entropy`` (from logits).

Class-id targets are integer tensors of the logits' shape without the class axis; every id
must be in ``[0, C)`` or equal ``ignore_index`` -- checked on the host for host data and by a
graph-safe backend check for native tensors, an :class:`~twinnn.errors.ArgumentError` on
both backends (torch raises a device-side assert or an ``IndexError``, TensorFlow's GPU
gather silently reads zeros).

Weights (the rules of :mod:`twinnn.losses._reduce`): every item ``i`` gets the weight
``w_i = weight[i] * class_weight[target[i]] * (target[i] != ignore_index)``; ``"none"`` gives
each item's weighted loss, ``"sum"`` their sum and ``"mean"`` ``sum(weighted losses) /
sum(w_i)`` -- torch's weighted mean -- or ``0`` when every ``w_i`` is 0 (every target
ignored, say: torch gives NaN there).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

from twinnn import config
from twinnn._checks import INTEGER_DTYPES, check_float, fill_shapes, require_dims
from twinnn.backends.base import Backend
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError, describe_shape
from twinnn.losses._reduce import (
    check_nonempty,
    check_reduction,
    checked_weight,
    reduce,
    require_same_shape,
)

__all__ = ["binary_cross_entropy", "cross_entropy", "nll_loss"]

_DEFAULT_IGNORE = -100
_ITEMS = "the item shape (the shape of the scores without their class axis)"
_LOGITS = "the shape of 'logits'"


# --- argument checks (host-side) ----------------------------------------------------------------


def class_scores(impl: Backend, x: Any, function: str, name: str) -> tuple[Any, int]:
    """``x`` as float32 ``(..., C)`` and ``C`` (known, ``>= 1``)."""
    x = impl.convert_float(x, name)
    shape = impl.static_shape(x)
    if not shape:
        raise ShapeError(
            f"{function}: {name!r} must have the classes on its last axis, shape (..., C), "
            "got a 0-d tensor"
        )
    classes = shape[-1]
    if classes is None:
        raise ShapeError(
            f"{function}: the class axis (the last) of {name!r} must be known while tracing, "
            f"got shape {describe_shape(shape)}"
        )
    if classes == 0:
        raise ShapeError(
            f"{function}: {name!r} must have at least one class, got shape {describe_shape(shape)}"
        )
    return x, classes


def target_kind(impl: Backend, target: object, function: str) -> str:
    """``"ids"`` for integer targets, ``"probabilities"`` for floating ones (bool: an error)."""
    if impl.is_native(target):
        dtype = impl.dtype_name(target)
    else:
        try:
            dtype = np.asarray(target).dtype.name
        except (TypeError, ValueError):  # ragged lists: convert_float names the argument
            return "probabilities"
    if dtype in INTEGER_DTYPES:
        return "ids"
    if dtype == "bool":
        raise DTypeError(
            f"{function}: 'target' must hold integer class ids or float probabilities, got "
            "dtype bool"
        )
    return "probabilities"


def _check_ignore_index(ignore_index: object, function: str) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, Integral):
        raise ArgumentTypeError(
            f"{function}(ignore_index) must be an int, got {type(ignore_index).__name__} "
            f"{ignore_index!r}"
        )
    return int(ignore_index)


def class_ids(
    impl: Backend,
    target: object,
    scores: Any,
    classes: int,
    ignore_index: int | None,
    function: str,
    scores_name: str,
) -> tuple[Any, Any]:
    """``(ids, safe)``: ``target`` as an int64 tensor of ``scores``' shape without the class
    axis, every id in ``[0, classes)`` or equal to ``ignore_index`` (None: no id is ignored),
    and ``safe``, the ids with the ignored ones replaced by 0 (every one a valid index).

    Host data are checked here (the message names the first bad id); a native tensor by
    ``impl.assert_in_range`` on ``safe``, which is returned behind that check: gather with it.
    """
    allowed = f"[0, {classes})" + ("" if ignore_index is None else f" or {ignore_index}")
    message = f"{function}: 'target' must hold class ids in {allowed} (C = {classes})"
    native = impl.is_native(target)
    if native and impl.dtype_name(target) not in INTEGER_DTYPES:
        raise DTypeError(
            f"{function}: 'target' must hold integer class ids, got a tensor of dtype "
            f"{impl.dtype_name(target)}"
        )
    if not native:
        try:
            values = np.asarray(target)
        except (TypeError, ValueError):  # ragged: convert raises the twinnn error naming it
            impl.convert(target, "target", dtype="int64")
            raise
        if values.dtype.name not in INTEGER_DTYPES:
            raise DTypeError(
                f"{function}: 'target' must hold integer class ids, got "
                f"{type(target).__name__} of {values.dtype}"
            )
        bad = (values < 0) | (values >= classes)
        if ignore_index is not None:
            bad &= values != ignore_index
        if bool(np.any(bad)):
            raise ArgumentError(f"{message}, got {int(values[bad].flat[0])}")
    ids = impl.convert(target, "target", dtype="int64")
    score_shape, id_shape = impl.static_shape(scores), impl.static_shape(ids)
    template = (
        f"{function}: 'target' holds class ids, so its shape must be the shape of "
        f"{scores_name!r} {{y}} without the last (class) axis, got {{x}} (probabilities "
        "must be a float tensor)"
    )
    rank = len(score_shape) - 1
    if len(id_shape) != rank:
        raise ShapeError(fill_shapes(template, id_shape, score_shape))
    ids, _ = require_dims(impl, ids, scores, [(i, i) for i in range(rank)], template)
    safe = ids if ignore_index is None else impl.where(ids == ignore_index, ids * 0, ids)
    if native:
        safe = impl.assert_in_range(
            safe, 0, classes, "ArgumentError", f"{message}, got an id outside that range"
        )
    return ids, safe


def _class_weight(impl: Backend, class_weight: object, classes: int, function: str) -> Any:
    """``class_weight`` as float32 ``(C,)``, every element ``>= 0``."""
    negative = f"{function}: 'class_weight' must be >= 0 everywhere, got negative or NaN values"
    if not impl.is_native(class_weight):
        values = np.asarray(class_weight)
        if values.dtype.kind in "biuf" and not bool(np.all(values >= 0)):
            raise ArgumentError(negative)
    weight = impl.convert_float(class_weight, "class_weight")
    shape = impl.static_shape(weight)
    if shape != (classes,):
        raise ShapeError(
            f"{function}: 'class_weight' must have shape (C,) = ({classes},), one weight per "
            f"class, got {describe_shape(shape)}"
        )
    return impl.assert_nonnegative(weight, "ArgumentError", negative)


def _check_smoothing(label_smoothing: object, function: str) -> float:
    return check_float(label_smoothing, f"{function}(label_smoothing)", low=0.0, high=1.0)


# --- the losses -----------------------------------------------------------------------------------


def _nll_of_ids(
    impl: Backend,
    log_probs: Any,
    ids: Any,
    safe: Any,
    classes: int,
    ignore_index: int,
    class_weight: Any,
    label_smoothing: float,
    weight: Any,
    reduction: str,
    function: str,
    nll: Any = None,
) -> Any:
    """The torch formula for class-id targets on log-probabilities ``(..., C)``; ``nll``, when
    given, is ``-log_probs`` at ``safe`` already (a fused kernel's result)."""
    axis = len(impl.static_shape(log_probs)) - 1
    valid = impl.cast(ids != ignore_index, "float32")  # (...)
    if nll is None:
        picked = impl.take_along_axis(log_probs, impl.expand_dims(safe, axis), axis)
        nll = -impl.squeeze(picked, [axis])  # (...)
    item_weight = valid if class_weight is None else impl.take(class_weight, safe, 0) * valid
    losses = item_weight * nll
    if label_smoothing > 0.0:
        scaled = log_probs if class_weight is None else log_probs * class_weight
        smooth = -impl.sum(scaled, axis, False) * valid
        losses = (1.0 - label_smoothing) * losses + (label_smoothing / classes) * smooth
    if weight is not None:
        weight = checked_weight(impl, weight, ids, function, _ITEMS)
        losses, item_weight = losses * weight, item_weight * weight
    return reduce(impl, losses, item_weight, reduction)


def cross_entropy(
    logits: Any,
    target: Any,
    class_weight: Any = None,
    ignore_index: int = _DEFAULT_IGNORE,
    label_smoothing: float = 0.0,
    weight: Any = None,
    reduction: str = "mean",
) -> Any:
    """Softmax cross-entropy from logits, the class axis last (torch's ``F.cross_entropy``).

    With ``log p = log_softmax(logits)`` over the last axis and ``eps = label_smoothing``:

    - **class-id targets** (an integer tensor of shape ``(...)``): item ``i`` with class
      ``t`` has loss ``(1 - eps) * cw[t] * (-log p[t]) + eps / C * sum_c cw[c] * (-log p[c])``
      (``cw`` = ``class_weight``, all ones by default), 0 when ``t == ignore_index``;
      ``"mean"`` divides the sum by ``sum_i weight[i] * cw[t_i]`` over the items not ignored
      (torch's weighted mean; the smoothing term is divided by the same sum, as torch does);
    - **probability targets** (a float tensor ``q`` of the logits' shape): item loss
      ``-sum_c cw[c] * q'[c] * log p[c]`` with ``q' = (1 - eps) * q + eps / C``; ``"mean"``
      divides by the number of items (by ``sum(weight)`` with ``weight=``), as torch.

    Args:
        logits: float32 ``(..., C)``, un-normalised scores.
        target: integer class ids ``(...)`` (every id in ``[0, C)`` or ``ignore_index``, else
            an :class:`~twinnn.errors.ArgumentError`), or float probabilities ``(..., C)``.
            The dtype decides: a float tensor of shape ``(...)`` is a
            :class:`~twinnn.errors.ShapeError` (cast class ids to an integer dtype).
        class_weight: optional ``(C,)`` non-negative weight per class.
        ignore_index: the id of targets that count neither in the sum nor in the divisor
            (torch's default -100). Class-id targets only: with probability targets it must
            stay -100.
        label_smoothing: ``eps`` in ``[0, 1]``.
        weight: optional non-negative per-item weights that broadcast to the item shape
            ``(...)``; they multiply each item's loss and its weight in the divisor (see the
            module docstring). torch has no such argument; with all ones it is torch's loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per item, shape ``(...)``). A mean
            over zero items is an error; a mean whose weights are all 0 (every target
            ignored) is 0, where torch gives NaN.

    Values and gradients stay finite for logits as large as ``+-1e4``.
    """
    function = "cross_entropy"
    impl = config.current()
    check_reduction(reduction, function)
    ignore = _check_ignore_index(ignore_index, function)
    smoothing = _check_smoothing(label_smoothing, function)
    kind = target_kind(impl, target, function)
    x, classes = class_scores(impl, logits, function, "logits")
    cw = None if class_weight is None else _class_weight(impl, class_weight, classes, function)
    if kind == "ids":
        ids, safe = class_ids(impl, target, x, classes, ignore, function, "logits")
        check_nonempty(impl, ids, reduction, function, "target")
        if smoothing == 0.0:  # -log p[t] by the framework's fused softmax-cross-entropy kernel
            nll = impl.sparse_cross_entropy(x, safe)
            return _nll_of_ids(
                impl, x, ids, safe, classes, ignore, cw, 0.0, weight, reduction, function, nll
            )
        log_probs = impl.log_softmax(x, len(impl.static_shape(x)) - 1)
        return _nll_of_ids(
            impl, log_probs, ids, safe, classes, ignore, cw, smoothing, weight, reduction, function
        )
    if ignore != _DEFAULT_IGNORE:
        raise ArgumentError(
            f"{function}(ignore_index) applies to class-id targets only; with float "
            f"probability targets it must stay {_DEFAULT_IGNORE}, got {ignore}"
        )
    probabilities = impl.convert_float(target, "target")
    template = (
        f"{function}: float 'target' holds class probabilities, so it must have the shape of "
        "'logits' {y}, got {x} (class ids must be an integer tensor)"
    )
    shape = impl.static_shape(x)
    if len(impl.static_shape(probabilities)) != len(shape):
        raise ShapeError(fill_shapes(template, impl.static_shape(probabilities), shape))
    probabilities, x = require_dims(
        impl, probabilities, x, [(i, i) for i in range(len(shape))], template
    )
    axis = len(shape) - 1
    check_nonempty(impl, probabilities, reduction, function, "target")
    if smoothing > 0.0:
        probabilities = probabilities * (1.0 - smoothing) + smoothing / classes
    log_probs = impl.log_softmax(x, axis)
    scaled = log_probs * probabilities
    if cw is not None:
        scaled = scaled * cw
    losses = -impl.sum(scaled, axis, False)  # (...)
    if weight is None:
        return reduce(impl, losses, None, reduction)
    weight = checked_weight(impl, weight, losses, function, _ITEMS)
    return reduce(impl, losses * weight, weight, reduction)


def nll_loss(
    log_probs: Any,
    target: Any,
    class_weight: Any = None,
    ignore_index: int = _DEFAULT_IGNORE,
    weight: Any = None,
    reduction: str = "mean",
) -> Any:
    """Negative log-likelihood of class ids given log-probabilities (torch's ``F.nll_loss``).

    Item ``i`` with class ``t`` has loss ``-cw[t] * log_probs[..., t]`` (0 when
    ``t == ignore_index``); ``"mean"`` divides by ``sum_i weight[i] * cw[t_i]`` over the
    items not ignored. ``cross_entropy(logits, t)`` is ``nll_loss(log_softmax(logits), t)``.

    Args:
        log_probs: float32 ``(..., C)`` log-probabilities (not checked to be normalised).
        target: integer class ids ``(...)``, each in ``[0, C)`` or ``ignore_index``.
        class_weight, ignore_index, weight, reduction: as in :func:`cross_entropy`.
    """
    function = "nll_loss"
    impl = config.current()
    check_reduction(reduction, function)
    ignore = _check_ignore_index(ignore_index, function)
    x, classes = class_scores(impl, log_probs, function, "log_probs")
    cw = None if class_weight is None else _class_weight(impl, class_weight, classes, function)
    ids, safe = class_ids(impl, target, x, classes, ignore, function, "log_probs")
    check_nonempty(impl, ids, reduction, function, "target")
    return _nll_of_ids(impl, x, ids, safe, classes, ignore, cw, 0.0, weight, reduction, function)


def _softplus(impl: Backend, y: Any) -> Any:
    """``log(1 + exp(y)) = max(y, 0) + log1p(exp(-|y|))``, stable, with the exact gradient
    ``sigmoid(y)`` at ``y = 0`` too (both kinks taken from the same side: relu's gradient
    at 0 is 0, so ``-|y|`` is read as ``y`` there)."""
    negative_size = impl.where(y > 0, -y, y)
    return impl.relu(y) + impl.log1p(impl.exp(negative_size))


def binary_cross_entropy(
    logits: Any,
    target: Any,
    pos_weight: Any = None,
    weight: Any = None,
    reduction: str = "mean",
) -> Any:
    """Sigmoid cross-entropy from logits (torch's ``F.binary_cross_entropy_with_logits``).

    Per element, with ``x`` the logit and ``z`` the target:
    ``max(x, 0) - x * z + log1p(exp(-|x|))``; with ``pos_weight`` ``pw``:
    ``(1 - z) * x + (1 + (pw - 1) * z) * (log1p(exp(-|x|)) + max(-x, 0))``. Finite values and
    gradients for any finite logit (``+-1e4`` included); the gradient is
    ``sigmoid(x) - z`` without ``pos_weight``.

    Args:
        logits: float32 tensor, any shape ``(..., C)`` (there is no probability input: compute
            from logits, never from ``sigmoid`` outputs).
        target: the same shape exactly (no broadcasting), values usually in ``[0, 1]``
            (integer or bool targets are cast to float32; values are not checked, as torch).
        pos_weight: optional non-negative weight of the positive term that broadcasts to
            ``logits`` (NumPy rules: a ``(C,)`` tensor weighs each class of the last axis).
        weight: optional non-negative element weights that broadcast to ``logits``.
        reduction: as in :func:`~twinnn.losses.mse_loss` (the weighted mean divides by the
            sum of the broadcast ``weight``; 0 when it is 0).
    """
    function = "binary_cross_entropy"
    impl = config.current()
    check_reduction(reduction, function)
    x = impl.convert_float(logits, "logits")
    z = impl.convert_float(target, "target")
    x, z = require_same_shape(impl, x, z, function, "logits")
    check_nonempty(impl, x, reduction, function, "logits")
    if pos_weight is None:
        losses = _softplus(impl, x) - x * z
    else:
        pw = checked_weight(impl, pos_weight, x, function, _LOGITS, "pos_weight")
        losses = (1.0 - z) * x + (1.0 + (pw - 1.0) * z) * _softplus(impl, -x)
    if weight is None:
        return reduce(impl, losses, None, reduction)
    weight = checked_weight(impl, weight, x, function, _LOGITS)
    return reduce(impl, losses * weight, weight, reduction)
