"""``Conv1D`` / ``Conv2D``: channels-last convolutions with TensorFlow's SAME rule on both
backends."""

from __future__ import annotations

import math
from typing import Any

from twinnn import initializers as init_
from twinnn._checks import check_bool, check_positive_int
from twinnn.errors import ArgumentError, ShapeError, describe_shape
from twinnn.module import Module, parameter
from twinnn.ops._window import layout, padding_arg, spatial_arg, window_input

__all__ = ["Conv1D", "Conv2D"]


class _Conv(Module):
    """The N-d convolution (N = ``SPATIAL``) behind :class:`Conv1D` and :class:`Conv2D`."""

    SPATIAL = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        strides: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = "valid",
        dilation: int | tuple[int, ...] = 1,
        bias: bool = True,
        *,
        init: str = "default",
    ) -> None:
        super().__init__()
        kind, n = type(self).__name__, self.SPATIAL
        self.in_channels = check_positive_int(in_channels, f"{kind}(in_channels)")
        self.out_channels = check_positive_int(out_channels, f"{kind}(out_channels)")
        self.kernel_size = spatial_arg(kernel_size, n, f"{kind}(kernel_size)")
        self.strides = spatial_arg(strides, n, f"{kind}(strides)")
        self.padding = padding_arg(padding, n, f"{kind}(padding)", explicit=True)
        self.dilation = spatial_arg(dilation, n, f"{kind}(dilation)")
        if max(self.strides) > 1 and max(self.dilation) > 1:
            raise ArgumentError(
                f"{kind}(strides={self.strides}, dilation={self.dilation}): strides > 1 "
                f"together with dilation > 1 is not supported (TensorFlow's and Keras' "
                f"convolutions refuse it); use strides=1 and subsample the output, or "
                f"dilation=1"
            )
        use_bias = check_bool(bias, f"{kind}(bias)")
        preset = init_.check_preset(init, kind)
        shape = (*self.kernel_size, self.in_channels, self.out_channels)
        taps = math.prod(self.kernel_size)
        fan_in, fan_out = taps * self.in_channels, taps * self.out_channels
        if preset == "torch":  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)); bias alike
            bound = 1.0 / math.sqrt(fan_in)
            self.weight = parameter(init_.uniform(shape, bound))
            self.bias = parameter(init_.uniform((self.out_channels,), bound)) if use_bias else None
        else:  # Keras: glorot_uniform over the receptive field, zero bias
            self.weight = parameter(init_.uniform(shape, math.sqrt(6.0 / (fan_in + fan_out))))
            self.bias = parameter(init_.zeros((self.out_channels,))) if use_bias else None

    def forward(self, x: Any) -> Any:
        impl = self._backend
        kind, who = type(self).__name__, f"{type(self).__name__}.forward"
        x = impl.convert_float(x, "x")
        shape = impl.static_shape(x)
        if len(shape) != self.SPATIAL + 2:
            expected = layout(self.SPATIAL).replace("channels)", f"{self.in_channels})")
            raise ShapeError(
                f"{who}: argument 'x' must have shape {expected} (channels last), got "
                f"{describe_shape(shape)}"
            )
        if shape[-1] is not None and shape[-1] != self.in_channels:
            raise ShapeError(
                f"{who}: x has {shape[-1]} channels, {kind}(in_channels={self.in_channels}) "
                f"expects {self.in_channels} (channels last: x is {layout(self.SPATIAL)}, got "
                f"{describe_shape(shape)})"
            )
        window = ("kernel_size", self.kernel_size)
        x, pads = window_input(impl, x, who, window, self.strides, self.dilation, self.padding)
        return impl.conv(x, self.weight, self.bias, self.strides, self.dilation, pads)

    def __repr__(self) -> str:
        def one(values: tuple[int, ...]) -> Any:
            return values[0] if len(values) == 1 else values

        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={one(self.kernel_size)}, strides={one(self.strides)}, "
            f"padding={self.padding!r}, dilation={one(self.dilation)}, "
            f"bias={self.bias is not None})"
        )


