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

transformer: ``nn.Embedding`` plus the position table (a buffer), ``nn.Dropout``,
``nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, F, p, activation="gelu",
batch_first=True), layers, enable_nested_tensor=False)`` with ``src_key_padding_mask`` from the
lengths, the masked mean, ``nn.Linear``; ``F.cross_entropy``, ``torch.optim.AdamW`` (default
implementation, ``weight_decay=0.01``). twinnn's ``w_q, w_k, w_v`` go into the packed
``in_proj_weight`` (transposed, stacked), ``w_o`` into ``out_proj``.

cnn: what a torch user writes -- contiguous NCHW images (transposed once, before timing),
``nn.Sequential`` of ``nn.Conv2d(in, out, 3, padding=1)`` (torch's SAME at stride 1),
``nn.ReLU``, ``nn.MaxPool2d(2)`` per convolution, ``torch.flatten(x, 1)``, ``nn.Linear``;
``F.cross_entropy``, ``torch.optim.SGD(momentum=...)`` (default implementation). The kernels
are twinnn's ``(3, 3, in, out)`` permuted to ``(out, in, 3, 3)``; the head's rows are permuted
from twinnn's ``h, w, c`` flatten order to NCHW's ``c, h, w``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from benchmarks.workloads import Batch, Impl, Workload, cnn_flat, sinusoidal_positions

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


class TransformerClassifier(nn.Module):
    """Embedding + positions, ``nn.TransformerEncoder``, mean over the valid tokens, Linear."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        e = workload.in_features
        self.embed = nn.Embedding(workload.vocab, e)
        table = torch.from_numpy(sinusoidal_positions(workload.time, e))
        self.register_buffer("positions", table, persistent=False)
        self.drop = nn.Dropout(workload.dropout)
        layer = nn.TransformerEncoderLayer(
            e,
            workload.heads,
            workload.hidden,
            workload.dropout,
            activation="gelu",
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, workload.layers, enable_nested_tensor=False)
        self.head = nn.Linear(e, workload.out_features)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(tokens) + self.positions)
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        padding = steps.unsqueeze(0) >= lengths.unsqueeze(1)  # True = padding, torch's rule
        x = self.encoder(x, src_key_padding_mask=padding)
        valid = (~padding).unsqueeze(-1).to(x.dtype)
        pooled: torch.Tensor = (x * valid).sum(1) / lengths.unsqueeze(1).to(x.dtype)
        return self.head(pooled)  # type: ignore[no-any-return]


def _load_transformer(model: TransformerClassifier, weights: dict[str, np.ndarray]) -> None:
    _load(model.embed.weight, weights["embed.weight"])
    for k, layer in enumerate(model.encoder.layers):
        w = {
            name[len(f"layers.{k}.") :]: v
            for name, v in weights.items()
            if name.startswith(f"layers.{k}.")
        }
        attn = layer.self_attn
        _load(attn.in_proj_weight, np.concatenate([w[f"self_attn.w_{n}"].T for n in "qkv"]))
        _load(attn.in_proj_bias, np.concatenate([w[f"self_attn.b_{n}"] for n in "qkv"]))
        _load(attn.out_proj.weight, w["self_attn.w_o"].T)
        _load(attn.out_proj.bias, w["self_attn.b_o"])
        for name in ("linear1", "linear2"):
            _load(getattr(layer, name).weight, w[f"{name}.weight"].T)
            _load(getattr(layer, name).bias, w[f"{name}.bias"])
        for name in ("norm1", "norm2"):
            _load(getattr(layer, name).weight, w[f"{name}.weight"])
            _load(getattr(layer, name).bias, w[f"{name}.bias"])
    _load(model.head.weight, weights["head.weight"].T)
    _load(model.head.bias, weights["head.bias"])


def _build_transformer(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], dev: torch.device
) -> tuple[Any, list[tuple[torch.Tensor, ...]], str]:
    model = TransformerClassifier(workload)
    _load_transformer(model, weights)
    model = model.to(dev)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=workload.lr, weight_decay=0.01)

    def step(tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tokens, lengths), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return loss

    native = [tuple(torch.from_numpy(a).to(dev) for a in batch) for batch in batches]
    notes = (
        "torch eager, nn.TransformerEncoder(TransformerEncoderLayer(gelu, batch_first)), "
        f"src_key_padding_mask, torch.optim.AdamW ({dev})"
    )
    return step, native, notes


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    if workload.kind == "cnn":
        return _build_cnn(workload, batches, weights, dev)
    if workload.kind == "transformer":
        tf_step, tf_batches, notes = _build_transformer(workload, batches, weights, dev)
        return Impl(
            step=tf_step,
            batches=tf_batches,
            to_float=lambda loss: float(loss.detach()),
            sync=lambda: torch.cuda.synchronize(dev) if dev.type == "cuda" else None,
            notes=notes,
        )
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


def _build_cnn(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], dev: torch.device
) -> Impl:
    layers: list[nn.Module] = []
    sizes = (workload.in_features, *workload.channels)
    for k in range(1, len(sizes)):
        conv = nn.Conv2d(sizes[k - 1], sizes[k], 3, padding=1)
        _load(conv.weight, weights[f"conv{k}.weight"].transpose(3, 2, 0, 1))
        _load(conv.bias, weights[f"conv{k}.bias"])
        layers += [conv, nn.ReLU(), nn.MaxPool2d(2)]
    side, channels = cnn_flat(workload)
    head = nn.Linear(side * side * channels, workload.out_features)
    rows = weights["head.weight"].reshape(side, side, channels, -1)  # (h, w, c, out)
    _load(head.weight, rows.transpose(3, 2, 0, 1).reshape(workload.out_features, -1))
    _load(head.bias, weights["head.bias"])
    features = nn.Sequential(*layers).to(dev)
    head = head.to(dev)
    params = [*features.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=workload.lr, momentum=workload.momentum)

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(torch.flatten(features(images), 1)), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return loss

    native = [
        (
            torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dev),
            torch.from_numpy(y).to(dev),
        )
        for x, y in batches
    ]
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.detach()),
        sync=lambda: torch.cuda.synchronize(dev) if dev.type == "cuda" else None,
        notes=(
            "torch eager, contiguous NCHW, nn.Conv2d(padding=1)/ReLU/MaxPool2d, torch.flatten, "
            f"nn.Linear, F.cross_entropy, torch.optim.SGD(momentum) ({dev})"
        ),
    )
