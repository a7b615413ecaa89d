"""Keras 3 on the worker's backend: a compiled ``keras.Model`` and ``train_on_batch``.

``KERAS_BACKEND`` is set by the parent before the worker starts (Keras reads it once, at
import). The LSTM model takes ``[x, lengths]`` and builds its mask from the lengths inside
the model (``arange(T) < lengths``), so Keras sees the same explicit mask as the native code.
``compile()`` keeps Keras' defaults (``jit_compile="auto"``), which is what a user gets.

lm: a functional model ``Embedding -> Dropout -> LSTM -> Dropout -> LSTM -> Dropout -> Dense``
on ``keras.Input(batch_shape=(B, T))``, compiled with ``SGD(lr, global_clipnorm=0.25)`` and
``SparseCategoricalCrossentropy(from_logits=True)``. The state is carried the Keras way, with
``LSTM(stateful=True)``: each layer keeps its final state in non-trainable variables and starts
the next batch from them (no gradient flows into the previous batch: truncated BPTT, as the
native code). ``train_on_batch`` returns no outputs, so the carry cannot go through the
step's arguments as in the native code; ``stateful=True`` is the documented alternative. On
torch the layers need ``use_cudnn=False`` (Keras 3.15's fused path updates the state in place
and the backward pass fails: keras-team/keras#20875, #23462), which runs Keras' generic
per-step loop; on TensorFlow the default is kept (the same loop on a CPU). One
difference that does not touch the first loss: Keras clips with ``g * c / max(norm, c)``,
torch and twinnn with ``g * c / (norm + 1e-6)`` when ``norm > c``.

transformer: a functional model on ``[tokens, lengths]`` with the layers of the native
TensorFlow code (:mod:`benchmarks.native_tf`: ``Embedding`` plus the position table,
``MultiHeadAttention`` with an ``attention_mask`` built from the lengths inside the model,
``LayerNormalization(epsilon=1e-5)``, ``Dense`` with the exact GELU, ``Dropout``, post-norm),
compiled with ``AdamW(weight_decay=0.01, epsilon=1e-8)`` and
``SparseCategoricalCrossentropy(from_logits=True)``.

cnn: a functional model on channels-last images with the layers of the native TensorFlow
code (``Conv2D(out, 3, padding="same", activation="relu")``, ``MaxPooling2D(2)``, ``Flatten``,
``Dense``), compiled with ``SGD(momentum=...)`` and
``SparseCategoricalCrossentropy(from_logits=True)``. (On torch Keras keeps the model channels
last and transposes to torch's NCHW inside each convolution and pooling call.)
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np

from benchmarks.workloads import Batch, Impl, Workload, sinusoidal_positions

__all__ = ["build"]


def _lm_model(workload: Workload, weights: dict[str, np.ndarray]) -> keras.Model:
    tokens = keras.Input(batch_shape=(workload.batch, workload.time), dtype="int64")
    encoder = keras.layers.Embedding(workload.out_features, workload.in_features)
    x = keras.layers.Dropout(workload.dropout)(encoder(tokens))
    rnns = []
    for k in range(workload.layers):
        if k > 0:
            x = keras.layers.Dropout(workload.dropout)(x)
        # On torch, Keras 3.15's fused LSTM path updates the stateful state in place and the
        # backward pass fails (keras-team/keras#20875, #23462); use_cudnn=False is the
        # workaround those threads give (the generic loop, which copies the state first).
        lstm = keras.layers.LSTM(
            workload.hidden,
            return_sequences=True,
            stateful=True,
            use_cudnn=False if keras.backend.backend() == "torch" else "auto",
        )
        x = lstm(x)
        rnns.append(lstm)
    x = keras.layers.Dropout(workload.dropout)(x)
    decoder = keras.layers.Dense(workload.out_features)
    model = keras.Model(tokens, decoder(x))
    encoder.set_weights([weights["encoder.weight"]])
    for k, lstm in enumerate(rnns):
        lstm.set_weights(
            [weights[f"rnn.w_ih_l{k}"], weights[f"rnn.w_hh_l{k}"], weights[f"rnn.bias_l{k}"]]
        )
    decoder.set_weights([weights["decoder.weight"], weights["decoder.bias"]])
    return model


def _build_lm(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    model = _lm_model(workload, weights)
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=workload.lr, global_clipnorm=workload.clip_norm
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    convert = keras.ops.convert_to_tensor
    native = [tuple(convert(a) for a in batch) for batch in batches]

    def step(tokens: Any, targets: Any) -> Any:
        return model.train_on_batch(tokens, targets)

    return Impl(
        step=step,
        batches=native,
        to_float=float,
        notes=(
            f"keras {keras.__version__} ({keras.backend.backend()}), compile() + "
            "train_on_batch, LSTM(stateful=True) carries the state"
        ),
    )


def _transformer_model(workload: Workload, weights: dict[str, np.ndarray]) -> keras.Model:
    e, h, t, p = workload.in_features, workload.heads, workload.time, workload.dropout
    d = e // h
    ops = keras.ops
    tokens = keras.Input((t,), dtype="int64")
    lengths = keras.Input((), dtype="int64")
    valid = ops.less(ops.expand_dims(ops.arange(t), 0), ops.expand_dims(lengths, 1))  # (B, T)
    mask = ops.repeat(ops.expand_dims(valid, 1), t, axis=1)  # (B, Tq, Tk), True = attend
    embed = keras.layers.Embedding(workload.vocab, e)
    x = keras.layers.Dropout(p)(embed(tokens) + sinusoidal_positions(t, e))
    loads: list[tuple[Any, list[np.ndarray]]] = [(embed, [weights["embed.weight"]])]
    for k in range(workload.layers):
        w = {
            n[len(f"layers.{k}.") :]: v for n, v in weights.items() if n.startswith(f"layers.{k}.")
        }
        attention = keras.layers.MultiHeadAttention(h, d, dropout=p)
        linear1, linear2 = keras.layers.Dense(workload.hidden), keras.layers.Dense(e)
        norm1 = keras.layers.LayerNormalization(epsilon=1e-5)
        norm2 = keras.layers.LayerNormalization(epsilon=1e-5)
        attended = attention(x, x, attention_mask=mask)
        x = norm1(x + keras.layers.Dropout(p)(attended))
        hidden = keras.layers.Dropout(p)(ops.gelu(linear1(x), approximate=False))
        x = norm2(x + keras.layers.Dropout(p)(linear2(hidden)))
        projections = [
            a
            for n in "qkv"
            for a in (w[f"self_attn.w_{n}"].reshape(e, h, d), w[f"self_attn.b_{n}"].reshape(h, d))
        ]
        loads.append(
            (attention, [*projections, w["self_attn.w_o"].reshape(h, d, e), w["self_attn.b_o"]])
        )
        for layer, name in (
            (linear1, "linear1"),
            (linear2, "linear2"),
            (norm1, "norm1"),
            (norm2, "norm2"),
        ):
            loads.append((layer, [w[f"{name}.weight"], w[f"{name}.bias"]]))
    counts = ops.expand_dims(ops.cast(lengths, "float32"), 1)
    pooled = ops.sum(x * ops.expand_dims(ops.cast(valid, "float32"), -1), axis=1) / counts
    head = keras.layers.Dense(workload.out_features)
    model = keras.Model([tokens, lengths], head(pooled))
    loads.append((head, [weights["head.weight"], weights["head.bias"]]))
    for layer, values in loads:
        layer.set_weights(values)
    return model


def _build_transformer(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]
) -> Impl:
    model = _transformer_model(workload, weights)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=workload.lr, weight_decay=0.01, epsilon=1e-8
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    convert = keras.ops.convert_to_tensor
    native = [tuple(convert(a) for a in batch) for batch in batches]

    def step(tokens: Any, lengths: Any, labels: Any) -> Any:
        return model.train_on_batch([tokens, lengths], labels)

    return Impl(
        step=step,
        batches=native,
        to_float=float,
        notes=(
            f"keras {keras.__version__} ({keras.backend.backend()}), compile() + "
            "train_on_batch, MultiHeadAttention(attention_mask)"
        ),
    )


def _model(workload: Workload) -> tuple[keras.Model, list[np.ndarray]]:
    if workload.kind == "linear":
        x = keras.Input((workload.in_features,))
        model = keras.Model(x, keras.layers.Dense(workload.out_features)(x))
        return model, []
    x = keras.Input((workload.time, workload.in_features))
    lengths = keras.Input((), dtype="int64")
    mask = keras.ops.less(
        keras.ops.expand_dims(keras.ops.arange(workload.time), 0),
        keras.ops.expand_dims(lengths, 1),
    )
    h = keras.layers.LSTM(workload.hidden)(x, mask=mask)
    y = keras.layers.Dense(workload.out_features)(h)
    return keras.Model([x, lengths], y), []


def build(
    workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray], device: str
) -> Impl:
    del device  # Keras places everything on the backend's default device
    if workload.kind == "lm":
        return _build_lm(workload, batches, weights)
    if workload.kind == "transformer":
        return _build_transformer(workload, batches, weights)
    if workload.kind == "cnn":
        return _build_cnn(workload, batches, weights)
    model, _ = _model(workload)
    optimizer = (
        keras.optimizers.Adam(learning_rate=workload.lr, global_clipnorm=workload.clip_norm)
        if workload.optimizer == "adam"
        else keras.optimizers.SGD(learning_rate=workload.lr)
    )
    model.compile(optimizer=optimizer, loss="mse")
    if workload.kind == "linear":
        model.set_weights([weights["weight"], weights["bias"]])
    else:
        model.set_weights(
            [
                weights["lstm.w_ih_l0"],
                weights["lstm.w_hh_l0"],
                weights["lstm.bias_l0"],
                weights["head.weight"],
                weights["head.bias"],
            ]
        )
    convert = keras.ops.convert_to_tensor
    native = [tuple(convert(a) for a in batch) for batch in batches]
    step: Any
    if workload.kind == "linear":

        def step(x: Any, y: Any) -> Any:
            return model.train_on_batch(x, y)

    else:

        def step(x: Any, lengths: Any, y: Any) -> Any:
            return model.train_on_batch([x, lengths], y)

    return Impl(
        step=step,
        batches=native,
        to_float=float,
        notes=f"keras {keras.__version__} ({keras.backend.backend()}), compile() + train_on_batch",
    )


def _build_cnn(workload: Workload, batches: list[Batch], weights: dict[str, np.ndarray]) -> Impl:
    images = keras.Input((workload.image, workload.image, workload.in_features))
    x = images
    convs = []
    for out in workload.channels:
        conv = keras.layers.Conv2D(out, 3, padding="same", activation="relu")
        x = keras.layers.MaxPooling2D(2)(conv(x))
        convs.append(conv)
    head = keras.layers.Dense(workload.out_features)
    model = keras.Model(images, head(keras.layers.Flatten()(x)))
    for k, conv in enumerate(convs, start=1):
        conv.set_weights([weights[f"conv{k}.weight"], weights[f"conv{k}.bias"]])
    head.set_weights([weights["head.weight"], weights["head.bias"]])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=workload.lr, momentum=workload.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    convert = keras.ops.convert_to_tensor
    native = [tuple(convert(a) for a in batch) for batch in batches]

    def step(x: Any, y: Any) -> Any:
        return model.train_on_batch(x, y)

    return Impl(
        step=step,
        batches=native,
        to_float=float,
        notes=(
            f"keras {keras.__version__} ({keras.backend.backend()}), compile() + train_on_batch, "
            "Conv2D(same, relu)/MaxPooling2D/Flatten/Dense (channels last)"
        ),
    )
