"""How a data-parallel step computes the loss and gradients of the global batch.

The semantics (DESIGN.md §16) are one formula: the global batch of ``B`` rows is cut into
``N`` contiguous slices; slice ``r`` runs the forward, its loss (whose ``"mean"`` divides by
the *global* count, see :mod:`twinnn.distributed.context`) and its backward; the gradients are
summed over the slices. The loss the step reports is the sum of the slices' losses -- the
loss of the global batch.

Two engines compute it:

- :func:`across_processes` -- one slice per process. ``reduce="deterministic"`` gathers every
  rank's gradients (one buffer, one ``all_gather``) and sums them in rank order;
  ``reduce="fast"`` uses the framework's native all-reduce (its own summation order: equal
  to rounding).
- :func:`in_one_process` -- ``train_step(..., shards=N)``: the N slices one after the other
  in this process, the reference the deterministic mode equals bit for bit. A global value
  (a loss denominator, BatchNorm's sums, forward or backward) needs every slice's part
  before any slice can go on, so the slices are *replayed*: each round runs every slice's
  forward and backward; the first global value still unknown gets each slice's part
  (computed from known values only), is summed in rank order and is known from then on.
  With ``K`` global values that is ``K + 1`` rounds -- a reference, not a fast path. The
  model's buffers (dropout counters, BatchNorm running statistics) are put back before
  each slice, so every slice sees the state the step started from, as every rank does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twinnn.backends.base import Backend
from twinnn.distributed import context
from twinnn.distributed.context import Slice, fold
from twinnn.distributed.world import check_same_parameters, world
from twinnn.errors import ArgumentError, ArgumentTypeError
from twinnn.module import Module

__all__ = [
    "REDUCE_MODES",
    "across_processes",
    "evaluation_for",
    "gradients_for",
    "in_one_process",
]

#: ``train_step(reduce=...)`` values.
REDUCE_MODES = ("fast", "deterministic")

GradsOf = Callable[..., tuple[Any, Any, list[Any]]]


def _rank_slice(impl: Backend, rank: int, world_size: int, first: Any) -> Slice:
    """This rank's :class:`Slice` (``first`` is its first step argument). The row offset is
    computed when first used -- a gather of every rank's row count -- so a model without
    dropout never pays it; every rank uses it or none does (the same code runs everywhere)."""
    gather = _gather_by_all_reduce(impl, rank, world_size)

    def offset() -> Any:
        sizes = gather(impl.convert(impl.rows(first), "rows", "int64"))
        return 0 if rank == 0 else fold(sizes, rank)

    return Slice(impl, rank, world_size, offset, gather)


def _canonical(impl: Backend, x: Any) -> Any:
    """``x + 0.0`` for a float ``x``: ``-0.0`` becomes ``+0.0``, every other value stays.
    The parts of every global value go through it, in processes and in the one-process
    replay alike, so that a gather by all-reduce (which turns ``-0.0`` into ``+0.0``) keeps
    the two engines' bits equal."""
    return x + 0.0 if impl.dtype_name(x).startswith("float") else x


def _gather_by_all_reduce(impl: Backend, rank: int, world_size: int) -> Callable[[Any], Any]:
    """``x -> (world_size, *x.shape)``, every rank's ``x`` in rank order, by one native
    all-reduce: rank ``r`` puts its ``x`` in row ``r`` of zeros, and a sum of one value and
    zeros is that value exactly, in any order. For the small global values of a step (row
    counts, loss denominators, BatchNorm sums): TensorFlow's ``all_gather`` is several
    collectives (it gathers the shapes first); as the dropout row offset, in the middle of
    the forward pass, it cost a data-parallel ``lm_lstm`` step about a quarter of its time."""

    def gather(x: Any) -> Any:
        x = _canonical(impl, x)
        mine = impl.convert([r == rank for r in range(world_size)], "rank", "bool")
        mine = impl.reshape(mine, [world_size] + [1] * len(impl.static_shape(x)))
        zero = impl.convert(0, "zero", impl.dtype_name(x))
        return impl.all_reduce_sum(impl.where(mine, impl.stack([x] * world_size, 0), zero))

    return gather


def across_processes(
    impl: Backend, rank: int, world_size: int, reduce: str, params: Sequence[Any]
) -> Callable[..., Any]:
    """``gradients(grads_of, *args)`` for ``build_train_step``: this rank's slice is
    ``args`` (its rows of the global batch, axis 0 of the first argument); returns the
    global loss, this rank's outputs and the global gradients of ``params``.

    Where the backend has a :meth:`~twinnn.backends.base.Backend.gradient_reducer` (torch),
    the gradients travel in buckets while the backward pass runs, as DDP's do; otherwise in
    one buffer after it. Either way each element is summed on its own: ``"deterministic"``
    folds the ranks' values in rank order, the same bits whatever the buckets."""
    gather = impl.all_gather
    combine = (lambda stacked: fold(stacked, world_size)) if reduce == "deterministic" else None
    reducer = impl.gradient_reducer(params, combine)

    def gradients(grads_of: GradsOf, *args: Any) -> tuple[Any, Any, list[Any]]:
        with context.running(_rank_slice(impl, rank, world_size, args[0])):
            if reducer is None:
                loss, outputs, grads = grads_of(*args)
            else:
                hooks = reducer.backward_hooks()
                try:
                    loss, outputs, grads = grads_of(*args)
                finally:
                    for hook in hooks:
                        hook.remove()
        if reducer is not None:
            summed, (total_loss,) = reducer.finish(grads, [impl.reshape(loss, [1])])
            return impl.reshape(total_loss, []), outputs, summed
        parts = [*grads, impl.reshape(loss, [1])]  # one buffer, one collective
        flat = impl.flatten_all(parts)
        if reduce == "deterministic":
            total = fold(gather(flat), world_size)
        else:
            total = impl.all_reduce_sum(flat)
        *summed, global_loss = impl.unflatten_like(total, parts)
        return impl.reshape(global_loss, []), outputs, summed

    return gradients


