"""``LayerNorm`` (over the last axis) and ``BatchNorm`` (over every axis but the last), with
PyTorch's formulas written once with backend ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from twinnn import initializers as init_
from twinnn._checks import check_float, check_positive_int
from twinnn.backends.base import Backend
from twinnn.distributed import context
from twinnn.distributed.context import Slice
from twinnn.errors import ArgumentError, ShapeError, describe_shape
from twinnn.module import Module, parameter

__all__ = ["BatchNorm", "LayerNorm", "batch_moments"]


def _normalize(
    impl: Backend, x: Any, mean: Any, var: Any, eps: float, weight: Any, bias: Any
) -> Any:
    """``(x - mean) * (1 / sqrt(var + eps)) * weight + bias`` (the square root correctly
    rounded on both backends; ``1 / sqrt`` is computed once per statistic)."""
    inv = 1.0 / impl.sqrt(var + eps)
    return (x - mean) * inv * weight + bias


def _check_features(
    impl: Backend, x: Any, features: int, layer: str, layout: str, minimum: int
) -> Any:
    """``x`` as float32, checked to have rank ``>= minimum`` and ``features`` last."""
    x = impl.convert_float(x, "x")
    shape = impl.static_shape(x)
    if len(shape) < minimum or shape[-1] != features:
        raise ShapeError(
            f"{layer}.forward: argument 'x' must have shape {layout} (features={features}), "
            f"got {describe_shape(shape)}"
        )
    return x


class LayerNorm(Module):
    """Layer normalisation over the last axis (PyTorch's ``nn.LayerNorm(features)``)::

        mean = mean(x, axis=-1);  var = mean((x - mean)**2, axis=-1)   # biased variance
        y = (x - mean) / sqrt(var + eps) * weight + bias

    Args:
        features: size ``F`` of the last axis.
        eps: added to the variance (torch's default ``1e-5``; Keras' ``LayerNormalization``
            defaults to ``1e-3``: :func:`twinnn.interop.keras.from_keras` carries the value
            over).

    Parameters: ``weight`` ``(F,)`` (ones), ``bias`` ``(F,)`` (zeros).

    Shapes: ``x`` ``(..., F)`` -> ``(..., F)``. Same in training and eval mode.

    torch runs its fused ``layer_norm`` kernel (7x faster than the formula written out, on a
    ``(32, 64, 128)`` input on one CPU thread); TensorFlow the formula. They agree within
    float32 rounding.
    """

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.features = check_positive_int(features, "LayerNorm(features)")
        self.eps = check_float(eps, "LayerNorm(eps)", low=0.0)
        self.weight = parameter(np.ones(self.features, np.float32))
        self.bias = parameter(init_.zeros((self.features,)))

    def forward(self, x: Any) -> Any:
        impl = self._backend
        x = _check_features(impl, x, self.features, "LayerNorm", f"(..., {self.features})", 1)
        return impl.layer_norm(x, self.weight, self.bias, self.eps)  # fused where there is one

    def __repr__(self) -> str:
        return f"LayerNorm({self.features}, eps={self.eps})"


#: The message of a training batch with fewer than 2 values per channel (torch raises too).
_ONE_VALUE = (
    "BatchNorm.forward: argument 'x' must have more than 1 value per channel in training mode "
    "(the product of every axis but the last; the unbiased batch variance needs 2), got "
    "fewer (call model.eval() to normalise with the running statistics)"
)


def batch_moments(impl: Backend, x: Any, axes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """``(mean, var, count)``: the per-channel mean and *biased* variance of ``x`` over
    ``axes`` (shapes ``(F,)``), and the number of values per channel (a Python int when the
    shape is known, else a float32 scalar tensor).

    Written as sums divided by the count, so that data-parallel training (DESIGN.md §16, issue
    13) can swap this one function for its global-batch version: all-reduce (SUM) ``sum(x)``
    and ``count``, then ``sum((x - mean)**2)`` about the global mean -- the statistics
    BatchNorm normalises with and feeds to its running averages become those of the global
    batch, as one process on the whole batch computes them.
    """
    shape = impl.static_shape(x)
    count: Any
    piece = context.current()
    if piece is not None:  # a slice of a global batch: the global batch's statistics
        return _global_moments(impl, piece, x, axes)
    if None in (shape[a] for a in axes):  # traced with unknown dims (a compiled TF step)
        first = impl.take(x, impl.convert(np.zeros(1, np.int64), "channel"), len(shape) - 1)
        ones = impl.broadcast_like(impl.convert(np.float32(1.0), "one"), first)
        count = impl.assert_nonnegative(impl.sum(ones) - 2.0, "ArgumentError", _ONE_VALUE) + 2.0
    else:
        count = int(np.prod([shape[a] or 0 for a in axes]))
        if count < 2:
            raise ArgumentError(_ONE_VALUE)
    mean = impl.sum(x, axes, False) / count
    var = impl.sum(impl.square(x - mean), axes, False) / count
    return mean, var, count


def _global_moments(impl: Backend, piece: Slice, x: Any, axes: tuple[int, ...]) -> tuple[Any, ...]:
    """:func:`batch_moments` over the global batch, from this slice's sums: ``count`` and
    ``sum(x)`` summed over the slices, then ``sum((x - mean)**2)`` about the global mean
    (gradients flow through both sums to every slice, as on one process)."""
    ones = impl.broadcast_like(impl.convert_float(1.0, "one"), x)
    count = piece.global_sum(impl.sum(ones, axes, False))
    mean = piece.global_sum_with_grad(impl.sum(x, axes, False)) / count
    var = piece.global_sum_with_grad(impl.sum(impl.square(x - mean), axes, False)) / count
    return mean, var, count


class BatchNorm(Module):
    """Batch normalisation over every axis but the last (channels last), with PyTorch's
    semantics (``nn.BatchNorm1d`` with ``affine=True, track_running_stats=True``).

    Training mode (``train_step``, or a direct call after ``model.train()``)::

        mean, var = per-channel mean and biased variance of x over every axis but the last
        y = (x - mean) / sqrt(var + eps) * weight + bias
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

    where ``n`` is the number of values per channel (the running variance is the *unbiased*
    one, as torch's; Keras' ``BatchNormalization`` keeps the biased one). Eval mode
    (``eval_step``, ``predict_step``, ``model.eval()``) normalises with ``running_mean`` and
    ``running_var`` and changes nothing.

    Args:
        features: size ``F`` of the last axis (the channels).
        momentum: weight of the new batch statistic in the running averages (torch's
            convention; Keras' ``momentum`` is ``1 - momentum``).
        eps: added to the variance.

    Parameters: ``weight`` ``(F,)`` (ones), ``bias`` ``(F,)`` (zeros). Buffers (in
    ``state_dict()`` and checkpoints, not trained): ``running_mean`` ``(F,)`` (zeros),
    ``running_var`` ``(F,)`` (ones), updated once per training call (once per ``train_step``),
    outside the gradient.

    Shapes: ``x`` ``(B, F)``, ``(B, T, F)``, ``(B, H, W, F)``, ... -> the same shape. In
    training mode ``x`` must hold more than one value per channel (an
    :class:`~twinnn.errors.ArgumentError` otherwise, as torch raises).
    """

    running_mean: Any  # buffers (register_buffer): native tensors / tf.Variables
    running_var: Any

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.features = check_positive_int(features, "BatchNorm(features)")
        self.momentum = check_float(momentum, "BatchNorm(momentum)", low=0.0, high=1.0)
        self.eps = check_float(eps, "BatchNorm(eps)", low=0.0)
        self.weight = parameter(np.ones(self.features, np.float32))
        self.bias = parameter(init_.zeros((self.features,)))
        self.register_buffer("running_mean", init_.zeros((self.features,)))
        self.register_buffer("running_var", np.ones(self.features, np.float32))

    def forward(self, x: Any) -> Any:
        impl = self._backend
        layout = f"(batch, ..., {self.features})"
        x = _check_features(impl, x, self.features, "BatchNorm", layout, 2)
        if not self.training:
            return _normalize(
                impl, x, self.running_mean, self.running_var, self.eps, self.weight, self.bias
            )
        axes = tuple(range(len(impl.static_shape(x)) - 1))
        mean, var, count = batch_moments(impl, x, axes)  # global-batch statistics: issue 13
        unbiased = var * (count / (count - 1.0))
        m = self.momentum
        self.running_mean = (1.0 - m) * self.running_mean + m * mean
        self.running_var = (1.0 - m) * self.running_var + m * unbiased
        return _normalize(impl, x, mean, var, self.eps, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"BatchNorm({self.features}, momentum={self.momentum}, eps={self.eps})"
