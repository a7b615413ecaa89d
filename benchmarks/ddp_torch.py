"""Hand-written PyTorch data parallelism for the distributed benchmark: ``DistributedDataParallel``.

What a DDP user writes (``torch.nn.parallel.DistributedDataParallel`` over the default
process group, gloo on the CPU, which ``twinnn.distributed.init()`` joined -- the same call
``torch.distributed.init_process_group("gloo")`` a DDP script makes): the model of
:mod:`benchmarks.native_torch` wrapped in DDP, the loss as the *mean over the local batch*
(DDP then averages the ranks' gradients: the global mean for even shards, which the
benchmark uses), ``clip_grad_norm_`` after ``backward``, ``optimizer.step()``.

lstm: ``pack_padded_sequence`` + ``nn.LSTM`` + ``nn.Linear`` on ``h_n[-1]``, MSE. lm:
pytorch/examples' ``RNNModel`` (:class:`benchmarks.native_torch.RNNModel`), cross-entropy over
the local ``B * T`` tokens, the state carried and detached (``repackage_hidden``).

:func:`comm` is the communication alone: ``dist.all_reduce`` of one float32 buffer of a given
size, the collective DDP runs on its gradient buckets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.rnn import pack_padded_sequence

from benchmarks.native_torch import RNNModel, _load
from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build", "comm", "gather"]


class _Regressor(nn.Module):
    """``LSTM`` over the packed sequences, ``Linear`` on the final hidden state."""

    def __init__(self, workload: Workload, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.lstm = nn.LSTM(workload.in_features, workload.hidden, batch_first=True)
        self.head = nn.Linear(workload.hidden, workload.out_features)
        _load(self.lstm.weight_ih_l0, weights["lstm.w_ih_l0"].T)
        _load(self.lstm.weight_hh_l0, weights["lstm.w_hh_l0"].T)
        _load(self.lstm.bias_ih_l0, weights["lstm.bias_l0"])
        _load(self.lstm.bias_hh_l0, np.zeros_like(weights["lstm.bias_l0"]))
        _load(self.head.weight, weights["head.weight"].T)
        _load(self.head.bias, weights["head.bias"])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        out: torch.Tensor = self.head(h[-1])
        return out


def _lm(workload: Workload, weights: dict[str, np.ndarray]) -> RNNModel:
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
    return model


def build(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    """DDP training of ``workload`` on this rank's ``batches`` (its shards; ``workload.batch``
    is the local batch). The step returns the *local* mean loss (DDP's loss)."""
    module: nn.Module = (
        _lm(workload, weights) if workload.kind == "lm" else _Regressor(workload, weights)
    )
    module.train()
    ddp = DistributedDataParallel(module)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=workload.lr)
    params = list(ddp.parameters())
    clip = workload.clip_norm
    native = [tuple(torch.from_numpy(a) for a in batch) for batch in batches]
    step: Any
    if workload.kind == "lm":
        shape = (workload.layers, workload.batch, workload.hidden)
        hidden = [(torch.zeros(shape), torch.zeros(shape))]

        def step(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            h, c = hidden[0]
            optimizer.zero_grad()
            output, new_state = ddp(tokens, (h.detach(), c.detach()))
            loss = F.cross_entropy(output, targets.view(-1))
            loss.backward()  # type: ignore[no-untyped-call]
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            hidden[0] = new_state
            return loss

    else:

        def step(x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.mse_loss(ddp(x, lengths), y)
            loss.backward()  # type: ignore[no-untyped-call]
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            return loss

    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.detach()),
        notes="torch DistributedDataParallel (gloo), local-mean loss, clip_grad_norm_, SGD",
        extra={"parameters": sum(p.numel() for p in params)},
    )


def comm(size: int) -> Impl:
    """``dist.all_reduce(SUM)`` of one float32 buffer of ``size`` elements (in place)."""
    buffer = torch.zeros(size)

    def step() -> None:
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)

    return Impl(step=step, batches=[()], to_float=float, notes=f"all_reduce of {size} floats")


def gather() -> Impl:
    """One small collective: ``all_gather_into_tensor`` of one int64 (a batch size)."""
    one = torch.ones(1, dtype=torch.int64)
    out = torch.empty(dist.get_world_size(), dtype=torch.int64)

    def step() -> None:
        dist.all_gather_into_tensor(out, one)

    return Impl(step=step, batches=[()], to_float=float, notes="all_gather of one int64")
