"""Bad inputs to steps, losses, optimisers, modules and fit: each gives the documented
``twinnn.errors`` class with a message naming the argument, identical on both backends, and
changes nothing (parameters and momentum buffers stay bit-identical).

Step cases run three ways: the default step (eager torch, compiled ``tf.function`` on
TensorFlow, where the failing dims are ``None`` while tracing), ``eager=True``, and
``jit=True`` on TensorFlow (XLA; torch.compile is covered by one slow case).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import config, errors

RNG = np.random.default_rng(7)
X = RNG.standard_normal((4, 3)).astype(np.float32)
Y = RNG.standard_normal((4, 1)).astype(np.float32)


class Regressor(tn.Module):
    """``Linear(3, 1)``; ``forward(x)``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = tn.Linear(3, 1)

    def forward(self, x: Any) -> Any:
        return self.head(x)


class WithUnused(Regressor):
    def __init__(self) -> None:
        super().__init__()
        self.spare = tn.parameter(np.ones((2,), np.float32))


class Tagger(tn.Module):
    """LSTM over ``(B, T, 3)`` with lengths, then a head on the last state: ``(B, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = tn.LSTM(3, 4)
        self.head = tn.Linear(4, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, (h, _) = self.lstm(x, lengths)
        return self.head(h[0])


def weighted_target_loss(pred: Any, target: Any) -> Any:
    """``target`` is ``(B, 2)``: the regression target and a per-example weight."""
    return tn.mse_loss(pred, target[:, :1], weight=target[:, 1:])


@dataclass(frozen=True)
class StepCase:
    id: str
    error: type[Exception]
    match: str
    args: Callable[[], tuple[Any, ...]]
    model: type[tn.Module] = Regressor
    loss: Callable[[Any, Any], Any] = tn.mse_loss
    value_check: bool = False  # a check on tensor values: XLA drops graph assertions


SEQ_X = RNG.standard_normal((4, 5, 3)).astype(np.float32)
LENGTHS = np.array([5, 2, 0, 3])

STEP_CASES = [
    StepCase(
        "target-batch-1",
        errors.ShapeError,
        r"^mse_loss: 'target' must have the shape of 'pred' \(4, 1\), got \(1, 1\) \(twinnn "
        r"does not broadcast",
        lambda: (X, Y[:1]),
    ),
    StepCase(
        "target-rank",
        errors.ShapeError,
        r"^mse_loss: 'target' must have the shape of 'pred' \(4, 1\), got \(4,\)",
        lambda: (X, Y[:, 0]),
    ),
    StepCase(
        "target-wider",
        errors.ShapeError,
        r"^mse_loss: 'target' must have the shape of 'pred' \(4, 1\), got \(4, 2\)",
        lambda: (X, np.concatenate([Y, Y], axis=1)),
    ),
    StepCase(
        "empty-batch",
        errors.ArgumentError,
        r"^step\(\*inputs, target\): args\[0\] has an empty batch, shape \(0, 3\)",
        lambda: (X[:0], Y[:0]),
    ),
    StepCase(
        "one-argument-too-many",
        errors.ArgumentTypeError,
        r"^step\(\*inputs, target\) got 2 input\(s\) and a target, but Regressor.forward\(x",
        lambda: (X, X, Y),
    ),
    StepCase(
        "target-missing",
        errors.ArgumentError,
        r"^step\(\*inputs, target\) needs at least 2 arguments, got 1",
        lambda: (X,),
    ),
    StepCase(
        "weight-batch",
        errors.ShapeError,
        r"^mse_loss: 'weight' must broadcast to the shape of 'pred' \(4, 1\), got \(3, 1\)$",
        lambda: (X, Y),
        loss=lambda p, t: tn.mse_loss(p, t, weight=np.ones((3, 1), np.float32)),
    ),
    StepCase(
        "weight-negative-host",
        errors.ArgumentError,
        r"^mse_loss: 'weight' must be >= 0 everywhere",
        lambda: (X, Y),
        loss=lambda p, t: tn.mse_loss(p, t, weight=-np.ones((4, 1), np.float32)),
    ),
    StepCase(
        "weight-negative-tensor",
        errors.ArgumentError,
        r"^mse_loss: 'weight' must be >= 0 everywhere",
        lambda: (X, np.concatenate([Y, -np.ones_like(Y)], axis=1)),
        loss=weighted_target_loss,
        value_check=True,
    ),
    StepCase(
        "weight-rank",
        errors.ShapeError,
        r"^mse_loss: 'weight' must broadcast to the shape of 'pred' \(4, 1\), got \(1, 4, 1\)",
        lambda: (X, Y),
        loss=lambda p, t: tn.mse_loss(p, t, weight=np.ones((1, 4, 1), np.float32)),
    ),
    StepCase(
        "loss-is-a-float",
        errors.ArgumentTypeError,
        r"^loss_fn must return a scalar native tensor .* got builtins.float 0.5",
        lambda: (X, Y),
        loss=lambda p, t: 0.5,
    ),
    StepCase(
        "loss-not-scalar",
        errors.ShapeError,
        r"^loss_fn must return a scalar, got shape \(4, 1\)$",
        lambda: (X, Y),
        loss=lambda p, t: tn.mse_loss(p, t, reduction="none"),
    ),
    StepCase(
        "no-gradient-path",
        errors.GradientError,
        r"^train_step: the loss has no gradient path to the parameters \['head.weight', "
        r"'head.bias'\] .* allow_unused=True",
        lambda: (X, Y),
        loss=lambda p, t: tn.mse_loss(t, t * 2.0),
    ),
    StepCase(
        "unused-parameter",
        errors.GradientError,
        r"^train_step: the loss has no gradient path to the parameters \['spare'\]",
        lambda: (X, Y),
        model=WithUnused,
    ),
    StepCase(
        "lengths-batch",
        errors.ShapeError,
        r"^LSTM.forward: argument 'lengths' must have shape \(batch,\), one length per sequence "
        r"of x \(4, 5, 3\), got \(3,\)$",
        lambda: (SEQ_X, LENGTHS[:3], Y),
        model=Tagger,
    ),
    StepCase(
        "lengths-range",
        errors.ArgumentError,
        r"^LSTM.forward: argument 'lengths' must be in \[0, 5\] \(0 <= len <= time of x\), got "
        r"values \[7, -1\]$",
        lambda: (SEQ_X, np.array([5, 7, -1, 3]), Y),
        model=Tagger,
        value_check=True,
    ),
]

MODES = ["default", "eager", "jit"]


def _state(model: tn.Module, optimizer: tn.SGD) -> dict[str, np.ndarray]:
    state = {f"model/{k}": v for k, v in model.state_dict().items()}
    for name, slots in optimizer.state_dict()["state"].items():
        state.update({f"optimizer/{slot}/{name}": np.array(v) for slot, v in slots.items()})
    return state


def _assert_unchanged(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def _run_case(case: StepCase, mode: str) -> str:
    """Build the case's model, take one good step (non-zero momentum buffers), then the bad
    one; check the error and that nothing changed. Returns the error message."""
    tn.seed(0)
    model = case.model()
    optimizer = tn.SGD(model, lr=0.1, momentum=0.9)
    options = {"eager": mode == "eager", "jit": mode == "jit"}
    warm_up = tn.train_step(model, tn.mse_loss, optimizer, allow_unused=True, **options)
    warm_up(*((SEQ_X, LENGTHS, Y) if case.model is Tagger else (X, Y)))
    step = tn.train_step(model, case.loss, optimizer, **options)
    before = _state(model, optimizer)
    with pytest.raises(case.error, match=case.match) as info:
        step(*case.args())
    assert type(info.value) is case.error
    _assert_unchanged(before, _state(model, optimizer))
    return str(info.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.id)
def test_bad_step_input(backend: str, case: StepCase, mode: str) -> None:
    if mode == "jit" and backend == "torch":
        pytest.skip("torch.compile is slow to start: covered by test_bad_step_input_torch_compile")
    if mode == "jit" and case.value_check:
        pytest.skip("XLA drops graph assertions: value checks do not run under jit=True on TF")
    _run_case(case, mode)


@pytest.mark.slow
def test_bad_step_input_torch_compile() -> None:
    if "torch" not in tn.backends.installed_frameworks():  # type: ignore[attr-defined]
        pytest.skip("torch is not installed")
    tn.set_backend("torch")
    for case in STEP_CASES[:2]:
        _run_case(case, "jit")


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: c.id)
def test_bad_step_input_same_message_on_both_backends(
    both_backends: list[str], case: StepCase
) -> None:
    messages = {}
    for name in both_backends:
        tn.set_backend(name)
        messages[name] = _run_case(case, "default")
    assert messages["torch"] == messages["tensorflow"]


def test_eval_step_checks_too(backend: str) -> None:
    model = Regressor()
    step = tn.eval_step(model, tn.mse_loss)
    with pytest.raises(errors.ShapeError, match=r"\(4, 1\), got \(1, 1\)"):
        step(X, Y[:1])
    with pytest.raises(errors.ArgumentError, match="empty batch"):
        step(X[:0], Y[:0])


def test_allow_unused_trains_the_rest(backend: str) -> None:
    model = WithUnused()
    spare = tn.to_numpy(model.spare).copy()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1), allow_unused=True)
    weight = tn.to_numpy(model.head.weight).copy()
    step(X, Y)
    np.testing.assert_array_equal(tn.to_numpy(model.spare), spare)
    assert not np.array_equal(tn.to_numpy(model.head.weight), weight)
    with pytest.raises(errors.ArgumentTypeError, match="allow_unused must be a bool"):
        tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1), allow_unused="yes")  # type: ignore[arg-type]


def test_optimizer_of_another_model_is_refused(backend: str) -> None:
    model, other = Regressor(), Regressor()
    before = other.state_dict()
    with pytest.raises(
        errors.ArgumentError, match=r"train_step\(optimizer\) must update .*'head.weight'"
    ):
        tn.train_step(model, tn.mse_loss, tn.SGD(other, lr=0.1))
    _assert_unchanged(before, other.state_dict())
    # a subset of the model's parameters is fine (fine-tuning the head only)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.head.named_parameters(), lr=0.1))
    step(X, Y)


def test_integer_targets_and_inputs_are_cast(backend: str) -> None:
    model = Regressor()
    step = tn.eval_step(model, tn.mse_loss)
    ints = np.arange(12).reshape(4, 3) % 4
    as_float = float(tn.to_numpy(step(ints.astype(np.float32), np.ones((4, 1), np.float32))))
    assert float(tn.to_numpy(step(ints, np.ones((4, 1), np.int64)))) == as_float
    assert float(tn.to_numpy(step(ints.tolist(), [[1]] * 4))) == as_float
    native = tn.tensor(ints, dtype="int32")
    assert float(tn.to_numpy(step(native, tn.tensor(np.ones((4, 1)), dtype="int64")))) == as_float


# --- SGD -----------------------------------------------------------------------------------------
def _trained_sgd() -> tuple[Regressor, tn.SGD]:
    tn.seed(0)
    model = Regressor()
    optimizer = tn.SGD(model, lr=0.1, momentum=0.9)
    tn.train_step(model, tn.mse_loss, optimizer)(X, Y)
    return model, optimizer


SGD_CASES: list[tuple[str, type[Exception], str, Callable[[tn.Module], Any]]] = [
    ("count", errors.ArgumentError, r"needs 2 gradients, got 1", lambda m: [np.ones((3, 1))]),
    (
        "shape",
        errors.ShapeError,
        r"grads\[1\] \(for parameter 'head.bias'\) must have shape \(1,\), got \(2,\)",
        lambda m: [np.ones((3, 1)), np.ones(2)],
    ),
    (
        "float64",
        errors.DTypeError,
        r"'grads\[0\]' must be float32",
        lambda m: [tn.tensor(np.ones((3, 1)), dtype="float64"), np.ones(1)],
    ),
    ("string", errors.DTypeError, r"'grads\[1\]'", lambda m: [np.ones((3, 1)), "abc"]),
    ("none", errors.ArgumentTypeError, r"'grads\[0\]'", lambda m: [None, np.ones(1)]),
    (
        "not-a-list",
        errors.ArgumentTypeError,
        r"apply_gradients\(grads\) must be a list",
        lambda m: "ab",
    ),
]


@pytest.mark.parametrize(
    ("name", "error", "match", "grads"), SGD_CASES, ids=[c[0] for c in SGD_CASES]
)
def test_bad_gradients_change_nothing(
    backend: str, name: str, error: type[Exception], match: str, grads: Callable[[tn.Module], Any]
) -> None:
    model, optimizer = _trained_sgd()
    before = _state(model, optimizer)
    with pytest.raises(error, match=match):
        optimizer.apply_gradients(grads(model))
    _assert_unchanged(before, _state(model, optimizer))


def test_numpy_gradients_equal_native_ones(backend: str) -> None:
    grads = [RNG.standard_normal((3, 1)).astype(np.float32), np.ones(1, np.float32)]
    results = []
    for as_native in (False, True):
        model, optimizer = _trained_sgd()
        optimizer.apply_gradients([tn.tensor(g) for g in grads] if as_native else grads)
        results.append(model.state_dict())
    for key in results[0]:
        np.testing.assert_array_equal(results[0][key], results[1][key])


def test_parameter_listed_twice_is_refused(backend: str) -> None:
    model = Regressor()
    weight = model.head.weight
    with pytest.raises(
        errors.ArgumentError, match=r"lists the same parameter twice \('0' and '1'\)"
    ):
        tn.SGD([weight, weight], lr=0.1)
    with pytest.raises(errors.ArgumentError, match="same parameter twice"):
        tn.SGD([("a", weight), ("b", weight)], lr=0.1)


# --- Module --------------------------------------------------------------------------------------
class Stack(tn.Module):
    def __init__(self, value: Callable[[], Any]) -> None:
        super().__init__()
        self.layers = value()

    def forward(self, x: Any) -> Any:
        return x


MODULE_CASES: list[tuple[str, Callable[[], Any], str]] = [
    ("list-of-modules", lambda: [tn.Linear(2, 2), tn.Linear(2, 2)], "list holding a Module"),
    ("tuple-of-modules", lambda: (tn.Linear(2, 2),), "tuple holding a Module"),
    ("dict-of-parameters", lambda: {"w": tn.parameter(np.ones(2))}, "dict holding a parameter"),
    ("nested", lambda: [[1, 2], {"deep": [tn.Linear(2, 2)]}], "list holding a Module"),
]


@pytest.mark.parametrize(("name", "value", "match"), MODULE_CASES, ids=[c[0] for c in MODULE_CASES])
def test_unregistrable_attributes_are_refused(
    backend: str, name: str, value: Callable[[], Any], match: str
) -> None:
    with pytest.raises(
        errors.ModuleError, match=rf"cannot assign 'layers': a plain Python {match}"
    ):
        Stack(value)


def test_plain_containers_without_layers_are_fine(backend: str) -> None:
    assert Stack(lambda: [1, 2.0, "a", np.ones(3)]).named_parameters() == []


def test_parameter_of_the_other_backend_is_refused(both_backends: list[str]) -> None:
    tn.set_backend("tensorflow")
    foreign = tn.parameter(np.ones(2))
    tn.set_backend("torch")
    model = Regressor()
    with pytest.raises(errors.BackendMismatchError, match=r"cannot assign 'extra'.*'torch'"):
        model.extra = foreign
    assert [n for n, _ in model.named_parameters()] == ["head.weight", "head.bias"]


def test_module_without_forward(backend: str) -> None:
    class NoForward(tn.Module):
        pass

    with pytest.raises(errors.ModuleError, match="NoForward was called but defines no forward"):
        NoForward()(X)


def test_every_error_is_a_builtin_subclass() -> None:
    for cls in errors.BY_NAME.values():
        assert issubclass(cls, (ValueError, TypeError)), cls
    assert issubclass(errors.NonFiniteLossError, ValueError)


# --- losses --------------------------------------------------------------------------------------
def test_all_zero_weight_gives_zero_and_zero_gradients(backend: str) -> None:
    model = Regressor()
    optimizer = tn.SGD(model, lr=0.1)
    weights = np.zeros((4, 1), np.float32)
    step = tn.train_step(model, weighted_target_loss, optimizer)
    before = model.state_dict()
    loss = step(X, np.concatenate([Y, weights], axis=1))
    assert float(tn.to_numpy(loss)) == 0.0
    _assert_unchanged(before, model.state_dict())


def test_mean_of_nothing_is_an_error(backend: str) -> None:
    with pytest.raises(errors.ShapeError, match=r"'pred' has no elements \(shape \(0, 1\)\)"):
        tn.mse_loss(np.zeros((0, 1)), np.zeros((0, 1)))
    assert float(tn.to_numpy(tn.mse_loss(np.zeros((0, 1)), np.zeros((0, 1)), "sum"))) == 0.0


def test_weighted_mean_divides_by_the_broadcast_weight(backend: str) -> None:
    """A ``(B, T, 1)`` mask against ``(B, T, F)`` errors: the divisor is the mask broadcast to
    the elements (F per valid step), not the mask's own sum -- against float64 NumPy."""
    pred = RNG.standard_normal((3, 5, 4))
    target = RNG.standard_normal((3, 5, 4))
    mask = (np.arange(5)[None, :, None] < np.array([5, 2, 0])[:, None, None]).astype(np.float64)
    expected = np.sum(mask * (pred - target) ** 2) / np.sum(np.broadcast_to(mask, pred.shape))
    got = float(tn.to_numpy(tn.mse_loss(pred, target, weight=mask)))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.isclose(expected, np.sum(mask * (pred - target) ** 2) / np.sum(mask))


