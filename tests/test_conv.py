"""Conv1D / Conv2D: values and gradients against float64 references (NumPy from the
definition, and native torch convolutions in float64 with explicit padding), TensorFlow's SAME
rule at strides 1 and 2 with odd and even kernels, dilation, init presets, parity across
backends, training in compiled steps, and bad inputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import _window_reference as ref
import twinnn as tn
from _native_grads import grads, torch_device
from twinnn.backends.window import same_pads
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError

TOL = {"rtol": 2e-5, "atol": 2e-5}


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# (spatial sizes, kernel, strides, dilation, padding)
CASES = [
    ((9,), 3, 1, 1, "valid"),
    ((8,), 4, 2, 1, "same"),  # (1, 1)
    ((9,), 4, 2, 1, "same"),  # asymmetric (1, 2)
    ((8,), 3, 2, 1, "same"),  # asymmetric (0, 1)
    ((10,), 3, 1, 2, "same"),
    ((7,), 2, 1, 3, 2),
    ((8, 8), 3, 2, 1, "same"),  # (0, 1) in both dims: torch's padding=1 would give (1, 1)
    ((9, 8), 4, 2, 1, "same"),
    ((8, 9), (4, 3), (2, 1), 1, "same"),
    ((8, 8), 4, 1, 1, "same"),  # even kernel at stride 1: (1, 2)
    ((9, 10), (3, 2), 1, 2, "same"),
    ((9, 10), 3, 1, (2, 3), (1, 2)),
    ((7, 6), (3, 2), 1, (2, 1), "valid"),
    ((6, 5), 3, (2, 1), 1, (1, 2)),  # explicit, torch's padding=(1, 2)
]


def _layer(sizes: tuple[int, ...], k: Any, s: Any, d: Any, p: Any, **kwargs: Any) -> tn.Module:
    cls = tn.Conv1D if len(sizes) == 1 else tn.Conv2D
    return cls(3, 4, k, strides=s, padding=p, dilation=d, **kwargs)


def _geometry(layer: Any, sizes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    k, s, d = layer.kernel_size, layer.strides, layer.dilation
    pads = ref.pads_of(layer.padding, sizes, k, s, d)
    return s, d, pads


@pytest.mark.parametrize(
    ("n", "k", "s", "d", "expected"),
    [
        (8, 3, 2, 1, (0, 1)),
        (9, 3, 2, 1, (1, 1)),
        (8, 4, 2, 1, (1, 1)),
        (9, 4, 2, 1, (1, 2)),
        (8, 4, 1, 1, (1, 2)),
        (10, 3, 1, 2, (2, 2)),
        (5, 1, 2, 1, (0, 0)),
        (3, 7, 1, 1, (3, 3)),
    ],
)
def test_same_rule_is_tensorflows(
    n: int, k: int, s: int, d: int, expected: tuple[int, int]
) -> None:
    assert same_pads(n, k, s, d) == expected == ref.tf_same(n, k, s, d)


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_forward_and_gradients_match_numpy(backend: str, case: tuple[Any, ...]) -> None:
    sizes, k, s, d, p = case
    layer = _layer(sizes, k, s, d, p, init="torch")  # a non-zero bias
    x = _x(2, *sizes, 3)
    strides, dilation, pads = _geometry(layer, sizes)
    state = layer.state_dict()
    expected = ref.conv(x, state["weight"], state["bias"], strides, dilation, pads)
    g = _x(*expected.shape, seed=1)
    out, dx, dparams = grads(backend, layer, x, g)
    assert out.shape == expected.shape
    if p == "same":
        assert out.shape[1:-1] == tuple(
            math.ceil(n / st) for n, st in zip(sizes, strides, strict=True)
        )
    np.testing.assert_allclose(out, expected, **TOL)
    rdx, rdw, rdb = ref.conv_grads(x, state["weight"], g, strides, dilation, pads)
    np.testing.assert_allclose(dx, rdx, **TOL)
    np.testing.assert_allclose(dparams["weight"], rdw, rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(dparams["bias"], rdb, rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES[1::2], ids=[str(c) for c in CASES[1::2]])
def test_matches_native_torch_in_float64_with_explicit_padding(
    backend: str, case: tuple[Any, ...]
) -> None:
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    sizes, k, s, d, p = case
    layer = _layer(sizes, k, s, d, p, init="torch")
    x = _x(3, *sizes, 3, seed=2)
    strides, dilation, pads = _geometry(layer, sizes)
    state = layer.state_dict()
    n = len(sizes)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(state["weight"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(state["bias"], dtype=torch.float64, requires_grad=True)
    flat_pads = [q for pair in reversed(pads) for q in pair]  # F.pad: last dim first
    first = functional.pad(xt.movedim(-1, 1), flat_pads)
    weight = w.permute(n + 1, n, *range(n))  # (k..., C, O) -> (O, C, k...)
    conv = functional.conv1d if n == 1 else functional.conv2d
    native = conv(first, weight, b, strides, 0, dilation).movedim(1, -1)
    g = _x(*native.shape, seed=3)
    (native * torch.tensor(g, dtype=torch.float64)).sum().backward()
    out, dx, dparams = grads(backend, layer, x, g)
    np.testing.assert_allclose(out, native.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dparams["weight"], w.grad.numpy(), rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(dparams["bias"], b.grad.numpy(), rtol=2e-5, atol=1e-4)


def test_no_bias(backend: str) -> None:
    layer = tn.Conv2D(3, 2, 2, bias=False)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = _x(2, 4, 5, 3)
    expected = ref.conv(x, layer.state_dict()["weight"], None, (1, 1), (1, 1), [(0, 0)] * 2)
    np.testing.assert_allclose(tn.to_numpy(layer(x)), expected, **TOL)


@pytest.mark.parametrize("cls", ["Conv1D", "Conv2D"])
def test_init_presets(backend: str, cls: str) -> None:
    make = getattr(tn, cls)
    k = 3 if cls == "Conv1D" else (3, 2)
    taps = 3 if cls == "Conv1D" else 6
    keras_layer = make(40, 50, k)
    w = keras_layer.state_dict()["weight"]
    limit = math.sqrt(6.0 / (taps * 40 + taps * 50))
    assert w.shape == (*((k,) if cls == "Conv1D" else k), 40, 50)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    np.testing.assert_array_equal(keras_layer.state_dict()["bias"], np.zeros(50, np.float32))
    torch_layer = make(40, 50, k, init="torch")
    bound = 1.0 / math.sqrt(taps * 40)
    for name in ("weight", "bias"):
        values = torch_layer.state_dict()[name]
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    assert tn.Conv1D(2, 2, 1, init="keras").state_dict()["bias"].sum() == 0.0


def test_parity_same_seed_same_weights_and_outputs(both_backends: list[str]) -> None:
    results = {}
    x = _x(2, 9, 8, 3)
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(7)
            layers = [
                tn.Conv2D(3, 5, 4, strides=2, padding="same"),
                tn.Conv2D(3, 5, 3, dilation=2, init="torch"),
            ]
            results[name] = (
                [la.state_dict() for la in layers],
                [tn.to_numpy(la(x)) for la in layers],
            )
    (states_a, outs_a), (states_b, outs_b) = results.values()
    for sa, sb in zip(states_a, states_b, strict=True):
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key])
    for a, b in zip(outs_a, outs_b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _Net(tn.Module):
    """Conv (SAME, stride 2, even kernel) -> max_pool -> Conv (explicit padding) -> avg_pool
    (SAME) -> flatten -> Linear: every window op inside a compiled step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = tn.Conv2D(3, 6, 4, strides=2, padding="same", init="torch")
        self.conv2 = tn.Conv2D(6, 8, 3, padding=1, init="torch")
        self.conv3 = tn.Conv1D(8, 4, 2, padding="same")
        self.head = tn.Linear(2 * 2 * 8 + 4 * 4, 3)

    def forward(self, x: Any) -> Any:
        h = tn.max_pool(tn.relu(self.conv1(x)), 2, padding="same")  # (B, 5, 5, 6) -> (3, 3)
        h = tn.avg_pool(tn.relu(self.conv2(h)), 2, padding="same")  # (B, 2, 2, 8)
        seq = tn.reshape(h, (-1, 4, 8))  # (B, 4, 8)
        side = tn.flatten(tn.relu(self.conv3(seq)))  # (B, 16)
        return self.head(tn.concat([tn.flatten(h), side], axis=-1))


