"""One rank of the distributed benchmark: ``twinnn run -n 2 benchmarks/distributed_worker.py SPEC``.

Started by :mod:`benchmarks.distributed` (which sets ``TWINNN_BACKEND``, the thread
variables and ``PYTHONPATH``). ``SPEC`` is a JSON object: ``workloads``, ``rounds``,
``steps`` (steps per timed block, by workload; the same on every rank, so the ranks run the
same collectives), ``warmup`` (steps), ``threads``, ``tiny`` and ``out`` (a directory; rank
``r`` writes ``rank{r}.json``).

Per workload, every rank takes its contiguous slice of each global batch
(``twinnn.distributed.shard``) and builds, in this order:

* ``native``: the hand-written loop (:mod:`benchmarks.ddp_torch` / :mod:`benchmarks.mwms_tf`);
* ``twinnn``: :func:`benchmarks.twinnn_impl.build` on the shards -- ``train_step`` with
  ``reduce="fast"`` (the default) in this world of 2;
* ``comm_twinnn``: the framework's all-reduce of one float32 buffer of twinnn's size (every
  parameter plus the loss: what ``reduce="fast"`` sends);
* ``comm_native``: the native loop's gradient all-reduce alone (torch: the same buffer size
  without the loss; TensorFlow: tensors of the gradients' structure, the embedding's as
  ``IndexedSlices``);
* ``gather``: one small collective (an ``all_gather`` of one int64; twinnn's step runs two
  of them besides the all-reduce: every rank's batch size, and the loss denominator);
* with ``"local": true`` (the default of the parent), for where the time goes: the same
  steps on this rank's shard *without* communication -- ``twinnn_local``, twinnn's
  ``train_step`` built as in a world of 1 (the world is swapped for the build only, see
  :func:`_as_world_of_one`), and ``native_local``, the single-process code of
  :mod:`benchmarks.native_torch` / :mod:`benchmarks.native_tf`.

The first losses (``AGREEMENT_STEPS`` steps; from a copy with dropout 0 for a workload with
dropout) are recorded before timing. Timing follows :mod:`benchmarks.timing` with a fixed
number of steps (the ranks must call the same collectives): ``warmup`` steps of each, then
``rounds`` rounds of one block of ``steps`` steps of each implementation, the order rotating
every round. Each rank records its own per-round times; the parent takes, per round, the
slower rank.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # run as a script by `twinnn run`
    sys.path.insert(0, _ROOT)

#: Steps whose losses are recorded before timing (as benchmarks.worker).
AGREEMENT_STEPS = 3


def _set_threads(backend: str, threads: int) -> None:
    """The same per-process thread count for either framework (before any op runs)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _threads_in_use(backend: str) -> dict[str, int]:
    if backend == "torch":
        import torch

        return {"intra": torch.get_num_threads(), "inter": torch.get_num_interop_threads()}
    import tensorflow as tf

    return {
        "intra": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def _strategy() -> Any:
    """The ``MultiWorkerMirroredStrategy`` that ``twinnn.distributed.init()`` created.

    TensorFlow sets up its collectives once per process: a second strategy in the same
    process fails (``destinations can not be empty``), so the native loop uses this one --
    the very object its own script would create (one worker per process, RING)."""
    from twinnn.backends.tensorflow import distributed

    return distributed._strategy


def _native(backend: str, workload: Any, batches: Any, weights: Any, global_batch: int) -> Any:
    if backend == "torch":
        from benchmarks import ddp_torch

        return ddp_torch.build(workload, batches, weights)
    from benchmarks import mwms_tf

    return mwms_tf.build(workload, batches, weights, _strategy(), global_batch)


@contextmanager
def _as_world_of_one() -> Iterator[None]:
    """While building a step: ``twinnn.distributed.world()`` is a world of 1, so
    ``train_step`` builds the plain one-process step (no collective). A diagnostic only."""
    module: Any = sys.modules["twinnn.distributed.world"]
    saved = module._world
    module._world = module.World()
    try:
        yield
    finally:
        module._world = saved


def _local(backend: str, workload: Any, batches: Any, weights: Any) -> dict[str, Any]:
    """``twinnn_local`` and ``native_local`` (see the module docstring), past their first step."""
    from benchmarks import twinnn_impl

    with _as_world_of_one():
        twinnn = twinnn_impl.build(workload, batches, weights, "cpu")
    if backend == "torch":
        from benchmarks import native_torch as native
    else:
        from benchmarks import native_tf as native  # type: ignore[no-redef]
    impls = {
        "twinnn_local": twinnn,
        "native_local": native.build(workload, batches, weights, "cpu"),
    }
    for impl in impls.values():
        impl.step(*impl.batches[0])
    return impls


def _losses(impl: Any, steps: int) -> list[float]:
    k = len(impl.batches)
    return [impl.to_float(impl.step(*impl.batches[i % k])) for i in range(steps)]


def _prepare(backend: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Build every implementation of workload ``name``; returns ``{"impls", "entry"}``."""
    import twinnn as tn
    from benchmarks import twinnn_impl
    from benchmarks.workloads import (
        WORKLOADS,
        agreement_variant,
        make_batches,
        make_weights,
        tiny,
    )

    workload = WORKLOADS[name]
    if spec["tiny"]:
        workload = tiny(workload)
        workload = replace(workload, batch=2 * ((workload.batch + 1) // 2))  # even shards
    world = tn.distributed.world()
    if workload.batch % world.world_size:
        raise ValueError(f"{name}: global batch {workload.batch} is not even across the ranks")
    shards = [tuple(tn.distributed.shard(batch)) for batch in make_batches(workload)]
    weights = make_weights(workload)
    local = replace(workload, batch=workload.batch // world.world_size)
    entry: dict[str, Any] = {
        "description": workload.description,
        "global_batch": workload.batch,
        "local_batch": local.batch,
    }
    check = agreement_variant(local)
    builders: dict[str, Callable[[Any], Any]] = {
        "native": lambda w: _native(backend, w, shards, weights, workload.batch),
        "twinnn": lambda w: twinnn_impl.build(w, shards, weights, "cpu"),
    }
    impls: dict[str, Any] = {}
    for impl_name, build in builders.items():
        losses = None
        if check is not local:  # dropout masks differ between frameworks: compare p = 0
            losses = _losses(build(check), AGREEMENT_STEPS)
        impl = build(local)
        first = time.perf_counter()
        timed_losses = _losses(impl, AGREEMENT_STEPS)
        entry[impl_name] = {
            "first_steps_s": time.perf_counter() - first,
            "losses": timed_losses if losses is None else losses,
            "timed_losses": timed_losses,
            "notes": impl.notes,
        }
        impls[impl_name] = impl
    if check is not local:
        entry["agreement"] = "first losses compared on a copy with dropout 0"
    native = impls["native"]
    size = int(native.extra["parameters"])  # torch's LSTMs have two biases: a few more
    twinnn_size = sum(int(a.size) for a in weights.values())  # twinnn's layout
    entry["parameters"] = twinnn_size
    if backend == "torch":
        from benchmarks import ddp_torch

        impls["comm_twinnn"] = ddp_torch.comm(twinnn_size + 1)
        impls["comm_native"] = ddp_torch.comm(size)
        impls["gather"] = ddp_torch.gather()
    else:
        from benchmarks import mwms_tf

        strategy = _strategy()
        impls["comm_twinnn"] = mwms_tf.comm(strategy, size=twinnn_size + 1)
        impls["comm_native"] = mwms_tf.comm(
            strategy,
            shapes=native.extra["grad_shapes"],
            sparse_rows=native.extra["sparse_rows"],
        )
        impls["gather"] = mwms_tf.gather(strategy)
    if spec.get("local"):
        impls.update(_local(backend, local, shards, weights))
    for key in impls:
        entry.setdefault(key, {"notes": impls[key].notes})
    return {"impls": impls, "entry": entry}


def _time(impls: dict[str, Any], rounds: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per implementation, the seconds per step of each round (see the module docstring)."""
    from benchmarks.timing import _Runner

    runners = {name: _Runner(impl) for name, impl in impls.items()}
    for runner in runners.values():
        for _ in range(warmup):
            runner.block(1)
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(runners[name].block(steps))
    return samples


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    backend = os.environ["TWINNN_BACKEND"]
    _set_threads(backend, spec["threads"])
    import twinnn as tn

    world = tn.distributed.init()
    result: dict[str, Any] = {
        "rank": world.rank,
        "world_size": world.world_size,
        "backend": backend,
        "threads": _threads_in_use(backend),
        "workloads": {},
    }
    status = 0
    try:
        for name in spec["workloads"]:
            prepared = _prepare(backend, name, spec)
            entry = prepared["entry"]
            samples = _time(prepared["impls"], spec["rounds"], spec["steps"][name], spec["warmup"])
            for impl_name, values in samples.items():
                entry[impl_name]["samples_s"] = values
            entry["steps_per_round"] = spec["steps"][name]
            result["workloads"][name] = entry
            del prepared
    except Exception as exc:
        traceback.print_exc()
        result["error"] = traceback.format_exception_only(type(exc), exc)[-1].strip()[:500]
        status = 1
    out = Path(spec["out"]) / f"rank{world.rank}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
