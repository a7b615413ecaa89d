"""Joining the world of processes: ``init()``, ``world()``, ``shard()``, ``barrier()``.

The environment says who this process is, in either framework's own terms:

- torchrun's variables (``twinnn run`` and ``torchrun`` set them): ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
- or only ``TF_CONFIG`` (a TensorFlow cluster written by hand): the rank is
  ``task.index``, the world the number of ``cluster.worker`` entries.

Neither set: a world of one process, and every function here is a no-op, so the same
script runs alone. ``TWINNN_DIST_TIMEOUT`` (seconds, default 300) bounds every collective.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinnn import config
from twinnn.errors import ArgumentError, ArgumentTypeError, DistributedError

__all__ = [
    "PEER_LOST_EXIT",
    "World",
    "barrier",
    "check_same_parameters",
    "gather_on_host",
    "init",
    "shard",
    "slice_bounds",
    "world",
]

DEFAULT_TIMEOUT_S = 300.0
#: The exit code of a rank that ends on an uncaught :class:`DistributedError` (a lost or
#: stalled peer, ranks that disagree): ``twinnn run`` then names the rank that caused it.
PEER_LOST_EXIT = 75


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` in ``[0, world_size)``, ``local_rank`` on its
    machine (the GPU it uses under ``TWINNN_DEVICE=auto``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that saves checkpoints and prints progress."""
        return self.rank == 0


_world = World()
_joined_backend: str | None = None