def evaluation_across_processes(
    impl: Backend, rank: int, world_size: int, forward: Callable[..., Any], pair: bool
) -> Callable[..., Any]:
    """An eval step's body: this rank's slice, the global loss (``(loss, outputs)`` when
    ``pair``)."""

    def evaluate(*args: Any) -> Any:
        with context.running(_rank_slice(impl, rank, world_size, args[0])) as piece:
            result = forward(*args)
            loss = result[0] if pair else result
            total = piece.global_sum(loss)
        return (total, result[1]) if pair else total

    return evaluate


class _Replay:
    """The global values of one ``shards=N`` step, learnt round by round."""

    def __init__(self, impl: Backend, count: int) -> None:
        self.impl, self.count = impl, count
        self.known: list[Any] = []  # stacked parts (count, ...), in call order
        self.parts: dict[int, list[Any]] = {}
        self.calls = [0] * count

    def gather_for(self, index: int) -> Callable[[Any], Any]:
        def gather(x: Any) -> Any:
            call = self.calls[index]
            self.calls[index] += 1
            if call < len(self.known):
                return self.known[call]
            if call == len(self.known):  # the first unknown: this part is right
                self.parts.setdefault(index, []).append(_canonical(self.impl, x))
            return self.impl.stack([x] * self.count, 0)  # a stand-in; the round is replayed

        return gather

    def next_round(self) -> bool:
        """Learn the first unknown value from this round's parts; False when none was met."""
        parts = [self.parts.get(i, []) for i in range(self.count)]
        self.parts, self.calls = {}, [0] * self.count
        if not all(parts):
            return False
        self.known.append(self.impl.stack([p[0] for p in parts], 0))
        return True


def in_one_process(impl: Backend, shards: int, buffers: Sequence[Any]) -> Callable[..., Any]:
    """``gradients(grads_of, *args)`` for ``build_train_step`` with ``shards=N``: ``args``
    are the global batch, cut into ``shards`` contiguous slices on axis 0 of every argument;
    returns the global loss, the slices' outputs (a tuple, one per slice) and the gradients
    summed in slice order."""

    def gradients(grads_of: GradsOf, *args: Any) -> tuple[Any, Any, list[Any]]:
        total = impl.rows(args[0])
        base, extra = total // shards, total % shards
        bounds, start = [], 0
        for i in range(shards):
            size = base + 1 if isinstance(extra, int) and i < extra else base
            if not isinstance(extra, int):  # traced: the sizes are tensors
                size = base + impl.cast(impl.convert(i, "i", "int64") < extra, "int64")
            bounds.append((start, start + size))
            start = start + size
        pieces = [[a[lo:hi] for a in args] for lo, hi in bounds]
        saved = [impl.snapshot(b) for b in buffers]
        replay = _Replay(impl, shards)
        while True:
            results = []
            for i, piece in enumerate(pieces):
                for b, value in zip(buffers, saved, strict=True):
                    impl.write_buffer(b, value)
                with context.running(Slice(impl, i, shards, bounds[i][0], replay.gather_for(i))):
                    results.append(grads_of(*piece))
            if not replay.next_round():
                break
        loss = fold([r[0] for r in results], shards)
        grads = [fold([r[2][j] for r in results], shards) for j in range(len(results[0][2]))]
        outputs = None if results[0][1] is None else tuple(r[1] for r in results)
        return loss, outputs, grads

    return gradients


def _check_mode(reduce: object, shards: object, world_size: int, where: str) -> tuple[str, int]:
    if not isinstance(reduce, str) or reduce not in REDUCE_MODES:
        raise ArgumentError(
            f"{where}(reduce=...) must be one of {list(REDUCE_MODES)}, got {reduce!r}"
        )
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise ArgumentTypeError(f"{where}(shards=...) must be an int, got {type(shards).__name__}")
    if shards < 1:
        raise ArgumentError(f"{where}(shards=...) must be >= 1, got {shards}")
    if shards > 1 and world_size > 1:
        raise ArgumentError(
            f"{where}(shards={shards}) runs the slices of a world in one process; this process is "
            f"already one of {world_size} ranks: use shards=1"
        )
    return reduce, shards


def gradients_for(
    model: Module, params: Sequence[Any], reduce: object, shards: object, where: str
) -> Callable[..., Any] | None:
    """The ``gradients`` callback a train step of ``model`` that differentiates ``params``
    needs: None in a world of 1 without shards; checks that every rank starts from rank 0's
    parameters."""
    here = world()
    mode, count = _check_mode(reduce, shards, here.world_size, where)
    impl = model._backend
    if count > 1 or here.world_size > 1:
        impl.keep_written_arithmetic()
    if count > 1:
        return in_one_process(impl, count, [b for _, b in model.named_buffers()])
    if here.world_size == 1:
        return None
    check_same_parameters([impl.to_numpy(t) for _, t in model._state_items()], where)
    return across_processes(impl, here.rank, here.world_size, mode, params)


def evaluation_for(model: Module, forward: Callable[..., Any], pair: bool) -> Callable[..., Any]:
    """``forward`` as an eval step runs it: in a world of N, on this rank's slice with the
    global loss; else ``forward`` itself."""
    here = world()
    if here.world_size == 1:
        return forward
    return evaluation_across_processes(model._backend, here.rank, here.world_size, forward, pair)
