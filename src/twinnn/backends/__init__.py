"""Backend registry: names, aliases and lazy loading.

Only the selected backend's package (and so its framework) is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, cast

from twinnn.errors import BackendError, BackendNotInstalledError

if TYPE_CHECKING:
    from twinnn.backends.base import Backend

#: Canonical backend name -> the framework module it needs.
FRAMEWORKS: dict[str, str] = {"torch": "torch", "tensorflow": "tensorflow"}
ALIASES: dict[str, str] = {
    "torch": "torch",
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
}

_loaded: dict[str, Backend] = {}


def framework_installed(name: str) -> bool:
    """Whether backend ``name``'s framework can be imported (found without importing it)."""
    return importlib.util.find_spec(FRAMEWORKS[name]) is not None


def installed_frameworks() -> list[str]:
    """Canonical names of the backends whose framework can be imported (no import done)."""
    return [name for name in FRAMEWORKS if framework_installed(name)]


def canonical_name(name: object, argument: str = "name") -> str:
    """Resolve an alias (``pytorch``, ``tf``) to ``torch`` / ``tensorflow``."""
    if not isinstance(name, str) or name.strip().lower() not in ALIASES:
        raise BackendError(
            f"{argument} must be one of {sorted(ALIASES)}, got {name!r} "
            f"(installed: {installed_frameworks() or 'none'})"
        )
    return ALIASES[name.strip().lower()]


def load(name: str) -> Backend:
    """Import and return the backend package ``twinnn.backends.<name>``."""
    if name in _loaded:
        return _loaded[name]
    framework = FRAMEWORKS[name]
    if not framework_installed(name):
        raise BackendNotInstalledError(
            f"backend {name!r} needs the {framework!r} package, which is not installed "
            f"(installed: {installed_frameworks() or 'none'}); "
            f"install it with `pip install twinnn[{name}]`"
        )
    try:
        module = importlib.import_module(f"twinnn.backends.{name}")
    except ImportError as exc:  # installed but broken
        raise BackendNotInstalledError(
            f"backend {name!r}: importing {framework!r} failed: {exc}"
        ) from exc
    backend = cast("Backend", module)
    _loaded[name] = backend
    return backend


def loaded() -> dict[str, Backend]:
    """The backends imported so far, by name."""
    return dict(_loaded)
