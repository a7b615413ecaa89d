"""torch backend: train and eval steps (eager by default, ``torch.compile`` with ``jit``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from twinnn.backends.torch.checks import run_checked
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


def _detached(value: Any, depth: int = 0) -> Any:
    """``value`` (a tensor or a nested tuple/list/dict of them) detached from the graph."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if depth > 32:
        return value
    if isinstance(value, (list, tuple)):
        items = [_detached(v, depth + 1) for v in value]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: _detached(v, depth + 1) for k, v in value.items()}
    return value


def _gradients(
    loss: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    missing_gradients: Callable[[list[int]], None] | None,
) -> list[torch.Tensor]:
    """d loss / d params; a parameter the loss does not reach gets zeros or is reported."""
    if loss.requires_grad:
        grads: Sequence[torch.Tensor | None] = torch.autograd.grad(loss, params, allow_unused=True)
    else:  # no path to any parameter (torch.autograd.grad itself would raise)
        grads = [None] * len(params)
    if missing_gradients is not None:
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            missing_gradients(missing)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def build_train_step(
    loss_of: Callable[..., tuple[Any, Any]],
    params: Sequence[Any],
    apply_gradients: Callable[[Sequence[Any]], None],
    *,
    prepare: Callable[[], Hashable],
    finish: Callable[[], None],
    check_args: Callable[[Sequence[tuple[int, ...]]], None],
    missing_gradients: Callable[[list[int]], None] | None,
    eager: bool,
    jit: bool,
    gradients: Callable[..., tuple[Any, Any, list[Any]]] | None = None,
) -> Callable[..., Any]:
    forward = _compiled(loss_of, jit and not eager)
    params = tuple(params)

    def grads_of(*tensors: Any) -> tuple[Any, Any, list[Any]]:
        loss, outputs = forward(*tensors)
        return loss, outputs, _gradients(loss, params, missing_gradients)

    def step(*args: Any) -> Any:
        tensors = _convert_all(args)
        check_args([tuple(t.shape) for t in tensors])
        prepare()
        if gradients is None:  # value checks on a GPU are read here, before the update
            loss, outputs, grads = run_checked(grads_of, *tensors)
        else:
            loss, outputs, grads = run_checked(gradients, grads_of, *tensors)
        with torch.no_grad():
            apply_gradients(grads)
        finish()
        if outputs is None:
            return loss.detach()
        return loss.detach(), _detached(outputs)

    return step


def build_eval_step(
    forward: Callable[..., Any],
    *,
    check_args: Callable[[Sequence[tuple[int, ...]]], None],
    eager: bool,
    jit: bool,
) -> Callable[..., Any]:
    forward = _compiled(forward, jit and not eager)

    @torch.no_grad()
    def step(*args: Any) -> Any:
        tensors = _convert_all(args)
        check_args([tuple(t.shape) for t in tensors])
        return run_checked(forward, *tensors)

    return step
