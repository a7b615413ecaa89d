"""The benchmark workloads: shapes, data and initial weights, framework-free (NumPy only).

Every implementation of a workload trains the same model from the same initial weights
(given in twinnn's neutral layout, see ``DESIGN.md`` §4) on the same batches, so the first
step's loss must agree across implementations: the harness checks it, which guarantees that
the timings compare the same computation.

Workloads:

* ``linear_seed``: the seed article's Example 1 -- ``Linear(5 -> 1)`` on a full batch of
  100 rows, MSE, SGD(lr=0.01).
* ``linear_big``: ``Linear(256 -> 16)`` on a full batch of 4096 rows, MSE, SGD(lr=0.01).
* ``lstm_len``: ``LSTM(32 -> 128)`` + ``Linear(128 -> 1)`` on the final hidden state,
  batch 64, ``T = 50``, per-sequence lengths drawn from ``[1, 50]``, MSE, SGD(lr=0.01).
  Four batches with different lengths are cycled, so length-dependent work (packing, masks)
  is really redone every step.
* ``lstm_adam``: the ``lstm_len`` model trained with Adam(lr=1e-3) and gradients clipped to
  a global norm of 1.0 (torch: ``torch.optim.Adam`` with its default implementation and
  ``clip_grad_norm_``; TensorFlow: Keras' ``Adam`` and ``tf.clip_by_global_norm``; Keras 3:
  ``Adam(global_clipnorm=1.0)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["WORKLOADS", "Impl", "Workload", "make_batches", "make_weights"]

#: One batch: the step's positional arguments as NumPy arrays (inputs..., target).
Batch = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Workload:
    """One model + data configuration; ``kind`` is ``"linear"`` or ``"lstm"``."""

    name: str
    kind: str
    batch: int
    in_features: int
    out_features: int
    hidden: int = 0
    time: int = 0
    lr: float = 0.01
    pool: int = 1  # distinct batches cycled through
    optimizer: str = "sgd"  # "sgd" or "adam"
    clip_norm: float | None = None
    description: str = ""


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "linear_seed",
            "linear",
            batch=100,
            in_features=5,
            out_features=1,
            description="seed Example 1: Linear 5->1, full batch 100, MSE, SGD lr 0.01",
        ),
        Workload(
            "linear_big",
            "linear",
            batch=4096,
            in_features=256,
            out_features=16,
            description="Linear 256->16, full batch 4096, MSE, SGD lr 0.01",
        ),
        Workload(
            "lstm_len",
            "lstm",
            batch=64,
            in_features=32,
            out_features=1,
            hidden=128,
            time=50,
            pool=4,
            description=(
                "LSTM 32->128 + Linear 128->1 on the final state, batch 64, T 50, "
                "lengths in [1, 50], MSE, SGD lr 0.01"
            ),
        ),
        Workload(
            "lstm_adam",
            "lstm",
            batch=64,
            in_features=32,
            out_features=1,
            hidden=128,
            time=50,
            pool=4,
            lr=1e-3,
            optimizer="adam",
            clip_norm=1.0,
            description=(
                "the lstm_len model with Adam lr 1e-3 and the gradient clipped to norm 1.0"
            ),
        ),
    )
}


def make_batches(workload: Workload, seed: int = 0) -> list[Batch]:
    """``workload.pool`` batches: ``(x, y)`` for linear, ``(x, lengths, y)`` for lstm.

    ``x`` and ``y`` are float32 standard normal; LSTM padding (``t >= length``) holds random
    values too (every implementation must ignore it); ``lengths`` are int64 in ``[1, T]``
    (``pack_padded_sequence`` refuses 0), with at least one full-length sequence per batch.
    """
    rng = np.random.default_rng(seed)
    batches: list[Batch] = []
    for _ in range(workload.pool):
        y = rng.standard_normal((workload.batch, workload.out_features)).astype(np.float32)
        if workload.kind == "linear":
            x = rng.standard_normal((workload.batch, workload.in_features)).astype(np.float32)
            batches.append((x, y))
        else:
            shape = (workload.batch, workload.time, workload.in_features)
            x = rng.standard_normal(shape).astype(np.float32)
            lengths = rng.integers(1, workload.time + 1, size=workload.batch).astype(np.int64)
            lengths[rng.integers(workload.batch)] = workload.time
            batches.append((x, lengths, y))
    return batches


def make_weights(workload: Workload, seed: int = 1) -> dict[str, np.ndarray]:
    """Initial weights in twinnn's neutral layout, by parameter name.

    linear: ``weight (in, out)``, ``bias (out,)``. lstm: ``lstm.w_ih_l0 (in, 4H)``,
    ``lstm.w_hh_l0 (H, 4H)``, ``lstm.bias_l0 (4H,)`` (gate order i, f, g, o) and
    ``head.weight (H, 1)``, ``head.bias (1,)``. PyTorch's default ranges, non-zero biases.
    """
    rng = np.random.default_rng(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    i, o = workload.in_features, workload.out_features
    if workload.kind == "linear":
        return {"weight": uniform((i, o), i), "bias": uniform((o,), i)}
    h = workload.hidden
    return {
        "lstm.w_ih_l0": uniform((i, 4 * h), h),
        "lstm.w_hh_l0": uniform((h, 4 * h), h),
        "lstm.bias_l0": uniform((4 * h,), h),
        "head.weight": uniform((h, o), h),
        "head.bias": uniform((o,), h),
    }


def _no_sync() -> None:
    return None


@dataclass
class Impl:
    """One implementation of a workload, ready to time.

    ``step(*batches[i])`` runs one full training step (forward, loss, gradients, update) and
    returns the loss in the implementation's own form; ``to_float`` turns that into a Python
    float (for the agreement check only, never inside a timed block). ``sync`` waits for the
    device work queued by the previous steps (a no-op on CPU).
    """

    step: Callable[..., Any]
    batches: list[tuple[Any, ...]]
    to_float: Callable[[Any], float]
    sync: Callable[[], None] = _no_sync
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


#: ``build(workload, batches, weights, device) -> Impl``; ``device`` is ``"cpu"`` or ``"gpu"``.
Builder = Callable[[Workload, list[Batch], dict[str, np.ndarray], str], Impl]
