"""Run-time selection of the backend, the device, precision and seeds.

Environment variables (read when first needed, not at ``import twinnn``):

==================  =================================================================
``TWINNN_BACKEND``  ``torch`` (alias ``pytorch``) or ``tensorflow`` (alias ``tf``);
                    unset: ``torch`` if importable, else ``tensorflow``.
``TWINNN_DEVICE``   ``auto`` (default), ``cpu``, ``gpu``, ``gpu:N`` (``cuda[:N]`` too).
``TWINNN_TF32``     ``1`` allows TF32 math on GPUs (faster, gives up parity). Default off.
``TWINNN_EAGER``    ``1`` runs every step eagerly on both backends (for debugging).
==================  =================================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np

from twinnn import backends as _registry
from twinnn.errors import ArgumentError, ArgumentTypeError, BackendError, DeviceError

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

__all__ = [
    "allow_tf32",
    "backend",
    "current",
    "device",
    "eager_default",
    "generator",
    "is_current",
    "parse_device",
    "seed",
    "set_backend",
    "set_device",
    "tf32_allowed",
]

_TRUE = {"1", "true", "yes", "on"}
_DEVICE_RE = re.compile(r"^(auto|cpu|gpu|cuda)(?::(\d+))?$")

_selected: str | None = None  # canonical backend name, once chosen
_device_spec: str | None = None  # as given to set_device, else TWINNN_DEVICE
_tf32: bool | None = None
_seed: int | None = None
_rng: np.random.Generator = np.random.default_rng()
# Set while a Module created on another backend runs its forward; a ContextVar, so threads and
# asyncio tasks each see their own.
_override: ContextVar[Backend | None] = ContextVar("twinnn_backend_override", default=None)
_configured: set[str] = set()  # backends whose device, precision and seed were applied


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def parse_device(spec: object, argument: str = "device") -> tuple[str, int | None]:
    """``"gpu:1"`` -> ``("gpu", 1)``; ``"cuda"`` -> ``("gpu", None)``; ``"auto"``/``"cpu"``."""
    text = spec.strip().lower() if isinstance(spec, str) else None
    match = _DEVICE_RE.match(text) if text is not None else None
    if match is None or (match.group(1) in ("auto", "cpu") and match.group(2) is not None):
        raise DeviceError(
            f"{argument} must be 'auto', 'cpu', 'gpu', 'gpu:N', 'cuda' or 'cuda:N', got {spec!r}"
        )
    kind = "gpu" if match.group(1) == "cuda" else match.group(1)
    index = int(match.group(2)) if match.group(2) is not None else None
    return kind, index


def backend() -> str:
    """The name of the current backend: ``"torch"`` or ``"tensorflow"``."""
    global _selected
    if _selected is None:
        env = os.environ.get("TWINNN_BACKEND", "").strip()
        if env:
            _selected = _registry.canonical_name(env, "TWINNN_BACKEND")
        else:
            installed = _registry.installed_frameworks()
            if not installed:
                raise BackendError(
                    "TWINNN_BACKEND is unset and neither 'torch' nor 'tensorflow' is installed; "
                    "install one with `pip install twinnn[torch]` or `twinnn[tensorflow]`"
                )
            _selected = installed[0]
    return _selected


def _activate(name: str) -> Backend:
    """Load backend ``name``, applying the device, precision and seed settings on first load."""
    impl = _registry.load(name)
    if name not in _configured:
        impl.set_tf32(tf32_allowed())
        if _seed is not None:
            impl.seed(_seed)
        spec = _device_spec if _device_spec is not None else os.environ.get("TWINNN_DEVICE", "auto")
        argument = "set_device(device)" if _device_spec is not None else "TWINNN_DEVICE"
        impl.set_device(*parse_device(spec or "auto", argument))
        _configured.add(name)
    return impl


def current() -> Backend:
    """The backend implementation in use (a Module's own while its ``forward`` runs)."""
    override = _override.get()
    if override is not None:
        return override
    return _activate(backend())


def is_current(impl: Backend) -> bool:
    """Whether ``impl`` is what :func:`current` returns (cheap: no loading, no env reads)."""
    override = _override.get()
    if override is not None:
        return override is impl
    return _selected == impl.NAME


def set_backend(name: str) -> str:
    """Switch the current backend at run time; returns its canonical name.

    Objects already created keep the backend they were created with. The framework is
    imported here; a backend whose framework is missing raises
    :class:`~twinnn.errors.BackendNotInstalledError`.
    """
    global _selected
    canonical = _registry.canonical_name(name, "set_backend(name)")
    _activate(canonical)
    _selected = canonical
    return canonical


@contextmanager
def using(impl: Backend) -> Iterator[None]:
    """Make ``impl`` the current backend inside the block (used by ``Module.__call__``)."""
    token = _override.set(impl)
    try:
        yield
    finally:
        _override.reset(token)


def device() -> str:
    """The resolved device of the current backend: ``"cpu"`` or ``"gpu:N"``."""
    return current().current_device()


def set_device(spec: str) -> str:
    """Place new parameters and tensors on ``spec`` (as ``TWINNN_DEVICE``); returns the
    resolved device. Applies to the current backend and to backends loaded later."""
    global _device_spec
    kind, index = parse_device(spec, "set_device(device)")
    resolved = current().set_device(kind, index)
    _device_spec = spec
    return resolved


def tf32_allowed() -> bool:
    """Whether TF32 math is allowed on GPUs (``TWINNN_TF32=1`` or ``allow_tf32(True)``)."""
    return _env_flag("TWINNN_TF32") if _tf32 is None else _tf32


def allow_tf32(enabled: bool = True) -> None:
    """Allow TF32 on GPUs for speed. This gives up parity between the backends."""
    global _tf32
    _tf32 = bool(enabled)
    for impl in _registry.loaded().values():
        impl.set_tf32(_tf32)


def seed(value: int) -> None:
    """Seed twinnn's NumPy generator (all initialisers) and each framework's RNG.

    The same seed gives bit-identical initial weights on both backends.
    """
    global _seed, _rng
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"seed(value) must be an int, got {type(value).__name__}")
    if value < 0:
        raise ArgumentError(f"seed(value) must be >= 0, got {value}")
    _seed = int(value)
    _rng = np.random.default_rng(_seed)
    for impl in _registry.loaded().values():
        impl.seed(_seed)


def generator() -> np.random.Generator:
    """twinnn's NumPy generator, from which every initialiser draws."""
    return _rng


def eager_default() -> bool:
    """``TWINNN_EAGER=1``: run steps eagerly on both backends."""
    return _env_flag("TWINNN_EAGER")
