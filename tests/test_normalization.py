"""LayerNorm and BatchNorm (DESIGN.md §13): values and gradients against torch's float64
layers and NumPy, BatchNorm's running statistics against torch's after 10 train steps, modes,
buffers, the batch-of-one error, and parity across backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import grads
from twinnn import errors

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _x(*shape: int, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(shape) + 0.5).astype(np.float32)


def _t64(a: np.ndarray) -> Any:
    return torch.from_numpy(np.asarray(a, np.float64))


def _randomize(layer: tn.Module, seed: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {
        name: (value + rng.uniform(-0.5, 0.5, value.shape)).astype(np.float32)
        for name, value in layer.state_dict().items()
    }
    layer.load_state_dict(state)
    return state


def _numpy_norm(x: np.ndarray, axes: tuple[int, ...], eps: float, w: Any, b: Any) -> np.ndarray:
    x64 = x.astype(np.float64)
    mean = x64.mean(axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axes, keepdims=True)
    return (x64 - mean) / np.sqrt(var + eps) * w + b


# --- LayerNorm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6,), (4, 6), (3, 5, 6), (2, 0, 6)])
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_layer_norm_values_and_gradients_match_torch_float64(
    backend: str, shape: tuple[int, ...], eps: float
) -> None:
    layer = tn.LayerNorm(6, eps=eps)
    state = _randomize(layer)
    x = _x(*shape)
    g = _x(*shape, seed=1, scale=1.0)
    out, dx, found = grads(backend, layer, x, g)

    xt = _t64(x).requires_grad_(True)
    w, b = _t64(state["weight"]).requires_grad_(True), _t64(state["bias"]).requires_grad_(True)
    expected = F.layer_norm(xt, (6,), w, b, eps)
    (expected * _t64(g)).sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(out, expected.detach().numpy(), **tol)
    np.testing.assert_allclose(
        out, _numpy_norm(x, (-1,), eps, state["weight"], state["bias"]), **tol
    )
    assert dx is not None
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(found["weight"], w.grad.numpy(), **tol)
    np.testing.assert_allclose(found["bias"], b.grad.numpy(), **tol)


def test_layer_norm_init_and_layout(backend: str) -> None:
    layer = tn.LayerNorm(3)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    state = layer.state_dict()
    assert state["weight"].tolist() == [1.0, 1.0, 1.0] and state["bias"].tolist() == [0.0] * 3
    assert layer.named_buffers() == []
    with pytest.raises(
        errors.ShapeError, match=r"LayerNorm.forward: argument 'x' .*\(\.\.\., 3\).*\(2, 4\)"
    ):
        layer(np.zeros((2, 4), np.float32))


# --- BatchNorm: one forward -----------------------------------------------------------------------
def _torch_bn(
    features: int, rank: int, state: dict[str, np.ndarray], momentum: float = 0.1, eps: float = 1e-5
) -> Any:
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[rank]
    native = cls(features, momentum=momentum, eps=eps).double()
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(native, name).copy_(_t64(state[name]))
    return native


def _channels_first(x: Any) -> Any:
    """(B, ..., C) -> (B, C, ...) for torch's BatchNorm{1,2}d, and back with ``back=True``."""
    return x if x.dim() == 2 else x.movedim(-1, 1)


def _channels_last(x: Any) -> Any:
    return x if x.dim() == 2 else x.movedim(1, -1)