def test_training_steps_give_the_same_losses_on_both_backends(both_backends: list[str]) -> None:
    x = _x(6, 10, 9, 3)
    y = np.random.default_rng(4).integers(0, 3, 6)
    losses = {}
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(3)
            net = _Net()
            step = tn.train_step(net, tn.cross_entropy, tn.SGD(net.parameters(), lr=0.1))
            losses[name] = [float(step(x, y)) for _ in range(5)]
    a, b = losses.values()
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert a[-1] < a[0]


def test_compiled_step_reuses_the_graph_for_new_spatial_sizes(backend: str) -> None:
    layer = tn.Conv2D(3, 2, 3, strides=2, padding="same", init="torch")
    step = tn.predict_step(layer)
    for sizes in [(8, 8), (9, 7), (5, 6)]:
        x = _x(2, *sizes, 3)
        strides, dilation, pads = _geometry(layer, sizes)
        state = layer.state_dict()
        expected = ref.conv(x, state["weight"], state["bias"], strides, dilation, pads)
        np.testing.assert_allclose(tn.to_numpy(step(x)), expected, **TOL)


# --- bad inputs ---------------------------------------------------------------------------------


def test_channel_mismatch_names_both_counts(backend: str) -> None:
    layer = tn.Conv2D(3, 4, 3)
    with pytest.raises(ShapeError, match=r"x has 5 channels, Conv2D\(in_channels=3\) expects 3"):
        layer(_x(2, 8, 8, 5))


