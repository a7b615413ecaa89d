"""Hand-written TensorFlow data parallelism for the distributed benchmark:
``MultiWorkerMirroredStrategy``.

The custom training loop of TensorFlow's distributed-training guide: Keras layers built under
``strategy.scope()``, a ``tf.function`` that calls ``strategy.run(replica_step)``, and in the
replica step ``tf.GradientTape``, the per-example losses averaged with
``tf.nn.compute_average_loss(..., global_batch_size=...)`` (sum over this worker's slice
divided by the *global* count), ``replica_context.all_reduce(SUM, grads)``,
``tf.clip_by_global_norm`` of the summed gradients, and the SGD update ``v -= lr * g``
(``scatter_sub`` for the embedding's ``IndexedSlices`` gradient, as Keras' SGD does). The
update is written out because Keras 3's optimizer, called in a replica context, all-reduces
the gradients itself -- after a hand-written all-reduce that sums them twice, and without one
the clipping would see each worker's gradients only.

Models are :mod:`benchmarks.native_tf`'s: lstm -- Keras ``LSTM`` under
``mask=tf.sequence_mask(lengths)`` and ``Dense`` on its output; lm -- ``Embedding``,
``Dropout``, two ``LSTM(return_sequences, return_state)`` with a ``Dropout`` between, ``Dropout``,
``Dense``, the state carried as arguments.

The embedding's gradient is an ``IndexedSlices``, which the strategy all-reduces by gathering
the rows the slice used (not the dense ``(V, E)`` matrix). :func:`comm` all-reduces tensors
of the gradients' structure, so its time is this loop's communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np
import tensorflow as tf

from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build", "comm", "gather"]


def _sgd(variable: Any, grad: Any, lr: float) -> None:
    target = variable.value  # the tf.Variable (here a MirroredVariable) of a Keras Variable
    if isinstance(grad, tf.IndexedSlices):
        target.scatter_sub(tf.IndexedSlices(grad.values * lr, grad.indices, grad.dense_shape))
    else:
        target.assign_sub(grad * lr)


def _lm_layers(workload: Workload, weights: dict[str, np.ndarray]) -> tuple[Any, ...]:
    vocab, emb, hidden = workload.out_features, workload.in_features, workload.hidden
    encoder = keras.layers.Embedding(vocab, emb)
    encoder.build((None, None))
    encoder.set_weights([weights["encoder.weight"]])
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
    return encoder, keras.layers.Dropout(workload.dropout), rnns, decoder


def _lstm_layers(workload: Workload, weights: dict[str, np.ndarray]) -> tuple[Any, Any]:
    lstm = keras.layers.LSTM(workload.hidden)
    lstm.build((None, workload.time, workload.in_features))
    lstm.set_weights([weights["lstm.w_ih_l0"], weights["lstm.w_hh_l0"], weights["lstm.bias_l0"]])
    head = keras.layers.Dense(workload.out_features)
    head.build((None, workload.hidden))
    head.set_weights([weights["head.weight"], weights["head.bias"]])
    return lstm, head


def build(
    workload: Workload,
    batches: list[Batch],
    weights: dict[str, np.ndarray],
    strategy: Any,
    global_batch: int,
) -> Impl:
    """The loop for ``workload`` on this worker's ``batches`` (its shards; ``workload.batch``
    is the local batch, ``global_batch`` the global one). The step returns this worker's
    ``compute_average_loss`` (its part of the global mean: the ranks' values sum to it)."""
    local = strategy.experimental_local_results
    lr, clip = workload.lr, workload.clip_norm
    with strategy.scope():
        layers = (
            _lm_layers(workload, weights)
            if workload.kind == "lm"
            else _lstm_layers(workload, weights)
        )
    if workload.kind == "lm":
        encoder, drop, rnns, decoder = layers
        trainable = [encoder, *rnns, decoder]
    else:
        lstm, head = layers
        trainable = [lstm, head]
    variables = [v for layer in trainable for v in layer.trainable_variables]

    def update(loss: Any, tape: Any) -> None:
        grads = tape.gradient(loss, variables)
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if clip is not None:
            grads, _ = tf.clip_by_global_norm(grads, clip)
        for v, g in zip(variables, grads, strict=True):
            _sgd(v, g, lr)

    if workload.kind == "lm":
        tokens_count = global_batch * workload.time

        def replica_lm(tokens: Any, targets: Any, h: Any, c: Any) -> Any:
            with tf.GradientTape() as tape:
                x = drop(encoder(tokens), training=True)
                hs, cs = [], []
                for k, rnn in enumerate(rnns):
                    if k > 0:
                        x = drop(x, training=True)
                    x, hk, ck = rnn(x, initial_state=[h[k], c[k]], training=True)
                    hs.append(hk)
                    cs.append(ck)
                logits = decoder(drop(x, training=True))
                per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=targets, logits=logits
                )
                loss = tf.nn.compute_average_loss(per_token, global_batch_size=tokens_count)
            update(loss, tape)
            return loss, tf.stack(hs), tf.stack(cs)

        @tf.function  # type: ignore[untyped-decorator]
        def train_lm(tokens: Any, targets: Any, h: Any, c: Any) -> Any:
            out = strategy.run(replica_lm, args=(tokens, targets, h, c))
            return tuple(local(v)[0] for v in out)

        zeros = tf.zeros((workload.layers, workload.batch, workload.hidden))
        state = [zeros, zeros]

        def step(tokens: Any, targets: Any) -> Any:
            loss, state[0], state[1] = train_lm(tokens, targets, state[0], state[1])
            return loss

    else:

        def replica_lstm(x: Any, lengths: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1])
                per_example = tf.reduce_mean(tf.square(head(lstm(x, mask=mask)) - y), axis=-1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            update(loss, tape)
            return loss

        @tf.function  # type: ignore[untyped-decorator]
        def step(x: Any, lengths: Any, y: Any) -> Any:
            return local(strategy.run(replica_lstm, args=(x, lengths, y)))[0]

    native = [tuple(tf.constant(a) for a in batch) for batch in batches]
    shapes = [tuple(v.shape) for v in variables]
    sparse_rows = workload.batch * workload.time if workload.kind == "lm" else 0
    return Impl(
        step=step,
        batches=native,
        to_float=lambda loss: float(loss.numpy()),
        sync=lambda: None,
        notes=(
            "tf.function(strategy.run), MultiWorkerMirroredStrategy RING, "
            "compute_average_loss(global batch), all_reduce(SUM), clip_by_global_norm, SGD"
        ),
        extra={
            "parameters": int(sum(np.prod(s) for s in shapes)),
            "grad_shapes": shapes,
            "sparse_rows": sparse_rows,
        },
    )


def _run_all_reduce(strategy: Any, values: Sequence[Any]) -> Any:
    def replica(*xs: Any) -> Any:
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, xs)

    @tf.function  # type: ignore[untyped-decorator]
    def call() -> Any:
        return strategy.run(replica, args=tuple(values))

    return call


