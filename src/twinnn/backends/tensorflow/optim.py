"""tensorflow backend: the SGD update on ``tf.Variable`` buffers (runs inside ``tf.function``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from twinnn.backends.tensorflow.core import device_scope


class TensorFlowSGD:
    """PyTorch's SGD formula (dampening 0); see :class:`twinnn.backends.base.SGDKernel`.

    The learning rate is a ``tf.Variable``: changing it between steps never retraces.
    """

    def __init__(
        self, params: Sequence[Any], lr: float, momentum: float, nesterov: bool, weight_decay: float
    ) -> None:
        self.params = list(params)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        with device_scope():
            self.lr = tf.Variable(float(lr), dtype=tf.float32, trainable=False, name="lr")
            # v starts at zero: momentum * 0 + g == g, torch's "v starts as g" without a branch.
            self.buffers: list[tf.Variable] | None = (
                [tf.Variable(tf.zeros_like(p), trainable=False) for p in self.params]
                if self.momentum != 0.0
                else None
            )

    def set_lr(self, lr: float) -> None:
        self.lr.assign(float(lr))

    def apply(self, grads: Sequence[Any]) -> None:
        lr = self.lr.read_value()
        for i, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            if self.weight_decay != 0.0:
                grad = grad + self.weight_decay * param
            update = grad
            if self.buffers is not None:
                buf = self.buffers[i]
                velocity = self.momentum * buf + grad
                buf.assign(velocity)
                update = grad + self.momentum * velocity if self.nesterov else velocity
            param.assign_sub(lr * update)

    def get_buffers(self) -> list[np.ndarray] | None:
        if self.buffers is None:
            return None
        return [np.array(b.numpy()) for b in self.buffers]

    def set_buffers(self, buffers: Sequence[np.ndarray]) -> None:
        if self.buffers is None:
            return
        for buf, value in zip(self.buffers, buffers, strict=True):
            buf.assign(np.asarray(value, dtype=np.float32))


def make_sgd(
    params: Sequence[Any], lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> TensorFlowSGD:
    return TensorFlowSGD(params, lr, momentum, nesterov, weight_decay)
