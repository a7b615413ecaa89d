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
* ``lm_lstm``: the word language model of pytorch/examples' ``word_language_model`` --
  ``Embedding(10k, 200)``, dropout 0.2, a 2-layer ``LSTM(200)`` with dropout 0.2 between the
  layers, dropout 0.2, ``Linear(200 -> 10k)``; cross-entropy over all ``B * T`` tokens, plain
  SGD lr 20 with the gradient clipped to a global norm of 0.25; batch 20, BPTT 35. The LSTM
  state is carried from one chunk into the next, detached (truncated back-propagation through
  time). Token ids are a Zipf-distributed int64 stream cut into consecutive chunks.
* ``lm_lstm_nodrop``: ``lm_lstm`` with dropout 0 (the same code, ``p = 0``), so that the cost
  of dropout is the difference of the two.

Dropout masks differ between frameworks (each draws its own), so for a workload with dropout
the harness checks the first-step losses on a copy with dropout 0 (:func:`agreement_variant`)
and times the workload itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "WORKLOADS",
    "Impl",
    "Workload",
    "agreement_variant",
    "make_batches",
    "make_weights",
    "tiny",
]

#: One batch: the step's positional arguments as NumPy arrays (inputs..., target).
Batch = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Workload:
    """One model + data configuration; ``kind`` is ``"linear"``, ``"lstm"`` or ``"lm"``.

    For ``"lm"``: ``out_features`` is the vocabulary, ``in_features`` the embedding size,
    ``hidden`` the LSTM size, ``layers`` the number of stacked LSTM layers, ``time`` the BPTT
    length and ``pool`` the number of consecutive chunks of the token stream.
    """

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
    layers: int = 1
    dropout: float = 0.0
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
        Workload(
            "lm_lstm",
            "lm",
            batch=20,
            in_features=200,
            out_features=10_000,
            hidden=200,
            time=35,
            pool=8,
            lr=20.0,
            clip_norm=0.25,
            layers=2,
            dropout=0.2,
            description=(
                "word LM: Embedding 10k->200, dropout 0.2, 2-layer LSTM 200 (dropout 0.2), "
                "dropout 0.2, Linear 200->10k, cross-entropy, SGD lr 20, clip 0.25, "
                "batch 20, BPTT 35, state carried"
            ),
        ),
        Workload(
            "lm_lstm_nodrop",
            "lm",
            batch=20,
            in_features=200,
            out_features=10_000,
            hidden=200,
            time=35,
            pool=8,
            lr=20.0,
            clip_norm=0.25,
            layers=2,
            dropout=0.0,
            description="the lm_lstm model with dropout 0",
        ),
    )
}


def agreement_variant(workload: Workload) -> Workload:
    """The workload whose first-step loss the harness compares across implementations:
    ``workload`` itself, or a copy with dropout 0 where it has dropout (masks differ between
    frameworks, so only the dropout-free computation can agree)."""
    return workload if workload.dropout == 0 else replace(workload, dropout=0.0)


def tiny(workload: Workload) -> Workload:
    """A smoke-test size of ``workload`` (``--tiny``; for tests of the harness: the
    implementations and the checks are the same, the timings mean nothing)."""
    if workload.kind == "linear":
        return replace(workload, batch=min(workload.batch, 16))
    if workload.kind == "lstm":
        return replace(workload, batch=4, in_features=3, hidden=8, time=6)
    return replace(workload, batch=3, in_features=6, out_features=40, hidden=5, time=4, pool=3)


def make_batches(workload: Workload, seed: int = 0) -> list[Batch]:
    """``workload.pool`` batches: ``(x, y)`` for linear, ``(x, lengths, y)`` for lstm,
    ``(tokens, next_tokens)`` for lm.

    ``x`` and ``y`` are float32 standard normal; LSTM padding (``t >= length``) holds random
    values too (every implementation must ignore it); ``lengths`` are int64 in ``[1, T]``
    (``pack_padded_sequence`` refuses 0), with at least one full-length sequence per batch.
    """
    rng = np.random.default_rng(seed)
    if workload.kind == "lm":
        return _token_chunks(workload, rng)
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


def _token_chunks(workload: Workload, rng: np.random.Generator) -> list[Batch]:
    """``pool`` consecutive BPTT chunks ``(x, y)``, each int64 ``(B, T)``, of a token stream.

    As pytorch/examples' ``batchify``: one stream of ``B * (pool * T + 1)`` ids is cut into
    ``B`` rows, chunk ``i`` is ``x = rows[:, iT:(i+1)T]`` and its targets the next tokens
    ``y = rows[:, iT+1:(i+1)T+1]``, so row ``b`` of chunk ``i + 1`` continues row ``b`` of
    chunk ``i`` (which is why the state is carried). Ids are Zipf-distributed over the
    vocabulary (probability of rank ``r`` proportional to ``1 / (r + 1)``, ranks shuffled), as
    word frequencies are.
    """
    vocab, b, t = workload.out_features, workload.batch, workload.time
    p = 1.0 / np.arange(1, vocab + 1)
    ids = rng.permutation(vocab)
    stream = ids[rng.choice(vocab, size=b * (workload.pool * t + 1), p=p / p.sum())]
    rows = stream.reshape(b, -1).astype(np.int64)
    return [
        (
            np.ascontiguousarray(rows[:, i * t : (i + 1) * t]),
            np.ascontiguousarray(rows[:, i * t + 1 : (i + 1) * t + 1]),
        )
        for i in range(workload.pool)
    ]


def make_weights(workload: Workload, seed: int = 1) -> dict[str, np.ndarray]:
    """Initial weights in twinnn's neutral layout, by parameter name.

    linear: ``weight (in, out)``, ``bias (out,)``. lstm: ``lstm.w_ih_l0 (in, 4H)``,
    ``lstm.w_hh_l0 (H, 4H)``, ``lstm.bias_l0 (4H,)`` (gate order i, f, g, o) and
    ``head.weight (H, 1)``, ``head.bias (1,)``. PyTorch's default ranges, non-zero biases.
    lm: ``encoder.weight (V, E)`` and ``decoder.weight (H, V)`` ``U(-0.1, 0.1)`` (the
    example's ``init_weights``), ``decoder.bias (V,)`` ``U(-0.1, 0.1)`` (the example's is
    zero; non-zero here so that the agreement check covers it), and per layer ``k``
    ``rnn.w_ih_l{k} (in, 4H)``, ``rnn.w_hh_l{k} (H, 4H)``, ``rnn.bias_l{k} (4H,)``,
    ``U(-1/sqrt(H), 1/sqrt(H))`` (torch's LSTM default).
    """
    rng = np.random.default_rng(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    i, o = workload.in_features, workload.out_features
    if workload.kind == "lm":
        h = workload.hidden
        weights = {"encoder.weight": rng.uniform(-0.1, 0.1, (o, i)).astype(np.float32)}
        for k in range(workload.layers):
            weights[f"rnn.w_ih_l{k}"] = uniform((i if k == 0 else h, 4 * h), h)
            weights[f"rnn.w_hh_l{k}"] = uniform((h, 4 * h), h)
            weights[f"rnn.bias_l{k}"] = uniform((4 * h,), h)
        weights["decoder.weight"] = rng.uniform(-0.1, 0.1, (h, o)).astype(np.float32)
        weights["decoder.bias"] = rng.uniform(-0.1, 0.1, (o,)).astype(np.float32)
        return weights
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