# --- fit -----------------------------------------------------------------------------------------
def test_fit_stops_on_a_non_finite_loss(backend: str) -> None:
    seen: list[int] = []

    def step(i: int) -> Any:
        seen.append(i)
        return tn.tensor(float("nan") if len(seen) == 7 else 1.0)  # epoch 1, step 2

    batches = [(i,) for i in range(4)]
    with pytest.raises(
        errors.NonFiniteLossError, match=r"loss is nan at epoch 1 step 2 \(both from 0\)"
    ):
        tn.fit(step, batches, epochs=2, progress=False)
    seen.clear()
    history = tn.fit(step, batches, epochs=2, progress=False, check_finite=False)
    assert np.isnan(history.losses[6])
    with pytest.raises(errors.ArgumentTypeError, match=r"fit\(check_finite\) must be a bool"):
        tn.fit(step, batches, progress=False, check_finite=1)  # type: ignore[arg-type]


def test_no_backend_state_leaks() -> None:
    assert config._override.get() is None


def test_info_lists_a_bad_env_flag_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from twinnn.cli import main

    monkeypatch.setenv("TWINNN_EAGER", "ture")
    assert main(["info", "--no-import"]) == 1
    out, err = capsys.readouterr()
    assert "eager steps: error (below)" in out
    assert err.count("TWINNN_EAGER must be one of") == 1
