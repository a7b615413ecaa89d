"""``Optimizer``: the one base of every twinnn optimiser.

An optimiser is its update formula, written once here in the neutral front with native
arithmetic (``+``, ``*``, ``/`` on native tensors) and a few backend ops (a correctly rounded
``sqrt``, ``maximum``), plus the per-update scalars (the learning rate, bias corrections, ...)
computed on the host in float64 and rounded to float32 once. Every elementary float32
operation is then the same IEEE operation on both backends, so one update gives bit-identical
parameters and state on torch and TensorFlow for the same gradients (on CPU; checked by
``tests/test_optimizers.py``). The scalars reach the update through a backend
:class:`~twinnn.backends.base.ScalarFeed`: a new learning rate, a schedule, OneCycle's
momentum never retrace a compiled TensorFlow step.

Parameters come as a Module, an iterable of parameters (``model.parameters()``,
``model.named_parameters()``) or torch's parameter groups, a list of dicts with ``"params"``
and per-group overrides of the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from twinnn import backends as _registry
from twinnn import config
from twinnn._checks import check_float
from twinnn.backends.base import Backend, Param
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    BackendMismatchError,
    ShapeError,
    StateDictError,
    describe_shape,
)
from twinnn.module import Module
from twinnn.schedules import Schedule, from_config

__all__ = ["Group", "Optimizer"]


@dataclass
class Group:
    """One parameter group: its parameters (with names) and its hyper-parameters.

    Also a mapping as torch's ``param_groups[i]`` is: ``group["lr"] = 1e-4`` or
    ``group["betas"] = (0.8, 0.99)`` between steps changes the next update's value (checked;
    never a retrace). Options that shape the state (``amsgrad``, momentum on or off, ...)
    cannot change.
    """

    names: list[str]
    params: list[Param]
    lr: float | Schedule
    options: dict[str, Any] = field(default_factory=dict)
    owner: Optimizer | None = field(default=None, repr=False, compare=False)

    def lr_at(self, k: int) -> float:
        """The learning rate of update ``k`` (from 0)."""
        return self.lr(k) if isinstance(self.lr, Schedule) else self.lr

    def momentum_at(self, k: int, momentum: float) -> float:
        """The momentum (SGD, RMSprop) or beta1 (Adam) of update ``k``: the schedule's where it
        cycles it (``OneCycleLR(cycle_momentum=True)``, as torch does), else ``momentum``."""
        cycled = self.lr.momentum(k) if isinstance(self.lr, Schedule) else None
        return momentum if cycled is None else cycled

    def __getitem__(self, key: str) -> Any:
        if key == "lr":
            return self.lr
        if key == "params":
            return list(self.params)
        if key not in self.options:
            raise KeyError(key)
        return self.options[key]

    def __setitem__(self, key: str, value: Any) -> None:
        owner = self.owner
        kind = type(owner).__name__ if owner is not None else "optimizer"
        if key == "lr":
            self.lr = _check_lr(value, f"{kind}.param_groups[...]['lr']")
            return
        if key not in self.options or owner is None:
            raise ArgumentError(
                f"{kind}.param_groups[...][{key!r}] cannot be set; settable: "
                f"{['lr', *sorted(self.options)]}"
            )
        options = owner._check_options({**self.options, key: value}, f"{kind}.param_groups")
        changed = Group([], [], self.lr, options)
        if owner._structure(changed) != owner._structure(self):
            raise ArgumentError(
                f"{kind}.param_groups[...][{key!r}] = {value!r} would change the shape of the "
                f"update ({owner._structure_doc}): build a new optimiser"
            )
        self.options = options


def _named(params: object, where: str) -> list[tuple[str, Param]]:
    """A Module, ``parameters()``, ``named_parameters()`` or plain parameters, with names."""
    if isinstance(params, Module):
        return params.named_parameters()
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise ArgumentTypeError(
            f"{where} must be a Module, an iterable of parameters or a list of parameter-group "
            f"dicts, got {type(params).__name__}"
        )
    names = getattr(params, "names", None)
    items = list(params)
    if names is not None and len(names) == len(items):
        return list(zip(names, items, strict=True))
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items):
        return [(str(n), p) for n, p in items]
    return [(str(i), p) for i, p in enumerate(items)]


def _check_lr(value: object, argument: str) -> float | Schedule:
    if isinstance(value, Schedule):
        return value
    return check_float(value, argument, low=0.0)


class Optimizer:
    """Base class: subclasses set ``SCALARS`` and implement ``_check_options``,
    ``_slots_for``, ``_scalars`` and ``_update``.

    Attributes:
        param_groups: the groups (names, parameters, ``lr``, options), read-only by contract:
            change the learning rate with :attr:`lr`.
    """

    #: How many float32 scalars one group's update reads.
    SCALARS: ClassVar[int] = 0

    def __init__(self, params: Any, lr: float | Schedule, defaults: dict[str, Any]) -> None:
        kind = type(self).__name__
        self._kind = kind
        groups = self._groups(params, lr, defaults)
        self._check_unique(groups)
        for g in groups:
            g.owner = self
        self.param_groups: list[Group] = groups
        self.names: tuple[str, ...] = tuple(n for g in groups for n in g.names)
        self.params: list[Param] = [p for g in groups for p in g.params]
        self._backend = self._backend_of(self.params)
        impl = self._backend
        self._slots: list[dict[str, Param]] = [
            {slot: impl.make_slot(p, fill) for slot, fill in self._slots_for(g).items()}
            for g in groups
            for p in g.params
        ]
        # per group: slot name -> that slot of each of the group's parameters
        self._group_slots: list[dict[str, list[Param]]] = []
        start = 0
        for g in groups:
            own = self._slots[start : start + len(g.params)]
            self._group_slots.append(
                {name: [s[name] for s in own] for name in (own[0] if own else {})}
            )
            start += len(g.params)
        self._feed = impl.make_scalar_feed(max(1, self.SCALARS * len(groups)))
        self._grads_owned = False  # set by each _apply
        self._step = 0

    # --- construction -----------------------------------------------------------------------------
    def _groups(self, params: Any, lr: Any, defaults: dict[str, Any]) -> list[Group]:
        kind = self._kind
        base_lr = _check_lr(lr, f"{kind}(lr)")
        base = self._check_options(dict(defaults), f"{kind}")
        specs: list[Mapping[str, Any]]
        if (
            isinstance(params, (list, tuple))
            and params
            and all(isinstance(p, Mapping) for p in params)
        ):
            specs = list(params)
        else:
            specs = [{"params": params}]
        groups = []
        for i, spec in enumerate(specs):
            where = f"{kind}(params)[{i}]" if len(specs) > 1 or spec is not params else kind
            if "params" not in spec:
                raise ArgumentError(f"{where} must have a 'params' entry, got keys {sorted(spec)}")
            unknown = sorted(set(spec) - {"params", "lr", *base})
            if unknown:
                raise ArgumentError(
                    f"{where} has unknown options {unknown}; {kind} takes {['lr', *sorted(base)]}"
                )
            named = _named(spec["params"], f"{where}['params']")
            if not named:
                raise ArgumentError(f"{where} must contain at least one parameter, got none")
            options = {**base, **{k: v for k, v in spec.items() if k not in ("params", "lr")}}
            options = self._check_options(options, where)
            group_lr = _check_lr(spec["lr"], f"{where}['lr']") if "lr" in spec else base_lr
            groups.append(Group([n for n, _ in named], [p for _, p in named], group_lr, options))
        if len(groups) > 1:  # names must be unique across groups: prefix with the group
            all_names = [n for g in groups for n in g.names]
            if len(set(all_names)) != len(all_names):
                for i, g in enumerate(groups):
                    g.names = [f"{i}.{n}" for n in g.names]
        return groups

    def _check_unique(self, groups: list[Group]) -> None:
        """A parameter listed twice would be updated twice per step: refuse it (torch warns
        within a group and raises across groups)."""
        first: dict[int, str] = {}
        for g in groups:
            for name, param in zip(g.names, g.params, strict=True):
                if id(param) in first:
                    raise ArgumentError(
                        f"{self._kind}(params) lists the same parameter twice "
                        f"({first[id(param)]!r} and {name!r}); each parameter may appear once "
                        "(it would be updated twice per step)"
                    )
                first[id(param)] = name

    def _backend_of(self, params: Sequence[Param]) -> Backend:
        for impl in [config.current(), *_registry.loaded().values()]:
            if all(impl.is_parameter(p) for p in params):
                return impl
        raise BackendMismatchError(
            f"{self._kind}(params) must all be parameters of one backend (made by twinnn layers "
            "or twinnn.parameter); got " + ", ".join(sorted({type(p).__name__ for p in params}))
        )

    # --- what subclasses define -------------------------------------------------------------------
    def _check_options(self, options: dict[str, Any], where: str) -> dict[str, Any]:
        """Validated options of one group (raise a twinnn error naming ``where``)."""
        return options

    def _slots_for(self, group: Group) -> dict[str, float]:
        """The slots this group's parameters keep, by name, with their initial value
        (``{"exp_avg": 0.0}``; some depend on options: momentum)."""
        return {}

    #: What :meth:`_structure` covers, for messages.
    _structure_doc: ClassVar[str] = "which state is kept"

    def _structure(self, group: Group) -> tuple[Any, ...]:
        """What the update's *code* depends on: the slots kept and the branches taken (a
        traced TensorFlow step bakes them in). Everything else is a fed scalar and may change
        between steps; this may not (``load_state_dict`` and ``param_groups[i][key] = ...``
        refuse it)."""
        return tuple(sorted(self._slots_for(group)))

    @staticmethod
    def _decays(group: Group) -> bool:
        """Whether ``group`` has a nonzero ``weight_decay``. The update skips the decay's
        passes when it is zero (as torch does); unlike :meth:`_structure` this may change
        between steps: it is part of :meth:`_prepare`'s value, so a compiled step traces
        another graph when it changes."""
        return bool(group.options.get("weight_decay", 0.0) != 0.0)

    def _coupled_decay(self, group: Group, grad: Any, param: Any, decay: Any) -> Any:
        """``grad + decay * param`` (L2 coupled into the gradient), just ``grad`` when the
        group's ``weight_decay`` is 0 (two passes over every parameter less)."""
        return grad + decay * param if self._decays(group) else grad

    def _scalars(self, group: Group, k: int) -> list[float]:
        """The ``SCALARS`` float64 scalars of update ``k`` (from 0) for ``group``."""
        raise NotImplementedError

    def _update(
        self,
        group: Group,
        params: list[Param],
        grads: list[Any],
        slots: dict[str, list[Param]],
        s: Sequence[Any],
    ) -> None:
        """The update of one group: arithmetic on :class:`~twinnn.backends.base.TensorVector`
        s of its ``params``, ``grads`` and ``slots`` (``self._backend.vector(...)``) and its
        scalars ``s``; writes with ``TensorVector.write_to``."""
        raise NotImplementedError

    # --- the update -------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend.NAME

    @property
    def step_count(self) -> int:
        """How many updates were applied."""
        return self._step

    @property
    def lr(self) -> float:
        """The learning rate of the next update (first group's)."""
        return self.param_groups[0].lr_at(self._step)

    @lr.setter
    def lr(self, value: float | Schedule) -> None:
        checked = _check_lr(value, f"{self._kind}.lr")
        for g in self.param_groups:
            g.lr = checked

    def _prepare(self) -> tuple[bool, ...]:
        """Write the scalars of update ``k`` into the feed (host, float64, rounded once);
        return which groups decay (:meth:`_decays`), the code variant the update takes."""
        k = self._step
        values: list[float] = []
        for g in self.param_groups:
            values.extend(self._scalars(g, k))
        self._feed.set(np.asarray(values or [0.0], dtype=np.float64).astype(np.float32))
        return tuple(self._decays(g) for g in self.param_groups)

    def _apply(self, grads: Sequence[Any], owned: bool = False) -> None:
        """The update of every parameter from ``grads`` (traceable). ``owned``: the gradients
        are the step's own temporaries, which the update may overwrite
        (:meth:`TensorVector.scale_`); never a user's tensors (:meth:`apply_gradients`)."""
        self._grads_owned = owned
        scalars = self._feed.read()
        index = 0
        for gi, g in enumerate(self.param_groups):
            s = scalars[gi * self.SCALARS : (gi + 1) * self.SCALARS]
            count = len(g.params)
            self._update(g, g.params, list(grads[index : index + count]), self._group_slots[gi], s)
            index += count

    def _finish(self) -> None:
        self._step += 1

    def apply_gradients(self, grads: Sequence[Any]) -> None:
        """Update the parameters from ``grads`` (same order as ``params``), for custom loops.

        Each gradient is a native tensor of this optimiser's backend or an array-like (cast to
        float32) of its parameter's shape. Everything is checked before anything changes: on a
        bad gradient neither the parameters nor the optimiser state move.
        """
        if isinstance(grads, (str, bytes)) or not isinstance(grads, Sequence):
            raise ArgumentTypeError(
                f"{self._kind}.apply_gradients(grads) must be a list of gradients in parameter "
                f"order, got {type(grads).__name__}"
            )
        if len(grads) != len(self.params):
            raise ArgumentError(
                f"{self._kind}.apply_gradients(grads) needs {len(self.params)} gradients, got "
                f"{len(grads)}"
            )
        impl = self._backend
        checked = []
        for i, (name, param, grad) in enumerate(zip(self.names, self.params, grads, strict=True)):
            tensor = impl.convert_float(grad, f"grads[{i}]")
            expected, got = impl.static_shape(param), impl.static_shape(tensor)
            if got != expected:
                raise ShapeError(
                    f"{self._kind}.apply_gradients: grads[{i}] (for parameter {name!r}) must have "
                    f"shape {describe_shape(expected)}, got {describe_shape(got)}"
                )
            checked.append(tensor)
        self._prepare()
        with impl.no_grad():
            self._apply(checked)
        self._finish()

    def check_params_of(self, model: Module, function: str) -> None:
        """Raise :class:`~twinnn.errors.ArgumentError` unless every parameter this optimiser
        updates is a parameter of ``model`` (the same object; a subset is fine).

        ``function`` names the call in the message (``"train_step"``, ``"save"``).
        """
        own = {id(p) for _, p in model.named_parameters()}
        foreign = [n for n, p in zip(self.names, self.params, strict=True) if id(p) not in own]
        if foreign:
            raise ArgumentError(
                f"{function}(optimizer) must update parameters of the model "
                f"({type(model).__name__}); its parameters {foreign[:5]}"
                f"{' ...' if len(foreign) > 5 else ''} are not the model's (an optimiser built "
                "for another model?)"
            )

    # --- state ------------------------------------------------------------------------------------
    def _group_state(self, g: Group) -> dict[str, Any]:
        lr = {"schedule": g.lr.to_config()} if isinstance(g.lr, Schedule) else g.lr
        return {"params": list(g.names), "lr": lr, **g.options}

    def state_dict(self) -> dict[str, Any]:
        """``{"type", "step", "param_groups": [{"params": names, "lr", options...}],
        "state": {name: {slot: float32 ndarray}}}`` -- copies, keyed by parameter name."""
        to_numpy = self._backend.to_numpy
        return {
            "type": self._kind,
            "step": self._step,
            "param_groups": [self._group_state(g) for g in self.param_groups],
            "state": {
                name: {slot: np.array(to_numpy(v), copy=True) for slot, v in slots.items()}
                for name, slots in zip(self.names, self._slots, strict=True)
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count, every group's learning rate (or schedule) and options, and
        every slot. Everything is checked first; on any problem a
        :class:`~twinnn.errors.StateDictError` lists them all and nothing changes. Options
        that shape the state (``amsgrad``, ``centered``, momentum on or off) must equal this
        optimiser's.
        """
        problems, staged = self._stage(state)
        if problems:
            raise StateDictError(
                f"{self._kind}.load_state_dict: " + "; ".join(problems) + " (nothing was loaded)"
            )
        step, groups, slots = staged
        for g, (lr, options) in zip(self.param_groups, groups, strict=True):
            g.lr, g.options = lr, options
        impl = self._backend
        for variables, values in zip(self._slots, slots, strict=True):
            for slot, value in values.items():
                impl.assign(variables[slot], value)
        self._step = step

    def state_problems(self, state: Mapping[str, Any]) -> list[str]:
        """What :meth:`load_state_dict` would refuse in ``state`` (empty: it would load)."""
        return self._stage(state)[0]

    def _stage(self, state: Mapping[str, Any]) -> tuple[list[str], Any]:
        kind = self._kind
        if not isinstance(state, Mapping):
            return [f"the state must be a mapping, got {type(state).__name__}"], None
        problems: list[str] = []
        if state.get("type", kind) != kind:
            problems.append(f"it is the state of a {state.get('type')!r}, this is a {kind!r}")
        step = state.get("step", 0)
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            problems.append(f"step must be an int >= 0, got {step!r}")
        groups = state.get("param_groups")
        staged_groups: list[tuple[float | Schedule, dict[str, Any]]] = []
        if not isinstance(groups, Sequence) or len(groups) != len(self.param_groups):
            got = len(groups) if isinstance(groups, Sequence) else type(groups).__name__
            problems.append(
                f"param_groups must be a list of {len(self.param_groups)} group(s), got {got}"
            )
        else:
            for i, (saved, g) in enumerate(zip(groups, self.param_groups, strict=True)):
                staged = self._stage_group(i, saved, g, problems)
                if staged is not None:
                    staged_groups.append(staged)
        staged_slots = self._stage_slots(state.get("state", {}), problems)
        return problems, (int(step) if not problems else 0, staged_groups, staged_slots)

    def _stage_group(
        self, i: int, saved: Any, g: Group, problems: list[str]
    ) -> tuple[float | Schedule, dict[str, Any]] | None:
        where = f"param_groups[{i}]"
        if not isinstance(saved, Mapping):
            problems.append(f"{where} must be a mapping, got {type(saved).__name__}")
            return None
        if list(saved.get("params", [])) != g.names:
            problems.append(
                f"{where} holds parameters {list(saved.get('params', []))!r}, this optimiser's "
                f"group {g.names!r}"
            )
        try:
            raw_lr = saved.get("lr", g.lr)
            lr = from_config(raw_lr["schedule"]) if isinstance(raw_lr, Mapping) else raw_lr
            lr = _check_lr(lr, f"{where}['lr']")
            options = {k: saved.get(k, v) for k, v in g.options.items()}
            options = self._check_options(options, where)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(str(exc))
            return None
        if self._structure(Group([], [], lr, options)) != self._structure(g):
            problems.append(
                f"{where}: options {options} change the shape of the update "
                f"({self._structure_doc}) from this optimiser's {g.options}"
            )
            return None
        return lr, options

    def _stage_slots(self, saved: Any, problems: list[str]) -> list[dict[str, np.ndarray]]:
        if not isinstance(saved, Mapping):
            problems.append(f"state must be a mapping of name -> slots, got {type(saved).__name__}")
            return []
        staged: list[dict[str, np.ndarray]] = []
        for name, param, slots in zip(self.names, self.params, self._slots, strict=True):
            values = saved.get(name, {})
            if not isinstance(values, Mapping):
                problems.append(f"state[{name!r}] must be a mapping, got {type(values).__name__}")
                values = {}
            expected = self._backend.static_shape(param)
            entry: dict[str, np.ndarray] = {}
            for slot in slots:
                if slot not in values:
                    problems.append(f"state[{name!r}] is missing {slot!r}")
                    continue
                array = np.asarray(values[slot])
                if array.shape != expected:
                    problems.append(
                        f"state[{name!r}][{slot!r}]: expected shape {describe_shape(expected)}, "
                        f"got {describe_shape(array.shape)}"
                    )
                elif array.dtype != np.float32:
                    problems.append(
                        f"state[{name!r}][{slot!r}]: expected dtype float32, got {array.dtype}"
                    )
                else:
                    entry[slot] = array
            unexpected = sorted(set(values) - set(slots))
            if unexpected:
                problems.append(f"state[{name!r}] has unexpected slots {unexpected}")
            staged.append(entry)
        unknown = sorted(set(saved) - set(self.names))
        if unknown:
            problems.append(f"state has entries for unknown parameters {unknown}")
        return staged

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{len(g.params)} params lr={g.lr!r} {g.options}" for g in self.param_groups
        )
        return f"{self._kind}({groups})"


def bias_correction(beta: float, t: int) -> float:
    """``1 - beta**t`` in float64."""
    return 1.0 - math.pow(beta, t)
