"""Embedding (DESIGN.md §13): init presets, the gather against NumPy and torch's float64
nn.Embedding (values and gradients), the padding row, out-of-range ids on both backends."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import grads, torch_tensor
from twinnn import errors

torch = pytest.importorskip("torch")

IDS = np.array([[0, 3, 9, 3], [1, 0, 2, 7], [5, 5, 5, 0]])


def _native(backend: str, values: np.ndarray, dtype: str = "int64") -> Any:
    if backend == "torch":
        return torch_tensor(values.astype(dtype))  # on twinnn's device
    import tensorflow as tf

    return tf.constant(values.astype(dtype))


# --- init -----------------------------------------------------------------------------------------
def test_default_init_is_keras_uniform_from_twinnn_generator(backend: str) -> None:
    tn.seed(7)
    layer = tn.Embedding(11, 5)
    expected = np.random.default_rng(7).uniform(-0.05, 0.05, (11, 5)).astype(np.float32)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(layer.state_dict()["weight"], expected)
    tn.seed(7)
    np.testing.assert_array_equal(
        tn.Embedding(11, 5, init="keras").state_dict()["weight"], expected
    )


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_torch_init_is_standard_normal_with_the_padding_row_zero(
    backend: str, padding_idx: int | None
) -> None:
    tn.seed(3)
    layer = tn.Embedding(6, 4, padding_idx=padding_idx, init="torch")
    expected = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    if padding_idx is not None:
        expected[padding_idx] = 0.0
        assert layer.padding_idx == padding_idx % 6  # negative counts from the end (torch)
    np.testing.assert_array_equal(layer.state_dict()["weight"], expected)


def test_same_seed_same_weights_on_both_backends(both_backends: list[str]) -> None:
    tables = []
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(11)
            tables.append(tn.Embedding(20, 3, padding_idx=4).state_dict()["weight"])
    np.testing.assert_array_equal(tables[0], tables[1])


# --- forward --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("kind", ["numpy", "list", "int32", "int64"])
def test_forward_is_the_gather_of_rows(backend: str, shape: tuple[int, ...], kind: str) -> None:
    layer = tn.Embedding(10, 6, init="torch")
    weight = layer.state_dict()["weight"]
    ids = np.random.default_rng(len(shape)).integers(0, 10, shape)
    data: Any = {"numpy": ids, "list": ids.tolist()}.get(kind)
    if data is None:
        data = _native(backend, ids, kind)
    out = tn.to_numpy(layer(data))
    assert out.shape == (*shape, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out, weight[ids])  # a gather is exact


def test_values_and_gradients_match_torch_float64(backend: str) -> None:
    tn.seed(1)
    layer = tn.Embedding(10, 5, padding_idx=3, init="torch")
    weight = layer.state_dict()["weight"]
    weight[3] = 0.25  # a non-zero padding row (loaded from a checkpoint): torch outputs it
    layer.load_state_dict({"weight": weight})
    g = np.random.default_rng(2).standard_normal((*IDS.shape, 5)).astype(np.float32)
    out, _, found = grads(backend, layer, IDS, g)

    native = torch.nn.Embedding(10, 5, padding_idx=3).double()
    with torch.no_grad():
        native.weight.copy_(torch.from_numpy(weight.astype(np.float64)))
    expected = native(torch.from_numpy(IDS))
    (expected * torch.from_numpy(g.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(found["weight"], native.weight.grad.numpy(), rtol=1e-6, atol=1e-6)
    # and against NumPy: a scatter-add of g into the looked-up rows, none into the padding row
    reference = np.zeros((10, 5))
    np.add.at(reference, IDS, g.astype(np.float64))
    reference[3] = 0.0
    np.testing.assert_allclose(found["weight"], reference, rtol=1e-6, atol=1e-6)
    assert not found["weight"][3].any()


def test_padding_positions_output_zero_and_get_no_gradient(backend: str) -> None:
    layer = tn.Embedding(8, 3, padding_idx=0)
    g = np.ones((*IDS.shape, 3), np.float32)
    out, _, found = grads(backend, layer, IDS % 8, g)
    assert not out[IDS % 8 == 0].any()
    assert not found["weight"][0].any()
    assert found["weight"][5].tolist() == [3.0, 3.0, 3.0]  # three lookups of id 5


class _Bag(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = tn.Embedding(12, 4, padding_idx=0, init="torch")
        self.head = tn.Linear(4, 1)

    def forward(self, ids: Any) -> Any:
        return self.head(self.embed(ids))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: tn.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda p: tn.Adam(p, lr=0.05, weight_decay=0.01),
        lambda p: tn.AdamW(p, lr=0.05),
    ],
    ids=["sgd-momentum", "adam", "adamw"],
)
def test_padding_row_stays_zero_in_training(backend: str, make: Any) -> None:
    model = _Bag()
    step = tn.train_step(model, tn.mse_loss, make(model.parameters()))
    rng = np.random.default_rng(0)
    before = model.state_dict()["embed.weight"]
    for _ in range(5):
        ids = rng.integers(0, 12, (4, 6))
        ids[:, -2:] = 0  # padded
        step(ids, rng.standard_normal((4, 6, 1)).astype(np.float32))
    after = model.state_dict()["embed.weight"]
    assert not after[0].any()
    assert np.abs(after[1:] - before[1:]).max() > 1e-3  # the other rows trained


def test_training_matches_torch(backend: str) -> None:
    """Embedding + Linear trained 5 Adam steps on each backend == the same torch model."""
    model = _Bag()
    state = model.state_dict()
    step = tn.train_step(model, tn.mse_loss, tn.Adam(model.parameters(), lr=0.05))
    embed = torch.nn.Embedding(12, 4, padding_idx=0)
    head = torch.nn.Linear(4, 1)
    with torch.no_grad():
        embed.weight.copy_(torch.from_numpy(state["embed.weight"]))
        head.weight.copy_(torch.from_numpy(state["head.weight"].T.copy()))
        head.bias.copy_(torch.from_numpy(state["head.bias"]))
    params = [*embed.parameters(), *head.parameters()]
    native_opt = torch.optim.Adam(params, lr=0.05)
    rng = np.random.default_rng(4)
    for _ in range(5):
        ids = rng.integers(0, 12, (3, 5))
        y = rng.standard_normal((3, 5, 1)).astype(np.float32)
        loss = float(tn.to_numpy(step(ids, y)))
        native_opt.zero_grad()
        native_loss = torch.nn.functional.mse_loss(
            head(embed(torch.from_numpy(ids))), torch.tensor(y)
        )
        native_loss.backward()
        native_opt.step()
        assert loss == pytest.approx(native_loss.detach().item(), rel=1e-5)
    np.testing.assert_allclose(
        model.state_dict()["embed.weight"], embed.weight.detach().numpy(), rtol=1e-5, atol=1e-6
    )


# --- bad ids --------------------------------------------------------------------------------------
def _messages(backend: str) -> dict[str, str]:
    layer = tn.Embedding(10, 2)
    found = {}
    cases: dict[str, Any] = {
        "host-high": lambda: layer.forward(np.array([[1, 10]])),
        "host-negative": lambda: layer.forward([3, -1]),
        "native-high": lambda: layer(_native(backend, np.array([[1, 10]]))),
        "native-negative": lambda: layer(_native(backend, np.array([-2]), "int32")),
        "call-high": lambda: layer(np.array([12])),
    }
    for name, call in cases.items():
        with pytest.raises(errors.ArgumentError) as info:
            call()
        assert isinstance(info.value, ValueError)
        found[name] = str(info.value)
    return found


def test_out_of_range_ids_are_an_argument_error(backend: str) -> None:
    found = _messages(backend)
    assert found["host-high"].endswith("got 10")
    assert found["host-negative"].endswith("got -1")
    for message in found.values():
        assert message.startswith(
            "Embedding.forward: argument 'ids' must hold ids in [0, 10) (num_embeddings=10"
        )


def test_bad_id_messages_are_identical_on_both_backends(both_backends: list[str]) -> None:
    per_backend = []
    for name in both_backends:
        with tn.use_backend(name):
            per_backend.append(_messages(name))
    assert per_backend[0] == per_backend[1]


def test_out_of_range_ids_inside_a_compiled_step_change_nothing(backend: str) -> None:
    model = _Bag()
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = tn.train_step(model, tn.mse_loss, opt)
    y = np.zeros((2, 3, 1), np.float32)
    step(np.array([[1, 2, 3], [4, 5, 6]]), y)  # traced (TF) with valid ids
    before = model.state_dict()
    slots = opt.state_dict()
    for bad in (
        np.array([[1, 12, 3], [4, 5, 6]]),
        _native(backend, np.array([[1, 2, 3], [-1, 5, 6]])),
    ):
        with pytest.raises(errors.ArgumentError, match=r"'ids' must hold ids in \[0, 12\)"):
            step(bad, y)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    assert str(opt.state_dict()) == str(slots)


def test_float_ids_are_a_dtype_error(backend: str) -> None:
    layer = tn.Embedding(5, 2)
    with pytest.raises(errors.DTypeError, match="'ids' must hold integers"):
        layer(np.array([1.0, 2.0]))
    native = _native(backend, np.array([1.0]), "float32")
    with pytest.raises(errors.DTypeError, match="'ids' must hold integers"):
        layer(native)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        ((0, 2), {}, errors.ArgumentError, r"num_embeddings.*> 0.*got 0"),
        ((5, 2.0), {}, errors.ArgumentTypeError, r"embedding_dim.*int.*float"),
        ((5, 2), {"padding_idx": 5}, errors.ArgumentError, r"padding_idx.*\[-5, 5\).*got 5"),
        ((5, 2), {"padding_idx": -6}, errors.ArgumentError, r"padding_idx.*got -6"),
        ((5, 2), {"padding_idx": 1.0}, errors.ArgumentTypeError, r"padding_idx.*None or an int"),
        ((5, 2), {"init": "glorot"}, errors.ArgumentError, r"init.*'glorot'"),
    ],
)
def test_bad_constructor_arguments(
    backend: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        tn.Embedding(*args, **kwargs)


def test_parity_of_training_across_backends(both_backends: list[str]) -> None:
    results = []
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(5)
            model = _Bag()
            step = tn.train_step(model, tn.mse_loss, tn.Adam(model.parameters(), lr=0.05))
            rng = np.random.default_rng(8)
            losses = [
                float(
                    tn.to_numpy(
                        step(rng.integers(0, 12, (3, 4)), rng.random((3, 4, 1), np.float32))
                    )
                )
                for _ in range(4)
            ]
            results.append((losses, model.state_dict()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for name, value in results[0][1].items():
        np.testing.assert_allclose(value, results[1][1][name], rtol=1e-5, atol=1e-6)
