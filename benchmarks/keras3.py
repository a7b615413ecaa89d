"""Keras 3 on the worker's backend: a compiled ``keras.Model`` and ``train_on_batch``.

``KERAS_BACKEND`` is set by the parent before the worker starts (Keras reads it once, at
import). The LSTM model takes ``[x, lengths]`` and builds its mask from the lengths inside
the model (``arange(T) < lengths``), so Keras sees the same explicit mask as the native code.
``compile()`` keeps Keras' defaults (``jit_compile="auto"``), which is what a user gets.
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
import numpy as np

from benchmarks.workloads import Batch, Impl, Workload

__all__ = ["build"]


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
