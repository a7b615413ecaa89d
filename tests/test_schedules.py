"""``twinnn.schedules`` against ``torch.optim.lr_scheduler`` stepped once per update: the first
200 learning rates (and OneCycleLR's momentum / beta1) within 1e-12 relative; the config round
trip; every bad input; and that importing the module imports neither framework.

No backend fixture: the schedules are host Python, only the reference needs torch."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import twinnn.schedules as S
from twinnn.errors import ArgumentError, ArgumentTypeError

torch = pytest.importorskip("torch")
L = torch.optim.lr_scheduler

N = 200
RTOL = 1e-12
LR = 0.1

Factory = Callable[[Any], Any]  # torch optimizer -> torch scheduler


def torch_values(
    make: Factory, n: int = N, lr: float = LR, adam: bool = False
) -> tuple[list[float], list[float]]:
    """The lr (and momentum / beta1) torch uses for updates 0..n-1: read before each
    ``optimizer.step()``, ``scheduler.step()`` after it (``make`` returning None: no scheduler)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr) if adam else torch.optim.SGD([p], lr=lr, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()" etc.
        scheduler = make(opt)
        lrs, momenta = [], []
        for k in range(n):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            momenta.append(group["betas"][0] if adam else group["momentum"])
            opt.step()
            if scheduler is not None and k < n - 1:
                scheduler.step()
    return lrs, momenta


def max_rel(a: list[float], b: list[float | None], zero_atol: float = 0.0) -> float:
    """The largest relative difference. Values within ``zero_atol`` of 0 are compared
    absolutely: where the exact value is 0 or tiny (LinearLR to ``end_factor=0``), torch's
    recursion leaves a rounding residue (+-1e-17 for lr=1), while twinnn gives the exact value."""
    assert len(a) == len(b)
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        assert y is not None
        diff = abs(x - y)
        scale = max(abs(x), abs(y))
        if scale <= zero_atol:
            continue  # |x - y| <= zero_atol
        worst = max(worst, diff / scale)
    return worst


def assert_matches(
    make: Factory, schedule: S.Schedule, n: int = N, lr: float = LR, rtol: float = RTOL
) -> None:
    expected, _ = torch_values(make, n, lr)
    got = [schedule(k) for k in range(n)]
    assert all(type(v) is float for v in got)
    difference = max_rel(expected, got, zero_atol=1e-15 * lr)
    assert difference <= rtol, difference
    assert schedule.initial_lr == got[0]
    assert all(schedule.momentum(k) is None for k in range(3)) or isinstance(
        schedule, (S.OneCycleLR, S.SequentialLR)
    )


# --- against torch, per schedule ----------------------------------------------------------------
@pytest.mark.parametrize("lr", [0.1, 3e-4, 2.0])
def test_constant(lr: float) -> None:
    assert_matches(lambda opt: None, S.Constant(lr), lr=lr)


@pytest.mark.parametrize(
    ("step_size", "gamma"), [(1, 0.9), (3, 0.1), (30, 0.5), (7, 1.1), (250, 0.1)]
)
def test_step_lr(step_size: int, gamma: float) -> None:
    assert_matches(lambda o: L.StepLR(o, step_size, gamma), S.StepLR(LR, step_size, gamma))


@pytest.mark.parametrize(
    ("milestones", "gamma"),
    [([10, 20, 150], 0.1), ([0], 0.5), ([], 0.1), ([1, 2, 3, 4, 5, 100], 0.7), ([199], 2.0)],
)
def test_multi_step_lr(milestones: list[int], gamma: float) -> None:
    assert_matches(
        lambda o: L.MultiStepLR(o, milestones, gamma), S.MultiStepLR(LR, milestones, gamma)
    )


@pytest.mark.parametrize("gamma", [0.99, 0.9, 0.5, 0.1, 1.01])
def test_exponential_lr(gamma: float) -> None:
    assert_matches(lambda o: L.ExponentialLR(o, gamma), S.ExponentialLR(LR, gamma))


# T_max < 200 runs past the minimum: torch's recursion rises again, and so does the closed form
@pytest.mark.parametrize("T_max", [1, 3, 7, 10, 50, 100, 150, 1000])
@pytest.mark.parametrize("eta_min", [0.0, 1e-3, 0.05])
def test_cosine_annealing_lr(T_max: int, eta_min: float) -> None:
    assert_matches(
        lambda o: L.CosineAnnealingLR(o, T_max, eta_min), S.CosineAnnealingLR(LR, T_max, eta_min)
    )


def test_cosine_annealing_rises_after_t_max() -> None:
    s = S.CosineAnnealingLR(1.0, 10, eta_min=0.1)
    assert s(10) == 0.1 and s(20) == pytest.approx(1.0, rel=1e-15) and s(30) == 0.1
    assert s(9) > s(10) < s(11) < s(12)
    assert all(s(k) == pytest.approx(s(k + 20), rel=1e-14) for k in range(40))


@pytest.mark.parametrize("T_max", [500, 1000])
@pytest.mark.parametrize("eta_min", [0.0, 1e-3, 0.05])
def test_cosine_annealing_over_periods(T_max: int, eta_min: float) -> None:
    """Two and a half periods: torch's recursion restarts after each minimum, and so does the
    closed form (the plain formula differs from torch by up to 8e-13 for T_max=188). With a
    large eta_min (here lr / 2) torch's ``(lr - eta_min)`` recursion loses digits after each
    minimum: 3.6e-12 relative for T_max=1000."""
    n = int(2.6 * T_max)
    schedule = S.CosineAnnealingLR(LR, T_max, eta_min)
    rtol = 1e-11 if eta_min >= 0.5 * LR else RTOL
    assert_matches(lambda o: L.CosineAnnealingLR(o, T_max, eta_min), schedule, n=n, rtol=rtol)


@pytest.mark.parametrize(
    ("start_factor", "end_factor", "total_iters"),
    [(1 / 3, 1.0, 5), (0.1, 1.0, 50), (1.0, 0.0, 30), (0.5, 0.1, 199), (0.01, 1.0, 300)],
)
def test_linear_lr(start_factor: float, end_factor: float, total_iters: int) -> None:
    assert_matches(
        lambda o: L.LinearLR(o, start_factor, end_factor, total_iters),
        S.LinearLR(LR, start_factor, end_factor, total_iters),
    )


def test_linear_lr_small_end_factor() -> None:
    """Ending at end_factor << start_factor, torch's recursion cancels at k = total_iters
    (``1 + (end - start) / start``: 5e-9 relative off for 1 -> 1e-8); twinnn gives the exact
    ``lr * end_factor``, and the ramp within 3 ulp of the exact value."""
    lrs, _ = torch_values(lambda o: L.LinearLR(o, 1.0, 1e-8, 1), n=3, lr=1.0)
    assert lrs[1] != 1e-8 and abs(lrs[1] - 1e-8) / 1e-8 > 1e-9
    assert [S.LinearLR(1.0, 1.0, 1e-8, 1)(k) for k in range(3)] == [1.0, 1e-8, 1e-8]
    s = S.LinearLR(0.3, 0.7, 1e-6, 40)
    for k in range(45):
        exact = Fraction(0.3) * (Fraction(0.7) + (Fraction(1e-6) - Fraction(0.7)) * min(k, 40) / 40)
        assert abs(Fraction(s(k)) - exact) <= 3 * 2.0**-52 * exact


def test_closed_forms_are_within_a_few_ulp_of_exact() -> None:
    for k in range(200):
        exact = Fraction(0.1) * Fraction(0.97) ** k
        assert abs(Fraction(S.ExponentialLR(0.1, 0.97)(k)) - exact) <= 2 * 2.0**-52 * exact
        exact = Fraction(0.1) * Fraction(0.5) ** (k // 7)
        assert Fraction(S.StepLR(0.1, 7, 0.5)(k)) == exact


def test_defaults_are_torchs() -> None:
    assert_matches(lambda o: L.LinearLR(o), S.LinearLR(LR))
    assert_matches(lambda o: L.StepLR(o, 4), S.StepLR(LR, 4))
    assert_matches(lambda o: L.MultiStepLR(o, [4, 9]), S.MultiStepLR(LR, [4, 9]))
    assert_matches(lambda o: L.CosineAnnealingLR(o, 9), S.CosineAnnealingLR(LR, 9))
    assert_matches(lambda o: L.OneCycleLR(o, LR, 150), S.OneCycleLR(LR, 150), n=150)


ONE_CYCLE = [
    {"total_steps": 200},
    {"total_steps": 1000},  # only its first 200 updates
    {"total_steps": 37, "pct_start": 0.25, "anneal_strategy": "linear"},
    {"total_steps": 100, "three_phase": True},
    {"total_steps": 100, "pct_start": 0.75, "three_phase": True, "anneal_strategy": "linear"},
    {"total_steps": 7, "pct_start": 0.05},  # a warm-up shorter than one update
    {"total_steps": 1},
    {"total_steps": 3, "pct_start": 0.9, "three_phase": True},
    {
        "total_steps": 150,
        "div_factor": 10.0,
        "final_div_factor": 100.0,
        "base_momentum": 0.8,
        "max_momentum": 0.99,
    },
    {"total_steps": 120, "cycle_momentum": False},
]


@pytest.mark.parametrize(
    "kwargs", ONE_CYCLE, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
@pytest.mark.parametrize("adam", [False, True], ids=["SGD-momentum", "Adam-beta1"])
def test_one_cycle_lr_and_momentum(kwargs: dict[str, Any], adam: bool) -> None:
    max_lr = 0.02
    schedule = S.OneCycleLR(max_lr, **kwargs)
    n = min(N, kwargs["total_steps"])
    lrs, momenta = torch_values(lambda o: L.OneCycleLR(o, max_lr, **kwargs), n=n, adam=adam)
    assert max_rel(lrs, [schedule(k) for k in range(n)]) <= RTOL
    if kwargs.get("cycle_momentum", True):
        assert max_rel(momenta, [schedule.momentum(k) for k in range(n)]) <= RTOL
    else:
        assert all(schedule.momentum(k) is None for k in range(n))


def test_one_cycle_past_total_steps_raises_like_torch() -> None:
    total = 5
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    scheduler = L.OneCycleLR(opt, 0.1, total_steps=total)
    for _ in range(total):  # the total_steps updates of the cycle, then one more
        opt.step()
        scheduler.step()
    opt.step()
    with pytest.raises(ValueError, match="total steps is 5"):
        scheduler.step()
    s = S.OneCycleLR(0.1, total_steps=total)
    s(total - 1)
    with pytest.raises(ArgumentError, match=r"k must be < total_steps \(5\), got k=5"):
        s(total)
    with pytest.raises(ArgumentError, match=r"got k=7"):
        s.momentum(7)


def test_one_cycle_warmup_of_no_length() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ZeroDivisionError):  # torch divides by zero at the first update
        L.OneCycleLR(torch.optim.SGD([p], lr=0.1, momentum=0.9), 0.1, 10, pct_start=0.1)
    with pytest.raises(ArgumentError, match=r"pct_start\) \* total_steps must not be 1"):
        S.OneCycleLR(0.1, 10, pct_start=0.1)


SEQUENTIAL: list[tuple[str, Factory, S.SequentialLR]] = [
    (
        "linear-warmup-then-cosine",
        lambda o: L.SequentialLR(
            o, [L.LinearLR(o, 0.1, total_iters=10), L.CosineAnnealingLR(o, 50)], [10]
        ),
        S.SequentialLR([S.LinearLR(LR, 0.1, total_iters=10), S.CosineAnnealingLR(LR, 50)], [10]),
    ),
    (
        "three",
        lambda o: L.SequentialLR(
            o,
            [L.StepLR(o, 3, 0.5), L.ExponentialLR(o, 0.9), L.MultiStepLR(o, [5, 20], 0.3)],
            [7, 30],
        ),
        S.SequentialLR(
            [S.StepLR(LR, 3, 0.5), S.ExponentialLR(LR, 0.9), S.MultiStepLR(LR, [5, 20], 0.3)],
            [7, 30],
        ),
    ),
    (
        "milestone-1",
        lambda o: L.SequentialLR(
            o,
            [
                L.ExponentialLR(o, 0.9),
                L.LinearLR(o, 0.5, 0.1, 40),
                L.CosineAnnealingLR(o, 20, 0.001),
            ],
            [1, 60],
        ),
        S.SequentialLR(
            [
                S.ExponentialLR(LR, 0.9),
                S.LinearLR(LR, 0.5, 0.1, 40),
                S.CosineAnnealingLR(LR, 20, 1e-3),
            ],
            [1, 60],
        ),
    ),
    (
        "milestone-0",  # the first schedule never runs
        lambda o: L.SequentialLR(o, [L.ExponentialLR(o, 0.9), L.CosineAnnealingLR(o, 20)], [0]),
        S.SequentialLR([S.ExponentialLR(LR, 0.9), S.CosineAnnealingLR(LR, 20)], [0]),
    ),
    (
        "one-schedule",
        lambda o: L.SequentialLR(o, [L.CosineAnnealingLR(o, 20, 0.001)], []),
        S.SequentialLR([S.CosineAnnealingLR(LR, 20, 0.001)], []),
    ),
    (
        # the second MultiStepLR restarts: its milestone 0 applies again at update 5
        "restart-at-milestone",
        lambda o: L.SequentialLR(
            o, [L.MultiStepLR(o, [0, 3], 0.5), L.MultiStepLR(o, [0, 3], 0.5)], [5]
        ),
        S.SequentialLR([S.MultiStepLR(LR, [0, 3], 0.5), S.MultiStepLR(LR, [0, 3], 0.5)], [5]),
    ),
]


@pytest.mark.parametrize(
    ("make", "schedule"), [c[1:] for c in SEQUENTIAL], ids=[c[0] for c in SEQUENTIAL]
)
def test_sequential_lr(make: Factory, schedule: S.SequentialLR) -> None:
    assert_matches(make, schedule)


def test_sequential_restarts_each_schedule_at_its_milestone() -> None:
    a, b = S.CosineAnnealingLR(1.0, 8), S.OneCycleLR(0.5, 20)
    s = S.SequentialLR([a, b], milestones=[6])
    assert [s(k) for k in range(6)] == [a(k) for k in range(6)]
    assert [s(k) for k in range(6, 26)] == [b(k) for k in range(20)]
    assert s.momentum(3) is None and s.momentum(6) == b.momentum(0)
    with pytest.raises(ArgumentError, match="got k=20"):  # b's own k
        s(26)
    assert S.Sequential is S.SequentialLR


finite = st.floats(1e-6, 10.0)


@settings(max_examples=100, deadline=None)
@given(
    lr=finite,
    T_max=st.integers(1, 80),
    eta_frac=st.floats(0.0, 1.0),
    step_size=st.integers(1, 20),
    gamma=st.floats(0.05, 1.2),
    milestones=st.lists(st.integers(0, 60), max_size=5, unique=True).map(sorted),
    start_factor=st.floats(0.01, 1.0),
    # end_factor 0 or >= 1e-3: torch's recursion loses eps * start_factor / end_factor relative
    # at k = total_iters (test_linear_lr_small_end_factor)
    end_factor=st.one_of(st.just(0.0), st.floats(1e-3, 1.0)),
    total_iters=st.integers(1, 80),
)
def test_random_settings_match_torch(
    lr: float,
    T_max: int,
    eta_frac: float,
    step_size: int,
    gamma: float,
    milestones: list[int],
    start_factor: float,
    end_factor: float,
    total_iters: int,
) -> None:
    n, eta_min = 60, lr * eta_frac
    cases: list[tuple[Factory, S.Schedule]] = [
        (lambda o: L.CosineAnnealingLR(o, T_max, eta_min), S.CosineAnnealingLR(lr, T_max, eta_min)),
        (lambda o: L.StepLR(o, step_size, gamma), S.StepLR(lr, step_size, gamma)),
        (lambda o: L.MultiStepLR(o, milestones, gamma), S.MultiStepLR(lr, milestones, gamma)),
        (lambda o: L.ExponentialLR(o, gamma), S.ExponentialLR(lr, gamma)),
        (
            lambda o: L.LinearLR(o, start_factor, end_factor, total_iters),
            S.LinearLR(lr, start_factor, end_factor, total_iters),
        ),
    ]
    for make, schedule in cases:
        assert_matches(make, schedule, n=n, lr=lr)


# --- config round trip and repr -----------------------------------------------------------------
ALL_SCHEDULES: list[S.Schedule] = [
    S.Constant(0.1),
    S.StepLR(0.1, 3),
    S.MultiStepLR(0.1, [2, 5], gamma=0.5),
    S.ExponentialLR(0.3, 0.9),
    S.CosineAnnealingLR(1.0, 10, eta_min=0.01),
    S.LinearLR(0.1, 0.25, 0.75, 8),
    S.OneCycleLR(0.01, 100, anneal_strategy="linear", three_phase=True, cycle_momentum=False),
    S.OneCycleLR(1e-2, 1000),
    S.SequentialLR(
        [S.LinearLR(0.1, total_iters=4), S.SequentialLR([S.Constant(0.1), S.StepLR(0.1, 2)], [3])],
        [4],
    ),
]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=repr)
def test_config_round_trip(schedule: S.Schedule) -> None:
    config = schedule.to_config()
    assert config["type"] == type(schedule).__name__
    text = json.dumps(config, allow_nan=False)
    rebuilt = S.from_config(json.loads(text))
    assert type(rebuilt) is type(schedule) and rebuilt == schedule
    assert hash(rebuilt) == hash(schedule) and rebuilt.to_config() == config
    assert [rebuilt(k) for k in range(40)] == [schedule(k) for k in range(40)]
    assert [rebuilt.momentum(k) for k in range(40)] == [schedule.momentum(k) for k in range(40)]
    # the repr is the constructor call
    assert eval(repr(schedule), vars(S)) == schedule
    assert schedule.initial_lr == schedule(0)


def test_equality() -> None:
    assert S.StepLR(0.1, 3) != S.StepLR(0.1, 4)
    assert S.StepLR(0.1, 3) != S.MultiStepLR(0.1, [3])
    assert S.StepLR(0.1, 3) != 0.1
    assert S.Constant(1) == S.Constant(1.0)


def test_from_config_defaults_are_optional() -> None:
    assert S.from_config({"type": "StepLR", "lr": 0.1, "step_size": 2}) == S.StepLR(0.1, 2)


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (
            [("type", "StepLR")],
            ArgumentTypeError,
            r"from_config\(config\) must be a dict, got list",
        ),
        ({"lr": 0.1}, ArgumentError, r"\['type'\] must be one of \[.*'StepLR'.*\], got None"),
        ({"type": "Warmup", "lr": 0.1}, ArgumentError, r"got 'Warmup'"),
        (
            {"type": "StepLR", "lr": 0.1, "step_size": 2, "decay": 0.5},
            ArgumentError,
            r"for StepLR must have the keys \['lr', 'step_size', 'gamma'\].*unknown \['decay'\]",
        ),
        ({"type": "StepLR", "lr": 0.1}, ArgumentError, r"missing \['step_size'\]"),
        ({"type": "StepLR", "lr": "0.1", "step_size": 2}, ArgumentTypeError, r"StepLR\(lr\)"),
        (
            {"type": "SequentialLR", "schedules": {"type": "Constant"}, "milestones": []},
            ArgumentTypeError,
            r"\['schedules'\] must be a list of schedule configs, got dict",
        ),
    ],
)
def test_from_config_errors(config: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        S.from_config(config)


# --- bad input ----------------------------------------------------------------------------------
BAD: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: S.Constant(-0.1), ArgumentError, r"Constant\(lr\) must be finite and >= 0, got -0.1"),
    (
        lambda: S.Constant(math.nan),
        ArgumentError,
        r"Constant\(lr\) must be finite and >= 0, got nan",
    ),
    (lambda: S.Constant(math.inf), ArgumentError, r"Constant\(lr\) .* got inf"),
    (
        lambda: S.Constant("0.1"),
        ArgumentTypeError,
        r"Constant\(lr\) must be a float, got str '0.1'",
    ),
    (lambda: S.Constant(True), ArgumentTypeError, r"Constant\(lr\) must be a float, got bool"),
    (lambda: S.StepLR(-1.0, 3), ArgumentError, r"StepLR\(lr\) must be finite and >= 0, got -1.0"),
    (lambda: S.StepLR(0.1, 0), ArgumentError, r"StepLR\(step_size\) must be > 0, got 0"),
    (
        lambda: S.StepLR(0.1, 2.0),
        ArgumentTypeError,
        r"StepLR\(step_size\) must be an int, got float",
    ),
    (
        lambda: S.StepLR(0.1, True),
        ArgumentTypeError,
        r"StepLR\(step_size\) must be an int, got bool",
    ),
    (
        lambda: S.StepLR(0.1, 3, 0.0),
        ArgumentError,
        r"StepLR\(gamma\) must be finite and > 0, got 0.0",
    ),
    (lambda: S.StepLR(0.1, 3, -0.5), ArgumentError, r"StepLR\(gamma\) .* > 0, got -0.5"),
    (
        lambda: S.MultiStepLR(0.1, [5, 3]),
        ArgumentError,
        r"MultiStepLR\(milestones\) must be strictly increasing, got \[5, 3\]",
    ),
    (lambda: S.MultiStepLR(0.1, [3, 3]), ArgumentError, r"strictly increasing, got \[3, 3\]"),
    (
        lambda: S.MultiStepLR(0.1, [-1, 3]),
        ArgumentError,
        r"MultiStepLR\(milestones\) must be >= 0, got \[-1, 3\]",
    ),
    (
        lambda: S.MultiStepLR(0.1, [1, 2.5]),
        ArgumentTypeError,
        r"must be a list of ints, got float 2.5 in \[1, 2.5\]",
    ),
    (
        lambda: S.MultiStepLR(0.1, [True]),
        ArgumentTypeError,
        r"must be a list of ints, got bool True",
    ),
    (
        lambda: S.MultiStepLR(0.1, 5),
        ArgumentTypeError,
        r"MultiStepLR\(milestones\) must be a list of ints, got int 5",
    ),
    (lambda: S.MultiStepLR(0.1, "12"), ArgumentTypeError, r"must be a list of ints, got str '12'"),
    (
        lambda: S.MultiStepLR(0.1, [2], gamma=0),
        ArgumentError,
        r"MultiStepLR\(gamma\) must be finite and > 0, got 0",
    ),
    (
        lambda: S.ExponentialLR(0.1, 0.0),
        ArgumentError,
        r"ExponentialLR\(gamma\) must be finite and > 0, got 0.0",
    ),
    (lambda: S.ExponentialLR(0.1, math.inf), ArgumentError, r"ExponentialLR\(gamma\) .* got inf"),
    (
        lambda: S.ExponentialLR(0.1, None),
        ArgumentTypeError,
        r"ExponentialLR\(gamma\) must be a float, got NoneType",
    ),
    (
        lambda: S.CosineAnnealingLR(0.1, 0),
        ArgumentError,
        r"CosineAnnealingLR\(T_max\) must be > 0, got 0",
    ),
    (
        lambda: S.CosineAnnealingLR(0.1, -5),
        ArgumentError,
        r"CosineAnnealingLR\(T_max\) must be > 0, got -5",
    ),
    (
        lambda: S.CosineAnnealingLR(0.1, 10.0),
        ArgumentTypeError,
        r"CosineAnnealingLR\(T_max\) must be an int",
    ),
    (
        lambda: S.CosineAnnealingLR(0.1, 10, -1e-3),
        ArgumentError,
        r"CosineAnnealingLR\(eta_min\) must be finite and >= 0",
    ),
    (
        lambda: S.LinearLR(0.1, 0.0),
        ArgumentError,
        r"LinearLR\(start_factor\) must be finite and in \(0, 1\], got 0.0",
    ),
    (
        lambda: S.LinearLR(0.1, 1.5),
        ArgumentError,
        r"LinearLR\(start_factor\) must be finite and in \(0, 1\], got 1.5",
    ),
    (
        lambda: S.LinearLR(0.1, 0.5, 1.5),
        ArgumentError,
        r"LinearLR\(end_factor\) must be finite and in \[0, 1\], got 1.5",
    ),
    (lambda: S.LinearLR(0.1, 0.5, -0.1), ArgumentError, r"LinearLR\(end_factor\) .* got -0.1"),
    (
        lambda: S.LinearLR(0.1, total_iters=0),
        ArgumentError,
        r"LinearLR\(total_iters\) must be > 0, got 0",
    ),
    (
        lambda: S.OneCycleLR(-0.1, 10),
        ArgumentError,
        r"OneCycleLR\(max_lr\) must be finite and >= 0, got -0.1",
    ),
    (lambda: S.OneCycleLR(0.1, 0), ArgumentError, r"OneCycleLR\(total_steps\) must be > 0, got 0"),
    (
        lambda: S.OneCycleLR(0.1, True),
        ArgumentTypeError,
        r"OneCycleLR\(total_steps\) must be an int, got bool",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, pct_start=0.0),
        ArgumentError,
        r"OneCycleLR\(pct_start\) must be finite and in \(0, 1\), got 0.0",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, pct_start=1.0),
        ArgumentError,
        r"OneCycleLR\(pct_start\) .* got 1.0",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, anneal_strategy="cosine"),
        ArgumentError,
        r"OneCycleLR\(anneal_strategy\) must be 'cos' or 'linear', got 'cosine'",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, anneal_strategy=None),
        ArgumentTypeError,
        r"OneCycleLR\(anneal_strategy\) must be a str, got NoneType",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, div_factor=0.0),
        ArgumentError,
        r"OneCycleLR\(div_factor\) must be finite and > 0, got 0.0",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, final_div_factor=-1.0),
        ArgumentError,
        r"OneCycleLR\(final_div_factor\) must be finite and > 0",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, three_phase=1),
        ArgumentTypeError,
        r"OneCycleLR\(three_phase\) must be a bool, got int 1",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, cycle_momentum="yes"),
        ArgumentTypeError,
        r"OneCycleLR\(cycle_momentum\) must be a bool",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, base_momentum=0.96),
        ArgumentError,
        r"OneCycleLR\(base_momentum\) must be <= max_momentum \(0.95\), got 0.96",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, max_momentum=1.5),
        ArgumentError,
        r"OneCycleLR\(max_momentum\) must be finite and in \[0, 1\], got 1.5",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10, base_momentum=-0.1),
        ArgumentError,
        r"OneCycleLR\(base_momentum\) .* got -0.1",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1), S.Constant(0.2)], []),
        ArgumentError,
        r"SequentialLR\(milestones\) must hold len\(schedules\) - 1 = 1 update indices, "
        r"got 0: \[\]",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1)], [3]),
        ArgumentError,
        r"len\(schedules\) - 1 = 0 update indices, got 1: \[3\]",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1)] * 3, [4, 2]),
        ArgumentError,
        r"SequentialLR\(milestones\) must be strictly increasing, got \[4, 2\]",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1)] * 2, [2.0]),
        ArgumentTypeError,
        r"SequentialLR\(milestones\) must be a list of ints, got float 2.0",
    ),
    (
        lambda: S.SequentialLR([], []),
        ArgumentError,
        r"SequentialLR\(schedules\) must hold at least one schedule, got \[\]",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1), 0.1], [2]),
        ArgumentTypeError,
        r"SequentialLR\(schedules\) must be a list of Schedules, got float 0.1 in it",
    ),
    (
        lambda: S.SequentialLR(S.Constant(0.1), []),
        ArgumentTypeError,
        r"SequentialLR\(schedules\) must be a list of Schedules, got Constant",
    ),
    (
        lambda: S.StepLR(0.1, 3)(-1),
        ArgumentError,
        r"StepLR: the update index k must be >= 0, got -1",
    ),
    (
        lambda: S.StepLR(0.1, 3)(1.0),
        ArgumentTypeError,
        r"StepLR: the update index k must be an int, got float 1.0",
    ),
    (
        lambda: S.StepLR(0.1, 3)(True),
        ArgumentTypeError,
        r"the update index k must be an int, got bool True",
    ),
    (
        lambda: S.OneCycleLR(0.1, 10).momentum(-2),
        ArgumentError,
        r"OneCycleLR: the update index k must be >= 0, got -2",
    ),
    (
        lambda: S.SequentialLR([S.Constant(0.1)], [])("3"),
        ArgumentTypeError,
        r"SequentialLR: the update index k must be an int, got str",
    ),
]


