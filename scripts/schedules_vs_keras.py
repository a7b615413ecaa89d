"""The figures of docs/schedules.md's "Keras' schedules" table: twinnn's schedules (torch's
values) against Keras' closest schedules, over 200 updates, in float32.

Run: ``python scripts/schedules_vs_keras.py`` (needs keras; TensorFlow's is fine).
``tests/test_schedules.py::test_keras_comparison_table`` holds the table to these numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable
from typing import Any

import numpy as np

import twinnn.schedules as S


def compare(keras_schedule: Callable[[int], Any], ours: S.Schedule, n: int = 200) -> dict[str, Any]:
    """How many float32 values differ, the largest difference in ulp, the first k that differs."""
    theirs = np.array([float(keras_schedule(k)) for k in range(n)], dtype=np.float32)
    mine = np.array([ours(k) for k in range(n)], dtype=np.float64).astype(np.float32)
    ulps = np.abs(theirs.view(np.int32).astype(np.int64) - mine.view(np.int32).astype(np.int64))
    differ = theirs != mine
    return {
        "differ": int(differ.sum()),
        "n": n,
        "max_ulp": int(ulps.max()),
        "first": int(np.argmax(differ)) if differ.any() else None,
    }


def rows() -> dict[str, dict[str, Any]]:
    from keras.optimizers import schedules as K

    halves = [0.1 * 0.5**i for i in range(71)]
    cosine = (K.CosineDecay(0.1, 100, alpha=0.01), S.CosineAnnealingLR(0.1, 100, 1e-3))
    return {
        "StepLR vs ExponentialDecay(staircase)": compare(
            K.ExponentialDecay(0.1, 3, 0.5, staircase=True), S.StepLR(0.1, 3, 0.5)
        ),
        "StepLR vs PiecewiseConstantDecay([2, 5, ...])": compare(
            K.PiecewiseConstantDecay([2 + 3 * i for i in range(70)], halves), S.StepLR(0.1, 3, 0.5)
        ),
        "StepLR vs PiecewiseConstantDecay([3, 6, ...])": compare(
            K.PiecewiseConstantDecay([3 + 3 * i for i in range(70)], halves), S.StepLR(0.1, 3, 0.5)
        ),
        "MultiStepLR vs PiecewiseConstantDecay([9, 49])": compare(
            K.PiecewiseConstantDecay([9, 49], [0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]),
            S.MultiStepLR(0.1, [10, 50]),
        ),
        "ExponentialLR vs ExponentialDecay": compare(
            K.ExponentialDecay(0.1, 1, 0.97), S.ExponentialLR(0.1, 0.97)
        ),
        "CosineAnnealingLR(0.1, 10) vs CosineDecay, k <= 10": compare(
            K.CosineDecay(0.1, 10), S.CosineAnnealingLR(0.1, 10), n=11
        ),
        "CosineAnnealingLR(0.1, 100, 1e-3) vs CosineDecay, k <= 100": compare(*cosine, n=101),
        "LinearLR vs PolynomialDecay(power=1)": compare(
            K.PolynomialDecay(0.1 * 0.1, 50, 0.1 * 1.0, power=1.0), S.LinearLR(0.1, 0.1, 1.0, 50)
        ),
    }


if __name__ == "__main__":
    for name, row in rows().items():
        print(f"{name:60s} {row}")
