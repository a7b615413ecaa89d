"""Learning-rate schedules: the learning rate of update ``k`` as a closed form of ``k``.

Every schedule is pure host Python in float64 (importing this module imports neither torch nor
tensorflow). ``schedule(k)`` is the learning rate of update ``k`` (``k = 0`` for the first
update): the value torch's ``torch.optim.lr_scheduler`` class of the same name puts in
``optimizer.param_groups[i]["lr"]`` before the ``(k + 1)``-th ``optimizer.step()`` when
``scheduler.step()`` is called once after every ``optimizer.step()``. The arguments keep torch's
names and defaults; the base learning rate, which torch reads from the optimizer, is the first
argument (``lr``, or ``max_lr`` for :class:`OneCycleLR`).

Every optimiser's ``lr=`` takes a float or a :class:`Schedule`; the optimiser evaluates the
schedule at its own update count, and checkpoints store the schedule (:meth:`Schedule.to_config`,
:func:`from_config`) with the optimiser.
"""

from __future__ import annotations

import inspect
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from numbers import Integral, Real
from typing import Any

from twinnn._checks import check_bool, check_positive_int
from twinnn.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "Constant",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "Schedule",
    "Sequential",
    "SequentialLR",
    "StepLR",
    "from_config",
]


# --- argument checks ----------------------------------------------------------------------------
def _check_real(
    value: object,
    argument: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real within the bounds given (each bound closed unless ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgumentTypeError(f"{argument} must be a float, got {type(value).__name__} {value!r}")
    number = float(value)
    if low is not None and high is not None:
        wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        wanted = f"{'>' if low_open else '>='} {low:g}"
    else:
        wanted = "a finite number"
    ok = math.isfinite(number)
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise ArgumentError(f"{argument} must be finite and {wanted}, got {value!r}")
    return number


def _check_milestones(value: object, argument: str) -> tuple[int, ...]:
    """A sequence of ints ``>= 0``, strictly increasing."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(
            f"{argument} must be a list of ints, got {type(value).__name__} {value!r}"
        )
    items = list(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, Integral):
            raise ArgumentTypeError(
                f"{argument} must be a list of ints, got {type(item).__name__} {item!r} "
                f"in {items!r}"
            )
    milestones = tuple(int(item) for item in items)
    if any(m < 0 for m in milestones):
        raise ArgumentError(f"{argument} must be >= 0, got {list(milestones)}")
    if any(b <= a for a, b in pairwise(milestones)):
        raise ArgumentError(f"{argument} must be strictly increasing, got {list(milestones)}")
    return milestones


def _check_k(k: object, owner: str) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ArgumentTypeError(
            f"{owner}: the update index k must be an int, got {type(k).__name__} {k!r}"
        )
    if int(k) < 0:
        raise ArgumentError(f"{owner}: the update index k must be >= 0, got {k}")
    return int(k)


def _jsonable(value: object) -> object:
    if isinstance(value, Schedule):
        return value.to_config()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- the base class -----------------------------------------------------------------------------
class Schedule:
    """Base class: a learning rate as a function of the update index ``k``.

    Subclasses define ``_lr(k)`` (``k`` already checked), ``_params()`` (the constructor's
    arguments, by name) and, where they schedule a momentum, ``_momentum(k)``.
    """

    def __call__(self, k: int) -> float:
        """The learning rate of update ``k`` (``k = 0`` for the first update), in float64."""
        return self._lr(_check_k(k, type(self).__name__))

    def momentum(self, k: int) -> float | None:
        """The momentum (SGD's ``momentum``, Adam's ``beta1``) this schedule sets for update
        ``k``, or ``None`` where it leaves the optimiser's own value (every schedule but
        :class:`OneCycleLR` with ``cycle_momentum=True``, and a :class:`SequentialLR` while
        such a one runs)."""
        return self._momentum(_check_k(k, type(self).__name__))

    @property
    def initial_lr(self) -> float:
        """The learning rate of the first update (``self(0)``)."""
        return self._lr(0)

    def to_config(self) -> dict[str, Any]:
        """The schedule as a JSON-serialisable dict with a ``"type"`` key; :func:`from_config`
        rebuilds it."""
        config: dict[str, Any] = {"type": type(self).__name__}
        config.update({name: _jsonable(value) for name, value in self._params().items()})
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))

    # what subclasses define
    def _lr(self, k: int) -> float:
        raise NotImplementedError

    def _momentum(self, k: int) -> float | None:
        return None

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> Schedule:
        return cls(**params)


# --- the schedules ------------------------------------------------------------------------------
class Constant(Schedule):
    """``lr`` for every update (torch: no scheduler).

    Args:
        lr: the learning rate, ``>= 0``.
    """

    def __init__(self, lr: float) -> None:
        self.lr = _check_real(lr, "Constant(lr)", low=0.0)

    def _lr(self, k: int) -> float:
        return self.lr

    def _params(self) -> dict[str, Any]:
        return {"lr": self.lr}


class StepLR(Schedule):
    """``lr * gamma ** (k // step_size)``: decay by ``gamma`` every ``step_size`` updates
    (torch's ``StepLR``).

    Args:
        lr: the learning rate of the first ``step_size`` updates, ``>= 0``.
        step_size: updates between two decays, ``> 0``.
        gamma: the factor of each decay, ``> 0``.
    """

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.lr = _check_real(lr, "StepLR(lr)", low=0.0)
        self.step_size = check_positive_int(step_size, "StepLR(step_size)")
        self.gamma = _check_real(gamma, "StepLR(gamma)", low=0.0, low_open=True)

    def _lr(self, k: int) -> float:
        return self.lr * self.gamma ** (k // self.step_size)

    def _params(self) -> dict[str, Any]:
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class MultiStepLR(Schedule):
    """``lr * gamma ** (number of milestones <= k)``: decay by ``gamma`` at each milestone
    (torch's ``MultiStepLR``).

    Args:
        lr: the learning rate before the first milestone, ``>= 0``.
        milestones: update indices ``>= 0``, strictly increasing; update ``milestones[i]`` is
            the first to use ``lr * gamma ** (i + 1)``.
        gamma: the factor of each decay, ``> 0``.
    """

    def __init__(self, lr: float, milestones: Sequence[int], gamma: float = 0.1) -> None:
        self.lr = _check_real(lr, "MultiStepLR(lr)", low=0.0)
        self.milestones = _check_milestones(milestones, "MultiStepLR(milestones)")
        self.gamma = _check_real(gamma, "MultiStepLR(gamma)", low=0.0, low_open=True)

    def _lr(self, k: int) -> float:
        return self.lr * self.gamma ** bisect_right(self.milestones, k)

    def _params(self) -> dict[str, Any]:
        return {"lr": self.lr, "milestones": list(self.milestones), "gamma": self.gamma}


class ExponentialLR(Schedule):
    """``lr * gamma ** k`` (torch's ``ExponentialLR``).

    Args:
        lr: the learning rate of the first update, ``>= 0``.
        gamma: the factor of each update, ``> 0``.
    """

    def __init__(self, lr: float, gamma: float) -> None:
        self.lr = _check_real(lr, "ExponentialLR(lr)", low=0.0)
        self.gamma = _check_real(gamma, "ExponentialLR(gamma)", low=0.0, low_open=True)

    def _lr(self, k: int) -> float:
        return self.lr * self.gamma**k

    def _params(self) -> dict[str, Any]:
        return {"lr": self.lr, "gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    """``eta_min + (lr - eta_min) * (1 + cos(pi * k / T_max)) / 2`` (torch's
    ``CosineAnnealingLR``).

    Like torch's, it does not stop at ``T_max``: it reaches ``eta_min`` at ``k = T_max`` and
    rises back to ``lr`` at ``k = 2 * T_max``, with period ``2 * T_max``. Past ``T_max`` it
    follows torch's recursion, which restarts after each minimum, at
    ``s = T_max + 1 + 2 * T_max * n``, from ``r = eta_min + (lr - eta_min) * (1 - cos(pi /
    T_max)) / 2``: update ``k`` of that stretch gets ``eta_min + (r - eta_min) * (1 + cos(pi *
    k / T_max)) / (1 + cos(pi * s / T_max))``, the formula above in exact arithmetic, and the
    same float64 rounding of ``r`` as torch.

    Args:
        lr: the learning rate of the first update, ``>= 0``.
        T_max: updates from ``lr`` down to ``eta_min``, ``> 0``.
        eta_min: the lowest learning rate, ``>= 0``.
    """

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.lr = _check_real(lr, "CosineAnnealingLR(lr)", low=0.0)
        self.T_max = check_positive_int(T_max, "CosineAnnealingLR(T_max)")
        self.eta_min = _check_real(eta_min, "CosineAnnealingLR(eta_min)", low=0.0)
        # torch's value at T_max + 1 (``lr(T_max) + ...`` with lr(T_max) == eta_min)
        self._restart = (
            self.eta_min + (self.lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
        )

    def _cosine(self, k: int) -> float:
        return 1 + math.cos(math.pi * k / self.T_max)  # torch's expression

    def _lr(self, k: int) -> float:
        t_max, eta_min = self.T_max, self.eta_min
        if k <= t_max:
            return eta_min + (self.lr - eta_min) * self._cosine(k) / 2
        start = t_max + 1 + 2 * t_max * ((k - t_max - 1) // (2 * t_max))
        return eta_min + (self._restart - eta_min) * (self._cosine(k) / self._cosine(start))

    def _params(self) -> dict[str, Any]:
        return {"lr": self.lr, "T_max": self.T_max, "eta_min": self.eta_min}


class LinearLR(Schedule):
    """``lr * (start_factor * (n - k) / n + end_factor * k / n)`` with ``n = total_iters`` for
    ``k < n``, then ``lr * end_factor``: a linear ramp of the factor over
    ``total_iters`` updates (torch's ``LinearLR``).

    Args:
        lr: the base learning rate, ``>= 0``.
        start_factor: the factor of the first update, in ``(0, 1]``.
        end_factor: the factor from update ``total_iters`` on, in ``[0, 1]``.
        total_iters: updates of the ramp, ``> 0``.
    """

    def __init__(
        self,
        lr: float,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
    ) -> None:
        self.lr = _check_real(lr, "LinearLR(lr)", low=0.0)
        self.start_factor = _check_real(
            start_factor, "LinearLR(start_factor)", low=0.0, high=1.0, low_open=True
        )
        self.end_factor = _check_real(end_factor, "LinearLR(end_factor)", low=0.0, high=1.0)
        self.total_iters = check_positive_int(total_iters, "LinearLR(total_iters)")

    def _lr(self, k: int) -> float:
        if k >= self.total_iters:
            # exactly end_factor: torch's recursion drifts by rounding here (0.1 ->
            # 0.10000000000000003; to 0 -> +-1e-17, a negative lr), and its closed form
            # ``start + (end - start) * total_iters / total_iters`` can round below 0 too
            return self.lr * self.end_factor
        # two non-negative terms, each weight rounded once: within 3 ulp, also when end << start
        n = self.total_iters
        return self.lr * (self.start_factor * ((n - k) / n) + self.end_factor * (k / n))

    def _params(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "start_factor": self.start_factor,
            "end_factor": self.end_factor,
            "total_iters": self.total_iters,
        }


class OneCycleLR(Schedule):
    """The 1cycle policy over ``total_steps`` updates (torch's ``OneCycleLR``), with its
    momentum (or Adam's ``beta1``) cycled the other way when ``cycle_momentum``.

    The learning rate goes from ``max_lr / div_factor`` up to ``max_lr`` over the first
    ``pct_start * total_steps - 1`` updates, then down to
    ``max_lr / div_factor / final_div_factor`` at update ``total_steps - 1`` (with
    ``three_phase``: back down to ``max_lr / div_factor`` first, symmetrically, then to the
    minimum). Each phase interpolates with ``anneal_strategy`` (``"cos"`` or ``"linear"``)
    exactly as torch's phases do, fractional phase ends included. The momentum goes from
    ``max_momentum`` to ``base_momentum`` and back.

    Update ``total_steps`` and later raise an ``ArgumentError``, as torch's scheduler does.

    Args:
        max_lr: the peak learning rate, ``>= 0``.
        total_steps: the number of updates of the cycle, ``> 0``.
        pct_start: the fraction of the cycle spent increasing the learning rate, in ``(0, 1)``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: the first learning rate is ``max_lr / div_factor``; ``> 0``.
        final_div_factor: the last is ``max_lr / div_factor / final_div_factor``; ``> 0``.
        three_phase: torch's third phase (see above).
        cycle_momentum: schedule the momentum too (:meth:`Schedule.momentum`).
        base_momentum: the momentum at the peak learning rate, in ``[0, 1]``.
        max_momentum: the momentum at the start and end, in ``[base_momentum, 1]``.
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ) -> None:
        name = "OneCycleLR"
        self.max_lr = _check_real(max_lr, f"{name}(max_lr)", low=0.0)
        self.total_steps = check_positive_int(total_steps, f"{name}(total_steps)")
        self.pct_start = _check_real(
            pct_start, f"{name}(pct_start)", low=0.0, high=1.0, low_open=True, high_open=True
        )
        if not isinstance(anneal_strategy, str):
            raise ArgumentTypeError(
                f"{name}(anneal_strategy) must be a str, got "
                f"{type(anneal_strategy).__name__} {anneal_strategy!r}"
            )
        if anneal_strategy not in ("cos", "linear"):
            raise ArgumentError(
                f"{name}(anneal_strategy) must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        self.div_factor = _check_real(div_factor, f"{name}(div_factor)", low=0.0, low_open=True)
        self.final_div_factor = _check_real(
            final_div_factor, f"{name}(final_div_factor)", low=0.0, low_open=True
        )
        self.three_phase = check_bool(three_phase, f"{name}(three_phase)")
        self.cycle_momentum = check_bool(cycle_momentum, f"{name}(cycle_momentum)")
        self.base_momentum = _check_real(base_momentum, f"{name}(base_momentum)", low=0.0, high=1.0)
        self.max_momentum = _check_real(max_momentum, f"{name}(max_momentum)", low=0.0, high=1.0)
        if self.base_momentum > self.max_momentum:
            raise ArgumentError(
                f"{name}(base_momentum) must be <= max_momentum ({self.max_momentum!r}), "
                f"got {self.base_momentum!r}"
            )
        # torch's phases, to the same float64 operations
        warmup_end = float(self.pct_start * self.total_steps) - 1
        if warmup_end == 0.0:
            # torch computes pct = 0 / 0 for the first update (ZeroDivisionError)
            raise ArgumentError(
                f"{name}(pct_start) * total_steps must not be 1 (a warm-up of no length: "
                f"torch divides by zero at the first update), got pct_start={self.pct_start!r}, "
                f"total_steps={self.total_steps}"
            )
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        hi_m, lo_m = self.max_momentum, self.base_momentum
        last = float(self.total_steps - 1)
        # (end_step, start_lr, end_lr, start_momentum, end_momentum)
        self._phases: tuple[tuple[float, float, float, float, float], ...]
        if self.three_phase:
            self._phases = (
                (warmup_end, initial, self.max_lr, hi_m, lo_m),
                (
                    float(2 * self.pct_start * self.total_steps) - 2,
                    self.max_lr,
                    initial,
                    lo_m,
                    hi_m,
                ),
                (last, initial, low, hi_m, hi_m),
            )
        else:
            self._phases = (
                (warmup_end, initial, self.max_lr, hi_m, lo_m),
                (last, self.max_lr, low, lo_m, hi_m),
            )

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _locate(self, k: int) -> tuple[int, float]:
        if k >= self.total_steps:
            raise ArgumentError(
                f"OneCycleLR: the update index k must be < total_steps ({self.total_steps}), "
                f"got k={k} (torch's OneCycleLR raises past total_steps too)"
            )
        start = 0.0
        for i, phase in enumerate(self._phases):
            end = phase[0]
            if k <= end or i == len(self._phases) - 1:
                return i, (k - start) / (end - start)
            start = end
        raise AssertionError("unreachable")  # pragma: no cover

    def _lr(self, k: int) -> float:
        i, pct = self._locate(k)
        return self._anneal(self._phases[i][1], self._phases[i][2], pct)

    def _momentum(self, k: int) -> float | None:
        if not self.cycle_momentum:
            return None
        i, pct = self._locate(k)
        return self._anneal(self._phases[i][3], self._phases[i][4], pct)

    def _params(self) -> dict[str, Any]:
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal_strategy": self.anneal_strategy,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "three_phase": self.three_phase,
            "cycle_momentum": self.cycle_momentum,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
        }


class SequentialLR(Schedule):
    """``schedules[i]`` from update ``milestones[i - 1]`` on, restarted there: update ``k`` gets
    ``schedules[i](k - milestones[i - 1])`` (torch's ``SequentialLR``, which restarts each
    scheduler at its milestone).

    Each schedule keeps its own learning rate (torch's children all start from the optimiser's
    ``lr``). :meth:`Schedule.momentum` is the running schedule's.

    Args:
        schedules: one or more schedules.
        milestones: ``len(schedules) - 1`` update indices ``>= 0``, strictly increasing.
    """

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]) -> None:
        name = "SequentialLR"
        if isinstance(schedules, (str, bytes, Mapping, Schedule)) or not isinstance(
            schedules, Iterable
        ):
            raise ArgumentTypeError(
                f"{name}(schedules) must be a list of Schedules, got "
                f"{type(schedules).__name__} {schedules!r}"
            )
        children = list(schedules)
        for child in children:
            if not isinstance(child, Schedule):
                raise ArgumentTypeError(
                    f"{name}(schedules) must be a list of Schedules, got "
                    f"{type(child).__name__} {child!r} in it"
                )
        if not children:
            raise ArgumentError(f"{name}(schedules) must hold at least one schedule, got []")
        self.schedules = tuple(children)
        self.milestones = _check_milestones(milestones, f"{name}(milestones)")
        if len(self.milestones) != len(self.schedules) - 1:
            raise ArgumentError(
                f"{name}(milestones) must hold len(schedules) - 1 = {len(self.schedules) - 1} "
                f"update indices, got {len(self.milestones)}: {list(self.milestones)}"
            )

    def _child(self, k: int) -> tuple[Schedule, int]:
        i = bisect_right(self.milestones, k)
        return self.schedules[i], k - (self.milestones[i - 1] if i else 0)

    def _lr(self, k: int) -> float:
        child, local = self._child(k)
        return child(local)

    def _momentum(self, k: int) -> float | None:
        child, local = self._child(k)
        return child.momentum(local)

    def _params(self) -> dict[str, Any]:
        return {"schedules": list(self.schedules), "milestones": list(self.milestones)}

    @classmethod
    def _from_params(cls, params: dict[str, Any]) -> Schedule:
        global _nesting
        configs = params.get("schedules")
        if not isinstance(configs, list):
            raise ArgumentTypeError(
                f"from_config(config)['schedules'] must be a list of schedule configs, got "
                f"{type(configs).__name__} {configs!r}"
            )
        if _nesting >= MAX_NESTING:
            raise ArgumentError(
                f"from_config(config): the schedule is nested too deeply (SequentialLR inside "
                f"SequentialLR more than {MAX_NESTING} levels)"
            )
        _nesting += 1
        try:
            return cls([from_config(c) for c in configs], params["milestones"])
        finally:
            _nesting -= 1


#: How deep :func:`from_config` lets ``SequentialLR`` configs nest (real schedules nest one to
#: three levels): a deeper config, such as a hostile checkpoint's, is refused the same way on
#: every Python version instead of depending on the interpreter's recursion limit.
MAX_NESTING = 32
_nesting = 0


#: ``Sequential`` is :class:`SequentialLR` (the name DESIGN.md §11 uses).
Sequential = SequentialLR


_TYPES: dict[str, type[Schedule]] = {
    cls.__name__: cls
    for cls in (
        Constant,
        StepLR,
        MultiStepLR,
        ExponentialLR,
        CosineAnnealingLR,
        LinearLR,
        OneCycleLR,
        SequentialLR,
    )
}


def from_config(config: Mapping[str, Any]) -> Schedule:
    """The schedule that :meth:`Schedule.to_config` described (``from_config(s.to_config())
    == s``)."""
    if not isinstance(config, Mapping):
        raise ArgumentTypeError(
            f"from_config(config) must be a dict, got {type(config).__name__} {config!r}"
        )
    kind = config.get("type")
    types = _TYPES
    if not isinstance(kind, str) or kind not in types:
        raise ArgumentError(
            f"from_config(config)['type'] must be one of {sorted(types)}, got {kind!r}"
        )
    cls = types[kind]
    params = {key: value for key, value in config.items() if key != "type"}
    signature = inspect.signature(cls.__init__)
    accepted = [p for p in signature.parameters.values() if p.name != "self"]
    names = [p.name for p in accepted]
    unknown = sorted(set(params) - set(names))
    missing = [p.name for p in accepted if p.default is p.empty and p.name not in params]
    if unknown or missing:
        raise ArgumentError(
            f"from_config(config) for {kind} must have the keys {names} (those with defaults "
            f"optional), got unknown {unknown} and missing {missing}"
        )
    return cls._from_params(params)
