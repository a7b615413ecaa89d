"""torch backend: the layers' forward math (the LSTM lives in ``rnn.py``)."""

from __future__ import annotations

from typing import Any

import torch


def linear(x: Any, weight: Any, bias: Any | None) -> Any:
    """``x @ weight + bias``; ``weight`` is ``(in, out)`` (the transpose of torch's layout)."""
    if bias is None:
        return torch.matmul(x, weight)
    if x.dim() == 2:
        return torch.addmm(bias, x, weight)
    return torch.matmul(x, weight) + bias
