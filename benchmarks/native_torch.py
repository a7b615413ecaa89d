"""The seed's hand-written PyTorch code for every workload (torch eager, nothing of twinnn).

linear: ``nn.Linear``, ``nn.MSELoss``, ``torch.optim.SGD``, then
``zero_grad(); loss.backward(); step()``. lstm: ``nn.LSTM(batch_first=True)`` over
``pack_padded_sequence(..., enforce_sorted=False)`` (lengths on the CPU, as torch requires),
``nn.Linear`` on ``h_n[-1]``. torch's two LSTM biases are loaded as ``bias_ih = bias``,
``bias_hh = 0`` (the same function as twinnn's single bias).

lm: pytorch/examples' ``word_language_model`` ``RNNModel`` (LSTM), batch first --
``nn.Embedding``, ``nn.Dropout``, ``nn.LSTM(num_layers=2, dropout=p, batch_first=True)``,
``nn.Dropout``, ``nn.Linear``; ``F.cross_entropy`` over the ``(B * T, V)`` logits,
``torch.optim.SGD``, ``clip_grad_norm_`` and ``repackage_hidden`` (the carried state is
detached before each chunk), as the example's ``train()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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


class RNNModel(nn.Module):
    """pytorch/examples' ``word_language_model.model.RNNModel`` for ``rnn_type="LSTM"``
    (untied), batch first."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(
        self, tokens: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        return decoded.view(-1, self.ntoken), hidden


def _build_lm(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], dev: torch.device
) -> tuple[Any, list[tuple[torch.Tensor, ...]], str]:
    model = RNNModel(
        workload.out_features,
        workload.in_features,
        workload.hidden,
        workload.layers,
        workload.dropout,
    )
    _load(model.encoder.weight, weights["encoder.weight"])
    for k in range(workload.layers):
        _load(getattr(model.rnn, f"weight_ih_l{k}"), weights[f"rnn.w_ih_l{k}"].T)
        _load(getattr(model.rnn, f"weight_hh_l{k}"), weights[f"rnn.w_hh_l{k}"].T)
        _load(getattr(model.rnn, f"bias_ih_l{k}"), weights[f"rnn.bias_l{k}"])
        _load(getattr(model.rnn, f"bias_hh_l{k}"), np.zeros_like(weights[f"rnn.bias_l{k}"]))
    _load(model.decoder.weight, weights["decoder.weight"].T)
    _load(model.decoder.bias, weights["decoder.bias"])
    model = model.to(dev)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=workload.lr)
    params = list(model.parameters())
    clip = workload.clip_norm
    shape = (workload.layers, workload.batch, workload.hidden)
    hidden = [(torch.zeros(shape, device=dev), torch.zeros(shape, device=dev))]

    def step(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h, c = hidden[0]
        state = (h.detach(), c.detach())  # repackage_hidden
        optimizer.zero_grad()
        output, new_state = model(tokens, state)
        loss = F.cross_entropy(output, targets.view(-1))
        loss.backward()  # type: ignore[no-untyped-call]
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        hidden[0] = new_state
        return loss

    native: list[tuple[torch.Tensor, ...]] = [
        (torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)) for x, y in batches
    ]
    notes = (
        f"torch eager, pytorch/examples RNNModel (batch first), torch.optim.SGD, "
        f"clip_grad_norm_, repackage_hidden ({dev})"
    )
    return step, native, notes


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    if workload.kind == "lm":
        lm_step, lm_batches, notes = _build_lm(workload, batches, weights, dev)
        return Impl(
            step=lm_step,
            batches=lm_batches,
            to_float=lambda loss: float(loss.detach()),
            sync=lambda: torch.cuda.synchronize(dev) if dev.type == "cuda" else None,
            notes=notes,
        )
    loss_fn = nn.MSELoss()
    model: nn.Module
    step: Any
    if workload.kind == "linear":
        linear = nn.Linear(workload.in_features, workload.out_features)
        _load(linear.weight, weights["weight"].T)
        _load(linear.bias, weights["bias"])
        model = linear.to(dev)
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=workload.lr)

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
