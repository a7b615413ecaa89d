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
        y = tf.linalg.matmul(tf.reshape(x, [-1, x.shape[-1]]), weight)
        y = tf.reshape(y, tf.concat([lead, tf.shape(weight)[-1:]], axis=0))
    if bias is None:
        return y
    return tf.nn.bias_add(y, bias) if x.shape.rank >= 2 else y + bias
