"""The cost of the correctly rounded square root in twinnn's torch Adam update.

    python -m benchmarks.optimizer_sqrt

Times one ``Adam.apply_gradients`` over the ``lstm_len`` model's parameters (82,561 floats)
on the torch backend with the exact square root twinnn uses (float64 root rounded to float32)
against torch's float32 kernel (off by one ulp for ~17% of elements on CPU), and
``torch.optim.Adam.step()`` (its default single-tensor implementation) on the same tensors.
Medians of 9 rounds of 50 updates, in microseconds. Quoted in docs/performance.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

import twinnn as tn
from twinnn.backends.torch import optim as torch_optim


def _median_us(update: Callable[[], None]) -> float:
    for _ in range(20):
        update()
    rounds = []
    for _ in range(9):
        start = time.perf_counter()
        for _ in range(50):
            update()
        rounds.append((time.perf_counter() - start) / 50 * 1e6)
    return sorted(rounds)[4]


def main() -> None:
    tn.set_backend("torch")
    tn.seed(0)
    lstm, head = tn.LSTM(32, 128), tn.Linear(128, 1)
    params = [*lstm.parameters(), *head.parameters()]
    optimizer = tn.Adam(params, lr=1e-3)
    grads = [torch.randn_like(p) for p in params]
    exact = _median_us(lambda: optimizer.apply_gradients(grads))
    vector_class = torch_optim.TensorVector
    exact_sqrt = vector_class.sqrt
    vector_class.sqrt = lambda self: vector_class(torch._foreach_sqrt(self.items))  # type: ignore[method-assign]
    try:
        fast = _median_us(lambda: optimizer.apply_gradients(grads))
    finally:
        vector_class.sqrt = exact_sqrt  # type: ignore[method-assign]
    native_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    native = torch.optim.Adam(native_params, lr=1e-3)
    for p, g in zip(native_params, grads, strict=True):
        p.grad = g
    reference = _median_us(native.step)
    count = sum(p.numel() for p in params)
    print(
        f"Adam update over {count} floats (torch {torch.__version__}, CPU): twinnn exact sqrt "
        f"{exact:.0f} us, twinnn with float32 sqrt {fast:.0f} us, "
        f"torch.optim.Adam {reference:.0f} us"
    )


if __name__ == "__main__":
    main()
