"""torch backend: the SGD update with fused multi-tensor (``_foreach``) kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class TorchSGD:
    """PyTorch's SGD formula (dampening 0); see :class:`twinnn.backends.base.SGDKernel`."""

    def __init__(
        self, params: Sequence[Any], lr: float, momentum: float, nesterov: bool, weight_decay: float
    ) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        # v starts at zero: momentum * 0 + g == g, torch's "v starts as g" without a branch.
        self.buffers: list[torch.Tensor] | None = (
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            if self.momentum != 0.0
            else None
        )

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)

    @torch.no_grad()
    def apply(self, grads: Sequence[Any]) -> None:
        grads = list(grads)
        if self.weight_decay != 0.0:
            grads = list(torch._foreach_add(grads, self.params, alpha=self.weight_decay))
        update = grads
        if self.buffers is not None:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
            if self.nesterov:
                update = list(torch._foreach_add(grads, self.buffers, alpha=self.momentum))
            else:
                update = self.buffers
        torch._foreach_add_(self.params, update, alpha=-self.lr)

    def get_buffers(self) -> list[np.ndarray] | None:
        if self.buffers is None:
            return None
        return [b.detach().cpu().numpy().copy() for b in self.buffers]

    def set_buffers(self, buffers: Sequence[np.ndarray]) -> None:
        if self.buffers is None:
            return
        with torch.no_grad():
            for buf, value in zip(self.buffers, buffers, strict=True):
                buf.copy_(torch.as_tensor(np.asarray(value, dtype=np.float32)))


def make_sgd(
    params: Sequence[Any], lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> TorchSGD:
    return TorchSGD(params, lr, momentum, nesterov, weight_decay)
