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
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    NonFiniteLossError,
    ShapeError,
    TwinnnError,
)

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


# --- validation and metrics ----------------------------------------------------------------------
def _val_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out batches of the same regression, sizes 6, 1, 2: unequal, so weighting matters."""
    rng = np.random.default_rng(11)
    out = []
    for size in (6, 1, 2):
        x = rng.standard_normal((size, 3)).astype(np.float32)
        out.append((x, (x @ [[1.0, -2.0], [0.5, 0.0], [2.0, 1.0]]).astype(np.float32) - 0.2))
    return out


def _tensor_pair_step(scale: float = 1.0) -> Any:
    """A step returning ``(loss, outputs)`` as native tensors without a model: the loss is
    ``mean(x)`` and the outputs ``scale * x[:, :2]`` (shaped like the target)."""
    return lambda x, y: (twinnn.tensor(float(np.mean(x))), twinnn.tensor(x[:, :2] * scale))


def dot(outputs: Any, target: Any) -> Any:
    """A small metric: the mean of ``outputs * target`` over every element (native)."""
    return twinnn.mean(outputs * twinnn.tensor(target))


def _weighted(values: list[float], counts: list[int]) -> float:
    return float(np.dot(np.asarray(values, np.float64), counts) / np.sum(counts))


def test_validation_loss_is_the_mean_over_validation_examples(backend: str) -> None:
    """Each epoch's val_loss is the batches' mse weighted by their sizes, i.e. the mse over
    every validation example, with the weights after that epoch (NumPy float64 reference)."""
    model, step = _linear_setup()
    weight, bias = model.state_dict()["weight"], model.state_dict()["bias"]
    val = _val_batches()
    history = twinnn.fit(
        step, _batches(), epochs=3, validation=(twinnn.eval_step(model, twinnn.mse_loss), val),
        progress=False,
    )  # fmt: skip

    ref_opt = reference.SGD(lr=0.1)
    params = [weight.astype(np.float64), bias.astype(np.float64)]
    x_all = np.concatenate([x for x, _ in val]).astype(np.float64)
    y_all = np.concatenate([y for _, y in val]).astype(np.float64)
    expected, unweighted = [], []
    for _ in range(3):
        for x, y in _batches():
            _, g_w, g_b = reference.linear_mse_grads(x, y, params[0], params[1])
            params = ref_opt.step(params, [g_w, g_b])
        expected.append(float(np.mean((x_all @ params[0] + params[1] - y_all) ** 2)))
        unweighted.append(
            float(np.mean([reference.linear_mse_grads(x, y, *params)[0] for x, y in val]))
        )
    np.testing.assert_allclose(history.val_losses, expected, rtol=2e-5, atol=1e-6)
    # the weighting is visible: the plain mean of the batch losses is far from it
    assert np.min(np.abs(np.subtract(unweighted, expected)) / np.abs(expected)) > 1e-2
    assert all(type(v) is float for v in history.val_losses)
    assert history.metrics == {}
    assert len(history.losses) == 12  # training is unchanged by validation


def test_validation_gives_the_same_numbers_on_both_backends(both_backends: list[str]) -> None:
    results = []
    for name in both_backends:
        with twinnn.use_backend(name):
            model, step = _linear_setup()
            val = (twinnn.eval_step(model, twinnn.mse_loss), _val_batches())
            results.append(twinnn.fit(step, _batches(), epochs=2, validation=val, progress=False))
    first, second = results
    np.testing.assert_allclose(first.val_losses, second.val_losses, rtol=1e-5, atol=1e-6)


def test_metrics_are_weighted_by_batch_size_on_train_and_validation(backend: str) -> None:
    train, val = _batches(), _val_batches()

    def val_step(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return twinnn.tensor(float(np.mean(y))), twinnn.tensor(x[:, :2] * 2.0)

    history = twinnn.fit(
        _tensor_pair_step(),
        lambda: iter(train),
        epochs=2,
        validation=(val_step, val),
        metrics={"dot": dot},
        progress=False,
    )

    def weighted_dot(batches: list[Any], scale: float) -> float:
        per_batch = [float(np.mean(scale * x[:, :2].astype(np.float64) * y)) for x, y in batches]
        sizes = [len(y) for _, y in batches]
        overall = np.mean(
            np.concatenate([scale * x[:, :2].astype(np.float64) * y for x, y in batches])
        )
        assert _weighted(per_batch, sizes) == pytest.approx(overall, rel=1e-12)
        assert abs(np.mean(per_batch) - overall) > 1e-2 * abs(overall)  # weighting matters
        return float(overall)

    assert list(history.metrics) == ["dot", "val_dot"]
    np.testing.assert_allclose(history.metrics["dot"], [weighted_dot(train, 1.0)] * 2, rtol=1e-5)
    np.testing.assert_allclose(history.metrics["val_dot"], [weighted_dot(val, 2.0)] * 2, rtol=1e-5)
    val_means = [float(np.mean(y.astype(np.float64))) for _, y in val]
    expected_loss = _weighted(val_means, [len(y) for _, y in val])
    np.testing.assert_allclose(history.val_losses, [expected_loss] * 2, rtol=1e-6)
    assert history.epoch_losses[0] == pytest.approx(  # the training loss stays a plain mean
        np.mean([np.float32(np.mean(x)) for x, _ in train]), rel=1e-6
    )


def test_metrics_as_a_list_are_named_by_function_name(backend: str) -> None:
    def count(outputs: Any, target: Any) -> float:  # a Python number is a fine metric value
        return float(len(target))

    history = twinnn.fit(
        _tensor_pair_step(), _batches(), metrics=[dot, count], progress=False
    )  # no validation: training metrics only
    assert list(history.metrics) == ["dot", "count"]
    sizes = [len(y) for _, y in _batches()]
    assert history.metrics["count"] == [pytest.approx(_weighted(sizes, sizes))]
    assert history.val_losses == []


def test_metric_values_reach_the_host_with_the_losses(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metric values stay native until the losses are copied: one transfer per epoch for the
    training steps and one per validation pass, however many metrics and batches."""
    impl = registry.load(backend)
    calls = []
    original = impl.to_numpy
    monkeypatch.setattr(impl, "to_numpy", lambda x: calls.append(1) or original(x))
    seen: list[Any] = []

    def spy(outputs: Any, target: Any) -> Any:
        value = dot(outputs, target)
        seen.append(value)
        return value

    twinnn.fit(
        _tensor_pair_step(),
        _batches() * 3,
        epochs=2,
        validation=(_tensor_pair_step(), _val_batches()),
        metrics={"a": spy, "b": lambda out, y: twinnn.mean(out)},
        progress=False,
    )
    assert len(calls) == 4  # (training + validation) x 2 epochs
    assert len(seen) == 2 * (12 + 3) and all(impl.is_native(v) for v in seen)


