"""The cost of twinnn's hash dropout against each framework's own dropout, on the CPU.

    python -m benchmarks.dropout_cost [--backend torch|tensorflow] [--rounds 41] [--threads 1]

One training-mode forward of ``twinnn.Dropout(0.2)`` (the whole layer call: argument check,
step key from the update counter, mask, multiply, counter increment) against

* torch: ``torch.nn.functional.dropout(x, 0.2, training=True)``;
* TensorFlow: ``tf.nn.dropout(x, 0.2)`` (stateful Philox) and
  ``tf.nn.experimental.stateless_dropout`` (what Keras 3's ``Dropout`` calls),

for x of shape ``(20, 35, 200)`` (the ``lm_lstm`` workload's LSTM output) and ``(64, 512)``,
eager and compiled: ``torch.compile(dynamic=True)`` on torch; on TensorFlow ``tf.function``
with every axis but the last unknown (how twinnn's steps are traced) and with XLA
(``jit_compile``, full shapes). Each pair is timed in interleaved rounds (the order alternates)
and the fastest round is reported, in microseconds per call, with the ratio twinnn / native;
one CPU thread per framework by default (``--threads``), so the figures measure work, not
how well each op is split over cores. The
compiled twinnn masks are checked against the eager ones (bit-identical) before timing.
Quoted in docs/performance.md ("Dropout").
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import twinnn as tn

SHAPES = [(20, 35, 200), (64, 512)]
P = 0.2


def _block_us(fn: Callable[[], object], n: int, sync: Callable[[object], object]) -> float:
    start = time.perf_counter()
    out = None
    for _ in range(n):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / n * 1e6


def compare(
    ours: Callable[[], object],
    native: Callable[[], object],
    sync: Callable[[object], object],
    rounds: int,
) -> tuple[float, float]:
    """Microseconds per call of ``ours`` and ``native``: the fastest of ``rounds`` interleaved
    blocks of about 5 ms each (the minimum, not the median: on a shared machine the other
    processes only ever add time)."""
    for fn in (ours, native):
        for _ in range(5):
            fn()
    once = max(_block_us(ours, 3, sync), _block_us(native, 3, sync), 1.0)
    n = max(2, int(5_000 / once))
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            times[k].append(_block_us((ours, native)[k], n, sync))
    return min(times[0]), min(times[1])


def _line(label: str, shape: tuple[int, ...], ours: float, native: float) -> str:
    size = "x".join(map(str, shape))
    return (
        f"{label:<42} {size:>10}  twinnn {ours:8.1f} us  native {native:8.1f} us  "
        f"ratio {ours / native:5.2f}"
    )


def _call(fn: Callable[[object], object], x: object) -> Callable[[], object]:
    return lambda: fn(x)


def _torch_shape(shape: tuple[int, ...], rounds: int) -> None:
    import torch
    import torch.nn.functional as F

    tn.seed(0)
    layer = tn.Dropout(P)
    x = torch.randn(shape)

    def ours(t: torch.Tensor) -> torch.Tensor:
        return layer(t)  # type: ignore[no-any-return]

    def native(t: torch.Tensor) -> torch.Tensor:
        return F.dropout(t, P, training=True)

    ours_compiled = torch.compile(ours, dynamic=True)
    native_compiled = torch.compile(native, dynamic=True)
    layer.updates = 0
    expected = layer(x)
    layer.updates = 0
    if not torch.equal(ours_compiled(x), expected):
        raise AssertionError("torch.compile changed the dropout mask")

    def sync(out: object) -> None:  # CPU: every op has finished
        return None

    timed = compare(_call(ours, x), _call(native, x), sync, rounds)
    print(_line("torch eager   vs F.dropout", shape, *timed))
    timed = compare(_call(ours_compiled, x), _call(native_compiled, x), sync, rounds)
    print(_line("torch.compile vs compiled F.dropout", shape, *timed))


def run_torch(rounds: int) -> None:
    import torch

    tn.set_backend("torch")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for shape in SHAPES:
        _torch_shape(shape, rounds)


def _tf_shape(shape: tuple[int, ...], rounds: int) -> None:
    import tensorflow as tf

    tn.seed(0)
    layer = tn.Dropout(P)
    x = tf.random.normal(shape)
    seed = tf.constant([1, 2], tf.int64)

    def ours(t: tf.Tensor) -> tf.Tensor:
        return layer(t)

    def stateful(t: tf.Tensor) -> tf.Tensor:
        return tf.nn.dropout(t, P)

    def stateless(t: tf.Tensor) -> tf.Tensor:
        return tf.nn.experimental.stateless_dropout(t, P, seed=seed)

    def sync(out: object) -> None:
        out.numpy()  # type: ignore[attr-defined]

    timed = compare(_call(ours, x), _call(stateful, x), sync, rounds)
    print(_line("tf eager      vs tf.nn.dropout", shape, *timed))
    timed = compare(_call(ours, x), _call(stateless, x), sync, rounds)
    print(_line("tf eager      vs stateless_dropout (Keras 3)", shape, *timed))
    traced = [tf.TensorSpec([None] * (len(shape) - 1) + [shape[-1]], tf.float32)]
    full = [tf.TensorSpec(shape, tf.float32)]
    for name, spec, jit in (("tf.function", traced, None), ("XLA", full, True)):

        def compiled(fn: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[object], object]:
            return tf.function(fn, input_signature=spec, autograph=False, jit_compile=jit)  # type: ignore[no-any-return]  # noqa: B023

        mine = compiled(ours)
        layer.updates = 0
        expected = layer(x).numpy()
        layer.updates = 0
        if not np.array_equal(mine(x).numpy(), expected):  # type: ignore[attr-defined]
            raise AssertionError(f"{name} changed the dropout mask")
        timed = compare(_call(mine, x), _call(compiled(stateful), x), sync, rounds)
        print(_line(f"{name:<13} vs tf.nn.dropout", shape, *timed))
        timed = compare(_call(mine, x), _call(compiled(stateless), x), sync, rounds)
        print(_line(f"{name:<13} vs stateless_dropout", shape, *timed))


def run_tensorflow(rounds: int) -> None:
    import tensorflow as tf

    tn.set_backend("tensorflow")
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    print(f"tensorflow {tf.__version__}, {threads} intra-op threads, CPU")
    for shape in SHAPES:
        _tf_shape(shape, rounds)


def _threads(name: str, count: int) -> None:
    if name == "torch":
        import torch

        torch.set_num_threads(count)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["torch", "tensorflow"], action="append")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per framework")
    args = parser.parse_args()
    for name in args.backend or ["torch", "tensorflow"]:
        _threads(name, args.threads)
        (run_torch if name == "torch" else run_tensorflow)(args.rounds)


if __name__ == "__main__":
    main()
