"""torch backend: the LSTM and the GRU with per-sequence lengths, on torch's fused kernels.

Everything runs through ``torch.lstm`` / ``torch.gru`` (the ops behind ``nn.LSTM`` /
``nn.GRU``: cuDNN on GPU; on CPU oneDNN for the LSTM, ATen's loop for the GRU), with the
neutral weights passed as views (``w.t()``) on CPU and as contiguous copies on GPU (cuDNN packs
the weights with ``view``, which strided tensors refuse; it copies them into one buffer per call
either way). The LSTM's single neutral bias goes in as
``b_ih`` with a constant zero ``b_hh`` (so every gradient is that of the single-bias model);
with ``recurrent_bias`` both of torch's biases are passed as they are, so each gets the full
gradient, exactly as in ``nn.LSTM``. The GRU always has torch's two biases.

* ``lengths=None``: one call of the fused multi-layer (bidirectional) op on the whole batch.
* With lengths (the GRU on CPU: packed, see below), each layer and direction is one call of
  the fused op on the padded batch (:func:`_stack`, shared by both layers):

  1. Padded inputs are replaced by zeros (``torch.where``) before any math, so garbage in the
     padding (even ``inf``/``nan``) reaches no output, state or gradient.
  2. LSTM only, the *hold column*: the input gets one more feature, ``1.0`` at padded steps
     (``t >= len``) and ``0.0`` elsewhere, and ``w_ih`` a matching row: ``-HOLD`` on the
     input-gate block, ``+HOLD`` on the forget-gate block, ``0`` elsewhere. At a padded step
     ``i = sigmoid(-HOLD) == 0`` and ``f = sigmoid(HOLD) == 1`` exactly, so
     ``c_t = 1 * c_{t-1} + 0 * g == c_{t-1}``: the cell state the op returns is the state
     after each sequence's own last valid step. The derivatives ``s * (1 - s)`` of both gates
     are exactly ``0`` there, so padded steps add exact zeros to every gradient. At valid
     steps the column adds ``0 * HOLD == 0``.
     The GRU needs no hold column: its whole state is ``h``, which is an output, so the state
     after step ``len - 1`` is gathered from the outputs. (Holding ``h`` with ``z == 1`` would
     not be exact: ATen's GRU cell computes ``h' = (h - n) * z + n``, and ``(h - n) + n`` is
     not always ``h`` in float32.) The padded steps still run, on zero inputs and a bounded
     state, but nothing reads their results: their outputs are zeroed and their final state
     is dropped, so they receive exact zero gradients and pass exact zeros back.
  3. ``h`` after step ``len - 1`` is gathered from the per-step outputs (``h0`` for
     ``len == 0``), and outputs at ``t >= len`` are set to zero.
  4. The backward direction runs the same forward kernel on each sequence reversed within its
     own length (a gather); its outputs are reversed back with the same gather.

Why not ``pack_padded_sequence``: on CPU the packed LSTM runs ATen's per-step loop while the
padded op runs oneDNN's fused LSTM; for a training step of LSTM(32->128), batch 64, T 50,
random lengths the padded path takes about 0.6x the time of the packed one (the benchmark
``python -m benchmarks --workload lstm_len``, whose native step packs; docs/performance.md).
Packing also needs the lengths on the host, a device sync per step on GPU; the padded path
needs none (the value check of the lengths is read with the step's other checks, see
``checks.py``).

The GRU is the other way round on CPU: there both paths run ATen's per-step loop (no oneDNN
GRU), and packing skips the padded rows of each step, so the GRU with lengths on CPU runs
torch's packed op (:func:`_gru_packed`, every layer and direction in one call: about 0.88x the
padded path's time for a training step of GRU(32->128), batch 64, T 50, random lengths, one
thread; ``python -m benchmarks.gru_len``). On GPU it runs the padded path (no sync).

Under ``train_step(..., jit=True)`` the recurrent kernels run eagerly between the compiled
graphs (``torch.compiler.disable``): Inductor in torch 2.13 fails on the ``mkldnn_rnn_layer``
op that ``torch.lstm`` lowers to on CPU ("expected Tensor() for op"), and a fused kernel gains
nothing from compilation anyway.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from twinnn.backends.torch import checks
from twinnn.errors import ArgumentError

# cuDNN warns when an RNN's weights are not one flat buffer, as the neutral weights never are
# (it packs them per call, see above): expected here, and only for twinnn's own calls.
warnings.filterwarnings(
    "ignore",
    message="RNN module weights are not part of single contiguous chunk",
    category=UserWarning,
    module=re.escape(__name__),
)

__all__ = ["HOLD", "gru", "lstm", "roll_time"]

#: Pre-activation added to the input gate (negated) and forget gate at padded steps; the
#: sigmoid of +-1e15 is exactly 1 / 0 in float32 (and in every kernel tested: oneDNN, Eigen).
HOLD = 1e15

_Weights = tuple[Any, ...]
#: ``direction(x, pad, lengths, states, weights, hidden) -> (outputs, final states)``.
_Direction = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], _Weights, int],
    tuple[torch.Tensor, tuple[torch.Tensor, ...]],
]


# --- shared lengths machinery ---------------------------------------------------------------------
def _check_lengths(lengths: torch.Tensor, time: int, layer: str) -> tuple[int, torch.Tensor]:
    """Check ``0 <= lengths <= time``; return the number of steps to run and the lengths.

    On CPU: an :class:`~twinnn.errors.ArgumentError`, and the longest length (no step past
    it is run). On GPU: the check of :func:`checks.require` (no host read of the lengths
    here), ``time``, and, while the check is unread, the lengths clamped to ``[0, time]``
    (a check read after the backward pass must not let a gather index out of bounds first).
    """
    if lengths.numel() == 0:
        return 0, lengths

    def message() -> str:
        bad = lengths[(lengths < 0) | (lengths > time)][:5].tolist()
        return (
            f"{layer}.forward: argument 'lengths' must be in [0, {time}] "
            f"(0 <= len <= time of x), got values {bad}"
        )

    if not checks.read_is_free(lengths):  # no host read of the lengths: run every step
        ok = ((lengths >= 0) & (lengths <= time)).all()
        unread = checks.require(ok, "ArgumentError", message)
        return time, lengths.clamp(0, time) if unread else lengths
    low, high = int(lengths.min()), int(lengths.max())
    if low < 0 or high > time:
        raise ArgumentError(message())
    return high, lengths


def _reverse_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """``(B, T)`` time index reversing each sequence within its length, padding in place."""
    steps = torch.arange(time, device=lengths.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    return torch.where(steps <= last, last - steps, steps)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for ``x`` ``(B, T, F)``, ``index`` ``(B, T)``."""
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def _last_valid(out: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``(1, B, H)``: ``out[b, len - 1]``, or ``h0[0, b]`` where ``len == 0``."""
    hidden = out.shape[2]
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hidden)
    h = out.gather(1, last).squeeze(1)
    return torch.where((lengths > 0).unsqueeze(1), h, h0[0]).unsqueeze(0)


def _stack(
    x: torch.Tensor,
    lengths: torch.Tensor,
    states: tuple[torch.Tensor, ...],
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
    direction: _Direction,
    layer: str,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every layer and direction over the right-padded ``x`` ``(B, T, F)`` with ``lengths``.

    ``states`` are the initial states, each ``(L*D, B, H)``; returns the outputs
    ``(B, T, H*D)`` (exactly zero at ``t >= len``) and the final states, each ``(L*D, B, H)``.
    """
    batch, time, _ = x.shape
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    steps, lengths = _check_lengths(lengths, time, layer)
    if steps == 0:
        return x.new_zeros(batch, time, hidden * dirs), list(states)

    inputs = x[:, :steps]
    mask = (torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
    pad = (~mask).to(x.dtype)
    inputs = torch.where(mask, inputs, 0.0)  # garbage in the padding never enters the math
    reverse = _reverse_index(lengths, steps) if bidirectional else None
    finals: list[list[torch.Tensor]] = [[] for _ in states]
    for _ in range(num_layers):
        outs: list[torch.Tensor] = []
        for d in range(dirs):
            k = len(finals[0])
            state = tuple(s[k : k + 1] for s in states)
            if d == 0:
                out, last = direction(inputs, pad, lengths, state, weights[k], hidden)
            else:
                assert reverse is not None
                seq = _gather_time(inputs, reverse)
                out, last = direction(seq, pad, lengths, state, weights[k], hidden)
                out = _gather_time(out, reverse)
            outs.append(torch.where(mask, out, 0.0))
            for into, value in zip(finals, last, strict=True):
                into.append(value)
        inputs = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
    if steps < time:
        inputs = torch.nn.functional.pad(inputs, (0, 0, 0, time - steps))
    return inputs, [torch.cat(f, dim=0) for f in finals]


def roll_time(x: Any, shifts: Any) -> Any:
    """``out[b, t] = x[b, (t - shifts[b]) mod T]`` for ``x`` ``(B, T, ...)``: one gather on
    the device (its gradient scatters back exactly: a permutation per row)."""
    time = x.shape[1]
    if time == 0:
        return x
    steps = torch.arange(time, device=x.device).unsqueeze(0)
    shifts = shifts.to(device=x.device, dtype=torch.int64).unsqueeze(1)
    index = torch.remainder(steps - shifts, time)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(x.shape)
    return x.gather(1, index)


# --- LSTM -----------------------------------------------------------------------------------------
def _lstm_flat(weights: _Weights, hidden: int, hold: bool) -> list[torch.Tensor]:
    """``[w_ih (4H, in[+1]), w_hh (4H, H), b_ih, b_hh]`` in the fused op's layout; ``b_hh``
    is the second bias (``recurrent_bias``) or a constant zero.

    With ``hold``, ``w_ih`` gets the hold row: ``-HOLD`` on the input-gate block, ``+HOLD`` on
    the forget-gate block, 0 elsewhere (made per call: a few microseconds, and never an
    inference-mode tensor cached across modes).
    """
    w_ih, w_hh, bias = weights[:3]
    b_hh = weights[3] if len(weights) == 4 else torch.zeros_like(bias)
    if hold:
        sign = torch.zeros(4, device=w_ih.device)
        sign[0], sign[1] = -HOLD, HOLD
        w_ih = torch.cat([w_ih, sign.repeat_interleave(hidden).unsqueeze(0)], dim=0)
    return [_fused_layout(w_ih), _fused_layout(w_hh), bias, b_hh]


def _fused_layout(w: torch.Tensor) -> torch.Tensor:
    """Neutral ``(in, G * H)`` as the fused op's ``(G * H, in)``: a view on CPU, a contiguous
    copy on GPU (see the module doc)."""
    return w.t() if w.device.type == "cpu" else w.t().contiguous()


def _lstm_direction(
    x: torch.Tensor,
    pad: torch.Tensor,
    lengths: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    weights: _Weights,
    hidden: int,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One layer, one direction, forward in time over right-padded ``x`` ``(B, T, in)``.

    ``pad`` ``(B, T, 1)`` is 1.0 at padded steps. Returns ``outputs (B, T, H)`` (not yet
    zeroed past each length) and ``(h (1, B, H), c (1, B, H))``.
    """
    held = torch.cat([x, pad], dim=2)
    train = torch.is_grad_enabled()
    out, _, c = torch.lstm(
        held, state, _lstm_flat(weights, hidden, True), True, 1, 0.0, train, False, True
    )
    return out, (_last_valid(out, lengths, state[0]), c)


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
    if lengths is None:
        if time == 0:
            return x.new_zeros(batch, 0, hidden * dirs), h0, c0
        flat = [t for w in weights for t in _lstm_flat(w, hidden, False)]
        train = torch.is_grad_enabled()
        out, h, c = torch.lstm(x, (h0, c0), flat, True, num_layers, 0.0, train, bidirectional, True)
        return out, h, c
    out, (h, c) = _stack(
        x, lengths, (h0, c0), weights, num_layers, bidirectional, _lstm_direction, "LSTM"
    )
    return out, h, c


# --- GRU ------------------------------------------------------------------------------------------
def _gru_flat(weights: _Weights) -> list[torch.Tensor]:
    """``[w_ih (3H, in), w_hh (3H, H), b_ih, b_hh]`` in the fused op's layout (gates r, z, n)."""
    w_ih, w_hh, b_ih, b_hh = weights
    return [_fused_layout(w_ih), _fused_layout(w_hh), b_ih, b_hh]


def _gru_direction(
    x: torch.Tensor,
    pad: torch.Tensor,
    lengths: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    weights: _Weights,
    hidden: int,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One GRU layer, one direction, over right-padded ``x`` ``(B, T, in)`` (zero padding).

    Returns ``outputs (B, T, H)`` (not yet zeroed past each length) and ``(h (1, B, H),)``
    gathered at each sequence's last valid step; the op's own final state is dropped.
    """
    del pad, hidden  # no hold column: see the module doc
    train = torch.is_grad_enabled()
    out, _ = torch.gru(x, state[0], _gru_flat(weights), True, 1, 0.0, train, False, True)
    return out, (_last_valid(out, lengths, state[0]),)


def _gru(
    x: Any,
    lengths: Any | None,
    initial_state: Any | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.gru` (shapes, semantics) and the module doc."""
    batch, time, _ = x.shape
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    h0 = initial_state
    if h0 is None:
        h0 = x.new_zeros(num_layers * dirs, batch, hidden)
    if lengths is None:
        if time == 0:
            return x.new_zeros(batch, 0, hidden * dirs), h0
        flat = [t for w in weights for t in _gru_flat(w)]
        train = torch.is_grad_enabled()
        out, h = torch.gru(x, h0, flat, True, num_layers, 0.0, train, bidirectional, True)
        return out, h
    if x.device.type == "cpu":
        return _gru_packed(x, lengths, h0, weights, num_layers, bidirectional)
    out, (h,) = _stack(x, lengths, (h0,), weights, num_layers, bidirectional, _gru_direction, "GRU")
    return out, h


def _gru_packed(
    x: torch.Tensor,
    lengths: torch.Tensor,
    h0: torch.Tensor,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """On CPU: torch's packed GRU, what ``nn.GRU`` runs on a ``PackedSequence``: every layer
    and direction in one call, each step only on the sequences still running, the backward
    direction from each sequence's own last step, ``h`` at each last step.

    The lengths are on the host there anyway (the value check), so packing costs no sync.
    ``len == 0`` rows are packed as one step of zeros whose results are replaced (outputs 0,
    state ``h0``), so they pass exact zero gradients back; the padding is never read.
    """
    batch, time, _ = x.shape
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    steps, lengths = _check_lengths(lengths, time, "GRU")
    if steps == 0:
        return x.new_zeros(batch, time, hidden * dirs), h0
    empty = lengths == 0
    inputs = x[:, :steps]
    if bool(empty.any()):  # on the host: no sync. Those rows read one step of zeros.
        inputs = torch.where(empty.view(-1, 1, 1), 0.0, inputs)
    packed = pack_padded_sequence(
        inputs, lengths.clamp(min=1), batch_first=True, enforce_sorted=False
    )
    order, restore = packed.sorted_indices, packed.unsorted_indices
    assert order is not None and restore is not None
    flat = [t for w in weights for t in _gru_flat(w)]
    train = torch.is_grad_enabled()
    data, h = torch._VF.gru(
        packed.data,
        packed.batch_sizes,
        h0.index_select(1, order),
        flat,
        True,
        num_layers,
        0.0,
        train,
        bidirectional,
    )
    result = PackedSequence(data, packed.batch_sizes, order, restore)
    out, _ = pad_packed_sequence(result, batch_first=True, total_length=time)
    h = h.index_select(1, restore)
    if bool(empty.any()):
        out = torch.where(empty.view(-1, 1, 1), 0.0, out)
        h = torch.where(empty.view(1, -1, 1), h0, h)
    return out, h


#: What :func:`lstm` / :func:`gru` run: :func:`_lstm` / :func:`_gru`, or their
#: ``torch.compiler.disable`` wrappers once a ``jit=True`` step exists. Made lazily:
#: ``torch.compiler.disable`` imports ``torch._dynamo`` (about 1 s and 70 MiB), which eager
#: users should not pay for at import.
_kernel: Callable[..., tuple[Any, Any, Any]] = _lstm
_gru_kernel: Callable[..., tuple[Any, Any]] = _gru


def enable_compile_boundary() -> None:
    """Run the recurrent kernels eagerly between compiled graphs (``train_step(jit=True)``)."""
    global _kernel, _gru_kernel
    if _kernel is _lstm:
        _kernel = torch.compiler.disable(_lstm)  # type: ignore[no-untyped-call]
    if _gru_kernel is _gru:
        _gru_kernel = torch.compiler.disable(_gru)  # type: ignore[no-untyped-call]


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


def gru(
    x: Any,
    lengths: Any | None,
    initial_state: Any | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.gru` (shapes, semantics) and the module doc."""
    return _gru_kernel(x, lengths, initial_state, weights, num_layers, bidirectional)
