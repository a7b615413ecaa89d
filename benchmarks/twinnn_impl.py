"""The twinnn implementation of every workload: written once, run on the worker's backend.

The backend is chosen by ``TWINNN_BACKEND`` and the device by ``TWINNN_DEVICE``, both set by
the parent before the worker starts. Batches are made with ``twinnn.tensor`` (native tensors
on twinnn's device), as a training script would hold them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import twinnn as tn
from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build", "lstm_available"]


def lstm_available() -> bool:
    """Whether this twinnn has ``LSTM`` (the ``lstm_len`` workload needs it)."""
    return hasattr(tn, "LSTM")


class _LSTMRegressor(tn.Module):
    """``LSTM(in -> H)`` then ``Linear(H -> out)`` on the last layer's final hidden state."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.lstm = tn.LSTM(in_features, hidden)
        self.head = tn.Linear(hidden, out_features)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, (h, _) = self.lstm(x, lengths)
        return self.head(h[-1])


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    del device  # twinnn's own TWINNN_DEVICE decides
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
