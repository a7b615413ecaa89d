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
* ``transformer_small``: a Transformer encoder classifier (``examples/transformer_classifier.py``
  at benchmark sizes) -- ``Embedding(1000, 128)`` plus fixed sinusoidal positions
  (:func:`sinusoidal_positions`), dropout 0.1, 2 post-norm encoder blocks as torch's
  ``nn.TransformerEncoderLayer(128, 4, 512, 0.1, activation="gelu", batch_first=True)``
  (4 heads; exact GELU; dropout 0.1 on the attention probabilities, both residual branches and
  inside the MLP; LayerNorm eps 1e-5), the padded keys masked by the lengths, the mean over the
  valid tokens, ``Linear(128 -> 10)``; cross-entropy over the 10 classes, AdamW(lr 1e-3,
  weight decay 0.01, eps 1e-8: torch's defaults), no clipping; batch 32, ``T = 64``, lengths
  in ``[16, 64]``. Four batches with different lengths are cycled.
* ``cnn_small``: a small convolutional classifier on 32x32x3 images (channels last in twinnn
  and TensorFlow, NCHW in native torch): three ``Conv2D`` 3x3 SAME (3 -> 32 -> 64 -> 64
  channels), each followed by ReLU and a 2x2 max pool (32 -> 16 -> 8 -> 4), ``flatten``
  (``4 * 4 * 64 = 1024`` features), ``Linear(1024 -> 10)``; cross-entropy over the 10
  classes, SGD lr 0.01 with momentum 0.9 (what a torch CIFAR script writes); batch 64. Four
  batches are cycled.

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
    "cnn_flat",
    "make_batches",
    "make_weights",
    "sinusoidal_positions",
    "tiny",
]