def test_validation_batches_may_be_a_function_called_each_epoch(backend: str) -> None:
    calls = []

    def val_batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        calls.append(1)
        yield from _val_batches()

    history = twinnn.fit(
        _tensor_pair_step(), _batches(), epochs=3,
        validation=(_tensor_pair_step(), val_batches), progress=False,
    )  # fmt: skip
    assert len(calls) == 3 and len(history.val_losses) == 3


def test_callbacks_keep_working_with_validation_and_metrics(backend: str) -> None:
    seen: list[tuple[int, int, float]] = []
    history = twinnn.fit(
        _tensor_pair_step(),
        _batches(),
        epochs=2,
        validation=(_tensor_pair_step(), _val_batches()),
        metrics=[dot],
        callbacks=lambda e, i, loss: seen.append((e, i, loss)),
        progress=False,
    )
    assert [(e, i) for e, i, _ in seen] == [(e, i) for e in range(2) for i in range(4)]
    assert [loss for _, _, loss in seen] == history.losses
    assert len(history.metrics["dot"]) == len(history.metrics["val_dot"]) == 2


def test_a_non_finite_validation_loss_stops_fit(backend: str) -> None:
    def val_step(x: np.ndarray, y: np.ndarray) -> Any:
        return twinnn.tensor(math.inf if len(y) == 1 else 1.0)

    with pytest.raises(
        NonFiniteLossError, match=r"validation loss is inf at epoch 0 validation batch 1"
    ):
        twinnn.fit(
            _tensor_pair_step(), _batches(), epochs=2, validation=(val_step, _val_batches()),
            progress=False,
        )  # fmt: skip
    history = twinnn.fit(
        _tensor_pair_step(), _batches(), epochs=2, validation=(val_step, _val_batches()),
        progress=False, check_finite=False,
    )  # fmt: skip
    assert history.val_losses == [math.inf, math.inf]


