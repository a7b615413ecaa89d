"""The twinnn implementation of every workload: written once, run on the worker's backend.

The backend is chosen by ``TWINNN_BACKEND`` and the device by ``TWINNN_DEVICE``, both set by
the parent before the worker starts. Batches are made with ``twinnn.tensor`` (native tensors
on twinnn's device), as a training script would hold them.

lm: ``Embedding -> Dropout -> LSTM(num_layers, dropout) -> Dropout -> Linear``, loss
``cross_entropy`` on the ``(B, T, V)`` logits, ``SGD`` and ``train_step(clip_norm=...,
outputs=True)``; the model takes the state ``(h0, c0)`` as inputs and returns the new one
with the logits, and the step passes it into the next chunk (the returned outputs are
detached: truncated BPTT), as ``examples/word_language_model.py`` does.

transformer: ``examples/transformer_classifier.py``'s model -- ``Embedding`` plus the
positions, ``Dropout``, encoder blocks of ``MultiHeadAttention(key_lengths=...)``, ``Dropout``,
``LayerNorm``, ``Linear``, ``gelu``, ``Dropout``, ``Linear``, ``Dropout``, ``LayerNorm``
(post-norm, torch's attribute names), the mean over ``sequence_mask(lengths)``, ``Linear``;
``cross_entropy``, ``AdamW`` and ``train_step``.

cnn: ``Conv2D(padding="same")``, ``relu``, ``max_pool(2)`` per convolution, ``flatten``,
``Linear``, channels last; ``cross_entropy``, ``SGD(momentum=...)`` and ``train_step``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import twinnn as tn
from benchmarks.workloads import Batch, Impl, Workload, cnn_flat, sinusoidal_positions

__all__ = ["build", "lstm_available", "missing"]

#: What each workload kind needs from twinnn.
_NEEDS = {
    "linear": ("Linear",),
    "lstm": ("LSTM",),
    "lm": ("Embedding", "Dropout", "LSTM"),
    "transformer": ("Embedding", "Dropout", "MultiHeadAttention", "LayerNorm", "AdamW"),
    "cnn": ("Conv2D", "max_pool", "flatten"),
}


def lstm_available() -> bool:
    """Whether this twinnn has ``LSTM`` (the ``lstm_len`` workload needs it)."""
    return hasattr(tn, "LSTM")


def missing(workload: Workload) -> list[str]:
    """The twinnn layers that ``workload`` needs and this twinnn lacks (empty: it can run)."""
    return [name for name in _NEEDS[workload.kind] if not hasattr(tn, name)]


class _LSTMRegressor(tn.Module):
    """``LSTM(in -> H)`` then ``Linear(H -> out)`` on the last layer's final hidden state."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.lstm = tn.LSTM(in_features, hidden)
        self.head = tn.Linear(hidden, out_features)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, (h, _) = self.lstm(x, lengths)
        return self.head(h[-1])