@pytest.mark.parametrize("shape", [(8, 5), (4, 6, 5), (3, 4, 2, 5)])
def test_batch_norm_training_forward_and_gradients_match_torch_float64(
    backend: str, shape: tuple[int, ...]
) -> None:
    layer = tn.BatchNorm(5)
    state = _randomize(layer)
    state["running_var"] = np.abs(state["running_var"]) + 0.5
    layer.load_state_dict(state)
    x = _x(*shape)
    g = _x(*shape, seed=1, scale=1.0)
    out, dx, found = grads(backend, layer, x, g)

    native = _torch_bn(5, len(shape), state).train()
    xt = _t64(x).requires_grad_(True)
    expected = _channels_last(native(_channels_first(xt)))
    (expected * _t64(g)).sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(out, expected.detach().numpy(), **tol)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_allclose(
        out, _numpy_norm(x, axes, 1e-5, state["weight"], state["bias"]), **tol
    )
    assert dx is not None
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(found["weight"], native.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(found["bias"], native.bias.grad.numpy(), **tol)
    # the buffers moved once, as torch's: the unbiased variance goes into running_var
    after = layer.state_dict()
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(after[name], getattr(native, name).numpy(), rtol=1e-6, atol=1e-7)
    n = int(np.prod(shape[:-1]))
    var = x.astype(np.float64).reshape(-1, 5).var(0) * n / (n - 1)
    np.testing.assert_allclose(
        after["running_var"], 0.9 * state["running_var"] + 0.1 * var, rtol=1e-6
    )


def test_batch_norm_eval_mode_uses_the_running_statistics(backend: str) -> None:
    layer = tn.BatchNorm(4, eps=1e-3)
    state = _randomize(layer)
    state["running_var"] = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    layer.load_state_dict(state)
    layer.eval()
    x = _x(1, 3, 4)  # one value per channel is fine in eval mode
    out = tn.to_numpy(layer(x))
    expected = (x - state["running_mean"]) / np.sqrt(state["running_var"] + 1e-3)
    np.testing.assert_allclose(
        out, expected * state["weight"] + state["bias"], rtol=1e-5, atol=1e-6
    )
    native = _torch_bn(4, 3, state, eps=1e-3).eval()
    np.testing.assert_allclose(
        out, _channels_last(native(_channels_first(_t64(x)))).detach().numpy(), rtol=1e-5, atol=1e-6
    )
    after = layer.state_dict()
    for name in ("running_mean", "running_var"):
        np.testing.assert_array_equal(after[name], state[name])


def test_batch_norm_init_parameters_and_buffers(backend: str) -> None:
    layer = tn.BatchNorm(3, momentum=0.2)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var"]
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    state = layer.state_dict()
    assert (
        state["running_mean"].tolist() == [0.0] * 3 and state["running_var"].tolist() == [1.0] * 3
    )
    assert state["weight"].tolist() == [1.0] * 3 and state["bias"].tolist() == [0.0] * 3


# --- BatchNorm: ten train steps against torch -----------------------------------------------------
class _Net(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = tn.BatchNorm(4, momentum=0.2)
        self.head = tn.Linear(4, 2, init="torch")

    def forward(self, x: Any) -> Any:
        return self.head(self.bn(x))


def _batches(rank: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    sizes = [8, 5, 16, 2, 7, 3, 9, 4, 6, 10]
    out = []
    for i, b in enumerate(sizes):
        lead = (b,) if rank == 2 else (b, 2 + i % 3)
        x = (3.0 * rng.standard_normal((*lead, 4)) + 1.0).astype(np.float32)
        out.append((x, rng.standard_normal((*lead, 2)).astype(np.float32)))
    return out


@pytest.mark.parametrize("rank", [2, 3])
def test_ten_train_steps_match_torch_batchnorm1d(backend: str, rank: int) -> None:
    model = _Net()
    state = model.state_dict()
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.5)
    step = tn.train_step(model, tn.mse_loss, opt)
    predict = tn.predict_step(model)
    evaluate = tn.eval_step(model, tn.mse_loss)

    bn = torch.nn.BatchNorm1d(4, momentum=0.2).double()
    head = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(_t64(state[f"bn.{name}"]))
        head.weight.copy_(_t64(state["head.weight"].T))
        head.bias.copy_(_t64(state["head.bias"]))
    native_opt = torch.optim.SGD([*bn.parameters(), *head.parameters()], lr=0.1, momentum=0.5)
    for x, y in _batches(rank):
        loss = float(tn.to_numpy(step(x, y)))
        native_opt.zero_grad()
        native_loss = F.mse_loss(head(_channels_last(bn(_channels_first(_t64(x))))), _t64(y))
        native_loss.backward()
        native_opt.step()
        assert loss == pytest.approx(native_loss.item(), rel=1e-5)
        # eval and predict steps read the running statistics and change nothing
        buffers = {n: tn.to_numpy(b).copy() for n, b in model.named_buffers()}
        evaluate(x, y)
        predict(x)
        for name, value in model.named_buffers():
            np.testing.assert_array_equal(tn.to_numpy(value), buffers[name])
    final = model.state_dict()
    for name in ("running_mean", "running_var", "weight", "bias"):
        np.testing.assert_allclose(
            final[f"bn.{name}"], getattr(bn, name).detach().numpy(), rtol=1e-5, atol=1e-6
        )
    assert model.training  # the steps put the mode back
    if backend == "tensorflow":  # traced once for ten batch sizes (and sequence lengths)
        assert step.trace_count == 1  # type: ignore[attr-defined]
    # eval mode normalises with the running statistics, as torch's eval()
    x = _batches(rank)[0][0]
    bn.eval()
    expected = head(_channels_last(bn(_channels_first(_t64(x))))).detach().numpy()
    np.testing.assert_allclose(tn.to_numpy(predict(x)), expected, rtol=1e-5, atol=1e-5)


def test_buffers_round_trip_through_a_checkpoint(backend: str, tmp_path: Path) -> None:
    model = _Net()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    for x, y in _batches(2)[:3]:
        step(x, y)
    tn.save(tmp_path / "bn.safetensors", model)
    again = _Net()
    tn.load(tmp_path / "bn.safetensors", again)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)
    assert again.state_dict()["bn.running_var"].tolist() != [1.0] * 4


# --- BatchNorm: one value per channel -------------------------------------------------------------
def _one_value_messages(backend: str) -> list[str]:
    messages = []
    layer = tn.BatchNorm(3)
    for x in (np.zeros((1, 3), np.float32), np.zeros((1, 1, 3), np.float32)):
        with pytest.raises(errors.ArgumentError) as info:
            layer(x)
        messages.append(str(info.value))
    model = _Net()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1, momentum=0.9))
    x, y = _batches(3)[0]
    step(x, y)  # traced (TF) with a good batch
    before = model.state_dict()
    with pytest.raises(errors.ArgumentError) as info:
        step(x[:1, :1], y[:1, :1])
    messages.append(str(info.value))
    for name, value in model.state_dict().items():  # nothing updated, buffers included
        np.testing.assert_array_equal(value, before[name])
    layer.eval()
    assert tn.to_numpy(layer(np.ones((1, 3), np.float32))).shape == (1, 3)
    return messages


