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

transformer: the same custom loop over Keras layers -- ``Embedding`` plus the position table
(a constant), ``Dropout``, per block ``MultiHeadAttention(H, key_dim=E / H, dropout=p)`` with
``attention_mask`` (``(B, T, T)``, True = attend) from the lengths, ``Dropout``,
``LayerNormalization(epsilon=1e-5)``, ``Dense(F)``, the exact GELU
(``tf.nn.gelu(approximate=False)``; Keras' default is the tanh form), ``Dropout``, ``Dense(E)``,
``Dropout``, ``LayerNormalization`` (post-norm, torch's order), the masked mean, ``Dense(C)``;
``sparse_softmax_cross_entropy_with_logits`` and ``keras.optimizers.AdamW(weight_decay=0.01,
epsilon=1e-8)``. twinnn's ``(E, E)`` projections are reshaped to Keras' per-head kernels
``(E, H, E / H)`` (query, key, value) and ``(H, E / H, E)`` (output).

cnn: the same custom loop over Keras layers, channels last (NHWC, TensorFlow's layout and
twinnn's, so the weights load as they are) -- per convolution ``Conv2D(out, 3,
padding="same", activation="relu")`` and ``MaxPooling2D(2)``, ``Flatten``, ``Dense``;
``sparse_softmax_cross_entropy_with_logits`` and ``keras.optimizers.SGD(momentum=...)``.
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np
import tensorflow as tf

from benchmarks.workloads import Batch, Impl, Workload, sinusoidal_positions

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


class _Block:
    """One post-norm encoder block of Keras layers (torch's ``TransformerEncoderLayer``)."""

    def __init__(self, workload: Workload, w: dict[str, np.ndarray]) -> None:
        e, h, p = workload.in_features, workload.heads, workload.dropout
        d = e // h
        self.attention = keras.layers.MultiHeadAttention(h, d, dropout=p)
        self.attention.build((None, None, e), (None, None, e))
        self.attention.set_weights(
            [
                *(
                    a
                    for n in "qkv"
                    for a in (
                        w[f"self_attn.w_{n}"].reshape(e, h, d),
                        w[f"self_attn.b_{n}"].reshape(h, d),
                    )
                ),
                w["self_attn.w_o"].reshape(h, d, e),
                w["self_attn.b_o"],
            ]
        )
        self.linear1 = keras.layers.Dense(workload.hidden)
        self.linear2 = keras.layers.Dense(e)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5)
        for name, size in (
            ("linear1", e),
            ("linear2", workload.hidden),
            ("norm1", e),
            ("norm2", e),
        ):
            layer = getattr(self, name)
            layer.build((None, None, size))
            layer.set_weights([w[f"{name}.weight"], w[f"{name}.bias"]])
        self.drops = [keras.layers.Dropout(p) for _ in range(3)]
        self.layers = [self.attention, self.linear1, self.linear2, self.norm1, self.norm2]

    def __call__(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        drop1, drop, drop2 = self.drops
        attended = self.attention(x, x, attention_mask=mask, training=True)
        x = self.norm1(x + drop1(attended, training=True))
        hidden = drop(tf.nn.gelu(self.linear1(x), approximate=False), training=True)
        return self.norm2(x + drop2(self.linear2(hidden), training=True))


def _build_transformer(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]
) -> Impl:
    e = workload.in_features
    embed = keras.layers.Embedding(workload.vocab, e)
    embed.build((None, None))
    embed.set_weights([weights["embed.weight"]])
    positions = tf.constant(sinusoidal_positions(workload.time, e))
    drop = keras.layers.Dropout(workload.dropout)
    blocks = []
    for k in range(workload.layers):
        prefix = f"layers.{k}."
        w = {n[len(prefix) :]: v for n, v in weights.items() if n.startswith(prefix)}
        blocks.append(_Block(workload, w))
    head = keras.layers.Dense(workload.out_features)
    head.build((None, e))
    head.set_weights([weights["head.weight"], weights["head.bias"]])
    layers = [embed, *(layer for block in blocks for layer in block.layers), head]
    variables = [v for layer in layers for v in layer.trainable_variables]
    optimizer = keras.optimizers.AdamW(learning_rate=workload.lr, weight_decay=0.01, epsilon=1e-8)

    @tf.function  # type: ignore[untyped-decorator]
    def step(tokens: tf.Tensor, lengths: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        valid = tf.sequence_mask(lengths, tf.shape(tokens)[1])  # (B, T)
        mask = tf.tile(valid[:, None, :], [1, tf.shape(tokens)[1], 1])  # (B, Tq, Tk)
        with tf.GradientTape() as tape:
            x = drop(embed(tokens) + positions, training=True)
            for block in blocks:
                x = block(x, mask)
            counts = tf.cast(lengths, x.dtype)[:, None]
            pooled = tf.reduce_sum(x * tf.cast(valid, x.dtype)[..., None], axis=1) / counts
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=head(pooled))
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    native = [tuple(tf.constant(a) for a in batch) for batch in batches]
    last = variables[-1]
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.numpy()),
        sync=lambda: _read(last),
        notes=(
            "tf.function + GradientTape, Keras Embedding/MultiHeadAttention/LayerNormalization/"
            "Dense/Dropout, keras.optimizers.AdamW"
        ),
    )


def _build(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    if workload.kind == "lm":
        return _build_lm(workload, batches, weights)
    if workload.kind == "transformer":
        return _build_transformer(workload, batches, weights)
    if workload.kind == "cnn":
        return _build_cnn(workload, batches, weights)
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


def _build_cnn(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    layers: list[Any] = []
    shape: tuple[int | None, ...] = (None, workload.image, workload.image, workload.in_features)
    for k, out in enumerate(workload.channels, start=1):
        conv = keras.layers.Conv2D(out, 3, padding="same", activation="relu")
        conv.build(shape)
        conv.set_weights([weights[f"conv{k}.weight"], weights[f"conv{k}.bias"]])
        pool = keras.layers.MaxPooling2D(2)
        shape = tuple(pool.compute_output_shape(conv.compute_output_shape(shape)))
        layers += [conv, pool]
    flatten = keras.layers.Flatten()
    head = keras.layers.Dense(workload.out_features)
    head.build(flatten.compute_output_shape(shape))
    head.set_weights([weights["head.weight"], weights["head.bias"]])
    layers += [flatten, head]
    variables = [v for layer in layers for v in layer.trainable_variables]
    optimizer = keras.optimizers.SGD(learning_rate=workload.lr, momentum=workload.momentum)

    @tf.function  # type: ignore[untyped-decorator]
    def step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            x = images
            for layer in layers:
                x = layer(x)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    native = [tuple(tf.constant(a) for a in batch) for batch in batches]
    last = variables[-1]
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.numpy()),
        sync=lambda: _read(last),
        notes=(
            "tf.function + GradientTape, Keras Conv2D(same, relu)/MaxPooling2D/Flatten/Dense "
            "(NHWC), keras.optimizers.SGD(momentum)"
        ),
    )