#: One batch: the step's positional arguments as NumPy arrays (inputs..., target).
Batch = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Workload:
    """One model + data configuration; ``kind`` is ``"linear"``, ``"lstm"``, ``"lm"``,
    ``"transformer"`` or ``"cnn"``.

    For ``"lm"``: ``out_features`` is the vocabulary, ``in_features`` the embedding size,
    ``hidden`` the LSTM size, ``layers`` the number of stacked LSTM layers, ``time`` the BPTT
    length and ``pool`` the number of consecutive chunks of the token stream.

    For ``"transformer"``: ``vocab`` token ids, ``in_features`` the model width ``E``,
    ``heads`` attention heads, ``hidden`` the MLP width, ``layers`` encoder blocks, ``time`` the
    padded sequence length, ``out_features`` the classes; ``optimizer="adamw"``.

    For ``"cnn"``: ``image`` the height and width, ``in_features`` the input channels,
    ``channels`` the output channels of each 3x3 SAME convolution (each followed by ReLU and
    a 2x2 max pool), ``out_features`` the classes.
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
    heads: int = 0
    vocab: int = 0
    momentum: float = 0.0  # SGD's (torch's convention: buffer = momentum * buffer + grad)
    image: int = 0
    channels: tuple[int, ...] = ()
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
        Workload(
            "transformer_small",
            "transformer",
            batch=32,
            in_features=128,
            out_features=10,
            hidden=512,
            time=64,
            pool=4,
            lr=1e-3,
            optimizer="adamw",
            layers=2,
            dropout=0.1,
            heads=4,
            vocab=1000,
            description=(
                "Transformer encoder classifier: Embedding 1000->128 + sinusoidal positions, "
                "2 post-norm blocks (4 heads, GELU MLP 512, dropout 0.1), mean over the valid "
                "tokens, Linear 128->10, cross-entropy, AdamW lr 1e-3, batch 32, T 64, lengths "
                "in [16, 64]"
            ),
        ),
        Workload(
            "cnn_small",
            "cnn",
            batch=64,
            in_features=3,
            out_features=10,
            pool=4,
            lr=0.01,
            momentum=0.9,
            image=32,
            channels=(32, 64, 64),
            description=(
                "CNN: 3x Conv2D 3x3 SAME (3->32->64->64) + ReLU + max pool 2, flatten, "
                "Linear 1024->10, on 32x32x3, cross-entropy, SGD lr 0.01 momentum 0.9, batch 64"
            ),
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
    if workload.kind == "transformer":
        return replace(
            workload, batch=4, in_features=8, out_features=3, hidden=16, time=8, heads=2, vocab=20
        )
    if workload.kind == "cnn":
        # a 2x2 last map, so that the order of the flattened features matters
        return replace(workload, batch=4, out_features=3, image=16, channels=(4, 8, 8))
    return replace(workload, batch=3, in_features=6, out_features=40, hidden=5, time=4, pool=3)


def make_batches(workload: Workload, seed: int = 0) -> list[Batch]:
    """``workload.pool`` batches: ``(x, y)`` for linear, ``(x, lengths, y)`` for lstm,
    ``(tokens, next_tokens)`` for lm, ``(tokens, lengths, labels)`` for transformer,
    ``(images, labels)`` for cnn.

    ``x`` and ``y`` are float32 standard normal; LSTM padding (``t >= length``) holds random
    values too (every implementation must ignore it); ``lengths`` are int64 in ``[1, T]``
    (``pack_padded_sequence`` refuses 0), with at least one full-length sequence per batch.
    """
    rng = np.random.default_rng(seed)
    if workload.kind == "lm":
        return _token_chunks(workload, rng)
    if workload.kind == "transformer":
        return _token_sequences(workload, rng)
    if workload.kind == "cnn":
        return _images(workload, rng)
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


def _token_sequences(workload: Workload, rng: np.random.Generator) -> list[Batch]:
    """``pool`` batches ``(tokens, lengths, labels)``: ``tokens`` int64 ``(B, T)`` uniform
    over the vocabulary (the padding too: every implementation must ignore it), ``lengths``
    int64 in ``[T / 4, T]`` with one full-length sequence per batch, ``labels`` int64 ``(B,)``
    uniform over the classes."""
    b, t = workload.batch, workload.time
    batches: list[Batch] = []
    for _ in range(workload.pool):
        tokens = rng.integers(0, workload.vocab, size=(b, t)).astype(np.int64)
        lengths = rng.integers(max(1, t // 4), t + 1, size=b).astype(np.int64)
        lengths[rng.integers(b)] = t
        labels = rng.integers(0, workload.out_features, size=b).astype(np.int64)
        batches.append((tokens, lengths, labels))
    return batches


def sinusoidal_positions(time: int, dim: int) -> np.ndarray:
    """The fixed position table ``(time, dim)`` float32 added to the token embeddings:
    ``sin(t * 10000**(-2i / dim))`` in column ``2i``, ``cos`` of the same in ``2i + 1``
    (Vaswani et al. 2017; the torch tutorial's ``PositionalEncoding``). Computed here once, in
    float64, and given to every implementation as a constant."""
    steps = np.arange(time, dtype=np.float64)[:, None]
    rates = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((time, dim))
    table[:, 0::2] = np.sin(steps * rates)
    table[:, 1::2] = np.cos(steps * rates[: dim // 2])
    return table.astype(np.float32)


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
    transformer: see :func:`_transformer_weights`. cnn: see :func:`_cnn_weights`.
    """
    rng = np.random.default_rng(seed)
    if workload.kind == "transformer":
        return _transformer_weights(workload, rng)
    if workload.kind == "cnn":
        return _cnn_weights(workload, rng)

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


def _transformer_weights(workload: Workload, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``embed.weight (V, E)`` ``N(0, 1)`` (torch's ``nn.Embedding``); per block ``k`` (prefix
    ``layers.{k}.``, torch's ``TransformerEncoderLayer`` names): ``self_attn.w_q, w_k, w_v
    (E, E)`` Xavier-uniform on the packed ``(3E, E)`` (torch's ``in_proj_weight``),
    ``self_attn.w_o (E, E)``, ``linear1.weight (E, F)``, ``linear2.weight (F, E)`` and
    ``head.weight (E, C)`` with torch's Linear range ``U(+-1/sqrt(fan_in))``, every bias
    ``U(+-0.1)`` and the LayerNorm weights ``1 + U(+-0.1)`` (torch starts them at 0 and 1; moved
    here so that the agreement check covers them). Layout ``x @ w`` (twinnn's)."""
    e, f, c = workload.in_features, workload.hidden, workload.out_features

    def uniform(shape: tuple[int, ...], bound: float) -> np.ndarray:
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    weights = {"embed.weight": rng.standard_normal((workload.vocab, e)).astype(np.float32)}
    for k in range(workload.layers):
        p = f"layers.{k}."
        for name in ("w_q", "w_k", "w_v"):
            weights[f"{p}self_attn.{name}"] = uniform((e, e), np.sqrt(6.0 / (4 * e)))
        weights[f"{p}self_attn.w_o"] = uniform((e, e), 1 / np.sqrt(e))
        for name in ("b_q", "b_k", "b_v", "b_o"):
            weights[f"{p}self_attn.{name}"] = uniform((e,), 0.1)
        weights[f"{p}linear1.weight"] = uniform((e, f), 1 / np.sqrt(e))
        weights[f"{p}linear1.bias"] = uniform((f,), 0.1)
        weights[f"{p}linear2.weight"] = uniform((f, e), 1 / np.sqrt(f))
        weights[f"{p}linear2.bias"] = uniform((e,), 0.1)
        for norm in ("norm1", "norm2"):
            weights[f"{p}{norm}.weight"] = 1 + uniform((e,), 0.1)
            weights[f"{p}{norm}.bias"] = uniform((e,), 0.1)
    weights["head.weight"] = uniform((e, c), 1 / np.sqrt(e))
    weights["head.bias"] = uniform((c,), 0.1)
    return weights


def _images(workload: Workload, rng: np.random.Generator) -> list[Batch]:
    """``pool`` batches ``(images, labels)``: ``images`` float32 ``(B, H, W, C)`` standard
    normal (channels last; native torch transposes them to NCHW once, before timing),
    ``labels`` int64 ``(B,)`` uniform over the classes."""
    shape = (workload.batch, workload.image, workload.image, workload.in_features)
    return [
        (
            rng.standard_normal(shape).astype(np.float32),
            rng.integers(0, workload.out_features, size=workload.batch).astype(np.int64),
        )
        for _ in range(workload.pool)
    ]


def cnn_flat(workload: Workload) -> tuple[int, int]:
    """``(side, channels)`` of the last feature map of a cnn workload: the side after one
    2x2 max pool per convolution (floor, as "valid" pooling), the last conv's channels."""
    return workload.image >> len(workload.channels), workload.channels[-1]


def _cnn_weights(workload: Workload, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``conv{k}.weight (3, 3, in, out)`` and ``conv{k}.bias (out,)`` for each convolution
    ``k = 1, 2, ...``, ``head.weight (side * side * C, classes)`` with its rows in ``h, w, c``
    order (twinnn's and Keras' ``flatten`` of a channels-last map; torch's ``flatten`` of NCHW
    orders them ``c, h, w``), ``head.bias (classes,)``: torch's default ranges
    ``U(+-1/sqrt(fan_in))``, weights and biases alike."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    weights: dict[str, np.ndarray] = {}
    inputs = workload.in_features
    for k, out in enumerate(workload.channels, start=1):
        weights[f"conv{k}.weight"] = uniform((3, 3, inputs, out), 9 * inputs)
        weights[f"conv{k}.bias"] = uniform((out,), 9 * inputs)
        inputs = out
    side, channels = cnn_flat(workload)
    features = side * side * channels
    weights["head.weight"] = uniform((features, workload.out_features), features)
    weights["head.bias"] = uniform((workload.out_features,), features)
    return weights


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
