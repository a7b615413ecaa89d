"""tensorflow backend: the layers' forward math (the LSTM lives in ``rnn.py``)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def linear(x: Any, weight: Any, bias: Any | None) -> Any:
    """``x @ weight + bias`` for ``x`` of shape ``(..., in)``, ``weight`` ``(in, out)``.

    Inputs of rank > 2 are folded to 2-D for one GEMM, as torch's ``matmul`` does.
    """
    if x.shape.rank == 2:
        y = tf.linalg.matmul(x, weight)
    else:
        lead = tf.shape(x)[:-1]
        y = tf.linalg.matmul(tf.reshape(x, [-1, weight.shape[0]]), weight)
        y = tf.reshape(y, tf.concat([lead, tf.shape(weight)[-1:]], axis=0))
    if bias is None:
        return y
    return tf.nn.bias_add(y, bias) if x.shape.rank >= 2 else y + bias


def stop_gradient(x: Any) -> Any:
    return tf.stop_gradient(x)


# --- activations ----------------------------------------------------------------------------


def softmax(x: Any, axis: int) -> Any:
    return tf.nn.softmax(x, axis=axis)


def log_softmax(x: Any, axis: int) -> Any:
    return tf.nn.log_softmax(x, axis=axis)


def gelu(x: Any, approximate: bool) -> Any:
    return tf.nn.gelu(x, approximate=approximate)


def silu(x: Any) -> Any:
    return tf.nn.silu(x)


def leaky_relu(x: Any, negative_slope: float) -> Any:
    return tf.nn.leaky_relu(x, alpha=negative_slope)


def elu(x: Any, alpha: float) -> Any:
    # Not tf.nn.elu: its kernel computes exp(x) - 1 (relative error up to 2e-4 near 0, where
    # torch's expm1 is exact to float32 rounding) and has no alpha. The min keeps the branch
    # not taken finite, so its zero gradient stays zero (no 0 * inf); gradient alpha at 0.
    negative = alpha * tf.math.expm1(tf.minimum(x, tf.zeros([], x.dtype)))
    return tf.where(x > 0, x, negative)


def sparse_cross_entropy(logits: Any, ids: Any) -> Any:
    """``-log_softmax(logits)[..., ids]`` per item, by TensorFlow's fused kernel."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)


def layer_norm(x: Any, weight: Any, bias: Any, eps: float) -> Any:
    """``(x - mean) * (1 / sqrt(var + eps)) * weight + bias`` over the last axis (biased
    variance), written out: grappler fuses the elementwise tail."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True)
    return centred * (1.0 / tf.sqrt(var + eps)) * weight + bias
