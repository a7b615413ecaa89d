"""tensorflow backend: the LSTM and the GRU with per-sequence lengths, as ``tf.while_loop``.

Works eagerly and inside the compiled ``train_step`` (``tf.function`` with ``None`` batch and
time dims): nothing depends on a static batch size or length, so new ones never retrace.

Per layer and direction, time-major (:func:`_stack`, shared by both layers):

1. Padded inputs are replaced by zeros (``tf.where``) before any math, so garbage in the
   padding (even ``inf``/``nan``) reaches no output, state or gradient.
2. LSTM only: the input gets one more feature, ``pad``: ``1.0`` at padded steps (``t >= len``),
   ``0.0`` elsewhere, and ``w_ih`` a matching *hold row*: ``-HOLD`` on the input-gate block,
   ``+HOLD`` on the forget-gate block, 0 elsewhere. At a padded step
   ``i = sigmoid(-HOLD) == 0`` and ``f = sigmoid(HOLD) == 1`` exactly, so ``c_t = c_{t-1}``
   exactly and both gates' derivatives ``s * (1 - s)`` are exactly 0: the final ``c`` is the
   state after each sequence's last valid step and padded steps add exact zeros to every
   gradient, with no per-step masking op. At valid steps the column adds ``0 * HOLD == 0``.
3. A ``tf.while_loop`` (``max(lengths)`` steps) computes
   ``z = x_t @ w_ih + bias + h @ w_hh`` and the gates; outputs go to a ``TensorArray`` (steps
   never run stay zero). Projecting all steps with one GEMM before the loop was measured
   1.15-1.2x slower for a training step: reading a ``(B, 4H)`` slice per step from a
   ``TensorArray`` makes its gradient accumulate ``(T, B, 4H)`` lists, while ``x_t`` is only
   ``(B, F + 1)``.
4. ``h`` after step ``len - 1`` is gathered from the outputs (``h0`` for ``len == 0``), and the
   outputs at ``t >= len`` are zeroed with one ``tf.where`` over the whole sequence.
5. The backward direction runs the same loop on ``tf.reverse_sequence(x, lengths)`` (each
   sequence reversed within its own length, padding in place) and reverses its outputs back.

The GRU needs no hold row: its state ``h`` is an output, so step 4's gather gives the state
after step ``len - 1``, and the padded steps' results are never read (zero gradients). Its
step is torch's: ``r, z = sigmoid(x_t @ w_ih[:, :2H] + b_ih[:2H] + h @ w_hh[:, :2H] +
b_hh[:2H])``, ``n = tanh(x_t @ w_in + b_in + r * (h @ w_hn + b_hn))``, ``h = (h - n) * z + n``
(ATen's rounding order). The LSTM with ``recurrent_bias`` adds its two biases once before the
loop (each gets the full gradient).

This is the same function as the torch backend's fused kernels (same hold row, same gather);
only the GEMM and activation kernels differ, so results agree to float32 rounding.
There is no cuDNN path: ``CudnnRNNV3`` rejects zero-length sequences and could not be tested
exact here (no GPU); on a GPU the loop above runs as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from twinnn.backends.tensorflow.checks import graph_check, value_checks_enabled
from twinnn.errors import ArgumentError

__all__ = ["HOLD", "gru", "lstm", "roll_time"]

#: Pre-activation added to the input gate (negated) and forget gate at padded steps; the
#: sigmoid of +-1e15 is exactly 1 / 0 in float32 (TF's Eigen kernel saturates from |z| ~ 90).
HOLD = 1e15

_Weights = tuple[Any, ...]
#: ``direction(xs, pad, steps, lengths, states, weights) -> (outputs, final states)``.
_Direction = Callable[
    [Any, Any | None, Any, Any | None, tuple[Any, ...], _Weights], tuple[Any, tuple[Any, ...]]
]


def _hold_row(hidden: int) -> Any:
    """``(1, 4H)``: ``-HOLD`` on the input gate, ``+HOLD`` on the forget gate, 0 elsewhere."""
    row = np.zeros((1, 4 * hidden), dtype=np.float32)
    row[0, :hidden] = -HOLD
    row[0, hidden : 2 * hidden] = HOLD
    return tf.constant(row)


def _check_lengths(lengths: Any, time: Any, layer: str) -> Any:
    """``0 <= lengths <= time``: an ArgumentError when eager, a graph assertion when traced
    whose message (built from the run-time values) is the eager one, word for word.

    Returns ``lengths`` (traced: behind the assertion, so it runs before any use).
    """
    head = f"{layer}.forward: argument 'lengths' must be in [0, "
    middle = "] (0 <= len <= time of x), got values "
    if tf.executing_eagerly():
        values = lengths.numpy()
        bad = values[(values < 0) | (values > int(time))]
        if bad.size:
            raise ArgumentError(f"{head}{int(time)}{middle}{bad[:5].tolist()}")
        return lengths
    if not value_checks_enabled():  # an XLA step: assertions are dropped (checks.py)
        return lengths
    # Traced: tf.errors.InvalidArgumentError when the step runs, which the compiled step
    # turns back into this ArgumentError with this message (checks.raise_graph_check).
    time = tf.cast(time, lengths.dtype)
    out_of_range = tf.logical_or(lengths < 0, lengths > time)
    bad = tf.boolean_mask(lengths, out_of_range)[:5]
    ok = tf.logical_not(tf.reduce_any(out_of_range))
    check = graph_check(
        ok, "ArgumentError", head + "{0}" + middle + "{1}", [("int", time), ("list", bad)]
    )
    with tf.control_dependencies([check]):
        return tf.identity(lengths)


def _last_valid(out: Any, lengths: Any, h0: Any) -> Any:
    """``(B, H)``: ``out[len - 1, b]`` of time-major ``out``, or ``h0[b]`` where ``len == 0``."""
    batch = tf.range(tf.shape(lengths)[0])
    last = tf.gather_nd(out, tf.stack([tf.maximum(lengths - 1, 0), batch], axis=1))
    return tf.where((lengths > 0)[:, None], last, h0)


def _stack(
    x: Any,
    lengths: Any | None,
    states: tuple[Any, ...],
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
    direction: _Direction,
    layer: str,
) -> tuple[Any, list[Any]]:
    """Every layer and direction over the right-padded ``x`` ``(B, T, F)``.

    ``states`` are the initial states, each ``(L*D, B, H)``; returns the outputs
    ``(B, T, H*D)`` (exactly zero at ``t >= len``) and the final states, each ``(L*D, B, H)``.
    """
    dirs = 2 if bidirectional else 1
    time = tf.shape(x)[1]
    # Time-major, at least one step (T == 0 runs one padded step; a zero pad is free).
    xs = tf.transpose(x, [1, 0, 2])
    xs = tf.pad(xs, [[0, tf.maximum(1 - time, 0)], [0, 0], [0, 0]])
    span = tf.maximum(time, 1)
    mask = pad = None
    if lengths is None:
        steps = span
    else:
        lengths = tf.cast(lengths, tf.int32)
        lengths = _check_lengths(lengths, time, layer)
        steps = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], axis=0)), 1)
        mask = tf.transpose(tf.sequence_mask(lengths, span))[:, :, None]  # (T, B, 1)
        pad = tf.cast(tf.logical_not(mask), tf.float32)
        xs = tf.where(mask, xs, 0.0)  # garbage in the padding never enters the math

    finals: list[list[Any]] = [[] for _ in states]
    for _ in range(num_layers):
        outs: list[Any] = []
        for d in range(dirs):
            k = len(finals[0])
            state = tuple(s[k] for s in states)
            if d == 0:
                out, last = direction(xs, pad, steps, lengths, state, weights[k])
            elif lengths is None:
                out, last = direction(tf.reverse(xs, [0]), pad, steps, None, state, weights[k])
                out = tf.reverse(out, [0])
            else:
                seq = tf.reverse_sequence(xs, lengths, seq_axis=0, batch_axis=1)
                out, last = direction(seq, pad, steps, lengths, state, weights[k])
                out = tf.reverse_sequence(out, lengths, seq_axis=0, batch_axis=1)
            if mask is not None:
                out = tf.where(mask, out, 0.0)
            elif x.shape[1] is None or x.shape[1] == 0:  # T == 0 ran one dummy step: undo it
                last = tuple(tf.where(time > 0, v, s) for v, s in zip(last, state, strict=True))
            outs.append(out)
            for into, value in zip(finals, last, strict=True):
                into.append(value)
        xs = outs[0] if dirs == 1 else tf.concat(outs, axis=2)
    outputs = tf.transpose(xs[:time], [1, 0, 2])
    return outputs, [tf.stack(f) for f in finals]


def roll_time(x: Any, shifts: Any) -> Any:
    """``out[b, t] = x[b, (t - shifts[b]) mod T]`` for ``x`` ``(B, T, ...)``: one gather on
    the device (its gradient scatters back exactly: a permutation per row)."""
    time = tf.shape(x, out_type=tf.int64)[1]
    steps = tf.range(time, dtype=tf.int64)[None, :]
    shifts = tf.cast(shifts, tf.int64)[:, None]
    index = tf.math.floormod(steps - shifts, tf.maximum(time, 1))  # empty when T == 0
    return tf.gather(x, index, axis=1, batch_dims=1)


# --- LSTM -----------------------------------------------------------------------------------------
def _lstm_direction(
    xs: Any,
    pad: Any | None,
    steps: Any,
    lengths: Any | None,
    state: tuple[Any, ...],
    weights: _Weights,
) -> tuple[Any, tuple[Any, ...]]:
    """One layer, one direction, forward in time over time-major ``xs`` ``(T, B, in)``.

    ``pad`` ``(T, B, 1)`` is 1.0 at padded steps (None: no padding). Runs ``steps`` steps.
    Returns ``outputs (T, B, H)`` (not yet zeroed past each length, zero from ``steps`` on)
    and ``(h (B, H), c (B, H))``.
    """
    w_ih, w_hh, bias = weights[:3]
    hidden = int(w_hh.shape[0])
    if len(weights) == 4:  # recurrent_bias: torch's two biases, each gets the full gradient
        bias = bias + weights[3]
    if pad is not None:
        xs = tf.concat([xs, pad], axis=2)
        w_ih = tf.concat([w_ih, _hold_row(hidden)], axis=0)
    w_ih, w_hh = tf.convert_to_tensor(w_ih), tf.convert_to_tensor(w_hh)
    size = tf.shape(xs)[0]
    inputs = tf.TensorArray(tf.float32, size=size).unstack(xs)
    outputs = tf.TensorArray(tf.float32, size=size, element_shape=[None, hidden])

    def step(t: Any, h: Any, c: Any, outputs: Any) -> tuple[Any, Any, Any, Any]:
        z = tf.nn.bias_add(tf.linalg.matmul(inputs.read(t), w_ih), bias)
        z = z + tf.linalg.matmul(h, w_hh)
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return t + 1, h, c, outputs.write(t, h)

    _, h, c, outputs = tf.while_loop(
        lambda t, *_: t < steps,
        step,
        (tf.constant(0), state[0], state[1], outputs),
        maximum_iterations=steps,
    )
    out = outputs.stack()
    if lengths is not None:
        h = _last_valid(out, lengths, state[0])
    return out, (h, c)


def lstm(
    x: Any,
    lengths: Any | None,
    initial_state: tuple[Any, Any] | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.lstm` (shapes, semantics) and the module doc."""
    if initial_state is None:
        zeros = _zero_state(x, weights, num_layers, bidirectional)
        initial_state = (zeros, zeros)
    out, (h, c) = _stack(
        x,
        lengths,
        tuple(initial_state),
        weights,
        num_layers,
        bidirectional,
        _lstm_direction,
        "LSTM",
    )
    return out, h, c


