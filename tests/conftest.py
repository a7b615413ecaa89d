"""Test fixtures: every test that takes ``backend`` runs once per installed backend.

Choose backends with ``pytest --backend torch`` (repeatable) or ``TWINNN_TEST_BACKENDS=torch,tf``;
by default every installed framework is tested. Tests that need both frameworks in one process
(parity) take the ``both_backends`` fixture and are skipped when one is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import twinnn
from twinnn import backends as registry
from twinnn import config

ALL = ["torch", "tensorflow"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        choices=["torch", "tensorflow", "pytorch", "tf"],
        help="backend(s) to test (default: every installed one)",
    )


def selected_backends(config_: pytest.Config) -> list[str]:
    chosen = config_.getoption("--backend") or [
        b for b in os.environ.get("TWINNN_TEST_BACKENDS", "").split(",") if b.strip()
    ]
    names = [registry.canonical_name(b) for b in chosen] if chosen else ALL
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", selected_backends(metafunc.config), indirect=True)


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
    if name not in registry.installed_frameworks():
        pytest.skip(f"{name} is not installed")
    twinnn.set_backend(name)
    twinnn.seed(0)
    return name


@pytest.fixture
def both_backends() -> list[str]:
    """Both frameworks, for parity tests in one process."""
    missing = [b for b in ALL if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"parity needs both frameworks; missing {missing}")
    return list(ALL)
