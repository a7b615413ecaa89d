"""Framework-free window geometry of convolutions and pooling, shared by the neutral front
(argument checks) and the backends (the torch backend pads explicitly): TensorFlow's SAME rule,
written once.

Per spatial dim of size ``n``, window (kernel) ``k``, stride ``s`` and dilation ``d``, the
window spans ``e = (k - 1) * d + 1`` inputs. SAME gives ``ceil(n / s)`` outputs and pads

    total = max((ceil(n / s) - 1) * s + e - n, 0)
    before = total // 2, after = total - before      (the extra element at the end)

which is TensorFlow's and Keras' ``padding="same"`` at any stride, and torch's
``padding="same"`` (stride 1 only). Explicit ``(before, after)`` pads give
``(n + before + after - e) // s + 1`` outputs.
"""

from __future__ import annotations

__all__ = ["output_size", "same_pads", "span"]


def span(kernel: int, dilation: int) -> int:
    """The number of inputs a window of ``kernel`` taps ``dilation`` apart covers."""
    return (kernel - 1) * dilation + 1


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding ``(before, after)`` of one spatial dim of ``size``."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + span(kernel, dilation) - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, dilation: int, pads: tuple[int, int]) -> int:
    """The number of windows along one spatial dim of ``size`` padded by ``pads`` (at least one
    when the padded size holds a window; the caller checks that)."""
    return (size + pads[0] + pads[1] - span(kernel, dilation)) // stride + 1
