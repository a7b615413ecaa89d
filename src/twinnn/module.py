"""``Module``: the neutral base class of every layer and model.

Parameters are the backend's native variables (``torch.nn.Parameter`` / ``tf.Variable``), so
native arithmetic works on them inside ``forward``. A Module remembers the backend it was
created with; while its ``forward`` runs, twinnn's neutral ops dispatch to that backend.

A Module also holds *buffers* (non-trainable state such as BatchNorm's running statistics:
``register_buffer``; in ``state_dict()`` and checkpoints, not in ``parameters()``) and a mode
(``train()`` / ``eval()``, read as ``module.training``). The containers that register a
variable number of sub-modules or parameters are in :mod:`twinnn.containers`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from twinnn import backends as _registry
from twinnn import config
from twinnn._checks import check_bool
from twinnn.backends.base import Backend, Param
from twinnn.backends.host import as_array
from twinnn.errors import (
    ArgumentTypeError,
    BackendMismatchError,
    DTypeError,
    ModuleError,
    ShapeError,
    StateDictError,
    describe_shape,
)

__all__ = ["BUFFER_DTYPES", "IncompatibleKeys", "Module", "Parameters", "parameter"]

#: The dtypes a buffer may have (float data becomes float32).
BUFFER_DTYPES = ("float32", "int32", "int64", "bool")


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


class Parameters(list[Param]):
    """What ``Module.parameters()`` returns: a list of native parameters that also carries
    their dotted names (``.names``), so an optimiser built from it names its state."""

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
    once, under its first name. Buffers (``register_buffer``) are listed the same way by
    ``named_buffers()``.

    A new Module is in training mode (``training`` is True). ``train()`` / ``eval()`` set the
    mode of the module and every sub-module; ``forward`` may read ``self.training`` (dropout,
    BatchNorm). ``train_step`` runs the forward in training mode and ``eval_step`` /
    ``predict_step`` in eval mode, whatever the modes were, and put the modes back after.

    Calling a module (``model(x, lengths)``) converts NumPy arrays and lists of numbers among
    its arguments -- nested in tuples, lists and dicts too -- to native tensors on the device
    (floats to float32, integers keep their dtype), so native arithmetic in ``forward`` works
    on both backends. Native tensors, Python numbers, strings and ``None`` pass unchanged.
    """

    _backend: Backend
    _members: dict[str, Any]
    _buffers: dict[str, Any]
    _persistent: set[str]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_backend", config.current())
        object.__setattr__(self, "_members", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_persistent", set())
        object.__setattr__(self, "training", True)

    # --- attribute registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        members = self.__dict__.get("_members")
        if members is None:
            raise ModuleError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                f"assigning attribute {name!r}"
            )
        if name == "training":
            check_bool(value, f"{type(self).__name__}.training")
        if name in self._buffers:
            self._write_buffer(name, value)
            return
        self._check_registrable(name, value)
        if isinstance(value, Module):
            self._check_same_backend(name, value)
            members[name] = value
        elif self._backend.is_parameter(value):
            members[name] = value
        else:
            members.pop(name, None)
        object.__setattr__(self, name, value)

    def _check_same_backend(self, name: str, module: Module) -> None:
        if module._backend is not self._backend:
            raise BackendMismatchError(
                f"cannot assign {name!r}: the sub-module was created on backend "
                f"{module._backend.NAME!r}, this {type(self).__name__} on "
                f"{self._backend.NAME!r}"
            )

    def _check_registrable(self, name: str, value: Any) -> None:
        """Refuse what would silently never be trained or saved."""
        if isinstance(value, _CONTAINERS):
            found = _trainable_inside(value)
            if found is not None:
                container = "ModuleDict" if isinstance(value, dict) else "ModuleList"
                if found == "parameter":
                    container = "ParameterList"
                raise ModuleError(
                    f"cannot assign {name!r}: a plain Python {type(value).__name__} holding a "
                    f"{found} is not registered (its contents would never be trained or saved); "
                    f"wrap it in twinnn.{container}(...)"
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
        if self._buffers.pop(name, None) is not None:
            self._persistent.discard(name)
        object.__delattr__(self, name)

    # --- buffers ----------------------------------------------------------------------------------
    def register_buffer(self, name: str, value: Any, persistent: bool = True) -> None:
        """Register non-trainable state ``name`` holding a copy of ``value``.

        ``value`` is an array-like or native tensor; floats are stored as float32, integers
        and bools keep their dtype (one of :data:`BUFFER_DTYPES`). The buffer is a native
        tensor (torch) or a non-trainable ``tf.Variable`` (TensorFlow), read as ``self.<name>``.
        Assigning ``self.<name> = new_value`` later writes the new value into the buffer in place
        (same shape and dtype; inside a compiled step too, outside the gradient). Buffers are in
        ``state_dict()`` and checkpoints (unless ``persistent=False``), never in
        ``parameters()``, so no optimiser updates them.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ArgumentTypeError(
                f"register_buffer(name) must be a Python identifier string, got {name!r}"
            )
        check_bool(persistent, "register_buffer(persistent)")
        if name in self._members or (hasattr(self, name) and name not in self._buffers):
            raise ModuleError(
                f"register_buffer({name!r}): {type(self).__name__} already has an attribute "
                f"{name!r}"
            )
        array = self._buffer_array(name, value)
        buffer = self._backend.make_buffer(array)
        self._buffers[name] = buffer
        if persistent:
            self._persistent.add(name)
        else:
            self._persistent.discard(name)
        object.__setattr__(self, name, buffer)

    def _buffer_array(self, name: str, value: Any) -> np.ndarray:
        argument = f"register_buffer({name!r}, value)"
        if self._backend.is_native(value):
            array = self._backend.to_numpy(value)
            if array.dtype.kind == "f":
                array = array.astype(np.float32)
        else:
            array = as_array(value, argument, None)
        if array.dtype.name not in BUFFER_DTYPES:
            array = array.astype(np.int64) if array.dtype.kind in "iu" else array
        if array.dtype.name not in BUFFER_DTYPES:
            raise ArgumentTypeError(
                f"{argument} must hold one of {list(BUFFER_DTYPES)}, got dtype {array.dtype}"
            )
        return array

    def _write_buffer(self, name: str, value: Any) -> None:
        buffer = self._buffers[name]
        impl = self._backend
        dtype = impl.dtype_name(buffer)
        where = f"{type(self).__name__}.{name} = ..."
        if impl.is_native(value):
            new = value
        else:
            new = impl.convert(as_array(value, where, None), where, dtype=dtype)
        if impl.dtype_name(new) != dtype:
            raise DTypeError(
                f"{where}: the buffer has dtype {dtype}, got a tensor of dtype "
                f"{impl.dtype_name(new)} (cast it first)"
            )
        old, shape = impl.static_shape(buffer), impl.static_shape(new)
        if len(old) != len(shape) or any(
            a is not None and b is not None and a != b for a, b in zip(old, shape, strict=False)
        ):
            raise ShapeError(
                f"{where}: the buffer has shape {describe_shape(old)}, got shape "
                f"{describe_shape(shape)} (register_buffer again to change its shape)"
            )
        impl.write_buffer(buffer, new)

    # --- modes ------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or eval mode on this module and every sub-module;
        returns ``self``."""
        flag = check_bool(mode, "train(mode)")
        for module in self.modules():
            object.__setattr__(module, "training", flag)
        return self

    def eval(self) -> Module:
        """Eval mode on this module and every sub-module (``train(False)``); returns ``self``."""
        return self.train(False)

    # --- calling ----------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModuleError(
            f"{type(self).__name__} was called but defines no forward(); subclasses of "
            "twinnn.Module must define forward(self, ...)"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if config.is_current(self._backend):
            return self._run_forward(args, kwargs)
        with config.using(self._backend):
            return self._run_forward(args, kwargs)

    def _run_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        for arg in args:  # a plain loop: this runs for every layer call
            if isinstance(arg, _HOST_KINDS) and _holds_host_data(arg):
                convert = self._backend.convert
                args = tuple(_to_native(a, convert, f"args[{i}]") for i, a in enumerate(args))
                break
        if kwargs and any(_holds_host_data(v) for v in kwargs.values()):
            convert = self._backend.convert
            kwargs = {k: _to_native(v, convert, k) for k, v in kwargs.items()}
        return self.forward(*args, **kwargs)

    @property
    def backend(self) -> str:
        """The name of the backend this module was created with."""
        return self._backend.NAME

    # --- sub-modules, parameters, buffers ---------------------------------------------------------
    def named_modules(self, prefix: str = "") -> list[tuple[str, Module]]:
        """``[(dotted_name, module), ...]``: this module (name ``prefix``, ``""`` by default),
        then every sub-module, depth first in assignment order; each module once."""
        found: list[tuple[str, Module]] = []
        seen: set[int] = set()

        def visit(module: Module, name: str) -> None:
            if id(module) in seen:
                return
            seen.add(id(module))
            found.append((name, module))
            for child_name, child in module._members.items():
                if isinstance(child, Module):
                    visit(child, f"{name}.{child_name}" if name else child_name)

        visit(self, prefix)
        return found

    def modules(self) -> list[Module]:
        """This module and every sub-module, as in :meth:`named_modules`."""
        return [m for _, m in self.named_modules()]

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

    def parameters(self) -> Parameters:
        """The native parameters, in ``named_parameters()`` order (``.names`` holds names)."""
        return Parameters(self.named_parameters())

    def named_buffers(self, persistent_only: bool = False) -> list[tuple[str, Any]]:
        """``[(dotted_name, native_buffer), ...]``, module by module as
        :meth:`named_modules`, each module's buffers in registration order."""
        found = []
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, buffer in module._buffers.items():
                if id(buffer) in seen or (persistent_only and name not in module._persistent):
                    continue
                seen.add(id(buffer))
                found.append((f"{prefix}.{name}" if prefix else name, buffer))
        return found

    def buffers(self) -> list[Any]:
        """The native buffers, in :meth:`named_buffers` order."""
        return [b for _, b in self.named_buffers()]

    def children(self) -> list[Module]:
        """The direct sub-modules, in assignment order."""
        return [m for m in self._members.values() if isinstance(m, Module)]

    # --- state ------------------------------------------------------------------------------------
    def _state_items(self) -> list[tuple[str, Any]]:
        """Parameters, then persistent buffers: what ``state_dict`` and checkpoints hold."""
        return self.named_parameters() + self.named_buffers(persistent_only=True)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{name: ndarray}`` copies in the neutral layout: the parameters (float32), then the
        persistent buffers (their own dtype)."""
        to_numpy = self._backend.to_numpy
        return {name: np.array(to_numpy(t), copy=True) for name, t in self._state_items()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy ``state_dict`` into the parameters and persistent buffers.

        Every entry is checked first (names when ``strict``; shapes and dtypes always:
        float32 for parameters, the buffer's own dtype for buffers); on any mismatch a
        :class:`~twinnn.errors.StateDictError` lists every problem and nothing is changed.
        """
        if not isinstance(state_dict, Mapping):
            raise StateDictError(
                f"load_state_dict(state_dict) must be a mapping of name -> array, "
                f"got {type(state_dict).__name__}"
            )
        impl = self._backend
        targets = dict(self._state_items())
        missing = [n for n in targets if n not in state_dict]
        unexpected = [n for n in state_dict if n not in targets]
        problems: list[str] = []
        if strict and missing:
            problems.append(f"missing entries {missing}")
        if strict and unexpected:
            problems.append(f"unexpected entries {unexpected}")
        staged: dict[str, np.ndarray] = {}
        for name, target in targets.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value if isinstance(value, np.ndarray) else impl.to_numpy(value)
            expected = impl.static_shape(target)
            dtype = impl.dtype_name(target)
            if tuple(array.shape) != expected:
                problems.append(
                    f"{name!r}: expected shape {describe_shape(expected)}, "
                    f"got {describe_shape(array.shape)}"
                )
            elif array.dtype.name != dtype:
                problems.append(f"{name!r}: expected dtype {dtype}, got {array.dtype}")
            else:
                staged[name] = array
        if problems:
            raise StateDictError(
                f"load_state_dict into {type(self).__name__}: "
                + "; ".join(problems)
                + " (nothing was loaded)"
            )
        for name, array in staged.items():
            impl.assign(targets[name], array)
        return IncompatibleKeys(missing, unexpected)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={type(m).__name__}" for n, m in self._members.items())
        return f"{type(self).__name__}({inner})"


# --- direct calls: host data among the arguments -------------------------------------------------

_DEPTH = 16
_HOST_KINDS = (np.ndarray, list, tuple, dict)


def _is_numbers(value: object, depth: int = 0) -> bool:
    """True for a (nested) list of numbers or bools: data, not a structure of arguments."""
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return True
    if isinstance(value, list) and depth < _DEPTH:
        return all(_is_numbers(v, depth + 1) for v in value)
    return False


def _holds_host_data(value: object, depth: int = 0) -> bool:
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, (list, tuple)) and depth < _DEPTH:
        if isinstance(value, list) and value and _is_numbers(value):
            return True
        return any(_holds_host_data(v, depth + 1) for v in value)
    if isinstance(value, dict) and depth < _DEPTH:
        return any(_holds_host_data(v, depth + 1) for v in value.values())
    return False


def _to_native(value: Any, convert: Any, name: str, depth: int = 0) -> Any:
    """``value`` with NumPy arrays and lists of numbers replaced by native tensors."""
    if isinstance(value, np.ndarray):
        return convert(value, name)
    if isinstance(value, list) and value and _is_numbers(value):
        return convert(value, name)
    if depth >= _DEPTH:
        return value
    if isinstance(value, (list, tuple)):
        items = [_to_native(v, convert, f"{name}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: _to_native(v, convert, f"{name}[{k!r}]", depth + 1) for k, v in value.items()}
    return value