class _WordLM(tn.Module):
    """pytorch/examples' word language model (LSTM, untied) written with twinnn."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.drop = tn.Dropout(dropout)
        self.encoder = tn.Embedding(vocab, emb)
        self.rnn = tn.LSTM(emb, hidden, num_layers=layers, dropout=dropout)
        self.drop_out = tn.Dropout(dropout)
        self.decoder = tn.Linear(hidden, vocab)

    def forward(self, tokens: Any, h0: Any, c0: Any) -> Any:
        emb = self.drop(self.encoder(tokens))  # (B, T, E)
        out, (h, c) = self.rnn(emb, initial_state=(h0, c0))
        return self.decoder(self.drop_out(out)), (h, c)


def _lm_loss(outputs: Any, target: Any) -> Any:
    logits, _ = outputs
    return tn.cross_entropy(logits, target)


def _build_lm(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    tn.seed(0)  # the dropout masks derive from the seed: the same on both backends, every run
    model = _WordLM(
        workload.out_features,
        workload.in_features,
        workload.hidden,
        workload.layers,
        workload.dropout,
    )
    model.load_state_dict(weights)
    optimizer = tn.SGD(model, lr=workload.lr)
    train = tn.train_step(model, _lm_loss, optimizer, clip_norm=workload.clip_norm, outputs=True)
    zeros = tn.tensor(np.zeros((workload.layers, workload.batch, workload.hidden), np.float32))
    state = [zeros, zeros]

    def step(tokens: Any, targets: Any) -> Any:
        loss, (_, (state[0], state[1])) = train(tokens, state[0], state[1], targets)
        return loss

    native = [tuple(tn.tensor(a, dtype="int64") for a in batch) for batch in batches]
    last = model.parameters()[-1]

    def sync() -> None:
        if tn.device() != "cpu":
            tn.to_numpy(last)

    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(tn.to_numpy(loss)),
        sync=sync,
        notes=(
            f"twinnn.train_step(clip_norm, outputs=True), state carried ({tn.backend()}, "
            f"device {tn.device()})"
        ),
    )


class _EncoderLayer(tn.Module):
    """torch's ``nn.TransformerEncoderLayer(E, H, F, p, activation="gelu", batch_first=True)``
    (post-norm), the same attribute names."""

    def __init__(self, embed: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = tn.MultiHeadAttention(embed, heads, dropout=dropout)
        self.linear1 = tn.Linear(embed, hidden)
        self.dropout = tn.Dropout(dropout)
        self.linear2 = tn.Linear(hidden, embed)
        self.norm1 = tn.LayerNorm(embed)
        self.norm2 = tn.LayerNorm(embed)
        self.dropout1 = tn.Dropout(dropout)
        self.dropout2 = tn.Dropout(dropout)

    def forward(self, x: Any, lengths: Any) -> Any:
        x = self.norm1(x + self.dropout1(self.self_attn(x, key_lengths=lengths)))
        mlp = self.linear2(self.dropout(tn.gelu(self.linear1(x))))
        return self.norm2(x + self.dropout2(mlp))


class _TransformerClassifier(tn.Module):
    """``(tokens (B, T), lengths (B,))`` -> logits ``(B, classes)``."""

    positions: Any  # the (T, E) position table, a non-persistent buffer

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        e, p = workload.in_features, workload.dropout
        self.time = workload.time
        self.embed = tn.Embedding(workload.vocab, e)
        self.register_buffer("positions", sinusoidal_positions(workload.time, e), False)
        self.drop = tn.Dropout(p)
        self.layers = tn.ModuleList(
            [_EncoderLayer(e, workload.heads, workload.hidden, p) for _ in range(workload.layers)]
        )
        self.head = tn.Linear(e, workload.out_features)

    def forward(self, tokens: Any, lengths: Any) -> Any:
        x = self.drop(self.embed(tokens) + self.positions)  # (B, T, E)
        for layer in self.layers:
            x = layer(x, lengths)
        valid = tn.expand_dims(tn.sequence_mask(lengths, self.time), axis=-1)  # (B, T, 1)
        counts = tn.expand_dims(tn.cast(lengths, "float32"), axis=-1)  # (B, 1)
        return self.head(tn.sum(x * valid, axis=1) / counts)


class _CNNClassifier(tn.Module):
    """``images (B, H, W, C)`` -> logits ``(B, classes)``: per convolution ``k``
    ``max_pool(relu(conv{k}(x)), 2)``, then ``head(flatten(x))``."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        sizes = (workload.in_features, *workload.channels)
        self.depth = len(workload.channels)
        for k in range(1, self.depth + 1):
            setattr(self, f"conv{k}", tn.Conv2D(sizes[k - 1], sizes[k], 3, padding="same"))
        side, channels = cnn_flat(workload)
        self.head = tn.Linear(side * side * channels, workload.out_features)

    def forward(self, x: Any) -> Any:
        for k in range(1, self.depth + 1):
            x = tn.max_pool(tn.relu(getattr(self, f"conv{k}")(x)), 2)
        return self.head(tn.flatten(x))


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    del device  # twinnn's own TWINNN_DEVICE decides
    if workload.kind == "lm":
        return _build_lm(workload, batches, weights)
    model: tn.Module
    loss_fn: Any = tn.mse_loss
    if workload.kind == "linear":
        model = tn.Linear(workload.in_features, workload.out_features)
    elif workload.kind == "transformer":
        tn.seed(0)  # the dropout masks: the same on both backends, every run
        model = _TransformerClassifier(workload)
        loss_fn = tn.cross_entropy
    elif workload.kind == "cnn":
        model = _CNNClassifier(workload)
        loss_fn = tn.cross_entropy
    else:
        model = _LSTMRegressor(workload.in_features, workload.hidden, workload.out_features)
    model.load_state_dict(weights)
    optimizer: tn.Optimizer
    if workload.optimizer == "adam":
        optimizer = tn.Adam(model, lr=workload.lr)
    elif workload.optimizer == "adamw":
        optimizer = tn.AdamW(model, lr=workload.lr, weight_decay=0.01)
    else:
        optimizer = tn.SGD(model, lr=workload.lr, momentum=workload.momentum)
    step = tn.train_step(model, loss_fn, optimizer, clip_norm=workload.clip_norm)
    native = [
        tuple(tn.tensor(a, dtype="int64" if a.dtype.kind in "iu" else "float32") for a in batch)
        for batch in batches
    ]
    last = model.parameters()[-1]

    def sync() -> None:
        # Reading a parameter back waits for every queued update (GPU); free on CPU.
        if tn.device() != "cpu":
            tn.to_numpy(last)

    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(tn.to_numpy(loss)),
        sync=sync,
        notes=f"twinnn.train_step ({tn.backend()}, device {tn.device()})",
    )
