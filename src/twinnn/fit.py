"""``twinnn.fit``: run a training step over batches for some epochs, with a progress bar.

The loss a step returns stays a native tensor until it is needed on the host: losses are
copied to the host in one transfer per bar refresh (about twice a second while the bar is
shown), at the end of each epoch, every 1024 steps, or every step when ``callbacks`` are
given. The returned ``History`` always holds every step's loss.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinnn import backends as _registry
from twinnn._checks import check_bool, check_positive_int
from twinnn.backends.base import Backend
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    NonFiniteLossError,
    ShapeError,
    describe_shape,
)

__all__ = ["Callback", "History", "fit"]

#: ``callback(epoch, step_index, loss)``: epoch from 0, step index within the epoch from 0,
#: the step's loss as a Python float.
Callback = Callable[[int, int, float], None]

_REFRESH_S = 0.5  # host copies of the loss while the bar is shown: at most this often
_MAX_PENDING = 1024  # and at least every this many steps


@dataclass
class History:
    """What ``fit`` returns.

    Attributes:
        losses: every step's loss, in order, all epochs (Python floats).
        epoch_losses: per epoch, the mean of its steps' losses (computed in float64).
        steps_per_epoch: per epoch, how many steps ran.
    """

    losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    steps_per_epoch: list[int] = field(default_factory=list)

    def epoch(self, index: int) -> list[float]:
        """The step losses of epoch ``index`` (from 0)."""
        start = sum(self.steps_per_epoch[:index])
        return self.losses[start : start + self.steps_per_epoch[index]]


class _LossBuffer:
    """Collects step losses (native scalars or numbers) and copies them to the host in bulk."""

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.impl: Backend | None = None
        self.checked = False

    def add(self, loss: Any) -> None:
        if not self.checked:  # the first loss fixes which backend converts the rest
            self.impl = _backend_of(loss)
            self.checked = True
        elif not (self.impl.is_native(loss) if self.impl is not None else _is_number(loss)):
            kind = f"a {self.impl.NAME} tensor" if self.impl is not None else "a number"
            raise ArgumentTypeError(
                f"fit(step) returned {kind} first, then a {type(loss).__module__}."
                f"{type(loss).__name__}; it must return the same kind of loss every step"
            )
        shape = self.impl.static_shape(loss) if self.impl is not None else np.shape(loss)
        if tuple(shape) != ():
            raise ShapeError(
                f"fit(step) must return a scalar loss, got shape {describe_shape(shape)}"
            )
        self.pending.append(loss)

    def flush(self) -> list[float]:
        """The pending losses as floats (one device-to-host copy), in order."""
        if not self.pending:
            return []
        impl, pending = self.impl, self.pending
        self.pending = []
        if impl is None:
            values = np.asarray(pending, dtype=np.float64)
        elif len(pending) == 1:
            values = impl.to_numpy(pending[0]).reshape(1)
        else:
            values = impl.to_numpy(impl.concat([impl.reshape(x, [1]) for x in pending], 0))
        return [float(v) for v in values]


def _is_number(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.number, np.ndarray))


def _backend_of(loss: Any) -> Backend | None:
    for impl in _registry.loaded().values():
        if impl.is_native(loss):
            return impl
    if not _is_number(loss):
        raise ArgumentTypeError(
            "fit(step) must return the loss as a native scalar tensor or a number, got "
            f"{type(loss).__module__}.{type(loss).__name__}"
        )
    return None


def _epoch_source(batches: object, epochs: int) -> Callable[[], Iterable[Any]]:
    """A function giving each epoch's batches; checks what can be checked up front."""
    if isinstance(batches, Iterable):
        if iter(batches) is batches and epochs > 1:
            raise ArgumentError(
                f"fit(batches) is a one-shot iterator ({type(batches).__name__}) but epochs="
                f"{epochs}; pass a list, a re-iterable dataset, or a function returning a "
                "fresh iterable per epoch"
            )
        return lambda: batches  # type: ignore[return-value]
    if callable(batches):

        def fresh() -> Iterable[Any]:
            result = batches()
            if not isinstance(result, Iterable):
                raise ArgumentTypeError(
                    f"fit(batches) was called to get an epoch's batches and must return an "
                    f"iterable, got {type(result).__name__}"
                )
            return result

        return fresh
    raise ArgumentTypeError(
        "fit(batches) must be an iterable of argument tuples or a function returning one, "
        f"got {type(batches).__name__}"
    )


def _check_callbacks(callbacks: object) -> list[Callback]:
    if callbacks is None:
        return []
    items = [callbacks] if callable(callbacks) else callbacks
    if not isinstance(items, Iterable) or not all(callable(c) for c in items):
        raise ArgumentTypeError(
            "fit(callbacks) must be a callable or a list of callables "
            f"(epoch, step_index, loss) -> None, got {callbacks!r}"
        )
    return list(items)


