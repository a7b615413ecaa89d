"""Steps in the right mode, steps that return the model's outputs (truncated BPTT against a
hand-written torch loop), predict_step, direct calls with host data, no_grad."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors


class TrainingDoubles(tn.Module):
    """``2 * (x @ w)`` in training mode, ``x @ w`` in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = tn.Linear(3, 1, bias=False)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.lin(x)
        return y * 2.0 if self.training else y


def test_steps_run_in_their_mode(backend: str) -> None:
    model = TrainingDoubles()
    w = model.state_dict()["lin.weight"]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    y = np.zeros((4, 1), np.float32)
    plain = x @ w
    model.eval()  # the train step must still run in training mode
    train = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.0), outputs=True)
    evaluate = tn.eval_step(model, tn.mse_loss, outputs=True)
    predict = tn.predict_step(model)
    for rows in (4, 2, 3):  # new batch sizes: no retrace
        loss, out = train(x[:rows], y[:rows])
        np.testing.assert_allclose(tn.to_numpy(out), 2 * plain[:rows], rtol=1e-6)
        np.testing.assert_allclose(float(loss), np.mean((2 * plain[:rows]) ** 2), rtol=1e-5)
        loss, out = evaluate(x[:rows], y[:rows])
        np.testing.assert_allclose(tn.to_numpy(out), plain[:rows], rtol=1e-6)
        np.testing.assert_allclose(tn.to_numpy(predict(x[:rows])), plain[:rows], rtol=1e-6)
    assert not model.training and not model.lin.training  # modes put back
    model.train()
    np.testing.assert_allclose(tn.to_numpy(predict(x)), plain, rtol=1e-6)
    assert model.training
    if backend == "tensorflow":
        for step in (train, evaluate, predict):
            assert step.trace_count == 1  # type: ignore[attr-defined]


class Forecaster(tn.Module):
    """LSTM + Linear head; returns ``(pred, (h, c))`` so a step can carry the state."""

    def __init__(self, f: int, h: int) -> None:
        super().__init__()
        self.lstm = tn.LSTM(f, h)
        self.head = tn.Linear(h, 1)

    def forward(self, x, h0, c0):  # type: ignore[no-untyped-def]
        out, (h, c) = self.lstm(x, initial_state=(h0, c0))
        return self.head(out), (h, c)


def _seq_loss(outputs: Any, target: Any) -> Any:
    pred, _ = outputs
    return tn.mse_loss(pred, target)


def _reference_tbptt(
    state: dict[str, np.ndarray], chunks: list[tuple[np.ndarray, np.ndarray]], lr: float
) -> list[float]:
    """Truncated BPTT written by hand in torch (float64, own LSTM cell, plain SGD)."""
    import torch

    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in state.items()}
    batch, hidden = chunks[0][0].shape[0], state["lstm.w_hh_l0"].shape[0]
    h = torch.zeros(batch, hidden, dtype=torch.float64)
    c = torch.zeros(batch, hidden, dtype=torch.float64)
    losses = []
    for x, y in chunks:
        xs, outs = torch.tensor(x, dtype=torch.float64), []
        for t in range(xs.shape[1]):
            z = xs[:, t] @ p["lstm.w_ih_l0"] + h @ p["lstm.w_hh_l0"] + p["lstm.bias_l0"]
            i, f, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        pred = torch.stack(outs, 1) @ p["head.weight"] + p["head.bias"]
        loss = torch.mean((pred - torch.tensor(y, dtype=torch.float64)) ** 2)
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for value, grad in zip(p.values(), grads, strict=True):
                value -= lr * grad
        h, c = h.detach(), c.detach()  # truncate: the next chunk starts from the values
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("eager", [False, True])
def test_truncated_bptt_carries_the_state(backend: str, eager: bool) -> None:
    rng = np.random.default_rng(5)
    batch, time, feat, hidden, lr = 3, 6, 2, 5, 0.3
    series = rng.normal(size=(batch, 4 * time + 1, feat)).astype(np.float32)
    chunks = [
        (series[:, k * time : (k + 1) * time], series[:, k * time + 1 : (k + 1) * time + 1, :1])
        for k in range(4)
    ]
    model = Forecaster(feat, hidden)
    state0 = model.state_dict()
    step = tn.train_step(
        model, _seq_loss, tn.SGD(model.parameters(), lr=lr), outputs=True, eager=eager
    )
    h = c = np.zeros((1, batch, hidden), np.float32)
    losses = []
    for x, y in chunks:
        loss, (pred, (h, c)) = step(x, h, c, y)
        assert tn.to_numpy(pred).shape == (batch, time, 1)
        losses.append(float(loss))
    expected = _reference_tbptt(state0, chunks, lr)
    np.testing.assert_allclose(losses, expected, rtol=2e-5)
    assert losses[0] != losses[3]  # it trained and the state moved
    if backend == "tensorflow" and not eager:
        assert step.trace_count == 1  # type: ignore[attr-defined]


