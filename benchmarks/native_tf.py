"""The seed's hand-written TensorFlow code for every workload (nothing of twinnn).

A ``@tf.function`` train step with ``tf.GradientTape``, Keras layers called directly (``Dense``;
``LSTM`` under ``mask=tf.sequence_mask(lengths, T)``), the loss
``tf.reduce_mean(tf.square(pred - y))`` and ``keras.optimizers.SGD.apply_gradients`` -- the
custom training loop of TensorFlow's own guides. Keras here is Keras 3 on the TensorFlow
backend (what ``tf.keras`` is since TF 2.16).

lm: the same custom loop for the word language model -- ``Embedding``, ``Dropout``, two
``LSTM(return_sequences=True, return_state=True)`` with a ``Dropout`` between them (torch's
``nn.LSTM(dropout=p)``), ``Dropout``, ``Dense``, all called with ``training=True``;
``tf.nn.sparse_softmax_cross_entropy_with_logits`` averaged over the ``B * T`` tokens,
``tf.clip_by_global_norm`` and ``keras.optimizers.SGD``. The state goes in as arguments of the
``tf.function`` and comes out as its results, and is passed into the next chunk (a graph
input: no gradient flows back through it).
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np
import tensorflow as tf

from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build"]


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        return _build(workload, batches, weights)


def _build_lm(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    vocab, emb, hidden = workload.out_features, workload.in_features, workload.hidden
    encoder = keras.layers.Embedding(vocab, emb)
    encoder.build((None, None))
    encoder.set_weights([weights["encoder.weight"]])
    drop = keras.layers.Dropout(workload.dropout)
    rnns = []
    for k in range(workload.layers):
        lstm = keras.layers.LSTM(hidden, return_sequences=True, return_state=True)
        lstm.build((None, None, emb if k == 0 else hidden))
        lstm.set_weights(
            [weights[f"rnn.w_ih_l{k}"], weights[f"rnn.w_hh_l{k}"], weights[f"rnn.bias_l{k}"]]
        )
        rnns.append(lstm)
    decoder = keras.layers.Dense(vocab)
    decoder.build((None, None, hidden))
    decoder.set_weights([weights["decoder.weight"], weights["decoder.bias"]])
    variables = [v for layer in (encoder, *rnns, decoder) for v in layer.trainable_variables]
    optimizer = keras.optimizers.SGD(learning_rate=workload.lr)
    clip = workload.clip_norm

    @tf.function  # type: ignore[untyped-decorator]
    def train(tokens: tf.Tensor, targets: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> Any:
        with tf.GradientTape() as tape:
            x = drop(encoder(tokens), training=True)
            hs, cs = [], []
            for k, lstm in enumerate(rnns):
                if k > 0:
                    x = drop(x, training=True)
                x, hk, ck = lstm(x, initial_state=[h[k], c[k]], training=True)
                hs.append(hk)
                cs.append(ck)
            logits = decoder(drop(x, training=True))
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
            )
        grads = tape.gradient(loss, variables)
        if clip is not None:
            grads, _ = tf.clip_by_global_norm(grads, clip)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss, tf.stack(hs), tf.stack(cs)

    zeros = tf.zeros((workload.layers, workload.batch, hidden))
    state = [zeros, zeros]

    def step(tokens: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        loss, state[0], state[1] = train(tokens, targets, state[0], state[1])
        return loss

    native = [tuple(tf.constant(a) for a in batch) for batch in batches]
    last = variables[-1]
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.numpy()),
        sync=lambda: _read(last),
        notes=(
            "tf.function + GradientTape, Keras Embedding/Dropout/LSTM/Dense, "
            "tf.clip_by_global_norm, keras.optimizers.SGD, state carried as arguments"
        ),
    )


def _build(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    if workload.kind == "lm":
        return _build_lm(workload, batches, weights)
    optimizer = (
        keras.optimizers.Adam(learning_rate=workload.lr)
        if workload.optimizer == "adam"
        else keras.optimizers.SGD(learning_rate=workload.lr)
    )
    layers: list[Any]
    forward: Any
    if workload.kind == "linear":
        dense = keras.layers.Dense(workload.out_features)
        dense.build((None, workload.in_features))
        dense.set_weights([weights["weight"], weights["bias"]])
        layers = [dense]

        def forward(x: tf.Tensor) -> tf.Tensor:
            return dense(x)

    else:
        lstm = keras.layers.LSTM(workload.hidden)
        lstm.build((None, workload.time, workload.in_features))
        lstm.set_weights(
            [weights["lstm.w_ih_l0"], weights["lstm.w_hh_l0"], weights["lstm.bias_l0"]]
        )
        head = keras.layers.Dense(workload.out_features)
        head.build((None, workload.hidden))
        head.set_weights([weights["head.weight"], weights["head.bias"]])
        layers = [lstm, head]

        def forward(x: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
            mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1])
            return head(lstm(x, mask=mask))

    variables = [v for layer in layers for v in layer.trainable_variables]

    @tf.function  # type: ignore[untyped-decorator]
    def step(*args: tf.Tensor) -> tf.Tensor:
        *inputs, y = args
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(forward(*inputs) - y))
        grads = tape.gradient(loss, variables)
        if workload.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, workload.clip_norm)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    native = [tuple(tf.constant(a) for a in batch) for batch in batches]
    last = variables[-1]
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.numpy()),
        sync=lambda: _read(last),
        notes="tf.function + GradientTape, Keras layers, keras.optimizers.SGD",
    )


def _read(variable: Any) -> None:
    variable.numpy()
