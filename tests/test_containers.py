"""Containers (ModuleList, ModuleDict, Sequential, ParameterList), buffers and modes: names,
order, registration through nesting, state dicts across backends, and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors


class Block(tn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.inner = tn.ModuleList([tn.Linear(n, n), tn.Linear(n, n, bias=False)])
        self.register_buffer("scale", np.full((n,), 2.0))

    def forward(self, x):  # type: ignore[no-untyped-def]
        for layer in self.inner:
            x = tn.tanh(layer(x))
        return x * self.scale


class Net(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = tn.Linear(3, 4)
        self.blocks = tn.ModuleList([Block(4) for _ in range(2)])
        self.heads = tn.ModuleDict({"a": tn.Linear(4, 1), "b": tn.Linear(4, 2)})
        self.gains = tn.ParameterList([np.ones(1), np.ones(2), 1.5])  # a 0-d one too
        self.register_buffer("steps", np.zeros((), np.int64))

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.heads["a"](h) * self.gains[0], self.heads["b"](h) * self.gains[1] * self.gains[
            2
        ]


NAMES = [
    "embed.weight",
    "embed.bias",
    "blocks.0.inner.0.weight",
    "blocks.0.inner.0.bias",
    "blocks.0.inner.1.weight",
    "blocks.1.inner.0.weight",
    "blocks.1.inner.0.bias",
    "blocks.1.inner.1.weight",
    "heads.a.weight",
    "heads.a.bias",
    "heads.b.weight",
    "heads.b.bias",
    "gains.0",
    "gains.1",
    "gains.2",
]
BUFFERS = ["steps", "blocks.0.scale", "blocks.1.scale"]


def test_names_and_order_through_nesting(backend: str) -> None:
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NAMES
    assert net.parameters().names == tuple(NAMES)
    assert sorted(n for n, _ in net.named_buffers()) == sorted(BUFFERS)
    assert list(net.state_dict()) == NAMES + [n for n, _ in net.named_buffers()]
    assert [n for n, _ in net.named_modules()][:4] == ["", "embed", "blocks", "blocks.0"]
    assert len(net.blocks) == 2 and len(net.heads) == 2 and len(net.gains) == 3
    assert net.heads.keys() == ["a", "b"] and "a" in net.heads
    # buffers are never trained
    param_ids = {id(p) for p in net.parameters()}
    assert not any(id(b) in param_ids for b in net.buffers())


def test_modulelist_mutation_renames(backend: str) -> None:
    layers = tn.ModuleList([tn.Linear(2, 2), tn.Linear(2, 3)])
    third = tn.Linear(3, 1)
    layers.append(third)
    layers.insert(0, tn.Linear(2, 2, bias=False))
    assert [n for n, _ in layers.named_parameters()] == [
        "0.weight",
        "1.weight",
        "1.bias",
        "2.weight",
        "2.bias",
        "3.weight",
        "3.bias",
    ]
    del layers[0]
    assert next(n for n, _ in layers.named_parameters()) == "0.weight"
    assert layers[-1] is third and len(layers) == 3
    assert isinstance(layers[1:], tn.ModuleList) and len(layers[1:]) == 2


def test_sequential_chains_layers(backend: str) -> None:
    seq = tn.Sequential(tn.Linear(3, 5), tn.Linear(5, 2))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    state = seq.state_dict()
    expected = (x @ state["0.weight"] + state["0.bias"]) @ state["1.weight"] + state["1.bias"]
    np.testing.assert_allclose(tn.to_numpy(seq(x)), expected, rtol=1e-5, atol=1e-6)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert isinstance(seq[:1], tn.Sequential)


def test_state_dict_round_trip_across_backends(both_backends: list[str], tmp_path: Path) -> None:
    with tn.use_backend("torch"):
        tn.seed(3)
        source = Net()
        source.steps = np.array(7)
        x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
        out_torch = [tn.to_numpy(o) for o in source(x)]
        tn.save(tmp_path / "net.safetensors", source)
        state = source.state_dict()
    with tn.use_backend("tensorflow"):
        tn.seed(99)  # other initial values: everything must come from the file
        target = Net()
        tn.load(tmp_path / "net.safetensors", target)
        loaded = target.state_dict()
        out_tf = [tn.to_numpy(o) for o in target(x)]
    assert list(loaded) == list(state)
    for name in state:
        assert loaded[name].dtype == state[name].dtype
        np.testing.assert_array_equal(loaded[name], state[name])
    assert int(loaded["steps"]) == 7
    for a, b in zip(out_torch, out_tf, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_buffer_write_and_checks(backend: str) -> None:
    block = Block(3)
    block.scale = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(block.state_dict()["scale"], [1.0, 2.0, 3.0])
    assert block.state_dict()["scale"].dtype == np.float32
    with pytest.raises(
        errors.ShapeError, match=r"Block.scale = \.\.\.: the buffer has shape \(3,\)"
    ):
        block.scale = np.ones(4)
    with pytest.raises(errors.ModuleError, match="already has an attribute 'inner'"):
        block.register_buffer("inner", np.ones(3))
    with pytest.raises(errors.ArgumentTypeError, match="identifier"):
        block.register_buffer("a.b", np.ones(3))
    block.register_buffer("scratch", np.ones(2), persistent=False)
    assert "scratch" not in block.state_dict()
    assert "scratch" in dict(block.named_buffers())
    with pytest.raises(errors.StateDictError, match=r"'scale': expected dtype float32, got int64"):
        block.load_state_dict({**block.state_dict(), "scale": np.ones(3, np.int64)})


def test_buffer_written_inside_a_compiled_step(backend: str) -> None:
    class Counter(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = tn.Linear(2, 1)
            self.register_buffer("total", np.zeros(()))

        def forward(self, x):  # type: ignore[no-untyped-def]
            self.total = self.total + tn.sum(x)
            return self.lin(x)

    model = Counter()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    for n in (2, 3, 4):
        step(np.ones((n, 2)), np.zeros((n, 1)))
    assert float(model.state_dict()["total"]) == 2 * (2 + 3 + 4)
    if backend == "tensorflow":
        assert step.trace_count == 1  # type: ignore[attr-defined]


def test_plain_list_and_bad_items_are_refused(backend: str) -> None:
    class Bad(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = {"a": tn.Linear(2, 2)}

    with pytest.raises(errors.ModuleError, match=r"'layers'.*wrap it in twinnn.ModuleDict"):
        Bad()
    with pytest.raises(
        errors.ArgumentTypeError, match="a ModuleList holds twinnn Modules, got int"
    ):
        tn.ModuleList([tn.Linear(1, 1), 3])  # type: ignore[list-item]
    with pytest.raises(errors.ArgumentError, match="a ModuleDict key must be"):
        tn.ModuleDict({"a.b": tn.Linear(1, 1)})
    with pytest.raises(errors.ArgumentError, match="would shadow"):
        tn.ModuleDict({"train": tn.Linear(1, 1)})
    with pytest.raises(KeyError, match="keys: \\['a'\\]"):
        tn.ModuleDict({"a": tn.Linear(1, 1)})["b"]
    with pytest.raises(IndexError, match="index 2 is out of range for length 1"):
        tn.ModuleList([tn.Linear(1, 1)])[2]
    with pytest.raises(errors.ModuleError, match="has no forward"):
        tn.ModuleList([tn.Linear(1, 1)])(np.ones((1, 1)))


def test_modes_are_recursive(backend: str) -> None:
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    net.blocks.eval()
    assert net.training and not net.blocks[0].inner[1].training
    with pytest.raises(errors.ArgumentTypeError, match="must be a bool"):
        net.train(1)  # type: ignore[arg-type]
