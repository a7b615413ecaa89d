"""Threads (docs/backends.md, "Threads"): ``use_backend`` is per thread, ``set_backend`` and the
initialisers' generator are process-wide; concurrent draws are safe but interleave."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import config, errors, initializers


def _run_together(targets: list[Callable[[threading.Barrier], Any]]) -> list[Any]:
    """Run each target in its own thread, started together; their results, or re-raise."""
    barrier = threading.Barrier(len(targets), timeout=60)
    results: list[Any] = [None] * len(targets)
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = targets[i](barrier)
        except BaseException as exc:  # re-raised in the main thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise failures[0]
    return results


def test_two_threads_each_use_their_own_backend(both_backends: list[str]) -> None:
    tn.set_backend("torch")
    x = np.ones((2, 3), np.float32)

    def worker(name: str) -> Callable[[threading.Barrier], list[str]]:
        def body(barrier: threading.Barrier) -> list[str]:
            seen = []
            with tn.use_backend(name) as canonical:
                assert canonical == name
                layer = tn.Linear(3, 2)
                for _ in range(5):  # both threads inside their block at once, interleaved
                    barrier.wait()
                    assert tn.backend() == name
                    out = tn.relu(layer(tn.matmul(x, np.eye(3))))
                    seen.append(type(out).__module__.split(".")[0])
                    seen.append(type(tn.tensor([1.0])).__module__.split(".")[0])
            seen.append(tn.backend())  # after the block: the process-wide one
            return seen

        return body

    torch_seen, tf_seen = _run_together([worker("torch"), worker("tensorflow")])
    assert set(torch_seen[:-1]) == {"torch"}
    assert set(tf_seen[:-1]) == {"tensorflow"}
    assert torch_seen[-1] == tf_seen[-1] == "torch"
    assert tn.backend() == "torch"


def test_use_backend_does_not_leak_to_other_threads(both_backends: list[str]) -> None:
    tn.set_backend("torch")
    inside = threading.Event()
    done = threading.Event()

    def in_block(barrier: threading.Barrier) -> str:
        with tn.use_backend("tf"):
            inside.set()
            done.wait(timeout=60)
            return tn.backend()

    def outside(barrier: threading.Barrier) -> str:
        inside.wait(timeout=60)
        try:
            return tn.backend() + "/" + type(tn.tensor([1.0])).__module__.split(".")[0]
        finally:
            done.set()

    assert _run_together([in_block, outside]) == ["tensorflow", "torch/torch"]


def test_use_backend_nests_and_outlives_set_backend(both_backends: list[str]) -> None:
    tn.set_backend("torch")
    with tn.use_backend("tf"):
        layer = tn.Linear(2, 2)
        with tn.use_backend("pytorch"):
            assert tn.backend() == "torch"
        assert tn.backend() == "tensorflow"
        tn.set_backend("torch")  # process-wide; this block keeps its choice
        assert tn.backend() == "tensorflow"
        assert config.is_current(layer._backend)
    assert tn.backend() == "torch"
    assert type(layer(np.ones((1, 2)))).__module__.startswith("tensorflow")


def test_use_backend_bad_name(backend: str) -> None:
    pattern = r"use_backend\(name\) must be one of .*'jax'"
    with pytest.raises(errors.BackendError, match=pattern), tn.use_backend("jax"):
        pass  # pragma: no cover
    assert tn.backend() == backend


def test_generator_draws_are_shared_atomic_and_interleaved() -> None:
    """The documented rule: one process-wide generator; every draw is one atomic call, so two
    threads drawing at once get exactly the numbers one thread would (none lost or repeated),
    shared between them in an order that depends on scheduling."""
    per_thread, size = 200, 7

    def drawer(barrier: threading.Barrier) -> list[np.ndarray]:
        barrier.wait()
        return [initializers.uniform((size,), 1.0) for _ in range(per_thread)]

    tn.seed(3)
    a, b = _run_together([drawer, drawer])
    tn.seed(3)
    sequential = [initializers.uniform((size,), 1.0) for _ in range(2 * per_thread)]

    def key(arrays: list[np.ndarray]) -> list[bytes]:
        return sorted(x.tobytes() for x in arrays)

    assert key(a + b) == key(sequential)


def test_seed_and_build_under_a_lock_is_reproducible(backend: str) -> None:
    """The documented recipe for building models in several threads: seed and build under one
    lock; each model then equals the one built alone after the same seed."""
    lock = threading.Lock()

    def build(barrier: threading.Barrier) -> np.ndarray:
        barrier.wait()
        with lock:
            tn.seed(11)
            layer = tn.LSTM(3, 4)
        return np.concatenate([tn.to_numpy(p).ravel() for p in layer.parameters()])

    first, second = _run_together([build, build])
    tn.seed(11)
    alone = np.concatenate([tn.to_numpy(p).ravel() for p in tn.LSTM(3, 4).parameters()])
    np.testing.assert_array_equal(first, alone)
    np.testing.assert_array_equal(second, alone)
