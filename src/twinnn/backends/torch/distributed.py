"""torch backend: data-parallel collectives on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

The process group is torch's own (``init_process_group`` with torchrun's variables, which
``twinnn run`` sets); twinnn adds no transport. Every collective here runs in rank order and
returns the same tensor on every rank; a peer that dies or stalls makes the call raise
(gloo and NCCL honour the group's ``timeout``), never hang forever.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from twinnn.backends.torch import core
from twinnn.errors import DistributedError

_joined = False


def join_group(rank: int, world_size: int, timeout_s: float, gpu: bool) -> None:
    """Join the world of ``world_size`` processes as ``rank`` (gloo, or NCCL when ``gpu``),
    rendezvous at ``MASTER_ADDR:MASTER_PORT`` (torchrun's variables); collectives raise after
    ``timeout_s`` seconds."""
    global _joined
    if _joined:
        return
    if gpu:  # NCCL works on the current CUDA device: the one twinnn places tensors on
        torch.cuda.set_device(core.current_torch_device())
    try:
        dist.init_process_group(
            backend="nccl" if gpu else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError) as exc:  # rendezvous timeout, refused address, ...
        raise DistributedError(
            f"rank {rank}: could not join the torch.distributed group of {world_size} "
            f"(MASTER_ADDR:MASTER_PORT) within {timeout_s:g} s: {exc}"
        ) from exc
    _joined = True


def leave_group() -> None:
    global _joined
    if _joined and dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


def active() -> bool:
    """Whether this process joined a group (a world of more than one process)."""
    return _joined


def failed(what: str, exc: BaseException) -> DistributedError:
    """The error a failed collective (a peer gone, a timeout) becomes."""
    rank = dist.get_rank() if dist.is_initialized() else -1
    return DistributedError(
        f"rank {rank}: {what} failed -- another rank stopped, crashed or did not reach the "
        f"same step in time ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    )


_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """``(world_size, *x.shape)``: every rank's ``x`` stacked in rank order."""
    with torch.no_grad():  # collectives carry values; custom_gradient carries gradients
        flat = x.detach().reshape(-1).contiguous()
        out = flat.new_empty(dist.get_world_size() * flat.numel())
        try:
            _gather_into(out, flat)
        except RuntimeError as exc:
            raise failed("all_gather", exc) from exc
    return out.view(dist.get_world_size(), *x.shape)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of every rank's ``x`` (the framework's native all-reduce: its
    summation order is the transport's, so the bits may differ from a sum in rank order).
    ``x`` is reduced in place when it is a fresh contiguous buffer (``flatten_all``'s)."""
    with torch.no_grad():
        out = x.detach()
        if not out.is_contiguous() or out._base is not None or (out.is_leaf and x.requires_grad):
            out = out.clone(memory_format=torch.contiguous_format)
        try:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        except RuntimeError as exc:
            raise failed("all_reduce", exc) from exc
    return out


def flatten_all(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every tensor flattened and concatenated (one buffer for one collective)."""
    return torch.cat([t.reshape(-1) for t in tensors]) if tensors else torch.zeros(0)


def unflatten_like(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The inverse of :func:`flatten_all`: views of ``flat`` shaped like ``like``."""
    sizes = [t.numel() for t in like]
    pieces = torch.split(flat, sizes)
    return [piece.view(t.shape) for piece, t in zip(pieces, like, strict=True)]


class _CustomGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, forward: Any, backward: Any) -> torch.Tensor:
        ctx.backward_fn = backward
        return forward(x)  # type: ignore[no-any-return]

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, None, None]:
        return ctx.backward_fn(dy), None, None


def custom_gradient(
    forward: Callable[[Any], Any], backward: Callable[[Any], Any], x: torch.Tensor
) -> torch.Tensor:
    """``forward(x)`` whose gradient is ``backward(dy)`` (both traceable functions)."""
    return _CustomGradient.apply(x, forward, backward)  # type: ignore[no-any-return,no-untyped-call]


def in_replica(body: Callable[..., Any]) -> Callable[..., Any]:
    """A step's body as it runs under data parallelism: as it is (torch's collectives need
    no replica context)."""
    return body


def rows(x: torch.Tensor) -> int:
    """``x.shape[0]`` (the batch)."""
    return int(x.shape[0])


def snapshot(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x``'s value now (later in-place writes to ``x`` leave it unchanged)."""
    return x.detach().clone()


def keep_written_arithmetic() -> None:
    """Nothing to do: torch runs the ops as written."""


# --- reducing while the backward pass runs -------------------------------------------------------
#: DDP's bucket sizes: a small first bucket (the last layers' gradients, ready first, start
#: travelling early), then 25 MiB.
FIRST_BUCKET_BYTES = 1 << 20
BUCKET_BYTES = 25 << 20


def gradient_reducer(
    params: Sequence[torch.Tensor], combine: Callable[[Any], Any] | None
) -> BucketReducer:
    return BucketReducer(params, combine)


class BucketReducer:
    """Sums the gradients of ``params`` over the ranks while the backward pass still runs, as
    ``DistributedDataParallel`` does: the parameters are cut into buckets in reverse order
    (the backward pass reaches the last layers first), and a hook on each parameter starts a
    bucket's collective (asynchronous) as soon as all its gradients exist, in bucket order on
    every rank. The last bucket waits for :meth:`finish`, which adds ``extra`` tensors (the
    step's loss) to it.

    ``combine`` ``None``: the native all-reduce of each bucket (``reduce="fast"``); else each
    bucket is all-gathered and ``combine(stacked)`` (``(world_size, n)`` -> ``(n,)``) sums it:
    the front's fold in rank order (``reduce="deterministic"``), the same bits whatever the
    buckets, since each element is summed on its own.
    """

    def __init__(
        self, params: Sequence[torch.Tensor], combine: Callable[[Any], Any] | None
    ) -> None:
        self.params, self.combine = list(params), combine
        self.buckets: list[list[int]] = []
        bucket: list[int] = []
        size, cap = 0, FIRST_BUCKET_BYTES
        for i in reversed(range(len(self.params))):
            bucket.append(i)
            size += self.params[i].numel() * self.params[i].element_size()
            if size >= cap:
                self.buckets.append(bucket)
                bucket, size, cap = [], 0, BUCKET_BYTES
        if bucket or not self.buckets:
            self.buckets.append(bucket)
        self.bucket_of = {i: b for b, members in enumerate(self.buckets) for i in members}
        self._reset()

    def _reset(self) -> None:
        self.grads: list[torch.Tensor | None] = [None] * len(self.params)
        self.missing = [len(b) for b in self.buckets]
        self.launched = 0
        self.works: list[tuple[Any, torch.Tensor]] = []

    def _hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            self.grads[i] = grad
            self.missing[self.bucket_of[i]] -= 1
            last = len(self.buckets) - 1
            while self.launched < last and self.missing[self.launched] == 0:
                self._launch(self.launched, ())

        return hook

    def _launch(self, b: int, extra: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            parts = [self.grads[i] for i in self.buckets[b]]
            flat = torch.cat([t.detach().reshape(-1) for t in [*parts, *extra] if t is not None])
            try:
                if self.combine is None:
                    work, out = dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True), flat
                else:
                    out = flat.new_empty(dist.get_world_size() * flat.numel())
                    work = _gather_into(out, flat, async_op=True)
            except RuntimeError as exc:
                raise failed("all_reduce" if self.combine is None else "all_gather", exc) from exc
        self.works.append((work, out))
        self.launched = b + 1

    def backward_hooks(self) -> list[Any]:
        """Install the hooks for one step; returns their handles (``.remove()`` each)."""
        self._reset()
        return [p.register_hook(self._hook(i)) for i, p in enumerate(self.params)]  # type: ignore[no-untyped-call]

    def finish(
        self, grads: Sequence[torch.Tensor], extra: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The summed ``grads`` (autograd's, for the parameters no hook saw: zeros the step
        filled in) and ``extra``, once every bucket's collective is done."""
        for i, grad in enumerate(grads):
            if self.grads[i] is None:
                self.grads[i] = grad
        last = len(self.buckets) - 1
        while self.launched < last:
            self._launch(self.launched, ())
        self._launch(last, extra)
        summed: list[torch.Tensor] = [torch.empty(0)] * len(self.params)
        totals: list[torch.Tensor] = []
        with torch.no_grad():
            for b, (work, out) in enumerate(self.works):
                try:
                    work.wait()
                except RuntimeError as exc:
                    raise failed("the gradient all-reduce", exc) from exc
                if self.combine is not None:
                    out = self.combine(out.view(dist.get_world_size(), -1))
                members = self.buckets[b]
                like = [self.params[i] for i in members]
                if b == last:
                    like = [*like, *extra]
                pieces = unflatten_like(out, like)
                for i, piece in zip(members, pieces, strict=False):
                    summed[i] = piece
                if b == last:
                    totals = pieces[len(members) :]
        self._reset()
        return summed, totals
