"""Argument and shape checks of the sliding-window ops (``Conv1D``/``Conv2D``, ``max_pool``,
``avg_pool``), host-side and identical on both backends. The padding rule itself is
``twinnn.backends.window`` (TensorFlow's SAME rule, written once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twinnn.backends.window import same_pads, span
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError, describe_shape
from twinnn.ops._args import as_int, describe

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

#: ``padding`` of a backend call: ``"same"`` or one ``(before, after)`` pair per spatial dim.
BackendPadding = str | list[tuple[int, int]]

_LAYOUTS = {1: "(batch, width, channels)", 2: "(batch, height, width, channels)"}
MODES = ("valid", "same")


def layout(spatial: int) -> str:
    """The channels-last layout of an input with ``spatial`` spatial dims."""
    return _LAYOUTS[spatial]


def spatial_arg(value: object, spatial: int, argument: str, *, low: int = 1) -> tuple[int, ...]:
    """An int (the same for every spatial dim) or a list/tuple of ``spatial`` ints, each
    ``>= low``, as a tuple."""
    items = [value] if as_int(value) is not None else value
    what = f"an int or a tuple of {spatial} ints >= {low} (one per spatial dim)"
    if not isinstance(items, (list, tuple)) or any(as_int(v) is None for v in items):
        raise ArgumentTypeError(f"{argument} must be {what}, got {describe(value)}")
    numbers = [int(v) for v in items]
    if len(numbers) == 1:
        numbers = numbers * spatial
    if len(numbers) != spatial or any(v < low for v in numbers):
        raise ArgumentError(f"{argument} must be {what}, got {value!r}")
    return tuple(numbers)


def padding_arg(
    value: object, spatial: int, argument: str, *, explicit: bool
) -> str | tuple[int, ...]:
    """``"valid"`` or ``"same"`` (any case), or with ``explicit`` an int / tuple of ints >= 0
    (zeros added on both sides of each spatial dim, torch's ``padding=``)."""
    if isinstance(value, str):
        if value.lower() in MODES:
            return value.lower()
    elif explicit and (as_int(value) is not None or isinstance(value, (list, tuple))):
        return spatial_arg(value, spatial, argument, low=0)
    allowed = "'valid', 'same', an int >= 0 or a tuple of ints >= 0" if explicit else None
    expected = allowed or "'valid' or 'same'"
    error = ArgumentError if isinstance(value, str) else ArgumentTypeError
    raise error(f"{argument} must be {expected}, got {describe(value)}")


def spatial_rank(impl: Backend, x: Any, who: str) -> int:
    """1 or 2: the spatial dims of a channels-last ``x`` of rank 3 or 4."""
    shape = impl.static_shape(x)
    if len(shape) not in (3, 4):
        raise ShapeError(
            f"{who}: argument 'x' must have shape {layout(1)} or {layout(2)} (channels last), "
            f"got {describe_shape(shape)}"
        )
    return len(shape) - 2


def window_input(
    impl: Backend,
    x: Any,
    who: str,
    window: tuple[str, tuple[int, ...]],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    padding: str | tuple[int, ...],
) -> tuple[Any, BackendPadding]:
    """``(x, padding for the backend)``, ``x`` checked to hold a window in every spatial dim.

    ``x`` has rank ``2 + len(strides)`` (checked by the caller); ``window`` is ``(argument
    name, sizes)``. Known dims are checked here; dims unknown while tracing by
    ``impl.assert_min_dims`` when the step runs (same error, same message).
    """
    name, sizes = window
    shape = impl.static_shape(x)
    spans = tuple(span(k, d) for k, d in zip(sizes, dilation, strict=True))
    dilated = "" if set(dilation) == {1} else f" (dilation={dilation} spans {spans})"
    template = (
        f"{who}: argument 'x' of shape {{x}} is too small for {name}={sizes}{dilated} with "
        f"padding={padding!r}: each spatial dim plus its padding must be at least the window's "
        f"span {spans}"
    )
    minimums = []
    pairs: list[tuple[int, int]] = []
    for i, (k, s, d) in enumerate(zip(sizes, strides, dilation, strict=True)):
        n = shape[1 + i]
        if isinstance(padding, tuple):
            pads = (padding[i], padding[i])
        elif padding == "same" and n is not None:
            pads = same_pads(n, k, s, d)
        else:
            pads = (0, 0)
        pairs.append(pads)
        low = span(k, d) - pads[0] - pads[1]
        if n is None:
            if padding != "same" and low > 0:
                minimums.append((1 + i, low))
        elif n < low:
            raise ShapeError(template.replace("{x}", describe_shape(shape)))
    if minimums:
        x = impl.assert_min_dims(x, minimums, "ShapeError", template)
    return x, ("same" if padding == "same" else pairs)