@pytest.mark.parametrize(("call", "error", "match"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_numpy_ints_are_ints() -> None:
    np = pytest.importorskip("numpy")
    s = S.MultiStepLR(0.1, np.array([2, 4]), gamma=0.5)
    assert s.milestones == (2, 4) and s(np.int64(3)) == 0.05
    assert S.StepLR(0.1, np.int32(2))(np.int64(2)) == pytest.approx(0.01, rel=1e-15)


# --- the page ----------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parent.parent / "docs" / "schedules.md"


def test_doc_examples() -> None:
    """Every ``>>>`` line of docs/schedules.md gives the output or the error the page shows."""
    blocks = [b for b in re.findall(r"```\w*\n(.*?)```", DOC.read_text(), re.DOTALL) if ">>> " in b]
    namespace: dict[str, Any] = dict(vars(S))
    shown = 0
    for block in blocks:
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith(">>> "):
                continue
            source = line[4:]
            output = (
                lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith(">>> ") else None
            )
            if output is not None and output.split(":")[0] in (
                "ArgumentError",
                "ArgumentTypeError",
            ):
                kind, _, message = output.partition(": ")
                with pytest.raises((ArgumentError, ArgumentTypeError)) as info:
                    exec(source, namespace)
                assert (type(info.value).__name__, str(info.value)) == (kind, message)
            elif output is None:
                exec(source, namespace)
            else:
                assert repr(eval(source, namespace)) == output
            shown += output is not None
    assert shown >= 8


# --- imports ------------------------------------------------------------------------------------
def test_importing_schedules_imports_no_framework() -> None:
    code = (
        "import sys, twinnn.schedules as s\n"
        "s.OneCycleLR(0.1, 100)(5)\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_keras_comparison_table() -> None:
    """docs/schedules.md's Keras table, as scripts/schedules_vs_keras.py measures it."""
    pytest.importorskip("keras")
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "schedules_vs_keras.py"
    spec = importlib.util.spec_from_file_location("schedules_vs_keras", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = {name: (row["differ"], row["n"], row["max_ulp"]) for name, row in module.rows().items()}
    assert table["StepLR vs ExponentialDecay(staircase)"][0] == 0
    assert table["StepLR vs PiecewiseConstantDecay([2, 5, ...])"][0] == 0
    assert table["StepLR vs PiecewiseConstantDecay([3, 6, ...])"][:2] == (66, 200)
    assert table["MultiStepLR vs PiecewiseConstantDecay([9, 49])"][0] == 0
    assert table["ExponentialLR vs ExponentialDecay"] == (198, 200, 97)
    assert table["CosineAnnealingLR(0.1, 10) vs CosineDecay, k <= 10"] == (7, 11, 8)
    assert table["CosineAnnealingLR(0.1, 100, 1e-3) vs CosineDecay, k <= 100"] == (62, 101, 22)
    assert table["LinearLR vs PolynomialDecay(power=1)"] == (23, 200, 4)


def test_from_config_refuses_schedules_nested_past_the_limit() -> None:
    """The same refusal on every Python version (not the interpreter's recursion limit)."""
    from twinnn import schedules as sch

    def nested(depth: int) -> dict[str, Any]:
        config: dict[str, Any] = {"type": "Constant", "lr": 0.1}
        for _ in range(depth):
            config = {"type": "SequentialLR", "schedules": [config], "milestones": []}
        return config

    assert sch.from_config(nested(sch.MAX_NESTING)).to_config() == nested(sch.MAX_NESTING)
    with pytest.raises(ArgumentError, match="nested too deeply"):
        sch.from_config(nested(sch.MAX_NESTING + 1))
    assert sch.from_config(nested(2))(5) == 0.1  # the depth count is back to zero