def test_progress_bar_shows_validation_and_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_module, "_REFRESH_S", 0.0)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    ones = [(np.ones((2, 1)), np.ones((2, 1))), (np.ones((1, 1)), np.ones((1, 1)))]

    def step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return 3.0, x * 0.25

    def val_step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return float(len(y)), x * 0.5  # val_loss = (2*2 + 1*1) / 3

    def mean_out(outputs: np.ndarray, target: np.ndarray) -> float:
        return float(np.mean(outputs))

    twinnn.fit(step, ones, validation=(val_step, ones), metrics=[mean_out])
    text = terminal.getvalue()
    assert "loss=3, mean_out=0.25, val_loss=1.66667, val_mean_out=0.5" in text


def test_twinnn_accuracy_as_a_metric(backend: str) -> None:
    accuracy = getattr(twinnn, "accuracy", None)
    if accuracy is None:
        pytest.skip("twinnn.accuracy is not there yet")
    logits = [
        np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], np.float32),
        np.eye(2, dtype=np.float32),
    ]
    targets = [np.array([0, 1, 1]), np.array([1, 1])]  # 2 of 3 right, then 1 of 2
    batches = list(zip(logits, targets, strict=True))
    history = twinnn.fit(
        lambda x, y: (twinnn.tensor(0.0), twinnn.tensor(x)), batches,
        validation=(lambda x, y: (twinnn.tensor(0.0), twinnn.tensor(x)), batches),
        metrics={"accuracy": accuracy}, progress=False,
    )  # fmt: skip
    assert history.metrics["accuracy"] == [pytest.approx(3 / 5)]
    assert history.metrics["val_accuracy"] == [pytest.approx(3 / 5)]


