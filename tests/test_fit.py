"""``twinnn.fit``: the history it returns, callbacks, the progress bar and argument checks."""

from __future__ import annotations

import importlib
import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import reference
import twinnn
from twinnn import backends as registry
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError, TwinnnError

fit_module = importlib.import_module("twinnn.fit")  # `twinnn.fit` is the function


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Four mini-batches of a 3 -> 2 regression, batch sizes 5, 3, 4, 1."""
    rng = np.random.default_rng(3)
    out = []
    for size in (5, 3, 4, 1):
        x = rng.standard_normal((size, 3)).astype(np.float32)
        out.append((x, (x @ [[1.0, -2.0], [0.5, 0.0], [2.0, 1.0]]).astype(np.float32) + 0.3))
    return out


def _linear_setup(lr: float = 0.1) -> tuple[twinnn.Linear, Any]:
    twinnn.seed(0)
    model = twinnn.Linear(3, 2)
    return model, twinnn.train_step(model, twinnn.mse_loss, twinnn.SGD(model, lr=lr))


def _float_step(values: list[float]) -> Any:
    """A step returning the given Python floats in turn (no framework involved)."""
    it = iter(values)
    return lambda *batch: next(it)


# --- history -------------------------------------------------------------------------------------
def test_history_matches_numpy_sgd_and_a_manual_loop(backend: str) -> None:
    batches = _batches()
    model, step = _linear_setup()
    weight, bias = model.state_dict()["weight"], model.state_dict()["bias"]
    history = twinnn.fit(step, batches, epochs=3, progress=False)

    # independent reference: the same mini-batch SGD in NumPy float64
    ref_opt = reference.SGD(lr=0.1)
    params = [weight.astype(np.float64), bias.astype(np.float64)]
    expected = []
    for _ in range(3):
        for x, y in batches:
            loss, g_w, g_b = reference.linear_mse_grads(x, y, params[0], params[1])
            expected.append(loss)
            params = ref_opt.step(params, [g_w, g_b])
    np.testing.assert_allclose(history.losses, expected, rtol=2e-5, atol=1e-6)

    # fit records exactly what the step returned: a hand-written loop gives the same floats
    _, step2 = _linear_setup()
    manual = [float(twinnn.to_numpy(step2(*b))) for _ in range(3) for b in batches]
    assert history.losses == manual
    assert all(type(v) is float for v in history.losses)
    assert history.steps_per_epoch == [4, 4, 4]
    assert history.epoch_losses == [math.fsum(manual[i : i + 4]) / 4 for i in (0, 4, 8)]
    assert history.epoch(1) == manual[4:8]
    assert history.losses[-1] < history.losses[0]  # it trained


def test_fit_gives_the_same_history_on_both_backends(both_backends: list[str]) -> None:
    histories = []
    for name in both_backends:
        twinnn.set_backend(name)
        _, step = _linear_setup()
        histories.append(twinnn.fit(step, _batches(), epochs=3, progress=False))
    first, second = histories
    assert len(first.losses) == len(second.losses) == 12
    np.testing.assert_allclose(first.losses, second.losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.epoch_losses, second.epoch_losses, rtol=1e-5, atol=1e-6)
    assert first.steps_per_epoch == second.steps_per_epoch


def test_losses_reach_the_host_in_bulk(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without callbacks or a bar, an epoch's losses are copied to the host together (one
    transfer per epoch, or per ``_MAX_PENDING`` steps), not once per step."""
    impl = registry.load(backend)
    calls = []
    original = impl.to_numpy
    monkeypatch.setattr(impl, "to_numpy", lambda x: calls.append(1) or original(x))
    batches = _batches() * 3  # 12 steps an epoch
    _, step = _linear_setup()
    history = twinnn.fit(step, batches, epochs=2, progress=False)
    assert len(calls) == 2
    monkeypatch.setattr(fit_module, "_MAX_PENDING", 5)
    calls.clear()
    _, step2 = _linear_setup()
    chunked = twinnn.fit(step2, batches, epochs=2, progress=False)
    assert len(calls) == 6  # 5 + 5 + 2 per epoch
    assert chunked.losses == history.losses


# --- batches -------------------------------------------------------------------------------------
def test_callable_batches_are_called_once_per_epoch() -> None:
    calls = []

    def epoch_batches() -> Iterator[tuple[int]]:
        calls.append(len(calls))
        yield from [(1,), (2,)]

    history = twinnn.fit(lambda b: float(b), epoch_batches, epochs=3, progress=False)
    assert calls == [0, 1, 2]
    assert history.losses == [1.0, 2.0] * 3
    assert history.epoch_losses == [1.5, 1.5, 1.5]


