"""A GRU training step with per-sequence lengths: twinnn against each framework's own code.

    python -m benchmarks.gru_len [--backend torch|tensorflow] [--rounds 15] [--threads 1]
                                 [--device cpu|gpu]

The ``lstm_len`` workload with a GRU: ``GRU(32 -> 128)`` + ``Linear(128 -> 1)`` on the final
hidden state, batch 64, T 50, lengths uniform in [1, 50] with random values in the padding,
MSE and SGD(0.01). One training step (forward, backward, update) of

* twinnn on the chosen backend (``train_step``: eager on torch, ``tf.function`` on TF);
* torch: ``pack_padded_sequence`` + ``nn.GRU`` + ``nn.Linear`` + ``torch.optim.SGD`` (the
  packed path is torch's exact way to run padded sequences);
* TensorFlow: Keras ``GRU`` with ``mask=`` + ``Dense`` in a ``tf.function`` with a
  ``GradientTape`` and Keras' SGD.

Both sides see the same batches (a new one every step, from a fixed pool). Steps are timed in
interleaved rounds (the order alternates); the fastest round is reported in milliseconds per
step (the minimum, not the median: on a shared machine other processes only ever add time),
with the ratio twinnn / native; one CPU thread per framework by default (``--threads``),
so that other processes on a shared machine disturb the figures less. Quoted in docs/lstm.md
("The GRU").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import twinnn as tn

B, T, F, H = 64, 50, 32, 128
POOL = 8


def batches() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(POOL):
        lengths = rng.integers(1, T + 1, B)
        x = rng.standard_normal((B, T, F)).astype(np.float32)
        pool.append((x, lengths, rng.standard_normal((B, 1)).astype(np.float32)))
    return pool


class Model(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = tn.GRU(F, H, init="torch")
        self.head = tn.Linear(H, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, h = self.gru(x, lengths)
        return self.head(h[-1])


def twinnn_step(pool: list[Any]) -> Callable[[int], float]:
    model = Model()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.01))
    native = [tuple(tn.tensor(a, dtype=str(a.dtype)) for a in batch) for batch in pool]
    return lambda i: float(tn.to_numpy(step(*native[i % POOL])))


def torch_step(pool: list[Any], device: str) -> Callable[[int], float]:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    gru = torch.nn.GRU(F, H, batch_first=True).to(device)
    head = torch.nn.Linear(H, 1).to(device)
    params = [*gru.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01)
    data = [
        (torch.from_numpy(x).to(device), torch.from_numpy(n), torch.from_numpy(y).to(device))
        for x, n, y in pool
    ]

    def step(i: int) -> float:
        x, lengths, y = data[i % POOL]
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = gru(packed)
        loss = torch.nn.functional.mse_loss(head(h[-1]), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def keras_step(pool: list[Any]) -> Callable[[int], float]:
    import keras
    import tensorflow as tf

    gru = keras.layers.GRU(H)
    head = keras.layers.Dense(1)
    gru.build((None, None, F))
    head.build((None, H))
    variables = [*gru.trainable_variables, *head.trainable_variables]
    optimizer = keras.optimizers.SGD(0.01)
    optimizer.build(variables)
    spec = (
        tf.TensorSpec((None, None, F), tf.float32),
        tf.TensorSpec((None, None), tf.bool),
        tf.TensorSpec((None, 1), tf.float32),
    )

    @tf.function(input_signature=spec)
    def train(x: Any, mask: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(head(gru(x, mask=mask)) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    data = [
        (tf.constant(x), tf.constant(np.arange(T)[None, :] < n[:, None]), tf.constant(y))
        for x, n, y in pool
    ]
    return lambda i: float(train(*data[i % POOL]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tensorflow"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per framework")
    args = parser.parse_args()
    if args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tn.set_backend(args.backend)
    tn.set_device(args.device)
    tn.seed(0)
    pool = batches()
    ours = twinnn_step(pool)
    if args.backend == "torch":
        native = torch_step(pool, "cuda" if args.device == "gpu" else "cpu")
    else:
        native = keras_step(pool)
    times: dict[str, list[float]] = {"twinnn": [], "native": []}
    for fn in (ours, native):
        for i in range(3):
            fn(i)  # warm up, compile
    for r in range(args.rounds):
        order = [("twinnn", ours), ("native", native)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for i in range(args.steps):
                fn(i)  # float(loss): waits for the step
            times[name].append((time.perf_counter() - start) / args.steps * 1e3)
    ms = {name: min(values) for name, values in times.items()}
    print(
        f"{args.backend} ({tn.device()}): twinnn {ms['twinnn']:.1f} ms, native "
        f"{ms['native']:.1f} ms per step, twinnn / native {ms['twinnn'] / ms['native']:.2f}"
    )


if __name__ == "__main__":
    main()