def test_one_value_per_channel_in_training_is_an_argument_error(backend: str) -> None:
    messages = _one_value_messages(backend)
    assert len(set(messages)) == 1
    assert messages[0].startswith(
        "BatchNorm.forward: argument 'x' must have more than 1 value per channel in training mode"
    )


def test_batch_norm_errors_and_training_are_the_same_on_both_backends(
    both_backends: list[str],
) -> None:
    results = []
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(2)
            model = _Net()
            step = tn.train_step(model, tn.mse_loss, tn.Adam(model.parameters(), lr=0.01))
            losses = [float(tn.to_numpy(step(x, y))) for x, y in _batches(3)[:5]]
            results.append((_one_value_messages(name), losses, model.state_dict()))
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)
    for key, value in results[0][2].items():
        np.testing.assert_allclose(value, results[1][2][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: tn.BatchNorm(0), errors.ArgumentError, r"BatchNorm\(features\).*> 0"),
        (
            lambda: tn.BatchNorm(3, momentum=1.5),
            errors.ArgumentError,
            r"momentum.*\[0.0, 1.0\].*1.5",
        ),
        (lambda: tn.BatchNorm(3, momentum=None), errors.ArgumentTypeError, r"momentum.*float"),
        (lambda: tn.BatchNorm(3, eps=-1e-5), errors.ArgumentError, r"BatchNorm\(eps\)"),
        (lambda: tn.LayerNorm(2.5), errors.ArgumentTypeError, r"LayerNorm\(features\).*int"),
        (lambda: tn.LayerNorm(3, eps="1e-5"), errors.ArgumentTypeError, r"LayerNorm\(eps\)"),
        (
            lambda: tn.BatchNorm(3)(np.zeros(3, np.float32)),
            errors.ShapeError,
            r"\(batch, \.\.\., 3\).*\(3,\)",
        ),
        (
            lambda: tn.BatchNorm(3)(np.zeros((4, 2), np.float32)),
            errors.ShapeError,
            r"features=3.*\(4, 2\)",
        ),
    ],
)
def test_bad_arguments(backend: str, make: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.backends("torch")
def test_torch_buffers_hold_no_graph(backend: str) -> None:
    """The running statistics are written in place outside autograd: no graph is kept alive
    from one step to the next."""
    model = _Net()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    buffers = [b for _, b in model.named_buffers()]
    for x, y in _batches(3)[:2]:
        step(x, y)
        model(x)  # a direct call in training mode, with autograd recording
    for name, buffer in model.named_buffers():
        assert buffer.grad_fn is None and not buffer.requires_grad, name
    # written in place: the same tensors as before
    assert all(a is b for a, (_, b) in zip(buffers, model.named_buffers(), strict=True))