def comm(
    strategy: Any,
    size: int | None = None,
    shapes: Sequence[tuple[int, ...]] = (),
    sparse_rows: int = 0,
) -> Impl:
    """``all_reduce(SUM)`` in a compiled ``strategy.run``: of one float32 buffer of ``size``
    elements, or of tensors shaped ``shapes`` (the first one as an ``IndexedSlices`` of
    ``sparse_rows`` rows when ``sparse_rows``: an embedding's gradient)."""
    values: list[Any]
    if size is not None:
        values = [tf.zeros((size,))]
        notes = f"all_reduce of {size} floats"
    else:
        values = [tf.zeros(s) for s in shapes]
        if sparse_rows:
            rows, cols = shapes[0]
            values[0] = tf.IndexedSlices(
                tf.zeros((sparse_rows, cols)),
                tf.range(sparse_rows, dtype=tf.int64) % rows,
                tf.constant([rows, cols], tf.int64),
            )
        notes = f"all_reduce of the {len(shapes)} gradients (IndexedSlices: {sparse_rows} rows)"
    call = _run_all_reduce(strategy, values)
    return Impl(step=call, batches=[()], to_float=float, notes=notes)


def gather(strategy: Any) -> Impl:
    """One small collective in a compiled ``strategy.run``: ``all_gather`` of one int64."""

    def replica() -> Any:
        one = tf.ones((1,), tf.int64)
        return tf.distribute.get_replica_context().all_gather(one, axis=0)

    @tf.function  # type: ignore[untyped-decorator]
    def call() -> Any:
        return strategy.run(replica)

    return Impl(step=call, batches=[()], to_float=float, notes="all_gather of one int64")
