"""SGD and train_step numerics against a NumPy float64 reference (PyTorch's formulas)."""

from __future__ import annotations

import numpy as np
import pytest

import reference
import twinnn as tn
from twinnn import errors


def _data(n: int = 32, d_in: int = 5, d_out: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, d_in)).astype(np.float32)
    y = rng.standard_normal((n, d_out)).astype(np.float32)
    return x, y


def test_one_step_applies_the_exact_gradient(backend: str) -> None:
    x, y = _data()
    model = tn.Linear(5, 2, init="torch")
    w0, b0 = model.state_dict()["weight"], model.state_dict()["bias"]
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=1.0))
    loss = float(tn.to_numpy(step(x, y)))
    ref_loss, g_w, g_b = reference.linear_mse_grads(x, y, w0, b0)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    state = model.state_dict()
    np.testing.assert_allclose(w0 - state["weight"], g_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b0 - state["bias"], g_b, rtol=1e-4, atol=1e-6)


CONFIGS = [
    {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    {"momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
    {"momentum": 0.5, "nesterov": True, "weight_decay": 0.05},
    {"momentum": 0.0, "nesterov": False, "weight_decay": 0.1},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_100_steps_with_lr_change_halfway(backend: str, cfg: dict[str, float]) -> None:
    x, y = _data()
    model = tn.Linear(5, 2, init="torch")
    state = model.state_dict()
    opt = tn.SGD(model.parameters(), lr=0.05, **cfg)  # type: ignore[arg-type]
    step = tn.train_step(model, tn.mse_loss, opt)
    losses = []
    for i in range(100):
        opt.lr = 0.05 if i < 50 else 0.01
        losses.append(float(tn.to_numpy(step(x, y))))
    ref = reference.SGD(0.05, cfg["momentum"], bool(cfg["nesterov"]), cfg["weight_decay"])
    expected = reference.train_linear(
        x, y, state["weight"], state["bias"], ref, 100, lr_at=lambda i: 0.05 if i < 50 else 0.01
    )
    np.testing.assert_allclose(losses, expected, rtol=2e-5)
    # The schedule matters: with momentum, torch scales the whole buffer by the new rate.
    assert losses[-1] < losses[0]


def test_lr_schedule_multiplies_whole_momentum_buffer(backend: str) -> None:
    """One parameter, constant gradient 1: torch's rule gives a different trajectory from
    Keras' (which applies each step's lr to that step's gradient only)."""
    model = tn.Linear(1, 1, bias=False)
    model.load_state_dict({"weight": np.zeros((1, 1), np.float32)})
    opt = tn.SGD(model.parameters(), lr=1.0, momentum=0.5)

    def loss_fn(pred: object, target: object) -> object:
        return tn.sum(pred)  # d loss / d w = x = 1

    step = tn.train_step(model, loss_fn, opt)
    x, y = np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32)
    step(x, y)  # v = 1, w = -1
    opt.lr = 0.1
    step(x, y)  # v = 1.5, w = -1 - 0.1 * 1.5 = -1.15  (Keras: -1 - (0.5 + 0.1) = -1.6)
    assert float(model.state_dict()["weight"][0, 0]) == pytest.approx(-1.15, rel=1e-6)


def test_state_dict_round_trip_continues_identically(backend: str) -> None:
    x, y = _data()
    tn.seed(3)
    a = tn.Linear(5, 2)
    opt_a = tn.SGD(a.parameters(), lr=0.05, momentum=0.9)
    step_a = tn.train_step(a, tn.mse_loss, opt_a)
    for _ in range(5):
        step_a(x, y)
    saved_model, saved_opt = a.state_dict(), opt_a.state_dict()
    assert saved_opt["step"] == 5
    assert {n: set(slots) for n, slots in saved_opt["state"].items()} == {
        "weight": {"momentum_buffer"},
        "bias": {"momentum_buffer"},
    }

    b = tn.Linear(5, 2)
    opt_b = tn.SGD(b.parameters(), lr=0.5, momentum=0.9)
    b.load_state_dict(saved_model)
    opt_b.load_state_dict(saved_opt)
    assert opt_b.lr == 0.05
    step_b = tn.train_step(b, tn.mse_loss, opt_b)
    for _ in range(5):
        np.testing.assert_array_equal(tn.to_numpy(step_a(x, y)), tn.to_numpy(step_b(x, y)))


def test_optimizer_state_dict_rejects_mismatch_without_change(backend: str) -> None:
    model = tn.Linear(2, 2)
    opt = tn.SGD(model, lr=0.1, momentum=0.9)
    opt.apply_gradients([np.ones((2, 2)), np.ones(2)])
    before = opt.state_dict()
    bad = {
        **before,
        "param_groups": [{**before["param_groups"][0], "lr": 0.2}],
        "state": {"weight": {"momentum_buffer": np.ones((3, 2), np.float32)}},
    }
    with pytest.raises(
        errors.StateDictError, match=r"state\['bias'\] is missing 'momentum_buffer'"
    ):
        opt.load_state_dict(bad)
    with pytest.raises(errors.StateDictError, match=r"'weight'.*\(2, 2\).*\(3, 2\)"):
        opt.load_state_dict(bad)
    no_momentum = {**before, "param_groups": [{**before["param_groups"][0], "momentum": 0.0}]}
    with pytest.raises(errors.StateDictError, match=r"change the shape of the update"):
        opt.load_state_dict(no_momentum)
    with pytest.raises(errors.StateDictError, match=r"state of a 'Adam', this is a 'SGD'"):
        opt.load_state_dict({**before, "type": "Adam"})
    assert opt.lr == 0.1 and opt.step_count == 1
    for name, slots in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(
            slots["momentum_buffer"], before["state"][name]["momentum_buffer"]
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"lr": -0.1}, errors.ArgumentError, r"SGD\(lr\).*got -0.1"),
        ({"lr": float("nan")}, errors.ArgumentError, r"SGD\(lr\)"),
        ({"lr": "0.1"}, errors.ArgumentTypeError, r"SGD\(lr\).*float.*str"),
        ({"lr": 0.1, "momentum": 1.0}, errors.ArgumentError, r"momentum.*\[0.0, 1.0\).*1.0"),
        ({"lr": 0.1, "momentum": -0.5}, errors.ArgumentError, r"momentum.*-0.5"),
        ({"lr": 0.1, "nesterov": True}, errors.ArgumentError, r"nesterov.*momentum > 0"),
        ({"lr": 0.1, "weight_decay": -1.0}, errors.ArgumentError, r"weight_decay.*-1.0"),
    ],
)
def test_bad_hyperparameters(
    backend: str, kwargs: dict[str, object], error: type, pattern: str
) -> None:
    model = tn.Linear(2, 1)
    with pytest.raises(error, match=pattern):
        tn.SGD(model.parameters(), **kwargs)  # type: ignore[arg-type]


def test_bad_lr_assignment_keeps_old_rate(backend: str) -> None:
    opt = tn.SGD(tn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(errors.ArgumentError, match=r"SGD.lr.*-1"):
        opt.lr = -1
    assert opt.lr == 0.1
