"""torch backend: train and eval steps (eager by default, ``torch.compile`` with ``jit``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from twinnn.backends.torch.core import convert
from twinnn.backends.torch.rnn import enable_compile_boundary


def _compiled(fn: Callable[..., Any], jit: bool) -> Callable[..., Any]:
    if not jit:
        return fn
    enable_compile_boundary()  # the fused LSTM kernel stays eager (see rnn.py)
    # dynamic=True: one graph for every batch size and sequence length (no per-shape recompiles).
    return torch.compile(fn, dynamic=True)


def _convert_all(args: tuple[Any, ...]) -> list[Any]:
    return [convert(a, f"args[{i}]") for i, a in enumerate(args)]


def build_train_step(
    loss_of: Callable[..., Any],
    params: Sequence[Any],
    apply_gradients: Callable[[Sequence[Any]], None],
    *,
    eager: bool,
    jit: bool,
) -> Callable[..., Any]:
    forward = _compiled(loss_of, jit and not eager)
    params = tuple(params)

    def step(*args: Any) -> Any:
        loss = forward(*_convert_all(args))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        apply_gradients(
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        )
        return loss.detach()

    return step


def build_eval_step(loss_of: Callable[..., Any], *, eager: bool, jit: bool) -> Callable[..., Any]:
    forward = _compiled(loss_of, jit and not eager)

    @torch.no_grad()
    def step(*args: Any) -> Any:
        return forward(*_convert_all(args))

    return step
