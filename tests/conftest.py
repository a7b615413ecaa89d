"""Test fixtures: every test that takes ``backend`` is generated once per backend.

Choose backends with ``pytest --backend torch`` (repeatable) or ``TWINNN_TEST_BACKENDS=torch,tf``;
by default every installed framework is tested. A test is always generated for *both* backends:
one that is not selected, or whose framework is not installed, is reported as a skip with the
reason, never dropped silently. ``@pytest.mark.backends("torch")`` limits a test to the backends
it applies to (a ``torch.compile`` test, say). Tests that need both frameworks in one process
(parity) take the ``both_backends`` fixture and are skipped, with the reason, when a framework is
missing or not selected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import twinnn
from twinnn import backends as registry
from twinnn import config

ALL = ["torch", "tensorflow"]
_ENV = "TWINNN_TEST_BACKENDS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        choices=["torch", "tensorflow", "pytorch", "tf"],
        help=f"backend(s) to test (default: every installed one; or {_ENV}=torch,tf)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): the only backends the test applies to (canonical names)"
    )
    try:
        selected_backends(config)
    except ValueError as exc:  # an unknown name: one clear error, not one per test
        raise pytest.UsageError(f"--backend / {_ENV}: {exc}") from exc


def selected_backends(config_: pytest.Config) -> list[str]:
    """The canonical names chosen by ``--backend`` or ``TWINNN_TEST_BACKENDS`` (default: all)."""
    chosen = config_.getoption("--backend") or [
        b.strip() for b in os.environ.get(_ENV, "").split(",") if b.strip()
    ]
    names = [registry.canonical_name(b) for b in chosen] if chosen else ALL
    return list(dict.fromkeys(names))


def _not_selected_reason(name: str, config_: pytest.Config) -> str | None:
    selected = selected_backends(config_)
    if name in selected:
        return None
    how = "--backend" if config_.getoption("--backend") else _ENV
    return f"{name} not selected ({how} chose {', '.join(selected)})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        names = ALL if marker is None else [registry.canonical_name(n) for n in marker.args]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(autouse=True)
def _restore_twinnn_state() -> Iterator[None]:
    """Each test starts from the default device and leaves the selected backend as it was."""
    selected, device_spec, tf32 = config._selected, config._device_spec, config._tf32
    yield
    config._selected, config._device_spec, config._tf32 = selected, device_spec, tf32


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test, selected and seeded with 0."""
    name: str = request.param
    reason = _not_selected_reason(name, request.config)
    if reason is not None:
        pytest.skip(reason)
    if name not in registry.installed_frameworks():
        pytest.skip(f"{name} is not installed")
    twinnn.set_backend(name)
    twinnn.seed(0)
    return name


@pytest.fixture
def both_backends(request: pytest.FixtureRequest) -> list[str]:
    """Both frameworks, for parity tests in one process."""
    unselected = [r for r in (_not_selected_reason(b, request.config) for b in ALL) if r]
    if unselected:
        pytest.skip(f"parity needs both backends; {'; '.join(unselected)}")
    missing = [b for b in ALL if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"parity needs both frameworks; missing {missing}")
    return list(ALL)
