"""The seed's hand-written PyTorch code for every workload (torch eager, nothing of twinnn).

linear: ``nn.Linear``, ``nn.MSELoss``, ``torch.optim.SGD``, then
``zero_grad(); loss.backward(); step()``. lstm: ``nn.LSTM(batch_first=True)`` over
``pack_padded_sequence(..., enforce_sorted=False)`` (lengths on the CPU, as torch requires),
``nn.Linear`` on ``h_n[-1]``. torch's two LSTM biases are loaded as ``bias_ih = bias``,
``bias_hh = 0`` (the same function as twinnn's single bias).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build"]


def _load(param: Any, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _optimizer(workload: Workload, model: nn.Module) -> torch.optim.Optimizer:
    """torch's optimiser for the workload, with its default implementation."""
    if workload.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=workload.lr)
    return torch.optim.SGD(model.parameters(), lr=workload.lr)


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    loss_fn = nn.MSELoss()
    model: nn.Module
    step: Any
    if workload.kind == "linear":
        linear = nn.Linear(workload.in_features, workload.out_features)
        _load(linear.weight, weights["weight"].T)
        _load(linear.bias, weights["bias"])
        model = linear.to(dev)
        optimizer = torch.optim.SGD(model.parameters(), lr=workload.lr)

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad()
            loss: torch.Tensor = loss_fn(linear(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            return loss

        native: list[tuple[torch.Tensor, ...]] = [
            (torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)) for x, y in batches
        ]
    else:
        lstm = nn.LSTM(workload.in_features, workload.hidden, batch_first=True)
        head = nn.Linear(workload.hidden, workload.out_features)
        _load(lstm.weight_ih_l0, weights["lstm.w_ih_l0"].T)
        _load(lstm.weight_hh_l0, weights["lstm.w_hh_l0"].T)
        _load(lstm.bias_ih_l0, weights["lstm.bias_l0"])
        _load(lstm.bias_hh_l0, np.zeros_like(weights["lstm.bias_l0"]))
        _load(head.weight, weights["head.weight"].T)
        _load(head.bias, weights["head.bias"])
        model = nn.ModuleDict({"lstm": lstm, "head": head}).to(dev)
        optimizer = _optimizer(workload, model)
        params = list(model.parameters())

        def step(x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = lstm(packed)
            loss: torch.Tensor = loss_fn(head(h[-1]), y)
            loss.backward()  # type: ignore[no-untyped-call]
            if workload.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, workload.clip_norm)
            optimizer.step()
            return loss

        native = [
            (torch.from_numpy(x).to(dev), torch.from_numpy(n), torch.from_numpy(y).to(dev))
            for x, n, y in batches
        ]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.detach()),
        sync=sync,
        notes=f"torch eager, torch.optim.SGD, zero_grad/backward/step ({dev})",
    )
