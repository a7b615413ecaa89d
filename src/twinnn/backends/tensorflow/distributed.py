"""TensorFlow backend: data-parallel collectives on ``tf.distribute.MultiWorkerMirroredStrategy``.

The strategy is TensorFlow's own (one replica per process, the cluster from ``TF_CONFIG``,
which ``twinnn run`` writes per worker; RING collectives on CPU, NCCL on GPU); twinnn adds no
transport. Variables stay ordinary ``tf.Variable`` s: every rank applies the same update to
its own copy after the gradients are reduced, so no ``MirroredVariable`` aggregation rules
apply. A step's body runs inside ``strategy.run`` (:func:`in_replica`), where the replica
context's ``all_gather`` / ``all_reduce`` are available inside the compiled graph. The
collectives time out after the ``timeout_s`` given to :func:`join_group` and raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from twinnn.errors import DistributedError

_strategy: Any = None
_rank = 0


def join_group(rank: int, world_size: int, timeout_s: float, gpu: bool) -> None:
    """Create the strategy (``TF_CONFIG`` names the workers; this process is ``rank``).

    TensorFlow configures collectives once per process, before any other op runs: call this
    first (``twinnn.distributed.init()`` as the first line of the script)."""
    global _strategy, _rank
    if _strategy is not None:
        return
    implementation = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if gpu else implementation.RING,
        timeout_seconds=timeout_s,
    )
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank}: could not create tf.distribute.MultiWorkerMirroredStrategy for "
            f"{world_size} workers from TF_CONFIG ({exc}). TensorFlow configures collectives "
            "before any other op: call twinnn.distributed.init() first in the script"
        ) from exc
    if strategy.num_replicas_in_sync != world_size:
        raise DistributedError(
            f"rank {rank}: TF_CONFIG describes {strategy.num_replicas_in_sync} replicas, "
            f"WORLD_SIZE is {world_size}"
        )
    _strategy, _rank = strategy, rank


def leave_group() -> None:
    global _strategy
    _strategy = None


def _context() -> Any:
    context = tf.distribute.get_replica_context()
    if context is None or _strategy is None:
        raise DistributedError(
            "a collective ran outside a twinnn step: under data parallelism, collectives run "
            "inside train_step/eval_step, or through in_replica"
        )
    return context


def failed(what: str, exc: BaseException) -> DistributedError:
    """The error a failed collective (a peer gone, a timeout) becomes."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return DistributedError(
        f"rank {_rank}: {what} failed -- another rank stopped, crashed or did not reach the "
        f"same step in time ({type(exc).__name__}: {first})"
    )


def active() -> bool:
    """Whether a strategy is set up (a world of more than one process)."""
    return _strategy is not None


def _run(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except tf.errors.OpError as exc:  # eager: a peer gone or a timeout, raised here
        raise failed(what, exc) from exc


def all_gather(x: Any) -> Any:
    """``(world_size, *x.shape)``: every rank's ``x`` stacked in rank order (graph-safe)."""
    context = _context()
    return _run(lambda: context.all_gather(tf.expand_dims(x, 0), axis=0), "all_gather")


def gradient_reducer(
    params: Sequence[Any], combine: Callable[[Any], Any] | None
) -> ListReducer | None:
    """For ``reduce="fast"``: :class:`ListReducer`. For ``"deterministic"``: None (the step
    gathers one buffer and folds it in rank order)."""
    del params
    return ListReducer() if combine is None else None


class ListReducer:
    """The gradients and the loss summed by one ``all_reduce`` of the list, as TensorFlow's
    own loops do: the dense tensors travel packed, and an embedding's ``IndexedSlices``
    gradient travels as its rows (an all-gather of the rows each rank used, summed when made
    dense) instead of the whole ``(vocabulary, dim)`` matrix. In the step's graph TensorFlow
    starts the collective when its inputs are ready: no hooks."""

    def backward_hooks(self) -> list[Any]:
        return []

    def finish(self, grads: Sequence[Any], extra: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        context = _context()
        values = list(grads) + list(extra)
        summed = _run(lambda: context.all_reduce(tf.distribute.ReduceOp.SUM, values), "all_reduce")
        dense = [tf.convert_to_tensor(v) for v in summed]
        return dense[: len(grads)], dense[len(grads) :]


def all_reduce_sum(x: Any) -> Any:
    """The elementwise sum of every rank's ``x`` (the framework's native all-reduce: its
    summation order is the transport's, so the bits may differ from a sum in rank order)."""
    context = _context()
    return _run(lambda: context.all_reduce(tf.distribute.ReduceOp.SUM, x), "all_reduce")


def flatten_all(tensors: Sequence[Any]) -> Any:
    """Every tensor flattened and concatenated (one buffer for one collective)."""
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten_like(flat: Any, like: Sequence[Any]) -> list[Any]:
    """The inverse of :func:`flatten_all`: pieces of ``flat`` shaped like ``like``."""
    sizes = [int(t.shape.num_elements()) for t in like]
    pieces = tf.split(flat, sizes)
    return [tf.reshape(p, t.shape) for p, t in zip(pieces, like, strict=True)]


def custom_gradient(forward: Callable[[Any], Any], backward: Callable[[Any], Any], x: Any) -> Any:
    """``forward(x)`` whose gradient is ``backward(dy)`` (both traceable functions)."""

    @tf.custom_gradient  # type: ignore[untyped-decorator]
    def apply(value: Any) -> Any:
        return forward(value), backward

    return apply(x)


def in_replica(body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` run by ``strategy.run`` when a strategy is active (the replica context
    carries the collectives), else ``body`` itself; the result is this worker's value."""
    if _strategy is None:
        return body
    strategy = _strategy

    def run(*args: Any) -> Any:
        result = strategy.run(body, args=args)
        return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], result)

    return run


def rows(x: Any) -> Any:
    """``x.shape[0]`` (the batch): an int when known, else an int64 scalar tensor."""
    known = x.shape[0]
    return int(known) if known is not None else tf.shape(x, out_type=tf.int64)[0]


def snapshot(x: Any) -> Any:
    """``x``'s value now (a variable is read; later assignments leave the result unchanged)."""
    return tf.identity(x.read_value() if isinstance(x, tf.Variable) else x)


def keep_written_arithmetic() -> None:
    """Compile later graphs without grappler's arithmetic optimizer (process-wide). It
    rewrites sums and products by what the graph around them looks like (factoring, AddN
    aggregation), so a data-parallel rank's graph and the ``shards=N`` graph that must equal
    it bit for bit would otherwise round differently."""
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