def test_wrong_rank(backend: str) -> None:
    with pytest.raises(
        ShapeError, match=r"'x' must have shape \(batch, width, 3\).*\(2, 8, 8, 3\)"
    ):
        tn.Conv1D(3, 4, 3)(_x(2, 8, 8, 3))
    with pytest.raises(ShapeError, match=r"\(batch, height, width, 3\).*got \(8, 3\)"):
        tn.Conv2D(3, 4, 3)(_x(8, 3))


def test_kernel_larger_than_input(backend: str) -> None:
    message = (
        r"Conv2D.forward: argument 'x' of shape \(2, 4, 6, 3\) is too small for "
        r"kernel_size=\(5, 5\) with padding='valid'.*span \(5, 5\)"
    )
    with pytest.raises(ShapeError, match=message):
        tn.Conv2D(3, 4, 5)(_x(2, 4, 6, 3))
    with pytest.raises(ShapeError, match=r"dilation=\(3,\) spans \(7,\)"):
        tn.Conv1D(3, 4, 3, dilation=3)(_x(2, 6, 3))
    tn.Conv1D(3, 4, 3, dilation=3, padding=1)(_x(2, 5, 3))  # 5 + 2 >= 7: fits
    tn.Conv2D(3, 4, 5, padding="same")(_x(2, 2, 2, 3))  # SAME always fits


def test_too_small_input_in_a_compiled_step(backend: str) -> None:
    layer = tn.Conv2D(3, 2, 5)
    step = tn.train_step(layer, lambda p, t: tn.mean(p), tn.SGD(layer.parameters(), lr=0.1))
    before = layer.state_dict()["weight"].copy()
    step(_x(2, 6, 6, 3), np.zeros(2, np.float32))  # traced with dims unknown (TensorFlow)
    after = layer.state_dict()["weight"].copy()
    with pytest.raises(ShapeError, match=r"of shape \(2, 3, 9, 3\) is too small.*'valid'"):
        step(_x(2, 3, 9, 3), np.zeros(2, np.float32))
    np.testing.assert_array_equal(layer.state_dict()["weight"], after)  # no update
    assert not np.array_equal(before, after)


