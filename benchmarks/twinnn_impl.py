"""The twinnn implementation of every workload: written once, run on the worker's backend.

The backend is chosen by ``TWINNN_BACKEND`` and the device by ``TWINNN_DEVICE``, both set by
the parent before the worker starts. Batches are made with ``twinnn.tensor`` (native tensors
on twinnn's device), as a training script would hold them.

lm: ``Embedding -> Dropout -> LSTM(num_layers, dropout) -> Dropout -> Linear``, loss
``cross_entropy`` on the ``(B, T, V)`` logits, ``SGD`` and ``train_step(clip_norm=...,
outputs=True)``; the model takes the state ``(h0, c0)`` as inputs and returns the new one
with the logits, and the step passes it into the next chunk (the returned outputs are
detached: truncated BPTT), as ``examples/word_language_model.py`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import twinnn as tn
from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build", "lstm_available", "missing"]

#: What each workload kind needs from twinnn.
_NEEDS = {"linear": ("Linear",), "lstm": ("LSTM",), "lm": ("Embedding", "Dropout", "LSTM")}


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


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    del device  # twinnn's own TWINNN_DEVICE decides
    if workload.kind == "lm":
        return _build_lm(workload, batches, weights)
    model: tn.Module
    if workload.kind == "linear":
        model = tn.Linear(workload.in_features, workload.out_features)
    else:
        model = _LSTMRegressor(workload.in_features, workload.hidden, workload.out_features)
    model.load_state_dict(weights)
    optimizer: tn.Optimizer
    if workload.optimizer == "adam":
        optimizer = tn.Adam(model, lr=workload.lr)
    else:
        optimizer = tn.SGD(model, lr=workload.lr)
    step = tn.train_step(model, tn.mse_loss, optimizer, clip_norm=workload.clip_norm)
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
