"""Initialisers, all drawn from twinnn's NumPy generator so values never depend on the backend.

Each draws in float64 and rounds to float32 once, so the same seed gives bit-identical
weights on both backends. Presets (the ``init=`` argument of every layer):

* ``"default"`` / ``"keras"``: Keras' defaults (Glorot-uniform kernels, orthogonal recurrent
  kernels, zero biases, LSTM forget-gate bias 1).
* ``"torch"``: PyTorch's defaults (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for Linear weight
  and bias; ``U(-1/sqrt(H), 1/sqrt(H))`` for every LSTM tensor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from twinnn import config
from twinnn.errors import ArgumentError

__all__ = [
    "PRESETS",
    "check_preset",
    "glorot_uniform",
    "normal",
    "orthogonal",
    "uniform",
    "zeros",
]

PRESETS = ("default", "keras", "torch")


def check_preset(init: object, layer: str) -> str:
    """Validate an ``init=`` argument; ``"default"`` maps to ``"keras"``."""
    if init not in PRESETS:
        raise ArgumentError(f"{layer}(init=...) must be one of {list(PRESETS)}, got {init!r}")
    return "keras" if init == "default" else str(init)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def uniform(shape: Sequence[int], bound: float) -> np.ndarray:
    """``U(-bound, bound)``."""
    return _f32(config.generator().uniform(-bound, bound, size=tuple(shape)))


def normal(shape: Sequence[int], std: float = 1.0) -> np.ndarray:
    """``N(0, std**2)``."""
    return _f32(std * config.generator().standard_normal(size=tuple(shape)))


def glorot_uniform(shape: Sequence[int]) -> np.ndarray:
    """Glorot uniform for a ``(fan_in, fan_out)`` kernel: ``limit = sqrt(6 / (in + out))``."""
    fan_in, fan_out = shape[0], shape[-1]
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)))


def orthogonal(shape: Sequence[int], gain: float = 1.0) -> np.ndarray:
    """Keras' ``Orthogonal``: QR of a standard normal matrix, signs fixed by ``diag(R)``.

    For ``(rows, cols)`` with ``rows < cols`` the rows are orthonormal (``W @ W.T = I``).
    """
    rows = int(np.prod(shape[:-1]))
    cols = int(shape[-1])
    flat = (max(rows, cols), min(rows, cols))
    a = config.generator().standard_normal(size=flat)
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _f32(gain * q.reshape(tuple(shape)))


def zeros(shape: Sequence[int]) -> np.ndarray:
    return np.zeros(tuple(shape), dtype=np.float32)
