"""tensorflow backend: multi-head scaled dot-product attention (``Backend.attention``).

TensorFlow has no fused attention op on every device, so this is the formula as batched
matmuls and a softmax (what Keras' ``MultiHeadAttention`` runs on its TensorFlow backend),
graph-safe: every shape is read at run time (``tf.shape``), so one trace serves every batch
size and sequence length. Masks are combined into an additive float bias (0 where allowed,
``-inf`` elsewhere). A query row with no allowed key is given every key (finite values) and
its result multiplied by 0 afterwards: zero output and zero (finite) gradients, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from twinnn.backends.tensorflow.checks import graph_check, value_checks_enabled
from twinnn.errors import ArgumentError


def _heads(x: Any, num_heads: int) -> Any:
    """``(B, T, E)`` -> ``(B, H, T, E / H)``."""
    dims = tf.shape(x)
    split = tf.reshape(x, [dims[0], dims[1], num_heads, x.shape[-1] // num_heads])
    return tf.transpose(split, [0, 2, 1, 3])


def _check_lengths(lengths: Any, time: Any, message: str) -> Any:
    """``0 <= lengths <= time``: an ArgumentError when eager, a graph assertion (re-raised as
    that ArgumentError by the compiled step) when traced. Returns ``lengths``, behind it."""
    if not value_checks_enabled():  # an XLA step: assertions are dropped (checks.py)
        return lengths
    time = tf.cast(time, lengths.dtype)
    ok = tf.reduce_all(tf.logical_and(lengths >= 0, lengths <= time))
    if tf.executing_eagerly():
        if not bool(ok):
            raise ArgumentError(message.replace("{time}", str(int(time))))
        return lengths
    check = graph_check(ok, "ArgumentError", message.replace("{time}", "{0}"), [("int", time)])
    with tf.control_dependencies([check]):
        return tf.identity(lengths)


def attention(
    q: Any,
    k: Any,
    v: Any,
    num_heads: int,
    mask: Any | None,
    key_lengths: Any | None,
    causal: bool,
    scale: float,
    dropout: Callable[[Any], Any] | None,
    lengths_message: str | None,
) -> Any:
    dims_q, time_k = tf.shape(q), tf.shape(k)[1]
    heads_q, heads_k, heads_v = (_heads(t, num_heads) for t in (q, k, v))
    allowed = mask
    if key_lengths is not None:
        if lengths_message is not None:
            key_lengths = _check_lengths(key_lengths, time_k, lengths_message)
        keys = tf.sequence_mask(key_lengths, time_k)[:, None, None, :]  # (B, 1, 1, Tk)
        allowed = keys if allowed is None else tf.logical_and(allowed, keys)
    may_be_empty = allowed is not None  # a row can be fully masked only by mask / lengths
    if causal:
        steps_q, steps_k = tf.range(dims_q[1]), tf.range(time_k)
        tril = steps_k[None, :] <= steps_q[:, None]  # query i attends keys j <= i
        allowed = tril if allowed is None else tf.logical_and(allowed, tril)
    valid = None
    if may_be_empty:
        valid = tf.reduce_any(allowed, axis=-1, keepdims=True)
        allowed = tf.logical_or(allowed, tf.logical_not(valid))
    scores = tf.linalg.matmul(heads_q, heads_k, transpose_b=True) * scale
    if allowed is not None:
        scores += tf.where(allowed, 0.0, float("-inf"))
    probs = tf.nn.softmax(scores, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    out = tf.linalg.matmul(probs, heads_v)
    if valid is not None:
        out *= tf.cast(valid, out.dtype)  # empty rows: zero, with zero gradients
    merged = tf.transpose(out, [0, 2, 1, 3])
    return tf.reshape(merged, [dims_q[0], dims_q[1], q.shape[-1]])