def _int_env(name: str, default: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        if default is None:
            raise DistributedError(f"{name} is not set (the launcher sets it; see docs)")
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{name} must be an integer, got {text!r}") from None


def _from_environment() -> tuple[int, int, int, float]:
    """``(rank, world_size, local_rank, timeout_s)`` from the environment."""
    text = os.environ.get("TWINNN_DIST_TIMEOUT", "")
    try:
        timeout = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"TWINNN_DIST_TIMEOUT must be seconds, got {text!r}") from None
    if not timeout > 0:
        raise DistributedError(f"TWINNN_DIST_TIMEOUT must be > 0 seconds, got {text!r}")
    if os.environ.get("WORLD_SIZE"):
        size = _int_env("WORLD_SIZE")
        rank = _int_env("RANK", 0 if size == 1 else None)
        local = _int_env("LOCAL_RANK", rank)
    elif os.environ.get("TF_CONFIG"):
        try:
            spec = json.loads(os.environ["TF_CONFIG"])
            size, rank = len(spec["cluster"]["worker"]), int(spec["task"]["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DistributedError(f"TF_CONFIG is not a worker cluster spec: {exc}") from None
        local = _int_env("LOCAL_RANK", rank)
    else:
        return 0, 1, 0, timeout
    if size < 1 or not 0 <= rank < size or local < 0:
        raise DistributedError(
            f"rank {rank} of WORLD_SIZE {size} (LOCAL_RANK {local}): need 0 <= RANK < WORLD_SIZE"
        )
    return rank, size, local, timeout


def init() -> World:
    """Join the data-parallel world the launcher describes (the first call of the script:
    TensorFlow sets up its collectives before any other op). Returns :class:`World`.

    Under ``twinnn run -n N`` (or torchrun, or a ``TF_CONFIG``): joins torch's process group
    (gloo on CPU, NCCL on GPU) or creates TensorFlow's ``MultiWorkerMirroredStrategy`` (RING
    on CPU, NCCL on GPU); with ``TWINNN_DEVICE=auto`` and GPUs, rank ``r`` uses
    ``gpu:LOCAL_RANK``. Without a launcher: a world of 1, nothing joined. Calling it again
    returns the same world."""
    global _world, _joined_backend
    rank, size, local, timeout = _from_environment()
    if _joined_backend is not None:
        return _world
    if size == 1:
        _world = World(0, 1, 0, timeout)
        return _world
    impl = config.current()
    gpu = impl.current_device().startswith("gpu")
    if gpu:
        _check_one_gpu_per_process(rank, local, len(impl.visible_gpus()))
        if (os.environ.get("TWINNN_DEVICE") or "auto") == "auto":
            config.set_device(f"gpu:{local}")
    impl.join_group(rank, size, timeout, gpu)
    atexit.register(impl.leave_group)  # torch: a group left open aborts the interpreter's exit
    _exit_on_distributed_errors()
    _world, _joined_backend = World(rank, size, local, timeout), impl.NAME
    return _world


def _check_one_gpu_per_process(rank: int, local: int, gpus: int) -> None:
    """NCCL (torch and TensorFlow alike) refuses two ranks on one GPU, and then only at the
    first collective, as a peer failure: say so at start-up instead."""
    local_size = max(_int_env("LOCAL_WORLD_SIZE", local + 1), local + 1)
    if local_size > gpus:
        raise DistributedError(
            f"rank {rank}: {local_size} processes on this machine (LOCAL_WORLD_SIZE) but "
            f"{gpus} visible GPU(s): NCCL needs a GPU of its own for each process. Start at "
            f"most {gpus} per machine (twinnn run -n N, torchrun --nproc-per-node N), or "
            "train on the CPU (TWINNN_DEVICE=cpu)"
        )


def _exit_on_distributed_errors() -> None:
    """An uncaught :class:`DistributedError` prints its traceback as usual, then ends the
    process with :data:`PEER_LOST_EXIT` at once (leaving a broken group cannot block it)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, trace: Any) -> None:
        previous(kind, value, trace)
        if isinstance(value, DistributedError):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(PEER_LOST_EXIT)

    sys.excepthook = hook


def world() -> World:
    """The world :func:`init` joined (a world of 1 before, or without a launcher)."""
    return _world


def slice_bounds(total: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, end)`` of contiguous slice ``index`` of ``total`` rows cut into ``parts``:
    the first ``total % parts`` slices have one row more (``numpy.array_split``'s rule)."""
    base, extra = divmod(total, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def _rows(item: Any, where: str) -> int:
    shape = getattr(item, "shape", None)
    if shape is None:
        item = np.asarray(item)
        shape = item.shape
    if len(shape) == 0:
        raise ArgumentError(f"{where} must have a batch axis (axis 0), got a scalar")
    return int(shape[0])


def shard(batch: Any) -> Any:
    """This rank's contiguous slice of a global ``batch``: an array (NumPy, list or native
    tensor) or a tuple/list of arrays, each cut on axis 0 with :func:`slice_bounds`'s rule
    (all with the same number of rows). In a world of 1: ``batch`` itself."""
    here = _world
    if here.world_size == 1:
        return batch
    items: Sequence[Any] = batch if isinstance(batch, (tuple, list)) else (batch,)
    if isinstance(batch, str) or not items:
        raise ArgumentTypeError(f"shard(batch) takes an array or a tuple of arrays, got {batch!r}")
    counts = [_rows(item, f"shard(batch)[{i}]") for i, item in enumerate(items)]
    if len(set(counts)) != 1:
        raise ArgumentError(
            f"shard(batch): every array must have the same number of rows (axis 0), got {counts}"
        )
    if counts[0] < here.world_size:
        raise ArgumentError(
            f"shard(batch): a global batch of {counts[0]} rows cannot give each of "
            f"{here.world_size} ranks at least one row"
        )
    start, end = slice_bounds(counts[0], here.world_size, here.rank)
    cut = [
        (item[start:end] if hasattr(item, "shape") else np.asarray(item)[start:end])
        for item in items
    ]
    if isinstance(batch, (tuple, list)):
        return type(batch)(cut)
    return cut[0]


def gather_on_host(values: np.ndarray) -> np.ndarray:
    """Every rank's ``values`` (a small int64 or float64 vector, the same length on every
    rank), stacked in rank order, on the host (a world of 1: ``values[None]``)."""
    if _world.world_size == 1:
        return np.asarray(values)[None]
    impl = config.current()
    tensor = impl.convert(values, "values", str(values.dtype))
    return impl.to_numpy(impl.in_replica(impl.all_gather)(tensor))


def barrier() -> None:
    """Wait until every rank reaches this call (e.g. between rank 0's ``save`` and every
    rank's ``load``). A no-op in a world of 1."""
    if _world.world_size > 1:
        gather_on_host(np.zeros(1, np.int64))


def _digest(arrays: Sequence[np.ndarray]) -> int:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return int.from_bytes(h.digest()[:8], "little", signed=True)


def check_same_parameters(arrays: Sequence[np.ndarray], what: str) -> None:
    """Raise :class:`~twinnn.errors.DistributedError` on every rank unless every rank's
    ``arrays`` (the model's parameters and buffers) hash to rank 0's."""
    if _world.world_size == 1:
        return
    hashes = gather_on_host(np.array([_digest(arrays), len(arrays)], np.int64))
    differ = [r for r in range(len(hashes)) if not np.array_equal(hashes[r], hashes[0])]
    if differ:
        raise DistributedError(
            f"{what}: the initial parameters of rank(s) {differ} differ from rank 0's (a hash "
            "of every parameter and buffer). Build the model the same way on every rank after "
            "the same twinnn.seed(...), or load the same checkpoint everywhere"
        )
