"""A PyTorch model ported with ``interop.from_torch`` trains like the original.

``nn.Embedding + nn.LSTM(2 layers) + nn.Linear``, cross-entropy over every token, SGD with
``clip_grad_norm_``: 30 steps natively, and 30 steps of the converted model with twinnn on each
backend. Before ``recurrent_bias`` (torch's second LSTM bias as its own parameter) the converted
model trained differently (one summed bias moves at half the rate); now the losses agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import interop

VOCAB, EMB, HIDDEN, BATCH, TIME, STEPS, LR, CLIP = 50, 12, 16, 4, 7, 30, 0.5, 0.25


def _data() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [
        (rng.integers(0, VOCAB, (BATCH, TIME)), rng.integers(0, VOCAB, (BATCH, TIME)))
        for _ in range(STEPS)
    ]


def _native_model() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMB)
            self.lstm = nn.LSTM(EMB, HIDDEN, num_layers=2, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embed(tokens))
            logits: torch.Tensor = self.head(out)
            return logits

    return LM()


def _train_native(model: Any, data: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for x, y in data:
        optimizer.zero_grad()
        logits = model(torch.from_numpy(x))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(y).reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


class Ported(tn.Module):
    def __init__(self, native: Any) -> None:
        super().__init__()
        self.embed = interop.from_torch(native.embed)
        self.lstm = interop.from_torch(native.lstm)
        self.head = interop.from_torch(native.head)

    def forward(self, tokens: Any) -> Any:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out)


def test_ported_torch_model_trains_like_the_original(backend: str) -> None:
    pytest.importorskip("torch")
    data = _data()
    native = _native_model()
    model = Ported(native)  # converted before the native model trains
    assert model.lstm.recurrent_bias
    expected = _train_native(native, data)
    step = tn.train_step(model, tn.cross_entropy, tn.SGD(model.parameters(), lr=LR), clip_norm=CLIP)
    losses = [float(tn.to_numpy(step(x, y))) for x, y in data]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert expected[-1] < expected[0]  # it trained
    state = model.state_dict()
    np.testing.assert_allclose(
        state["lstm.bias_hh_l1"], native.lstm.bias_hh_l1.detach().numpy(), rtol=1e-4, atol=1e-6
    )
