"""Containers that register a variable number of sub-modules or parameters (torch's meanings).

A plain Python list or dict of layers assigned to a Module is refused (its contents would never
be trained or saved); wrap it in one of these instead. Names are the positions or keys, so the
parameters of ``self.blocks = ModuleList([Linear(4, 4), Linear(4, 2)])`` are named
``blocks.0.weight``, ``blocks.0.bias``, ``blocks.1.weight``, ... -- the names torch gives, so
state dicts convert by name.

- :class:`Sequential` ``(*layers)``: calls them in order, each one's output the next one's
  input.
- :class:`ModuleList` ``(modules=())``: a list of modules (index, slice, append, extend,
  insert, ``del``, iterate); it has no ``forward`` of its own.
- :class:`ModuleDict` ``(modules=None)``: a dict of modules with string keys, in insertion
  order.
- :class:`ParameterList` ``(values=())``: a list of parameters; array-likes are made parameters
  (float32), as torch's ``ParameterList`` wraps tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

from twinnn.backends.base import Param
from twinnn.errors import ArgumentError, ArgumentTypeError, ModuleError
from twinnn.module import Module, parameter

__all__ = ["ModuleDict", "ModuleList", "ParameterList", "Sequential"]


def _index(position: object, length: int, where: str, *, insert: bool = False) -> int:
    if isinstance(position, bool) or not isinstance(position, int):
        raise ArgumentTypeError(
            f"{where} index must be an int, got {type(position).__name__} {position!r}"
        )
    upper = length + 1 if insert else length
    index = position + length if position < 0 else position
    if insert:
        return min(max(index, 0), length)
    if not 0 <= index < upper:
        raise IndexError(f"{where} index {position} is out of range for length {length}")
    return index


class _ListContainer(Module):
    """Shared machinery of ModuleList and ParameterList: items named "0", "1", ..."""

    _items: list[Any]

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_items", [])

    def _checked(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def _renumber(self) -> None:
        members = self._members
        for key in [k for k in members if k.isdigit()]:
            del members[key]
        for i, item in enumerate(self._items):
            members[str(i)] = item

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def append(self, value: Any) -> _ListContainer:
        """Add ``value`` at the end; returns ``self``."""
        self._items.append(self._checked(value, f"{type(self).__name__}.append"))
        self._renumber()
        return self

    def extend(self, values: Iterable[Any]) -> _ListContainer:
        """Add each of ``values`` at the end; returns ``self``."""
        if isinstance(values, (str, bytes, Module)) or not isinstance(values, Iterable):
            raise ArgumentTypeError(
                f"{type(self).__name__}.extend(values) must be an iterable, got "
                f"{type(values).__name__}"
            )
        checked = [self._checked(v, f"{type(self).__name__}.extend") for v in values]
        self._items.extend(checked)
        self._renumber()
        return self

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before position ``index`` (later items are renamed)."""
        where = f"{type(self).__name__}.insert"
        position = _index(index, len(self._items), where, insert=True)
        self._items.insert(position, self._checked(value, where))
        self._renumber()

    def __delitem__(self, index: int | slice) -> None:
        if isinstance(index, slice):
            del self._items[index]
        else:
            del self._items[_index(index, len(self._items), f"del {type(self).__name__}[...]")]
        self._renumber()

    def __setitem__(self, index: int, value: Any) -> None:
        where = f"{type(self).__name__}[...] ="
        position = _index(index, len(self._items), where)
        self._items[position] = self._checked(value, where)
        self._renumber()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModuleError(
            f"a {type(self).__name__} has no forward(); iterate over it in the forward of the "
            "Module that holds it (or use twinnn.Sequential to chain layers)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self._items)})"


class ModuleList(_ListContainer):
    """A list of sub-modules, registered under their positions (``"0"``, ``"1"``, ...)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        self.extend(modules)

    def _checked(self, value: Any, where: str) -> Module:
        if not isinstance(value, Module):
            raise ArgumentTypeError(
                f"{where}: a ModuleList holds twinnn Modules, got {type(value).__name__}"
            )
        self._check_same_backend(where, value)
        return value

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> ModuleList: ...
    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        if isinstance(index, slice):
            return ModuleList(self._items[index])
        item: Module = self._items[_index(index, len(self._items), "ModuleList[...]")]
        return item

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._items))


class ParameterList(_ListContainer):
    """A list of parameters, registered under their positions (``"0"``, ``"1"``, ...).

    Items are native parameters of this module's backend or array-likes, which become
    float32 parameters (:func:`twinnn.parameter`)."""

    def __init__(self, values: Iterable[Any] = ()) -> None:
        super().__init__()
        self.extend(values)

    def _checked(self, value: Any, where: str) -> Param:
        if isinstance(value, Module):
            raise ArgumentTypeError(f"{where}: a ParameterList holds parameters, got a Module")
        if self._backend.is_parameter(value):
            return value
        self._check_registrable(where, value)  # another backend's parameter: a clear error
        return parameter(value)

    def __getitem__(self, index: int) -> Param:
        if isinstance(index, slice):
            raise ArgumentTypeError("ParameterList[...] takes an int index, not a slice")
        return self._items[_index(index, len(self._items), "ParameterList[...]")]

    def __iter__(self) -> Iterator[Param]:
        return iter(list(self._items))


class Sequential(ModuleList):
    """``Sequential(*layers)``: ``forward(x)`` is ``layers[-1](...(layers[0](x)))``.

    Each layer receives the previous one's output as its only argument. The sub-modules are
    named by position (``"0"``, ``"1"``, ...), as in torch.
    """

    def __init__(self, *layers: Module) -> None:
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            raise ArgumentTypeError(
                "Sequential takes the layers as arguments, Sequential(layer0, layer1, ...); "
                "for named sub-modules use a ModuleDict"
            )
        super().__init__(layers)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Sequential(*self._items[index])
        return super().__getitem__(index)

    def forward(self, x: Any) -> Any:
        for layer in self._items:
            x = layer(x)
        return x


class ModuleDict(Module):
    """A dict of sub-modules with string keys (insertion order), registered under the keys."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _key(self, key: object, where: str) -> str:
        if not isinstance(key, str) or not key or "." in key:
            raise ArgumentError(
                f"{where}: a ModuleDict key must be a non-empty string without '.', got {key!r}"
            )
        if key in type(self).__dict__ or key in Module.__dict__ or key.startswith("_"):
            raise ArgumentError(
                f"{where}: key {key!r} would shadow a ModuleDict attribute; choose another name"
            )
        return key

    def __setitem__(self, key: str, module: Module) -> None:
        where = "ModuleDict[...] ="
        name = self._key(key, where)
        if not isinstance(module, Module):
            raise ArgumentTypeError(
                f"{where}: a ModuleDict holds twinnn Modules, got {type(module).__name__}"
            )
        self._check_same_backend(name, module)
        self._members[name] = module

    def __getitem__(self, key: str) -> Module:
        try:
            item: Module = self._members[key]
        except (KeyError, TypeError):
            raise KeyError(f"ModuleDict has no key {key!r} (keys: {list(self._members)})") from None
        return item

    def __delitem__(self, key: str) -> None:
        self[key]
        del self._members[key]

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._members))

    def keys(self) -> list[str]:
        return list(self._members)

    def values(self) -> list[Module]:
        return list(self._members.values())

    def items(self) -> list[tuple[str, Module]]:
        return list(self._members.items())

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace entries from a mapping or an iterable of ``(key, module)`` pairs."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ArgumentTypeError(
                    f"ModuleDict.update takes a mapping or (key, module) pairs, got {pair!r}"
                )
            self[pair[0]] = pair[1]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ModuleError(
            "a ModuleDict has no forward(); look its modules up in the forward of the Module "
            "that holds it"
        )

    def __repr__(self) -> str:
        return f"ModuleDict(keys={list(self._members)})"