class Conv1D(_Conv):
    """1-D convolution over the width of a channels-last ``(B, W, C)`` input.

    ``y[b, i, o] = bias[o] + sum_{j, c} x_padded[b, i * s + j * d, c] * weight[j, c, o]``
    (a cross-correlation, as in both frameworks).

    Args:
        in_channels: ``C``, the last axis of ``x``.
        out_channels: ``O``, the last axis of the output.
        kernel_size: ``k``, an int (or a 1-tuple).
        strides: ``s``, the step between windows (default 1).
        padding: ``"valid"`` (no padding), ``"same"`` (TensorFlow's SAME rule at any stride
            and dilation: ``ceil(W / s)`` outputs, ``total = max((ceil(W / s) - 1) * s +
            (k - 1) * d + 1 - W, 0)`` zeros, ``total // 2`` before and the rest after), or an
            int ``p >= 0``: ``p`` zeros on both sides (torch's ``padding=p``).
        dilation: ``d``, the spacing of the kernel taps (default 1); ``strides`` and
            ``dilation`` cannot both exceed 1 (TensorFlow and Keras refuse it).
        bias: whether to add ``bias``.
        init: ``"default"``/``"keras"`` (``weight`` Glorot-uniform with ``fan_in = k * C``,
            ``fan_out = k * O``; ``bias`` zeros: Keras' ``Conv1D``) or ``"torch"`` (``weight``
            and ``bias`` ``U(-1/sqrt(k * C), 1/sqrt(k * C))``: ``torch.nn.Conv1d``'s).

    Parameters: ``weight`` ``(k, C, O)`` (Keras' ``kernel``; torch's ``weight`` is ``(O, C,
    k)``), ``bias`` ``(O,)``.

    Shapes: ``x`` ``(B, W, C)`` -> ``(B, W', O)`` with ``W' = (W + pads - (k - 1) * d - 1) //
    s + 1`` (``ceil(W / s)`` for ``"same"``).
    """

    SPATIAL = 1


class Conv2D(_Conv):
    """2-D convolution over a channels-last ``(B, H, W, C)`` input.

    ``y[b, i, j, o] = bias[o] + sum_{p, q, c} x_padded[b, i*s_h + p*d_h, j*s_w + q*d_w, c] *
    weight[p, q, c, o]`` (a cross-correlation, as in both frameworks).

    Args:
        in_channels: ``C``, the last axis of ``x``.
        out_channels: ``O``, the last axis of the output.
        kernel_size: ``(k_h, k_w)``, or an int for both.
        strides: ``(s_h, s_w)`` or an int (default 1).
        padding: ``"valid"``, ``"same"`` (TensorFlow's SAME rule per spatial dim, at any stride
            and dilation, the extra zero at the end: see :class:`Conv1D`), or explicit zero
            padding on both sides of each dim, an int or ``(p_h, p_w)`` (torch's
            ``padding=``).
        dilation: ``(d_h, d_w)`` or an int (default 1).
        bias: whether to add ``bias``.
        init: ``"default"``/``"keras"`` (Glorot-uniform with ``fan_in = k_h k_w C``,
            ``fan_out = k_h k_w O``, zero bias) or ``"torch"`` (``U(+-1/sqrt(k_h k_w C))``
            for ``weight`` and ``bias``).

    Parameters: ``weight`` ``(k_h, k_w, C, O)`` (Keras' ``kernel``; torch's ``weight`` is
    ``(O, C, k_h, k_w)``), ``bias`` ``(O,)``.

    Shapes: ``x`` ``(B, H, W, C)`` -> ``(B, H', W', O)``, each spatial dim as in
    :class:`Conv1D`. A ``torch.nn.Conv2d`` takes ``(B, C, H, W)``: permute with
    ``twinnn.transpose(x, (0, 2, 3, 1))``.
    """

    SPATIAL = 2
