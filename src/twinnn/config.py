"""Run-time selection of the backend, the device, precision and seeds.

Environment variables (read when first needed, not at ``import twinnn``):

==================  =================================================================
``TWINNN_BACKEND``  ``torch`` (alias ``pytorch``) or ``tensorflow`` (alias ``tf``);
                    unset: ``torch`` if importable, else ``tensorflow``.
``TWINNN_DEVICE``   ``auto`` (default), ``cpu``, ``gpu``, ``gpu:N`` (``cuda[:N]`` too).
``TWINNN_TF32``     ``1`` allows TF32 math on GPUs (faster, gives up parity). Default off.
``TWINNN_EAGER``    ``1`` runs every step eagerly on both backends (for debugging).
==================  =================================================================

The two flags take ``1``, ``true``, ``yes``, ``on`` (true) and ``0``, ``false``, ``no``,
``off`` or an empty value (false), in any case; anything else raises
:class:`~twinnn.errors.ArgumentError` naming the variable.

Threads: the backend chosen by :func:`set_backend` (or ``TWINNN_BACKEND``) and the device, TF32
and seed settings are process-wide. :func:`use_backend` overrides the backend for the current
thread (or asyncio task) only. See "Threads" in docs/backends.md for the rules, the
initialisers' generator included.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np

from twinnn import backends as _registry
from twinnn._checks import check_bool
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
    "random_layer",
    "seed",
    "set_backend",
    "set_device",
    "tf32_allowed",
    "use_backend",
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
#: Largest seed + 1: torch.manual_seed and tf.random.set_seed both take any int64 >= 0.
SEED_LIMIT = 2**63
_DEVICE_RE = re.compile(r"^(auto|cpu|gpu|cuda)(?::(\d+))?$")

_selected: str | None = None  # canonical backend name, once chosen
_device_spec: str | None = None  # as given to set_device, else TWINNN_DEVICE
_tf32: bool | None = None
_seed: int | None = None
# Layers that draw random masks (Dropout) built since the last seed(); see random_layer().
_random_layers = 0
_entropy_seed: int | None = None  # the seed of such layers while seed() was never called
_rng: np.random.Generator = np.random.default_rng()
# Set while a Module created on another backend runs its forward; a ContextVar, so threads and
# asyncio tasks each see their own.
_override: ContextVar[Backend | None] = ContextVar("twinnn_backend_override", default=None)
# How many `using` blocks are open in the whole process. While none is, the override is not
# read at all: torch.compile cannot trace ContextVar.get (a graph break per Module call), and
# the common case -- every model on the selected backend -- never needs it.
_overrides_open = 0
_overrides_lock = threading.Lock()
_configured: set[str] = set()  # backends whose device, precision and seed were applied
# Serialises the first activation of a backend (two threads loading it at once would apply
# its device, precision and seed twice) and seed() against it.
_lock = threading.RLock()


def _env_flag(name: str) -> bool:
    """A boolean environment variable: see the module docstring for the spellings."""
    raw = os.environ.get(name)
    value = "" if raw is None else raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ArgumentError(
        f"{name} must be one of {', '.join(_TRUE)} (true) or {', '.join(_FALSE[:-1])} or empty "
        f"(false), case-insensitive; got {raw!r}"
    )


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
    """The name of the current backend: ``"torch"`` or ``"tensorflow"`` (the one
    :func:`use_backend` chose in this thread, if any)."""
    global _selected
    override = _override.get() if _overrides_open else None
    if override is not None:
        return override.NAME
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
    if name in _configured:
        return impl
    with _lock:
        if name not in _configured:
            # Read and check every setting first: a bad one leaves the backend unconfigured.
            tf32 = tf32_allowed()
            spec = _device_spec if _device_spec is not None else os.environ.get("TWINNN_DEVICE")
            argument = "set_device(device)" if _device_spec is not None else "TWINNN_DEVICE"
            kind, index = parse_device(spec or "auto", argument)
            impl.set_device(kind, index, argument)  # raises before changing the device
            impl.set_tf32(tf32)
            if _seed is not None:
                impl.seed(_seed)
            _configured.add(name)
    return impl


def current() -> Backend:
    """The backend implementation in use (a Module's own while its ``forward`` runs)."""
    override = _override.get() if _overrides_open else None
    if override is not None:
        return override
    return _activate(backend())


def is_current(impl: Backend) -> bool:
    """Whether ``impl`` is what :func:`current` returns (cheap: no loading, no env reads)."""
    override = _override.get() if _overrides_open else None
    if override is not None:
        return override is impl
    return _selected == impl.NAME


def set_backend(name: str) -> str:
    """Switch the current backend at run time; returns its canonical name.

    Process-wide: every thread sees the change (except inside :func:`use_backend`). Objects
    already created keep the backend they were created with. The framework is imported here;
    a backend whose framework is missing raises
    :class:`~twinnn.errors.BackendNotInstalledError`.
    """
    global _selected
    canonical = _registry.canonical_name(name, "set_backend(name)")
    _activate(canonical)
    _selected = canonical
    return canonical


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Make backend ``name`` current in this thread (or asyncio task) inside the block.

    ``with twinnn.use_backend("tf") as name:`` -- ``name`` is the canonical name. Unlike
    :func:`set_backend` it changes nothing for other threads, so two threads can each build
    and run models on their own backend at the same time. Blocks nest; on exit the previous
    choice is back. Device, TF32 and seed settings stay process-wide.
    """
    canonical = _registry.canonical_name(name, "use_backend(name)")
    with using(_activate(canonical)):
        yield canonical


@contextmanager
def using(impl: Backend) -> Iterator[None]:
    """Make ``impl`` the current backend inside the block (used by ``Module.__call__``)."""
    global _overrides_open
    with _overrides_lock:
        _overrides_open += 1
    token = _override.set(impl)
    try:
        yield
    finally:
        _override.reset(token)
        with _overrides_lock:
            _overrides_open -= 1


def device() -> str:
    """The resolved device of the current backend: ``"cpu"`` or ``"gpu:N"``."""
    return current().current_device()


def set_device(spec: str) -> str:
    """Place new parameters and tensors on ``spec`` (as ``TWINNN_DEVICE``); returns the
    resolved device. Applies to the current backend and to backends loaded later."""
    global _device_spec
    kind, index = parse_device(spec, "set_device(device)")
    resolved = current().set_device(kind, index, "set_device(device)")
    _device_spec = spec
    return resolved


def tf32_allowed() -> bool:
    """Whether TF32 math is allowed on GPUs (``TWINNN_TF32=1`` or ``allow_tf32(True)``)."""
    return _env_flag("TWINNN_TF32") if _tf32 is None else _tf32


def allow_tf32(enabled: bool = True) -> None:
    """Allow TF32 on GPUs for speed (``enabled`` a bool). This gives up parity between the
    backends. Process-wide, for every loaded backend and those loaded later."""
    global _tf32
    check_bool(enabled, "allow_tf32(enabled)")
    with _lock:
        _tf32 = enabled
        for impl in _registry.loaded().values():
            impl.set_tf32(_tf32)


def seed(value: int) -> None:
    """Seed twinnn's NumPy generator (all initialisers) and each framework's RNG, and restart
    the numbering of dropout layers (:func:`random_layer`): their masks derive from this seed.

    The same seed gives bit-identical initial weights on both backends. ``value`` is an int
    with ``0 <= value < 2**63`` (what both frameworks accept); a refused value changes nothing.
    Process-wide: it replaces the generator every thread draws from.
    """
    global _seed, _rng, _random_layers
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"seed(value) must be an int, got {type(value).__name__} {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ArgumentError(f"seed(value) must be >= 0 and < 2**63, got {value}")
    number = int(value)
    rng = np.random.default_rng(number)
    with _lock:
        for impl in _registry.loaded().values():
            impl.seed(number)
        _seed, _rng, _random_layers = number, rng, 0


def random_layer() -> tuple[int, int]:
    """``(seed, index)`` for a new layer that draws random masks (``Dropout``).

    ``seed`` is the value of the last :func:`seed` call (without one, a random value drawn
    once per process, so masks then differ from run to run); ``index`` counts such layers
    built since that call, from 0. The same model code after the same seed therefore gives
    every layer the same ``(seed, index)`` -- and the same masks -- on both backends; building
    the layers in another order changes which masks each one gets.
    """
    global _random_layers, _entropy_seed
    with _lock:
        if _seed is not None:
            value = _seed
        else:
            if _entropy_seed is None:
                _entropy_seed = secrets.randbelow(SEED_LIMIT)
            value = _entropy_seed
        index = _random_layers
        _random_layers += 1
    return value, index


def generator() -> np.random.Generator:
    """twinnn's NumPy generator, from which every initialiser draws.

    One per process, shared by all threads. Each draw is atomic (NumPy locks the generator),
    so concurrent draws never corrupt it or repeat numbers, but when two threads initialise
    layers at the same time, which thread gets which numbers depends on scheduling: build
    models in one thread (or under your own lock) for reproducible weights.
    """
    return _rng


def eager_default() -> bool:
    """``TWINNN_EAGER=1``: run steps eagerly on both backends (spellings as ``TWINNN_TF32``)."""
    return _env_flag("TWINNN_EAGER")