def test_one_shot_iterator_works_for_one_epoch() -> None:
    history = twinnn.fit(lambda a, b: a * b, iter([(2.0, 3.0), [1.0, 4.0]]), progress=False)
    assert history.losses == [6.0, 4.0]


# --- callbacks -----------------------------------------------------------------------------------
def test_callbacks_get_epoch_step_index_and_float_loss() -> None:
    seen: list[tuple[int, int, float]] = []
    also: list[float] = []
    values = [float(v) for v in range(6)]
    twinnn.fit(
        _float_step(values),
        [(0,), (0,), (0,)],
        epochs=2,
        progress=False,
        callbacks=[
            lambda e, i, loss: seen.append((e, i, loss)),
            lambda e, i, loss: also.append(loss),
        ],
    )
    assert seen == [(0, 0, 0.0), (0, 1, 1.0), (0, 2, 2.0), (1, 0, 3.0), (1, 1, 4.0), (1, 2, 5.0)]
    assert also == values


def test_callback_loss_is_the_native_loss_as_float(backend: str) -> None:
    seen: list[Any] = []
    _, step = _linear_setup()
    history = twinnn.fit(
        step, _batches(), progress=False, callbacks=lambda e, i, loss: seen.append(loss)
    )
    assert all(type(v) is float for v in seen)
    assert seen == history.losses


# --- progress bar --------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_output_when_stdout_is_not_a_terminal(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, step = _linear_setup()
    twinnn.fit(step, _batches(), epochs=2)  # progress=True by default
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_shows_the_epoch_loss_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_module, "_REFRESH_S", 0.0)  # refresh the loss at every step
    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    twinnn.fit(_float_step([1.0, 2.0, 6.0, 4.0]), [(0,), (0,)], epochs=2)
    text = terminal.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "2/2" in text
    assert "loss=1.5" in text and "loss=5" in text  # the epochs' means

    quiet = _Terminal()
    monkeypatch.setattr("sys.stdout", quiet)
    twinnn.fit(_float_step([1.0]), [(0,)], progress=False)
    assert quiet.getvalue() == ""


# --- bad arguments -------------------------------------------------------------------------------
def _gen() -> Iterator[tuple[int]]:
    yield (1,)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"epochs": 0}, ArgumentError, ["fit(epochs)", "> 0", "0"]),
        ({"epochs": 2.0}, ArgumentTypeError, ["fit(epochs)", "int", "float"]),
        ({"epochs": True}, ArgumentTypeError, ["fit(epochs)", "bool"]),
        ({"batches": 5}, ArgumentTypeError, ["fit(batches)", "iterable", "int"]),
        ({"batches": iter([(1,), (2,)]), "epochs": 2}, ArgumentError, ["one-shot", "epochs=2"]),
        ({"batches": _gen(), "epochs": 3}, ArgumentError, ["one-shot", "generator"]),
        ({"batches": lambda: 7}, ArgumentTypeError, ["fit(batches)", "iterable", "int"]),
        ({"batches": []}, ArgumentError, ["no batches", "epoch 0"]),
        ({"batches": [np.zeros(2)]}, ArgumentTypeError, ["batch 0", "tuple", "ndarray"]),
        ({"step": "step"}, ArgumentTypeError, ["fit(step)", "callable", "str"]),
        ({"callbacks": [print, 1]}, ArgumentTypeError, ["fit(callbacks)", "callable"]),
        ({"progress": "yes"}, ArgumentTypeError, ["fit(progress)", "bool", "str"]),
        ({"step": lambda x: "high"}, ArgumentTypeError, ["fit(step)", "loss", "str"]),
    ],
)
def test_bad_arguments_raise_twinnn_errors(
    kwargs: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    arguments: dict[str, Any] = {"step": lambda x: 1.0, "batches": [(1,)], "progress": False}
    arguments.update(kwargs)
    with pytest.raises(error) as info:
        twinnn.fit(**arguments)
    assert isinstance(info.value, TwinnnError)
    for word in words:
        assert word in str(info.value)


def test_a_loss_of_another_kind_midway_is_an_error(backend: str) -> None:
    losses = iter([twinnn.tensor(1.0), 2.0])
    with pytest.raises(
        ArgumentTypeError, match=f"returned a {backend} tensor first, then a builtins.float"
    ):
        twinnn.fit(lambda x: next(losses), [(0,), (0,)], progress=False)


def test_a_non_scalar_loss_is_a_shape_error(backend: str) -> None:
    with pytest.raises(ShapeError, match=r"scalar loss, got shape \(2,\)"):
        twinnn.fit(lambda x: twinnn.tensor([1.0, 2.0]), [(0,)], progress=False)