def _zero_state(x: Any, weights: Sequence[_Weights], num_layers: int, bidirectional: bool) -> Any:
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    return tf.zeros(tf.stack([num_layers * dirs, tf.shape(x)[0], hidden]))


# --- GRU ------------------------------------------------------------------------------------------
def _gru_direction(
    xs: Any,
    pad: Any | None,
    steps: Any,
    lengths: Any | None,
    state: tuple[Any, ...],
    weights: _Weights,
) -> tuple[Any, tuple[Any, ...]]:
    """One GRU layer, one direction, over time-major ``xs`` ``(T, B, in)`` (zero padding; no
    hold row). Returns ``outputs (T, B, H)`` and ``(h (B, H),)`` at each last valid step."""
    del pad
    w_ih, w_hh, b_ih, b_hh = (tf.convert_to_tensor(w) for w in weights)
    hidden = int(w_hh.shape[0])
    size = tf.shape(xs)[0]
    inputs = tf.TensorArray(tf.float32, size=size).unstack(xs)
    outputs = tf.TensorArray(tf.float32, size=size, element_shape=[None, hidden])

    def step(t: Any, h: Any, outputs: Any) -> tuple[Any, Any, Any]:
        gx = tf.nn.bias_add(tf.linalg.matmul(inputs.read(t), w_ih), b_ih)
        gh = tf.nn.bias_add(tf.linalg.matmul(h, w_hh), b_hh)
        x_rz, x_n = tf.split(gx, [2 * hidden, hidden], axis=1)
        h_rz, h_n = tf.split(gh, [2 * hidden, hidden], axis=1)
        r, z = tf.split(tf.sigmoid(x_rz + h_rz), 2, axis=1)
        n = tf.tanh(x_n + r * h_n)
        h = (h - n) * z + n
        return t + 1, h, outputs.write(t, h)

    _, h, outputs = tf.while_loop(
        lambda t, *_: t < steps,
        step,
        (tf.constant(0), state[0], outputs),
        maximum_iterations=steps,
    )
    out = outputs.stack()
    if lengths is not None:
        h = _last_valid(out, lengths, state[0])
    return out, (h,)


def gru(
    x: Any,
    lengths: Any | None,
    initial_state: Any | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.gru` (shapes, semantics) and the module doc."""
    h0 = initial_state
    if h0 is None:
        h0 = _zero_state(x, weights, num_layers, bidirectional)
    out, (h,) = _stack(x, lengths, (h0,), weights, num_layers, bidirectional, _gru_direction, "GRU")
    return out, h
