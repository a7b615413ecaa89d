"""mse_loss: reductions, weights and the no-silent-broadcast rule, against NumPy float64."""

from __future__ import annotations

import numpy as np
import pytest

import reference
import twinnn as tn
from twinnn import errors


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions(backend: str, reduction: str) -> None:
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 6, 2)).astype(np.float32)
    target = rng.standard_normal((4, 6, 2)).astype(np.float32)
    out = tn.to_numpy(tn.mse_loss(pred, target, reduction=reduction))
    np.testing.assert_allclose(out, reference.mse(pred, target, reduction), rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sequence_mask_weight_averages_over_valid_steps(backend: str, reduction: str) -> None:
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((3, 5, 2)).astype(np.float32)
    target = rng.standard_normal((3, 5, 2)).astype(np.float32)
    lengths = np.array([5, 2, 0])
    mask = tn.to_numpy(tn.sequence_mask(lengths, 5))[..., None]  # (B, T, 1)
    expected_mask = (np.arange(5)[None, :] < lengths[:, None]).astype(np.float32)[..., None]
    np.testing.assert_array_equal(mask, expected_mask)
    out = tn.to_numpy(tn.mse_loss(pred, target, reduction=reduction, weight=mask))
    np.testing.assert_allclose(out, reference.mse(pred, target, reduction, mask), rtol=1e-5)
    if reduction == "mean":
        valid = ((pred - target) ** 2)[lengths[:, None] > np.arange(5)[None, :]]
        np.testing.assert_allclose(out, valid.mean(), rtol=1e-5)


def test_weight_denominator_is_broadcast_weight_sum_not_element_count(backend: str) -> None:
    pred = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    target = np.zeros((4, 1), np.float32)
    weight = np.array([[1.0], [0.0], [0.0], [1.0]], np.float32)
    # (1 + 16) / 2, where Keras' sum_over_batch_size would give (1 + 16) / 4
    assert float(tn.to_numpy(tn.mse_loss(pred, target, weight=weight))) == pytest.approx(8.5)


def test_n1_against_n_is_an_error_not_an_nxn_broadcast(backend: str) -> None:
    with pytest.raises(errors.ShapeError, match=r"'target'.*\(8, 1\).*got \(8,\)") as info:
        tn.mse_loss(np.zeros((8, 1)), np.zeros(8))
    assert isinstance(info.value, ValueError)


def test_bad_weight_shape_and_reduction(backend: str) -> None:
    with pytest.raises(errors.ShapeError, match=r"'weight'.*\(4, 3\).*got \(5,\)"):
        tn.mse_loss(np.zeros((4, 3)), np.zeros((4, 3)), weight=np.ones(5))
    with pytest.raises(errors.ArgumentError, match=r"reduction.*'avg'"):
        tn.mse_loss(np.zeros(3), np.zeros(3), reduction="avg")