def test_flatten_size_mismatch_in_a_compiled_step(backend: str) -> None:
    conv, head = tn.Conv2D(3, 2, 3, padding="same"), tn.Linear(2 * 4 * 4, 1)
    model = _Flat(conv, head)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    step(_x(2, 4, 4, 3), np.zeros((2, 1), np.float32))
    with pytest.raises(ShapeError, match=r"Linear.forward: argument 'x' must have shape "):
        step(_x(2, 5, 4, 3), np.zeros((2, 1), np.float32))


class _Flat(tn.Module):
    def __init__(self, conv: tn.Module, head: tn.Module) -> None:
        super().__init__()
        self.conv, self.head = conv, head

    def forward(self, x: Any) -> Any:
        return self.head(tn.flatten(self.conv(x)))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"kernel_size": 0},
            ArgumentError,
            r"Conv2D\(kernel_size\) must be an int or a tuple of 2",
        ),
        ({"kernel_size": (3, 3, 3)}, ArgumentError, r"tuple of 2 ints >= 1.*\(3, 3, 3\)"),
        ({"kernel_size": 2.0}, ArgumentTypeError, r"Conv2D\(kernel_size\).*float 2.0"),
        ({"strides": (1, 0)}, ArgumentError, r"Conv2D\(strides\)"),
        ({"dilation": -1}, ArgumentError, r"Conv2D\(dilation\)"),
        ({"dilation": 2, "strides": (1, 2)}, ArgumentError, r"strides > 1 together with dil"),
        ({"padding": "full"}, ArgumentError, r"Conv2D\(padding\) must be 'valid', 'same', an int"),
        (
            {"padding": -1},
            ArgumentError,
            r"Conv2D\(padding\) must be an int or a tuple of 2 ints >= 0",
        ),
        ({"padding": None}, ArgumentTypeError, r"Conv2D\(padding\).*NoneType"),
        ({"in_channels": 0}, ArgumentError, r"Conv2D\(in_channels\) must be > 0"),
        ({"bias": 1}, ArgumentTypeError, r"Conv2D\(bias\) must be a bool"),
        ({"init": "he"}, ArgumentError, r"Conv2D\(init=...\) must be one of"),
    ],
)
def test_bad_arguments(backend: str, kwargs: dict[str, Any], error: type, message: str) -> None:
    args = {"in_channels": 3, "out_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=message):
        tn.Conv2D(**args)


def test_padding_spellings(backend: str) -> None:
    assert tn.Conv2D(1, 1, 3, padding="SAME").padding == "same"
    assert tn.Conv2D(1, 1, 3, padding=(1, 2)).padding == (1, 2)
    assert tn.Conv1D(1, 1, 3, padding=0).padding == (0,)
    assert "padding='same'" in repr(tn.Conv1D(1, 1, 3, padding="same"))


@pytest.mark.backends("torch")
def test_float64_native_input_is_refused(backend: str) -> None:
    import torch

    with pytest.raises(DTypeError, match="'x' must be float32"):
        tn.Conv1D(3, 2, 2)(torch.zeros(1, 4, 3, dtype=torch.float64, device=torch_device()))


@pytest.mark.backends("torch")
def test_torch_compile_step_matches_eager(backend: str) -> None:
    # torch.compile(dynamic=True) fails on convolutions over permuted channels_last views
    # (torch 2.13, CPU); the backend uses contiguous operands there. Sizes 8 and 7 pad SAME
    # differently at stride 2 (one graph per remainder).
    losses = []
    for jit in (False, True):
        tn.seed(0)
        layer = tn.Conv2D(3, 2, 4, strides=2, padding="same")
        step = tn.train_step(
            layer, lambda p, t: tn.mean(tn.square(p)), tn.SGD(layer.parameters(), lr=0.1), jit=jit
        )
        losses.append([float(step(_x(2, n, n, 3), np.zeros(2, np.float32))) for n in (8, 7)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
