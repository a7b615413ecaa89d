"""torch backend: the LSTM with per-sequence lengths, on torch's fused LSTM kernel.

Everything runs through ``torch.lstm`` (the op behind ``nn.LSTM``: oneDNN on CPU, cuDNN on
GPU), with the neutral weights passed as views (``w.t()``), the neutral bias as ``b_ih`` and a
constant zero ``b_hh``, so every gradient is that of the neutral single-bias model.

* ``lengths=None``: one call of the fused multi-layer (bidirectional) op on the whole batch.
* With lengths, each layer and direction is one call of the fused op on the padded batch,
  made exact by a *hold column*:

  1. Padded inputs are replaced by zeros (``torch.where``) before any math, so garbage in the
     padding (even ``inf``/``nan``) reaches no output, state or gradient.
  2. The input gets one more feature, ``1.0`` at padded steps (``t >= len``) and ``0.0``
     elsewhere, and ``w_ih`` a matching row: ``-HOLD`` on the input-gate block, ``+HOLD`` on
     the forget-gate block, ``0`` elsewhere. At a padded step ``i = sigmoid(-HOLD) == 0`` and
     ``f = sigmoid(HOLD) == 1`` exactly, so ``c_t = 1 * c_{t-1} + 0 * g == c_{t-1}``: the cell
     state the op returns is the state after each sequence's own last valid step. The
     derivatives ``s * (1 - s)`` of both gates are exactly ``0`` there, so padded steps add
     exact zeros to every gradient. At valid steps the column adds ``0 * HOLD == 0``.
  3. ``h`` after step ``len - 1`` is gathered from the per-step outputs (``h0`` for
     ``len == 0``), and outputs at ``t >= len`` are set to zero.
  4. The backward direction runs the same forward kernel on each sequence reversed within its
     own length (a gather); its outputs are reversed back with the same gather.

Why not ``pack_padded_sequence``: on CPU the packed op runs ATen's per-step loop while the
padded op runs oneDNN's fused LSTM; for a training step of LSTM(32->128), batch 64, T 50,
random lengths the padded path takes about 0.6x the time of the packed one (the benchmark
``python -m benchmarks --workload lstm_len``, whose native step packs; docs/performance.md).
Packing also needs the lengths on the host, a device sync per step on GPU; the padded path
needs none (only the value check below, which on GPU is a device-side assertion).

Under ``train_step(..., jit=True)`` the LSTM runs eagerly between the compiled graphs
(``torch.compiler.disable``): Inductor in torch 2.13 fails on the ``mkldnn_rnn_layer`` op that
``torch.lstm`` lowers to on CPU ("expected Tensor() for op"), and a fused kernel gains nothing
from compilation anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from twinnn.errors import ArgumentError

__all__ = ["HOLD", "lstm"]

#: Pre-activation added to the input gate (negated) and forget gate at padded steps; the
#: sigmoid of +-1e15 is exactly 1 / 0 in float32 (and in every kernel tested: oneDNN, Eigen).
HOLD = 1e15

_Weights = tuple[Any, Any, Any]


def _flat(weights: _Weights, hidden: int, hold: bool) -> list[torch.Tensor]:
    """``[w_ih (4H, in[+1]), w_hh (4H, H), b_ih, b_hh = 0]`` in the fused op's layout.

    With ``hold``, ``w_ih`` gets the hold row: ``-HOLD`` on the input-gate block, ``+HOLD`` on
    the forget-gate block, 0 elsewhere (made per call: a few microseconds, and never an
    inference-mode tensor cached across modes).
    """
    w_ih, w_hh, bias = weights
    if hold:
        sign = torch.zeros(4, device=w_ih.device)
        sign[0], sign[1] = -HOLD, HOLD
        w_ih = torch.cat([w_ih, sign.repeat_interleave(hidden).unsqueeze(0)], dim=0)
    return [w_ih.t(), w_hh.t(), bias, torch.zeros_like(bias)]


def _check_lengths(lengths: torch.Tensor, time: int) -> int:
    """Check ``0 <= lengths <= time``; return the number of steps to run.

    On CPU: an :class:`~twinnn.errors.ArgumentError`, and the longest length (no step past
    it is run). On GPU: a device-side assertion (no host round trip) and ``time``.
    """
    if lengths.numel() == 0:
        return 0
    if lengths.device.type != "cpu":
        ok = ((lengths >= 0) & (lengths <= time)).all()
        torch._assert_async(ok, f"LSTM: lengths must be in [0, {time}] (the time axis of x)")
        return time
    low, high = int(lengths.min()), int(lengths.max())
    if low < 0 or high > time:
        bad = lengths[(lengths < 0) | (lengths > time)][:5].tolist()
        raise ArgumentError(
            f"LSTM.forward: argument 'lengths' must be in [0, {time}] (0 <= len <= time of x), "
            f"got values {bad}"
        )
    return high


def _reverse_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """``(B, T)`` time index reversing each sequence within its length, padding in place."""
    steps = torch.arange(time, device=lengths.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    return torch.where(steps <= last, last - steps, steps)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for ``x`` ``(B, T, F)``, ``index`` ``(B, T)``."""
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def _direction(
    x: torch.Tensor,
    pad: torch.Tensor,
    lengths: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weights: _Weights,
    hidden: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer, one direction, forward in time over right-padded ``x`` ``(B, T, in)``.

    ``pad`` ``(B, T, 1)`` is 1.0 at padded steps. Returns ``(outputs (B, T, H), h (1, B, H),
    c (1, B, H))`` with outputs not yet zeroed past each length.
    """
    held = torch.cat([x, pad], dim=2)
    train = torch.is_grad_enabled()
    out, _, c = torch.lstm(
        held, state, _flat(weights, hidden, True), True, 1, 0.0, train, False, True
    )
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hidden)
    h = out.gather(1, last).squeeze(1)
    h = torch.where((lengths > 0).unsqueeze(1), h, state[0][0]).unsqueeze(0)
    return out, h, c


def _lstm(
    x: Any,
    lengths: Any | None,
    initial_state: tuple[Any, Any] | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.lstm` (shapes, semantics) and the module doc."""
    batch, time, _ = x.shape
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    if initial_state is None:
        zeros = x.new_zeros(num_layers * dirs, batch, hidden)
        initial_state = (zeros, zeros)
    h0, c0 = initial_state
    train = torch.is_grad_enabled()

    if lengths is None:
        if time == 0:
            return x.new_zeros(batch, 0, hidden * dirs), h0, c0
        flat = [t for w in weights for t in _flat(w, hidden, False)]
        out, h, c = torch.lstm(x, (h0, c0), flat, True, num_layers, 0.0, train, bidirectional, True)
        return out, h, c

    lengths = lengths.to(device=x.device, dtype=torch.int64)
    steps = _check_lengths(lengths, time)
    if steps == 0:
        return x.new_zeros(batch, time, hidden * dirs), h0, c0

    inputs = x[:, :steps]
    mask = (torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    pad = (~mask).to(x.dtype)
    inputs = torch.where(mask, inputs, 0.0)  # garbage in the padding never enters the math
    reverse = _reverse_index(lengths, steps) if bidirectional else None
    hs: list[torch.Tensor] = []
    cs: list[torch.Tensor] = []
    for layer in range(num_layers):
        outs: list[torch.Tensor] = []
        for d in range(dirs):
            k = layer * dirs + d
            state = (h0[k : k + 1], c0[k : k + 1])
            if d == 0:
                out, h, c = _direction(inputs, pad, lengths, state, weights[k], hidden)
            else:
                assert reverse is not None
                seq = _gather_time(inputs, reverse)
                out, h, c = _direction(seq, pad, lengths, state, weights[k], hidden)
                out = _gather_time(out, reverse)
            outs.append(torch.where(mask, out, 0.0))
            hs.append(h)
            cs.append(c)
        inputs = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
    if steps < time:
        inputs = torch.nn.functional.pad(inputs, (0, 0, 0, time - steps))
    return inputs, torch.cat(hs, dim=0), torch.cat(cs, dim=0)


#: What :func:`lstm` runs: :func:`_lstm`, or its ``torch.compiler.disable`` wrapper once a
#: ``jit=True`` step exists. Made lazily: ``torch.compiler.disable`` imports ``torch._dynamo``
#: (about 1 s and 70 MiB), which eager users should not pay for at import.
_kernel: Callable[..., tuple[Any, Any, Any]] = _lstm


def enable_compile_boundary() -> None:
    """Run the LSTM eagerly between compiled graphs (called by ``train_step(jit=True)``)."""
    global _kernel
    if _kernel is _lstm:
        _kernel = torch.compiler.disable(_lstm)  # type: ignore[no-untyped-call]


def lstm(
    x: Any,
    lengths: Any | None,
    initial_state: tuple[Any, Any] | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.lstm` (shapes, semantics) and the module doc."""
    return _kernel(x, lengths, initial_state, weights, num_layers, bidirectional)