def _run_epoch(
    step: Callable[..., Any],
    batches: Iterable[Any],
    epoch: int,
    buffer: _LossBuffer,
    hooks: list[Callback],
    bar: Any,
    check_finite: bool,
) -> list[float]:
    """One pass over ``batches``; the epoch's losses as floats. ``bar`` is None when hidden."""
    losses: list[float] = []

    def drain() -> None:
        values = buffer.flush()
        if check_finite and not all(math.isfinite(v) for v in values):
            index = next(i for i, v in enumerate(values) if not math.isfinite(v))
            raise NonFiniteLossError(
                f"fit: the loss is {values[index]} at epoch {epoch} step {len(losses) + index} "
                f"(both from 0); training stopped. The weights are as after step "
                f"{len(losses) + len(values) - 1} of that epoch (losses are checked when copied "
                "to the host). Lower the learning rate, clip the inputs, or pass "
                "check_finite=False to keep going"
            )
        losses.extend(values)

    last_refresh = time.monotonic()
    for index, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)):
            raise ArgumentTypeError(
                f"fit(batches): epoch {epoch} batch {index} must be a tuple of step "
                f"arguments such as (x, y), got {type(batch).__name__}"
            )
        buffer.add(step(*batch))
        if hooks:
            drain()
            for hook in hooks:
                hook(epoch, index, losses[-1])
        elif len(buffer.pending) >= _MAX_PENDING:
            drain()
        if bar is not None:
            if time.monotonic() - last_refresh >= _REFRESH_S:
                drain()
                bar.set_postfix(loss=f"{sum(losses) / len(losses):.6g}", refresh=False)
                last_refresh = time.monotonic()
            bar.update(1)
    drain()
    if not losses:
        raise ArgumentError(
            f"fit(batches) gave no batches in epoch {epoch}; an exhausted iterator or a "
            "function returning an empty iterable?"
        )
    return losses


def _stdout_is_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def fit(
    step: Callable[..., Any],
    batches: Iterable[Sequence[Any]] | Callable[[], Iterable[Sequence[Any]]],
    epochs: int = 1,
    *,
    progress: bool = True,
    callbacks: Callback | Sequence[Callback] | None = None,
    check_finite: bool = True,
) -> History:
    """Call ``step(*batch)`` for every batch, ``epochs`` times; return the ``History``.

    Args:
        step: usually ``twinnn.train_step(model, loss_fn, optimizer)``; any callable returning
            the loss as a native scalar tensor or a number.
        batches: an iterable of batches, each a tuple (or list) of ``step``'s arguments, e.g.
            ``[(x0, y0), (x1, y1)]``; iterated once per epoch, so it must be re-iterable (a
            list, a dataset) when ``epochs > 1``. Or a function with no arguments returning a
            fresh iterable per epoch (a generator function, for shuffling).
        epochs: number of passes over ``batches`` (>= 1).
        progress: show a tqdm bar per epoch with the running mean loss of the epoch. It is
            written to stdout and only when stdout is a terminal (never into logs or pipes).
        callbacks: a callable or a list of callables ``callback(epoch, step_index, loss)``
            called after every step (``epoch`` and ``step_index`` from 0, ``loss`` a float).
            Giving callbacks copies each loss to the host right after its step.
        check_finite: stop with a :class:`~twinnn.errors.NonFiniteLossError` naming the epoch
            and step of the first NaN or infinite loss. Losses are checked as they are copied
            to the host (see the module doc), so up to that many more steps may have run
            after the bad one; with ``callbacks`` it is checked after every step. A single
            ``step`` call never checks (as in the frameworks).

    Returns:
        A ``History``: ``losses`` (every step), ``epoch_losses`` (each epoch's mean) and
            ``steps_per_epoch``.
    """
    if not callable(step):
        raise ArgumentTypeError(f"fit(step) must be callable, got {type(step).__name__}")
    epochs = check_positive_int(epochs, "fit(epochs)")
    show = check_bool(progress, "fit(progress)") and _stdout_is_terminal()
    hooks = _check_callbacks(callbacks)
    finite_only = check_bool(check_finite, "fit(check_finite)")
    source = _epoch_source(batches, epochs)
    from tqdm import tqdm  # type: ignore[import-untyped]  # here: keeps `import twinnn` light

    history = History()
    buffer = _LossBuffer()
    for epoch in range(epochs):
        epoch_batches = source()
        bar = tqdm(
            total=len(epoch_batches) if isinstance(epoch_batches, Sized) else None,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=sys.stdout,
            disable=not show,
            dynamic_ncols=True,
        )
        try:
            losses = _run_epoch(
                step, epoch_batches, epoch, buffer, hooks, bar if show else None, finite_only
            )
            mean = math.fsum(losses) / len(losses)
            bar.set_postfix(loss=f"{mean:.6g}")
        finally:
            bar.close()
        history.losses.extend(losses)
        history.epoch_losses.append(mean)
        history.steps_per_epoch.append(len(losses))
    return history