def _val_of(step: Any) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    return step, [(np.ones((2, 1)), np.ones((2, 1)))]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (
            {"validation": lambda x, y: 1.0},
            ArgumentTypeError,
            ["fit(validation)", "pair", "function"],
        ),
        (
            {"validation": (print, [(1,)], 3)},
            ArgumentTypeError,
            ["fit(validation)", "pair", "3 elements"],
        ),
        ({"validation": ("step", [(1,)])}, ArgumentTypeError, ["val_step", "callable", "str"]),
        ({"validation": (print, 5)}, ArgumentTypeError, ["val_batches", "iterable", "int"]),
        (
            {"validation": (print, iter([(1,)])), "epochs": 2},
            ArgumentError,
            ["val_batches", "one-shot"],
        ),
        (
            {"validation": (lambda x: 1.0, [])},
            ArgumentError,
            ["val_batches", "no batches", "epoch 0"],
        ),
        (
            {"validation": (lambda x: 1.0, [np.ones(2)])},
            ArgumentTypeError,
            ["validation batch 0", "tuple", "ndarray"],
        ),
        (
            {"validation": (lambda x: 1.0, [(1.0,)])},
            ShapeError,
            ["validation batch 0", "batch dim", "()"],
        ),
        (
            {"validation": (lambda x: (1.0, 2.0, 3.0), [(np.ones(2),)])},
            ArgumentTypeError,
            ["val_step", "(loss, outputs)", "3 elements"],
        ),
        ({"metrics": 5}, ArgumentTypeError, ["fit(metrics)", "dict", "int"]),
        ({"metrics": {"acc": 1}}, ArgumentTypeError, ["fit(metrics)", "'acc'", "callable", "int"]),
        ({"metrics": {1: dot}}, ArgumentTypeError, ["fit(metrics)", "names", "1"]),
        ({"metrics": [dot, "acc"]}, ArgumentTypeError, ["fit(metrics)", "str", "'acc'"]),
        ({"metrics": [lambda o, t: 1.0]}, ArgumentError, ["fit(metrics)", "<lambda>", "dict"]),
        ({"metrics": [dot, dot]}, ArgumentError, ["fit(metrics)", "two metrics", "'dot'"]),
        ({"metrics": {"loss": dot}}, ArgumentError, ["fit(metrics)", "'loss'", "taken"]),
        ({"metrics": {"val_dot": dot}}, ArgumentError, ["fit(metrics)", "'val_dot'", "taken"]),
        (
            {"metrics": [dot]},
            ArgumentError,
            ["fit(metrics)", "outputs", "loss alone", "outputs=True"],
        ),
        (
            {"metrics": [dot], "validation": _val_of(lambda x, y: 1.0)},
            ArgumentError,
            ["fit(metrics)", "val_step", "loss alone", "eval_step(model, loss_fn, outputs=True)"],
        ),
        (
            {"step": lambda: (1.0, 2.0), "batches": [()], "metrics": [dot]},
            ArgumentError,
            ["fit(batches): epoch 0 batch 0", "empty", "target"],
        ),
        (
            {"step": lambda x: (1.0, x), "batches": [(1.0,)], "metrics": [dot]},
            ShapeError,
            ["fit(batches): epoch 0 batch 0", "batch dim", "()"],
        ),
        (
            {"step": lambda x, y: (1.0, 2.0, 3.0)},
            ArgumentTypeError,
            ["fit(step)", "(loss, outputs)", "3 elements"],
        ),
    ],
)
def test_bad_validation_and_metrics_raise_twinnn_errors(
    kwargs: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    arguments: dict[str, Any] = {
        "step": lambda x, y: 1.0,
        "batches": [(np.ones((2, 1)), np.ones((2, 1)))],
        "progress": False,
    }
    arguments.update(kwargs)
    with pytest.raises(error) as info:
        twinnn.fit(**arguments)
    assert isinstance(info.value, TwinnnError)
    for word in words:
        assert word in str(info.value)


def test_bad_metric_values_raise_twinnn_errors(backend: str) -> None:
    val = _val_of(_tensor_pair_step())
    with pytest.raises(ShapeError, match=r"metric 'raw' must return a scalar, got shape \(2, 1\)"):
        twinnn.fit(
            _tensor_pair_step(), [val[1][0]], metrics={"raw": lambda o, t: o}, progress=False
        )
    with pytest.raises(ArgumentTypeError, match=r"metric 'word' must return a scalar native"):
        twinnn.fit(
            _tensor_pair_step(), [val[1][0]], validation=val,
            metrics={"word": lambda o, t: "high"}, progress=False,
        )  # fmt: skip
    outputs_then_not = iter([(twinnn.tensor(1.0), twinnn.tensor([[1.0]])), twinnn.tensor(2.0)])
    with pytest.raises(ArgumentTypeError, match=r"\(loss, outputs\) at first, then a loss alone"):
        twinnn.fit(
            lambda x, y: next(outputs_then_not), [val[1][0]] * 2, metrics=[dot], progress=False
        )


def test_real_steps_with_outputs_train_and_validate_a_classifier(backend: str) -> None:
    """``train_step``/``eval_step(..., outputs=True)`` with ``twinnn.accuracy``: every number
    in the history against NumPy float64, from the weights before each step (train metrics)
    and after each epoch (validation)."""
    rng = np.random.default_rng(5)

    def make(sizes: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            (rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)) for n in sizes
        ]

    train, val = make((7, 2, 5)), make((4, 1, 6))
    twinnn.seed(0)
    model = twinnn.Linear(4, 3)
    optimizer = twinnn.SGD(model, lr=0.5)
    states = [model.state_dict()]
    history = twinnn.fit(
        twinnn.train_step(model, twinnn.cross_entropy, optimizer, outputs=True),
        train,
        epochs=2,
        validation=(twinnn.eval_step(model, twinnn.cross_entropy, outputs=True), val),
        metrics={"accuracy": twinnn.accuracy},
        callbacks=lambda e, i, loss: states.append(model.state_dict()),
        progress=False,
    )

    def scores(state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        logits = x.astype(np.float64) @ state["weight"] + state["bias"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]
        return nll, (logits.argmax(axis=1) == y).astype(np.float64)

    sizes = [len(y) for _, y in train]
    for epoch in range(2):
        per_step = [scores(states[epoch * 3 + i], x, y) for i, (x, y) in enumerate(train)]
        np.testing.assert_allclose(
            history.epoch(epoch), [nll.mean() for nll, _ in per_step], rtol=1e-5, atol=1e-6
        )
        train_acc = _weighted([right.mean() for _, right in per_step], sizes)
        after = states[(epoch + 1) * 3]
        pairs = [scores(after, x, y) for x, y in val]
        nll_val = np.concatenate([nll for nll, _ in pairs])
        right_val = np.concatenate([right for _, right in pairs])
        assert history.metrics["accuracy"][epoch] == pytest.approx(train_acc, rel=1e-6)
        assert history.metrics["val_accuracy"][epoch] == pytest.approx(right_val.mean(), rel=1e-6)
        assert history.val_losses[epoch] == pytest.approx(nll_val.mean(), rel=2e-5)
    assert list(history.metrics) == ["accuracy", "val_accuracy"]
