"""Updates that write over the step's own gradients (``TensorVector.scale_``): the same bits
as the out-of-place formula, never a user's tensor overwritten, never two gradients that share
memory scaled twice."""

from __future__ import annotations

import numpy as np
import pytest

import twinnn as tn


def test_scale_is_the_product_bit_for_bit(backend: str) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2, 2))]
    from twinnn import config

    vec = config.current().vector
    expected = [tn.to_numpy(t) for t in vec([tn.tensor(a) for a in arrays]).__mul__(0.3).as_list()]
    got = [tn.to_numpy(t) for t in vec([tn.tensor(a) for a in arrays]).scale_(0.3).as_list()]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.backends("torch")
def test_torch_scales_in_place_only_what_it_may(backend: str) -> None:
    import torch

    from twinnn.backends.torch.optim import vector

    a, b = torch.ones(4), torch.ones(3)
    v = vector([a, b])
    assert v.scale_(2.0) is v and a[0].item() == 2.0  # dense and disjoint: in place
    shared = torch.ones(6)
    halves = vector([shared[:3], shared[3:]])  # one buffer, no overlap: in place
    assert halves.scale_(3.0) is halves and shared.sum().item() == 18.0
    same = torch.ones(3)
    twice = vector([same, same])  # one tensor twice: scaling in place would scale it twice
    out = twice.scale_(2.0)
    assert out is not twice and same.sum().item() == 3.0
    assert [t.tolist() for t in out.as_list()] == [[2.0] * 3, [2.0] * 3]
    expanded = torch.ones(1).expand(5)  # the stride-0 gradient of a sum
    assert vector([expanded]).scale_(2.0).as_list()[0].tolist() == [2.0] * 5
    base = torch.ones(3, 2)
    transposed = base.t()  # dense, not contiguous (an LSTM weight's gradient): in place
    mixed = vector([transposed, torch.ones(1).expand(2)]).scale_(5.0).as_list()
    assert mixed[0] is transposed and base.sum().item() == 30.0
    assert mixed[1].tolist() == [5.0, 5.0]


def test_apply_gradients_leaves_the_callers_gradients_alone(backend: str) -> None:
    model = tn.Linear(3, 2)
    optimizer = tn.SGD(model, lr=0.5)
    grads = [tn.tensor(np.full(p.shape, 2.0, np.float32)) for p in model.parameters()]
    before = [tn.to_numpy(p).copy() for p in model.parameters()]
    optimizer.apply_gradients(grads)
    for g in grads:
        np.testing.assert_array_equal(tn.to_numpy(g), 2.0)  # not scaled by lr in place
    for p, b in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(tn.to_numpy(p), b - np.float32(0.5) * np.float32(2.0))
