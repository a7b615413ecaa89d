"""Softmax, ``logsumexp`` and the activations beyond ``relu``/``tanh``/``sigmoid``.

Each is a float op: integer and bool inputs become float32, a native floating tensor that is
not float32 is refused. ``softmax``, ``log_softmax`` and ``logsumexp`` subtract the maximum
first, so logits of any size (``1e4``, ``-1e4``) give finite values and gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinnn import config
from twinnn._checks import check_bool, check_float
from twinnn.errors import ArgumentError, ArgumentTypeError
from twinnn.ops._args import axes_arg, axis_of, describe, reduced_axes

__all__ = ["elu", "gelu", "leaky_relu", "log_softmax", "logsumexp", "silu", "softmax"]


def softmax(x: Any, axis: int = -1) -> Any:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``: float32, same shape as ``x``,
    every slice along ``axis`` summing to 1."""
    impl = config.current()
    x = impl.convert_float(x, "x")
    return impl.softmax(x, axis_of(axis, impl.static_shape(x), "softmax(axis)", "x"))


def log_softmax(x: Any, axis: int = -1) -> Any:
    """``x - logsumexp(x, axis, keepdims=True)``: float32, same shape as ``x``; use it (not
    ``log(softmax(x))``, which gives ``-inf`` where a probability underflows)."""
    impl = config.current()
    x = impl.convert_float(x, "x")
    return impl.log_softmax(x, axis_of(axis, impl.static_shape(x), "log_softmax(axis)", "x"))


def logsumexp(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """``log(sum(exp(x)))`` over ``axis`` (all axes when None, none when ``()``), float32,
    computed as ``m + log(sum(exp(x - m)))`` with ``m`` the maximum; ``-inf`` over an empty
    axis (``scipy.special.logsumexp``). Gradient: ``softmax(x)`` over the reduced axes."""
    impl = config.current()
    keep = check_bool(keepdims, "logsumexp(keepdims)")
    items = axes_arg(axis, "logsumexp(axis)")
    x = impl.convert_float(x, "x")
    axes = reduced_axes("logsumexp", impl.static_shape(x), items, axis)
    if axes == ():
        return x
    return impl.logsumexp(x, axes, keep)


_GELU_FORMS = ("none", "tanh")


def gelu(x: Any, approximate: str = "none") -> Any:
    """Gaussian error linear unit, float32: ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))``
    (exact, the default), or with ``approximate="tanh"`` the tanh form
    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x**3)))``. ``approximate`` takes torch's
    values (``"none"``, ``"tanh"``); TensorFlow's ``tf.nn.gelu(approximate=True)`` is the tanh
    form, Keras' ``gelu`` defaults to it (``approximate=True``) -- twinnn defaults to the
    exact form, as torch."""
    impl = config.current()
    if not isinstance(approximate, str):
        raise ArgumentTypeError(
            f"gelu(approximate) must be 'none' or 'tanh' (torch's values), got "
            f"{describe(approximate)}"
        )
    if approximate not in _GELU_FORMS:
        raise ArgumentError(
            f"gelu(approximate) must be one of {list(_GELU_FORMS)}, got {approximate!r}"
        )
    return impl.gelu(impl.convert_float(x, "x"), approximate == "tanh")


def silu(x: Any) -> Any:
    """``x * sigmoid(x)`` (swish), float32."""
    impl = config.current()
    return impl.silu(impl.convert_float(x, "x"))


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Any:
    """``x`` where ``x > 0``, else ``negative_slope * x`` (torch's default slope 0.01; Keras'
    ``LeakyReLU`` defaults to 0.3), float32. Gradient ``negative_slope`` at 0."""
    impl = config.current()
    slope = check_float(negative_slope, "leaky_relu(negative_slope)")
    return impl.leaky_relu(impl.convert_float(x, "x"), slope)


def elu(x: Any, alpha: float = 1.0) -> Any:
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``, float32. Gradient ``alpha`` at
    0 (torch's rule)."""
    impl = config.current()
    scale = check_float(alpha, "elu(alpha)")
    return impl.elu(impl.convert_float(x, "x"), scale)
