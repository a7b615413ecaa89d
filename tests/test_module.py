"""Module: parameter order and names; load_state_dict changes nothing on failure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors


class Block(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = tn.parameter(np.ones(3))
        self.proj = tn.Linear(3, 3)

    def forward(self, x: Any) -> Any:
        return self.proj(x) * self.scale


class Net(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Block()
        self.head = tn.Linear(3, 1)
        self.shared = self.head.weight  # listed once, under its first name

    def forward(self, x: Any) -> Any:
        return self.head(tn.relu(self.encoder(x)))


def test_named_parameters_order_and_names(backend: str) -> None:
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "encoder.scale",
        "encoder.proj.weight",
        "encoder.proj.bias",
        "head.weight",
        "head.bias",
    ]
    assert net.parameters().names == tuple(names)
    assert len(net.parameters()) == 5
    assert [type(c).__name__ for c in net.children()] == ["Block", "Linear"]
    assert net.backend == backend


def test_forward_and_state_dict_layout(backend: str) -> None:
    net = Net()
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    s = net.state_dict()
    hidden = np.maximum(
        (x @ s["encoder.proj.weight"] + s["encoder.proj.bias"]) * s["encoder.scale"], 0
    )
    expected = hidden @ s["head.weight"] + s["head.bias"]
    np.testing.assert_allclose(tn.to_numpy(net(x)), expected, rtol=1e-5, atol=1e-6)
    assert s["head.weight"].shape == (3, 1)


def test_state_dict_is_a_copy(backend: str) -> None:
    net = Net()
    s = net.state_dict()
    s["head.bias"][:] = 42.0
    assert not np.any(net.state_dict()["head.bias"] == 42.0)


def test_load_state_dict_round_trip(backend: str) -> None:
    a, b = Net(), Net()
    assert not np.array_equal(a.state_dict()["head.weight"], b.state_dict()["head.weight"])
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda s: s.pop("head.bias"), r"missing entries \['head.bias'\]"),
        (lambda s: s.update(extra=np.zeros(1, np.float32)), r"unexpected entries \['extra'\]"),
        (
            lambda s: s.update({"head.weight": np.zeros((1, 3), np.float32)}),
            r"'head.weight': expected shape \(3, 1\), got \(1, 3\)",
        ),
        (
            lambda s: s.update({"head.bias": np.zeros(1, np.float64)}),
            r"'head.bias': expected dtype float32, got float64",
        ),
    ],
    ids=["missing", "extra", "shape", "dtype"],
)
def test_bad_state_dict_changes_nothing(backend: str, mutate: Any, pattern: str) -> None:
    net = Net()
    before = net.state_dict()
    bad = {k: np.full_like(v, 7.0) for k, v in before.items()}
    mutate(bad)
    with pytest.raises(errors.StateDictError, match=pattern) as info:
        net.load_state_dict(bad)
    assert isinstance(info.value, ValueError)
    assert "nothing was loaded" in str(info.value)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_non_strict_load_reports_skipped_keys(backend: str) -> None:
    net = Net()
    partial = {"head.bias": np.full(1, 3.0, np.float32), "other": np.zeros(2, np.float32)}
    result = net.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["other"]
    assert "head.weight" in result.missing_keys
    assert net.state_dict()["head.bias"][0] == 3.0


def test_forgetting_super_init_is_a_clear_error(backend: str) -> None:
    class Broken(tn.Module):
        def __init__(self) -> None:
            self.layer = tn.Linear(2, 2)

    with pytest.raises(errors.TwinnnError, match=r"super\(\).__init__\(\).*'layer'"):
        Broken()


def test_reassigning_a_parameter_to_a_plain_value_unregisters_it(backend: str) -> None:
    layer = tn.Linear(2, 2)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
