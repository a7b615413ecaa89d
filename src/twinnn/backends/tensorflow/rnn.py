"""tensorflow backend: the LSTM with per-sequence lengths, as a ``tf.while_loop``.

Works eagerly and inside the compiled ``train_step`` (``tf.function`` with ``None`` batch and
time dims): nothing depends on a static batch size or length, so new ones never retrace.

Per layer and direction, time-major:

1. Padded inputs are replaced by zeros (``tf.where``) before any math, so garbage in the
   padding (even ``inf``/``nan``) reaches no output, state or gradient.
2. The input gets one more feature, ``pad``: ``1.0`` at padded steps (``t >= len``), ``0.0``
   elsewhere, and ``w_ih`` a matching *hold row*: ``-HOLD`` on the input-gate block, ``+HOLD``
   on the forget-gate block, 0 elsewhere. At a padded step ``i = sigmoid(-HOLD) == 0`` and
   ``f = sigmoid(HOLD) == 1`` exactly, so ``c_t = c_{t-1}`` exactly and both gates'
   derivatives ``s * (1 - s)`` are exactly 0: the final ``c`` is the state after each
   sequence's last valid step and padded steps add exact zeros to every gradient, with no
   per-step masking op. At valid steps the column adds ``0 * HOLD == 0``.
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

This is the same function as the torch backend's fused kernel (same hold row, same gather);
only the GEMM and activation kernels differ, so results agree to float32 rounding.
There is no cuDNN path: ``CudnnRNNV3`` rejects zero-length sequences and could not be tested
exact here (no GPU); on a GPU the loop above runs as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from twinnn.backends.tensorflow.checks import graph_check, value_checks_enabled
from twinnn.errors import ArgumentError

__all__ = ["HOLD", "lstm"]

#: Pre-activation added to the input gate (negated) and forget gate at padded steps; the
#: sigmoid of +-1e15 is exactly 1 / 0 in float32 (TF's Eigen kernel saturates from |z| ~ 90).
HOLD = 1e15

_Weights = tuple[Any, Any, Any]


def _hold_row(hidden: int) -> Any:
    """``(1, 4H)``: ``-HOLD`` on the input gate, ``+HOLD`` on the forget gate, 0 elsewhere."""
    row = np.zeros((1, 4 * hidden), dtype=np.float32)
    row[0, :hidden] = -HOLD
    row[0, hidden : 2 * hidden] = HOLD
    return tf.constant(row)


def _check_lengths(lengths: Any, time: Any) -> Any:
    """``0 <= lengths <= time``: an ArgumentError when eager, a graph assertion when traced
    whose message (built from the run-time values) is the eager one, word for word.

    Returns ``lengths`` (traced: behind the assertion, so it runs before any use).
    """
    head = "LSTM.forward: argument 'lengths' must be in [0, "
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


def _direction(
    xs: Any,
    pad: Any | None,
    steps: Any,
    lengths: Any | None,
    state: tuple[Any, Any],
    weights: _Weights,
) -> tuple[Any, Any, Any]:
    """One layer, one direction, forward in time over time-major ``xs`` ``(T, B, in)``.

    ``pad`` ``(T, B, 1)`` is 1.0 at padded steps (None: no padding). Runs ``steps`` steps.
    Returns ``(outputs (T, B, H), h (B, H), c (B, H))``, outputs not yet zeroed past each
    length (zero from ``steps`` on).
    """
    w_ih, w_hh, bias = weights
    hidden = int(w_hh.shape[0])
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
        batch = tf.range(tf.shape(lengths)[0])
        last = tf.gather_nd(out, tf.stack([tf.maximum(lengths - 1, 0), batch], axis=1))
        h = tf.where((lengths > 0)[:, None], last, state[0])
    return out, h, c


def lstm(
    x: Any,
    lengths: Any | None,
    initial_state: tuple[Any, Any] | None,
    weights: Sequence[_Weights],
    num_layers: int,
    bidirectional: bool,
) -> tuple[Any, Any, Any]:
    """See :meth:`twinnn.backends.base.Backend.lstm` (shapes, semantics) and the module doc."""
    hidden = int(weights[0][1].shape[0])
    dirs = 2 if bidirectional else 1
    batch, time = tf.shape(x)[0], tf.shape(x)[1]
    if initial_state is None:
        zeros = tf.zeros(tf.stack([num_layers * dirs, batch, hidden]))
        initial_state = (zeros, zeros)
    h0, c0 = initial_state

    # Time-major, at least one step (T == 0 runs one padded step; a zero pad is free).
    xs = tf.transpose(x, [1, 0, 2])
    xs = tf.pad(xs, [[0, tf.maximum(1 - time, 0)], [0, 0], [0, 0]])
    span = tf.maximum(time, 1)
    mask = pad = None
    if lengths is None:
        steps = span
    else:
        lengths = tf.cast(lengths, tf.int32)
        lengths = _check_lengths(lengths, time)
        steps = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], axis=0)), 1)
        mask = tf.transpose(tf.sequence_mask(lengths, span))[:, :, None]  # (T, B, 1)
        pad = tf.cast(tf.logical_not(mask), tf.float32)
        xs = tf.where(mask, xs, 0.0)  # garbage in the padding never enters the math

    hs: list[Any] = []
    cs: list[Any] = []
    for layer in range(num_layers):
        outs: list[Any] = []
        for d in range(dirs):
            k = layer * dirs + d
            state = (h0[k], c0[k])
            if d == 0:
                out, h, c = _direction(xs, pad, steps, lengths, state, weights[k])
            elif lengths is None:
                out, h, c = _direction(tf.reverse(xs, [0]), pad, steps, None, state, weights[k])
                out = tf.reverse(out, [0])
            else:
                seq = tf.reverse_sequence(xs, lengths, seq_axis=0, batch_axis=1)
                out, h, c = _direction(seq, pad, steps, lengths, state, weights[k])
                out = tf.reverse_sequence(out, lengths, seq_axis=0, batch_axis=1)
            if mask is not None:
                out = tf.where(mask, out, 0.0)
            elif x.shape[1] is None or x.shape[1] == 0:  # T == 0 ran one dummy step: undo it
                h = tf.where(time > 0, h, state[0])
                c = tf.where(time > 0, c, state[1])
            outs.append(out)
            hs.append(h)
            cs.append(c)
        xs = outs[0] if dirs == 1 else tf.concat(outs, axis=2)
    outputs = tf.transpose(xs[:time], [1, 0, 2])
    return outputs, tf.stack(hs), tf.stack(cs)
