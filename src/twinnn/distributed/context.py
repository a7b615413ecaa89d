"""The slice a step is running: what layers and losses need to compute global-batch values.

While a data-parallel step (N processes, or ``shards=N`` in one process) runs the forward and
backward of one contiguous slice of the global batch, :func:`current` returns a
:class:`Slice`; otherwise it returns ``None`` and everything computes on its own batch as
before. Three things read it:

- the losses' ``"mean"`` reduction divides by the *global* count (or sum of weights):
  ``sum(w * l over this slice) / global_sum(sum(w over this slice))``;
- ``BatchNorm`` takes its mean and variance over the global batch
  (:meth:`Slice.global_sum_with_grad`, whose gradient is the global sum of the gradients);
- dropout masks are keyed on the global row (:func:`row_offset`).

Every global value is ``gather`` (every slice's tensor stacked in rank order) followed by one
left fold ``((x_0 + x_1) + x_2) + ...``, so a value is computed the same way -- the same bits
-- whichever engine gathers: ``torch.distributed``, ``tf.distribute``, or the one-process
replay of ``train_step(..., shards=N)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twinnn.backends.base import Backend

__all__ = ["Slice", "current", "fold", "row_offset", "running"]


def fold(stacked: Any, count: int) -> Any:
    """``((s[0] + s[1]) + s[2]) + ...`` over the first axis of ``stacked`` (``count`` rows):
    the one summation order every global value uses."""
    total = stacked[0]
    for i in range(1, count):
        total = total + stacked[i]
    return total


class Slice:
    """Slice ``index`` of ``count`` of a global batch; its first row is global row
    :attr:`row_offset` (a Python int, or an int64 scalar tensor inside a compiled TF step),
    given, or computed on first use from every slice's row count (one gather: a step
    whose model has no dropout never pays it)."""

    def __init__(
        self,
        impl: Backend,
        index: int,
        count: int,
        row_offset: Any,
        gather: Callable[[Any], Any],  # x -> (count, *x.shape), every slice's x in rank order
    ) -> None:
        self.impl, self.index, self.count, self.gather = impl, index, count, gather
        self._row_offset = row_offset  # an int, a tensor, or a zero-argument function

    @property
    def row_offset(self) -> Any:
        if callable(self._row_offset):
            self._row_offset = self._row_offset()
        return self._row_offset

    def global_sum(self, x: Any) -> Any:
        """The sum of ``x`` over every slice (no gradient flows through it)."""
        return fold(self.gather(self.impl.stop_gradient(x)), self.count)

    def global_sum_with_grad(self, x: Any) -> Any:
        """The sum of ``x`` over every slice; its gradient w.r.t. this slice's ``x`` is the
        global sum of the incoming gradients (every slice's loss depends on the sum)."""
        return self.impl.custom_gradient(self.global_sum, self.global_sum, x)


_current: Slice | None = None


def current() -> Slice | None:
    """The slice being run, or ``None`` outside data-parallel steps."""
    return _current


@contextmanager
def running(piece: Slice) -> Iterator[Slice]:
    """Make ``piece`` the current slice for the ``with`` block (not re-entrant)."""
    global _current
    saved, _current = _current, piece
    try:
        yield piece
    finally:
        _current = saved


def row_offset(local: Any) -> Any:
    """The global index of a tensor's first row: ``local`` (a layer's own ``row_offset``)
    plus the current slice's offset."""
    piece = _current
    if piece is None:
        return local
    if isinstance(piece.row_offset, int) and piece.row_offset == 0:
        return local
    return piece.row_offset + local
