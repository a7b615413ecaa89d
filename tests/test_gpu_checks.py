"""Value checks read after the backward pass (the torch GPU path), exercised on the CPU.

On a GPU, torch's value checks (ids, targets, lengths, weights) are collected during a step and
read in one host transfer before the update (``backends/torch/checks.py``). Here the host read
is declared costly for every tensor, so the CPU takes that same path: a bad value must raise
the same error as the immediate check, change no parameter or optimizer slot, and never reach
an index out of bounds first; valid inputs must give the same bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors

pytestmark = pytest.mark.backends("torch")


class Tagger(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = tn.Embedding(12, 4)
        self.rnn = tn.LSTM(4, 5)
        self.head = tn.Linear(5, 3)

    def forward(self, ids: Any, lengths: Any) -> Any:
        out, _ = self.rnn(self.embed(ids), lengths=lengths)
        return self.head(tn.ops.sum(out, axis=1))


def _batch(ids_fix: int = 1, length_fix: int = 4) -> tuple[np.ndarray, ...]:
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, ids_fix]])
    return ids, np.array([3, length_fix]), np.array([0, 2])


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check takes the GPU path."""
    from twinnn.backends.torch import checks

    monkeypatch.setattr(checks, "read_is_free", lambda x: False)


def _trained(steps: int) -> tuple[list[float], dict[str, np.ndarray]]:
    tn.seed(3)
    model = Tagger()
    step = tn.train_step(model, tn.cross_entropy, tn.Adam(model, lr=0.01))
    losses = [float(step(*_batch())) for _ in range(steps)]
    return losses, model.state_dict()


def test_valid_input_gives_the_same_bits(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at_once = _trained(3)
    from twinnn.backends.torch import checks

    monkeypatch.setattr(checks, "read_is_free", lambda x: False)
    later = _trained(3)
    assert later[0] == at_once[0]
    for name, value in at_once[1].items():
        np.testing.assert_array_equal(later[1][name], value, err_msg=name)


@pytest.mark.parametrize(
    ("batch", "error", "pattern"),
    [
        (_batch(ids_fix=12), errors.ArgumentError, r"'ids' must hold ids in \[0, 12\)"),
        (_batch(ids_fix=-3), errors.ArgumentError, r"'ids' must hold ids in \[0, 12\)"),
        (
            _batch(length_fix=9),
            errors.ArgumentError,
            r"'lengths' must be in \[0, 4\].*got values \[9\]",
        ),
        (_batch(length_fix=-1), errors.ArgumentError, r"'lengths' must be in \[0, 4\]"),
        ((*_batch()[:2], np.array([0, 3])), errors.ArgumentError, "target"),
        # the first check made in the forward pass is the one reported
        (_batch(ids_fix=99, length_fix=9), errors.ArgumentError, "'ids' must hold ids"),
    ],
)
def test_a_bad_value_raises_after_the_backward_pass_and_changes_nothing(
    backend: str, deferred: None, batch: tuple[np.ndarray, ...], error: type, pattern: str
) -> None:
    tn.seed(3)
    model = Tagger()
    opt = tn.Adam(model, lr=0.01)
    step = tn.train_step(model, tn.cross_entropy, opt)
    step(*_batch())
    before, slots = model.state_dict(), str(opt.state_dict())
    with pytest.raises(error, match=pattern):
        step(*batch)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert str(opt.state_dict()) == slots
    step(*_batch())  # the step goes on working


def test_eval_step_reads_its_checks_too(backend: str, deferred: None) -> None:
    model = Tagger()
    evaluate = tn.eval_step(model, tn.cross_entropy)
    evaluate(*_batch())
    with pytest.raises(errors.ArgumentError, match=r"'lengths' must be in \[0, 4\]"):
        evaluate(*_batch(length_fix=5))


def test_outside_a_step_a_check_is_read_at_once(backend: str, deferred: None) -> None:
    layer = tn.Embedding(12, 4)
    with pytest.raises(errors.ArgumentError, match=r"'ids' must hold ids in \[0, 12\)"):
        layer(np.array([0, 12]))
