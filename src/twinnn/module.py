"""``Module``: the neutral base class of every layer and model.

Parameters are the backend's native variables (``torch.nn.Parameter`` / ``tf.Variable``), so
native arithmetic works on them inside ``forward``. A Module remembers the backend it was
created with; while its ``forward`` runs, twinnn's neutral ops dispatch to that backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from twinnn import backends as _registry
from twinnn import config
from twinnn.backends.base import Backend, Param
from twinnn.backends.host import as_array
from twinnn.errors import BackendMismatchError, ModuleError, StateDictError, describe_shape

__all__ = ["IncompatibleKeys", "Module", "ParameterList", "parameter"]


def parameter(value: Any) -> Param:
    """A trainable float32 variable of the current backend, on the current device.

    ``value`` is any numeric array-like or native tensor of the current backend (its shape is
    kept, ``()`` for a scalar); assign the result to a Module attribute to register it.
    """
    impl = config.current()
    if isinstance(value, (np.ndarray, np.generic, list, tuple, int, float)):
        return impl.make_parameter(as_array(value, "parameter(value)", "float32"))
    return impl.make_parameter(impl.to_numpy(impl.convert_float(value, "parameter(value)")))


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _is_any_parameter(value: object) -> bool:
    return any(impl.is_parameter(value) for impl in _registry.loaded().values())


def _trainable_inside(value: object, depth: int = 0) -> str | None:
    """``"Module"``/``"parameter"`` when a plain container holds one (at any depth), else None."""
    items = value.values() if isinstance(value, dict) else value
    for item in items:  # type: ignore[attr-defined]
        if isinstance(item, Module):
            return "Module"
        if _is_any_parameter(item):
            return "parameter"
        if isinstance(item, _CONTAINERS) and depth < 8:
            found = _trainable_inside(item, depth + 1)
            if found is not None:
                return found
    return None


class ParameterList(list[Param]):
    """A list of native parameters that also carries their dotted names (``.names``)."""

    def __init__(self, named: list[tuple[str, Param]]) -> None:
        super().__init__(p for _, p in named)
        self.names: tuple[str, ...] = tuple(n for n, _ in named)


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class: assign sub-modules and parameters as attributes, define ``forward``.

    ``named_parameters()`` lists parameters in attribute-assignment order, depth first, with
    dotted names (``encoder.lstm.w_ih_l0``); a parameter shared by two attributes is listed
    once, under its first name.
    """

    _backend: Backend
    _members: dict[str, Any]

    def __init__(self) -> None:
        object.__setattr__(self, "_backend", config.current())
        object.__setattr__(self, "_members", {})

    # --- attribute registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        members = self.__dict__.get("_members")
        if members is None:
            raise ModuleError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning attribute {name!r}"
            )
        self._check_registrable(name, value)
        if isinstance(value, Module):
            if value._backend is not self._backend:
                raise BackendMismatchError(
                    f"cannot assign {name!r}: the sub-module was created on backend "
                    f"{value._backend.NAME!r}, this {type(self).__name__} on "
                    f"{self._backend.NAME!r}"
                )
            members[name] = value
        elif self._backend.is_parameter(value):
            members[name] = value
        else:
            members.pop(name, None)
        object.__setattr__(self, name, value)

    def _check_registrable(self, name: str, value: Any) -> None:
        """Refuse what would silently never be trained or saved."""
        if isinstance(value, _CONTAINERS):
            found = _trainable_inside(value)
            if found is not None:
                raise ModuleError(
                    f"cannot assign {name!r}: a plain Python {type(value).__name__} holding a "
                    f"{found} is not registered (its contents would never be trained or saved); "
                    "assign each one as its own attribute (setattr(self, f'layer{i}', layer)) "
                    "until twinnn's containers (ModuleList, ModuleDict, ParameterList) arrive"
                )
        elif (
            not isinstance(value, Module)
            and not self._backend.is_parameter(value)
            and _is_any_parameter(value)
        ):
            raise BackendMismatchError(
                f"cannot assign {name!r}: the parameter is a {type(value).__module__}."
                f"{type(value).__name__} of another backend, this {type(self).__name__} "
                f"was created on {self._backend.NAME!r}"
            )

    def __delattr__(self, name: str) -> None:
        self._members.pop(name, None)
        object.__delattr__(self, name)

    # --- calling ----------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModuleError(
            f"{type(self).__name__} was called but defines no forward(); subclasses of "
            "twinnn.Module must define forward(self, ...)"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if config.is_current(self._backend):
            return self.forward(*args, **kwargs)
        with config.using(self._backend):
            return self.forward(*args, **kwargs)

    @property
    def backend(self) -> str:
        """The name of the backend this module was created with."""
        return self._backend.NAME

    # --- parameters -------------------------------------------------------------------------------
    def _walk(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Param]]:
        for name, member in self._members.items():
            if isinstance(member, Module):
                yield from member._walk(f"{prefix}{name}.", seen)
            elif id(member) not in seen:
                seen.add(id(member))
                yield f"{prefix}{name}", member

    def named_parameters(self) -> list[tuple[str, Param]]:
        """``[(dotted_name, native_parameter), ...]`` in a deterministic order."""
        return list(self._walk("", set()))

    def parameters(self) -> ParameterList:
        """The native parameters, in ``named_parameters()`` order (``.names`` holds names)."""
        return ParameterList(self.named_parameters())

    def children(self) -> list[Module]:
        """The direct sub-modules, in assignment order."""
        return [m for m in self._members.values() if isinstance(m, Module)]

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{name: float32 ndarray}`` copies in the neutral layout."""
        to_numpy = self._backend.to_numpy
        return {name: np.array(to_numpy(p), copy=True) for name, p in self.named_parameters()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy ``state_dict`` into the parameters.

        Every entry is checked first (names when ``strict``; shapes and float32 dtype always);
        on any mismatch a :class:`~twinnn.errors.StateDictError` lists every problem and no
        parameter is changed.
        """
        if not isinstance(state_dict, Mapping):
            raise StateDictError(
                f"load_state_dict(state_dict) must be a mapping of name -> array, "
                f"got {type(state_dict).__name__}"
            )
        params = dict(self.named_parameters())
        missing = [n for n in params if n not in state_dict]
        unexpected = [n for n in state_dict if n not in params]
        problems: list[str] = []
        if strict and missing:
            problems.append(f"missing entries {missing}")
        if strict and unexpected:
            problems.append(f"unexpected entries {unexpected}")
        staged: dict[str, np.ndarray] = {}
        for name, param in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value if isinstance(value, np.ndarray) else self._backend.to_numpy(value)
            expected = self._backend.static_shape(param)
            if tuple(array.shape) != expected:
                problems.append(
                    f"{name!r}: expected shape {describe_shape(expected)}, "
                    f"got {describe_shape(array.shape)}"
                )
            elif array.dtype != np.float32:
                problems.append(f"{name!r}: expected dtype float32, got {array.dtype}")
            else:
                staged[name] = array
        if problems:
            raise StateDictError(
                f"load_state_dict into {type(self).__name__}: "
                + "; ".join(problems)
                + " (nothing was loaded)"
            )
        for name, array in staged.items():
            self._backend.assign(params[name], array)
        return IncompatibleKeys(missing, unexpected)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={type(m).__name__}" for n, m in self._members.items())
        return f"{type(self).__name__}({inner})"