def test_outputs_of_any_structure(backend: str) -> None:
    class Dicts(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = tn.Linear(2, 2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.lin(x)
            return {"logits": y, "parts": [y * 0.0, (tn.sum(y),)]}

    model = Dicts()

    def loss_fn(out: Any, target: Any) -> Any:
        assert set(out) == {"logits", "parts"}
        return tn.mse_loss(out["logits"], target)

    step = tn.train_step(model, loss_fn, tn.Adam(model.parameters()), outputs=True)
    loss, out = step(np.ones((3, 2)), np.zeros((3, 2)))
    assert tn.to_numpy(out["logits"]).shape == (3, 2)
    assert tn.to_numpy(out["parts"][1][0]).shape == ()
    if backend == "torch":
        assert not out["logits"].requires_grad and not loss.requires_grad
    plain = tn.train_step(model, loss_fn, tn.SGD(model.parameters(), lr=0.1))
    assert tn.to_numpy(plain(np.ones((3, 2)), np.zeros((3, 2)))).shape == ()
    with pytest.raises(errors.ArgumentTypeError, match="outputs must be a bool"):
        tn.eval_step(model, loss_fn, outputs="yes")  # type: ignore[arg-type]


class Masked(tn.Module):
    """User arithmetic on the inputs inside forward: the direct-call conversion case."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = tn.Linear(3, 2)

    def forward(self, x, mask, extra=None):  # type: ignore[no-untyped-def]
        y = self.lin(x) * mask[..., None]
        if extra is not None:
            y = y + extra["bias"] * 1.0
        return tn.sum(y, axis=1) / tn.sum(mask, axis=1, keepdims=True)


def test_direct_calls_with_host_data(backend: str) -> None:
    model = Masked()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 3))  # float64: converted to float32
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
    state = model.state_dict()
    y = x.astype(np.float32) @ state["lin.weight"] + state["lin.bias"]
    expected = (y * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(tn.to_numpy(model(x, mask)), expected, rtol=1e-5)
    out = model(x.tolist(), mask.tolist(), extra={"bias": [0.5, -0.5]})
    shifted = (y * mask[..., None] + [0.5, -0.5]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(tn.to_numpy(out), shifted, rtol=1e-5)
    with tn.no_grad():
        inside = model(x, mask)
    if backend == "torch":
        assert not inside.requires_grad
    np.testing.assert_allclose(tn.to_numpy(inside), expected, rtol=1e-5)


def test_predict_step_checks_arguments(backend: str) -> None:
    predict = tn.predict_step(Masked())
    with pytest.raises(errors.ArgumentError, match=r"predict_step\(\*inputs\) needs at least 1"):
        predict()
    with pytest.raises(errors.ArgumentTypeError, match="does not accept 4 input"):
        predict(*([np.ones((1, 4, 3))] * 4))
    with pytest.raises(errors.ArgumentError, match="empty batch"):
        predict(np.ones((0, 4, 3)), np.ones((0, 4)))


def test_carried_state_of_the_wrong_size_is_refused(backend: str) -> None:
    model = Forecaster(2, 5)
    step = tn.train_step(model, _seq_loss, tn.SGD(model.parameters(), lr=0.1), outputs=True)
    x, y, good = np.ones((3, 4, 2)), np.zeros((3, 4, 1)), np.zeros((1, 3, 5))
    step(x, good, good, y)
    bad = np.zeros((2, 3, 5))  # two layers' worth: in a traced step dim 0 is only known at run time
    with pytest.raises(
        errors.ShapeError, match=r"h0 must have shape \(1, batch, 5\).*got \(2, 3, 5\)"
    ):
        step(x, bad, bad, y)


def test_models_doc_runs(backend: str) -> None:
    """Every python block of docs/models.md, in order, in one namespace."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "models.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/models.md", "exec"), namespace)
