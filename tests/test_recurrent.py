"""What the LSTM and the GRU share: left padding (bit for bit the right-padded result moved,
gradients too), dropout between stacked layers (torch's semantics, the same masks on both
backends), and the LSTM's second bias (``recurrent_bias``): a converted PyTorch model trains
like the original."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from twinnn.layers.dropout import Dropout

torch = pytest.importorskip("torch")

Array = np.ndarray
LENGTHS = np.array([5, 0, 1, 3, 5, 2])
B, T, F, H = 6, 5, 3, 4
KINDS = ["LSTM", "GRU"]


def leaf(backend: str, value: Array) -> Any:
    if backend == "torch":
        return torch_tensor(np.asarray(value, np.float32), requires_grad=True)
    import tensorflow as tf

    return tf.Variable(np.asarray(value, np.float32))


def native_grads(backend: str, loss_of: Callable[[], Any], wrt: Sequence[Any]) -> list[Array]:
    if backend == "torch":
        return [torch_numpy(g) for g in torch.autograd.grad(loss_of(), list(wrt))]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of()
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, list(wrt))]


def make(kind: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(tn, kind)(*args, **kwargs)


def states_of(kind: str, result: Any) -> list[Any]:
    """``[out, h]`` (GRU) or ``[out, h, c]`` (LSTM) of a call's result."""
    out, state = result
    return [out, *state] if kind == "LSTM" else [out, state]


def initial(kind: str, rng: np.random.Generator, layers: int) -> Any:
    h0 = rng.standard_normal((layers, B, H)).astype(np.float32)
    return (h0, h0 * 0.5) if kind == "LSTM" else h0


def to_left(x: Array, lengths: Array) -> Array:
    """Each row's valid steps moved to the end; the front filled with garbage."""
    left = np.full_like(x, np.nan)
    for b, n in enumerate(lengths):
        left[b, x.shape[1] - n :] = x[b, :n]
    return left


# --- left padding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_left_padding_is_the_right_padded_result_moved_bit_for_bit(backend: str, kind: str) -> None:
    """Outputs, final states and every gradient (parameters, x) of a left-padded batch are
    exactly those of the same batch padded on the right, moved; garbage in either padding."""
    rng = np.random.default_rng(1)
    layer = make(kind, F, H, 2, True, init="torch")
    right = rng.standard_normal((B, T, F)).astype(np.float32)
    right[np.arange(T)[None, :] >= LENGTHS[:, None]] = 1e30
    seeds_right = rng.standard_normal((B, T, 2 * H)).astype(np.float32)
    state = initial(kind, rng, 4)
    params = [p for _, p in layer.named_parameters()]
    runs = {}
    for side, x_value, seeds in (
        ("right", right, seeds_right),
        ("left", to_left(right, LENGTHS), np.nan_to_num(to_left(seeds_right, LENGTHS))),
    ):
        x, seen = leaf(backend, x_value), {}

        def loss_of(x: Any = x, seen: dict[str, Any] = seen, seeds: Array = seeds) -> Any:
            parts = states_of(kind, layer(x, LENGTHS, state, padding=side))  # noqa: B023
            seen["parts"] = [tn.to_numpy(p) for p in parts]
            return tn.sum(parts[0] * tn.tensor(seeds)) + sum(tn.sum(p) for p in parts[1:])

        grads = native_grads(backend, loss_of, [*params, x])
        runs[side] = (seen["parts"], grads)
    (right_parts, right_grads), (left_parts, left_grads) = runs["right"], runs["left"]
    for b, n in enumerate(LENGTHS):
        np.testing.assert_array_equal(left_parts[0][b, T - n :], right_parts[0][b, :n])
        assert np.all(left_parts[0][b, : T - n] == 0.0)
        np.testing.assert_array_equal(left_grads[-1][b, T - n :], right_grads[-1][b, :n])
        assert np.all(left_grads[-1][b, : T - n] == 0.0)
    for got, want in zip(left_parts[1:], right_parts[1:], strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(left_grads[:-1], right_grads[:-1], strict=True):
        assert np.abs(want).max() > 0
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_left_padding_inside_a_compiled_train_step(backend: str, kind: str) -> None:
    """Keras' ``pad_sequences`` layout through ``train_step`` (TensorFlow: one trace for
    both batches): the updates are those of the right-padded batch, bit for bit."""

    class Model(tn.Module):
        def __init__(self, side: str) -> None:
            super().__init__()
            self.side = side
            self.rnn = make(kind, F, H, 1, True)
            self.head = tn.Linear(2 * H, 1)

        def forward(self, x: Any, lengths: Any) -> Any:
            # (a sum over time would add the outputs in another order: not bit for bit)
            _, state = self.rnn(x, lengths, padding=self.side)
            h = state[0] if kind == "LSTM" else state
            return self.head(tn.concat([h[0], h[1]], axis=-1))

    rng = np.random.default_rng(2)
    batches = []
    for batch, time in ((B, T), (3, 7)):
        lengths = rng.integers(0, time + 1, batch)
        x = rng.standard_normal((batch, time, F)).astype(np.float32)
        batches.append((x, lengths, rng.standard_normal((batch, 1)).astype(np.float32)))
    finals = {}
    for side in ("right", "left"):
        tn.seed(4)
        model = Model(side)
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.5))
        for x, lengths, y in batches:
            step(to_left(x, lengths) if side == "left" else x, lengths, y)
        finals[side] = model.state_dict()
        if backend == "tensorflow":
            assert step.trace_count == 1  # type: ignore[attr-defined]
    for name, value in finals["right"].items():
        np.testing.assert_array_equal(finals["left"][name], value, err_msg=name)


def test_padding_argument(backend: str) -> None:
    layer = tn.LSTM(F, H)
    x = np.random.default_rng(3).standard_normal((B, T, F)).astype(np.float32)
    full = tn.to_numpy(layer(x)[0])
    np.testing.assert_array_equal(tn.to_numpy(layer(x, padding="left")[0]), full)  # no lengths
    for bad in ("pre", "LEFT", None, 1):
        with pytest.raises(tn.errors.ArgumentError, match=r"LSTM.forward: argument 'padding'"):
            layer(x, LENGTHS, padding=bad)


# --- dropout between layers -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_is_torch_semantics_on_the_outputs_of_every_layer_but_the_last(
    backend: str, kind: str
) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    tn.seed(9)
    layer = make(kind, F, H, 2, dropout=0.5, init="torch")
    assert [n for n, _ in layer.named_parameters()] == [
        n for n, _ in make(kind, F, H, 2).named_parameters()
    ]  # dropout adds no parameter and changes no name
    state = layer.state_dict()
    trained = [tn.to_numpy(p) for p in states_of(kind, layer(x, LENGTHS))]
    again = [tn.to_numpy(p) for p in states_of(kind, layer(x, LENGTHS))]
    assert not np.array_equal(trained[0], again[0])  # a new mask every call
    # By hand: layer 0, then a Dropout built as the layer's first one after the same seed
    # (hence the same masks on its first call), then layer 1.
    tn.seed(9)
    dropout = Dropout(0.5)
    bottom, top = make(kind, F, H, 1, init="torch"), make(kind, H, H, 1, init="torch")
    bottom.load_state_dict({k: v for k, v in state.items() if "_l0" in k})
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in state.items() if "_l1" in k})
    low = states_of(kind, bottom(x, LENGTHS))
    high = states_of(kind, top(dropout(low[0]), LENGTHS))
    np.testing.assert_array_equal(trained[0], tn.to_numpy(high[0]))
    for i, got in enumerate(trained[1:], start=1):  # states: layer 0's, then layer 1's
        np.testing.assert_array_equal(
            got, np.concatenate([tn.to_numpy(low[i]), tn.to_numpy(high[i])])
        )
    # Eval mode: no dropout, the fused path, bit for bit the model without dropout.
    layer.eval()
    plain = make(kind, F, H, 2)
    plain.load_state_dict(state)
    for got, want in zip(
        states_of(kind, layer(x, LENGTHS)), states_of(kind, plain(x, LENGTHS)), strict=True
    ):
        np.testing.assert_array_equal(tn.to_numpy(got), tn.to_numpy(want))


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_masks_and_training_agree_between_backends(
    both_backends: list[str], kind: str
) -> None:
    """Same seed: the same masks on both backends, so the losses of 8 training steps (masks
    changing every step; TensorFlow compiled, one trace) agree within float32 rounding."""

    class Model(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = make(kind, F, H, 3, True, dropout=0.4)
            self.head = tn.Linear(2 * H, 1)

        def forward(self, x: Any, lengths: Any) -> Any:
            out, _ = self.rnn(x, lengths)
            return self.head(tn.mean(out, axis=1))

    rng = np.random.default_rng(6)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    y = rng.standard_normal((B, 1)).astype(np.float32)
    losses, finals = {}, {}
    for name in both_backends:
        tn.set_backend(name)
        tn.seed(2)
        model = Model()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1))
        losses[name] = np.array([float(tn.to_numpy(step(x, LENGTHS, y))) for _ in range(8)])
        finals[name] = model.state_dict()
        if name == "tensorflow":
            assert step.trace_count == 1  # type: ignore[attr-defined]
    assert len(set(losses["torch"].tolist())) == 8
    np.testing.assert_allclose(losses["tensorflow"], losses["torch"], rtol=1e-5, atol=1e-7)
    for key, value in finals["torch"].items():
        np.testing.assert_allclose(finals["tensorflow"][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_with_one_layer_warns_as_torch_does(backend: str, kind: str) -> None:
    with pytest.warns(UserWarning, match=rf"{kind}\(dropout=0.3, num_layers=1\).*does nothing"):
        layer = make(kind, F, H, dropout=0.3)
    x = np.ones((2, 3, F), np.float32)
    np.testing.assert_array_equal(tn.to_numpy(layer(x)[0]), tn.to_numpy(layer(x)[0]))
    with pytest.raises(tn.errors.ArgumentError, match=rf"{kind}\(dropout\) must be in \[0.0"):
        make(kind, F, H, 2, dropout=-0.1)


# --- torch's second bias --------------------------------------------------------------------------
def test_recurrent_bias_names_init_and_forward(backend: str) -> None:
    layer = tn.LSTM(3, 5, 2, True, recurrent_bias=True)
    names = [n for n, _ in layer.named_parameters()]
    assert names[:4] == ["w_ih_l0", "w_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert len(names) == 16 and "bias_l0" not in names
    assert repr(layer).endswith("bidirectional=True, recurrent_bias=True)")
    state = layer.state_dict()
    forget = np.zeros(20, np.float32)
    forget[5:10] = 1.0
    np.testing.assert_array_equal(state["bias_ih_l1_reverse"], forget)  # Keras' default bias
    np.testing.assert_array_equal(state["bias_hh_l1_reverse"], np.zeros(20, np.float32))
    # torch preset: the same draws as the single-bias layer, kept apart (its bias is their sum)
    tn.seed(1)
    two = tn.LSTM(F, H, recurrent_bias=True, init="torch")
    tn.seed(1)
    one = tn.LSTM(F, H, init="torch")
    s2, s1 = two.state_dict(), one.state_dict()
    np.testing.assert_array_equal(s2["w_hh_l0"], s1["w_hh_l0"])
    np.testing.assert_array_equal(s2["bias_ih_l0"] + s2["bias_hh_l0"], s1["bias_l0"])
    # The forward is the summed-bias model's; each bias gets that model's full bias gradient.
    x = np.random.default_rng(7).standard_normal((B, T, F)).astype(np.float32)
    grads = []
    for layer_ in (two, one):
        params = [p for _, p in layer_.named_parameters()]

        def loss_of(layer_: Any = layer_) -> Any:
            out, (h, c) = layer_(x, LENGTHS)
            return tn.sum(out * out) + tn.sum(h) + tn.sum(c)

        grads.append(native_grads(backend, loss_of, params))
    np.testing.assert_allclose(
        tn.to_numpy(two(x, LENGTHS)[0]), tn.to_numpy(one(x, LENGTHS)[0]), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(grads[0][2], grads[1][2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grads[0][2], grads[0][3])


class _TorchLM(torch.nn.Module):
    """Embedding -> 2-layer LSTM -> Linear (a word language model)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(16, 20)

    def forward(self, ids: Any) -> Any:
        out, _ = self.lstm(self.embed(ids))
        return self.head(out)


class _TwinLM(tn.Module):
    """``native`` converted; ``two_biases=False``: its LSTM with one summed bias instead."""

    def __init__(self, native: _TorchLM, two_biases: bool = True) -> None:
        from twinnn.interop.torch import from_torch

        super().__init__()
        self.embed = from_torch(native.embed)
        lstm = from_torch(native.lstm)
        if not two_biases:
            two = lstm.state_dict()
            one = {k: v for k, v in two.items() if "bias" not in k}
            for k in (k for k in two if "bias_ih" in k):
                one[k.replace("bias_ih", "bias")] = two[k] + two[k.replace("_ih", "_hh")]
            lstm = tn.LSTM(8, 16, 2)
            lstm.load_state_dict(one)
        self.lstm = lstm
        self.head = from_torch(native.head)

    def forward(self, ids: Any) -> Any:
        out, _ = self.lstm(self.embed(ids))
        return self.head(out)


def _lm_batches(steps: int) -> list[tuple[Array, Array]]:
    rng = np.random.default_rng(8)
    text = np.cumsum(rng.integers(1, 4, 4000)) % 20  # a learnable sequence of token ids
    starts = rng.integers(0, len(text) - 9, (steps, 4))
    return [(text[s[:, None] + np.arange(8)], text[s[:, None] + np.arange(1, 9)]) for s in starts]


def test_converted_torch_lstm_trains_like_the_original(backend: str) -> None:
    """The issue's finding: a converted PyTorch LSTM must *train* like the original. 30 SGD
    steps (lr 5, cross-entropy, ``clip_grad_norm_(0.25)``) of Embedding + 2-layer LSTM +
    Linear, natively and converted with ``from_torch``: the same losses within 1e-5 relative.
    With one summed bias (what the conversion did before) the losses differ by far more."""
    torch.manual_seed(0)
    native = _TorchLM()
    model = _TwinLM(native)
    assert model.lstm.recurrent_bias
    batches = _lm_batches(30)
    optimizer = torch.optim.SGD(native.parameters(), lr=5.0)
    want = []
    for ids, target in batches:
        logits = native(torch.from_numpy(ids))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 20), torch.from_numpy(target).reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(native.parameters(), 0.25)
        optimizer.step()
        want.append(loss.item())
    step = tn.train_step(model, tn.cross_entropy, tn.SGD(model, lr=5.0), clip_norm=0.25)
    got = [float(tn.to_numpy(step(ids, target))) for ids, target in batches]
    assert want[-1] < want[0] * 0.9  # it learns: 3.03 -> 2.57
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The single summed bias (recurrent_bias=False) trains visibly differently.
    torch.manual_seed(0)
    single = _TwinLM(_TorchLM(), two_biases=False)
    assert not single.lstm.recurrent_bias
    step = tn.train_step(single, tn.cross_entropy, tn.SGD(single, lr=5.0), clip_norm=0.25)
    other = [float(tn.to_numpy(step(ids, target))) for ids, target in batches]
    assert np.max(np.abs(np.array(other) - want) / np.array(want)) > 1e-3  # 2e-2 measured


def test_to_torch_keeps_both_biases_and_dropout(backend: str) -> None:
    from twinnn.interop.torch import from_torch, to_torch

    layer = tn.LSTM(F, H, 2, True, 0.2, recurrent_bias=True, init="torch")
    native = to_torch(layer)
    assert isinstance(native, torch.nn.LSTM) and native.dropout == 0.2
    state = layer.state_dict()
    np.testing.assert_array_equal(
        native.bias_hh_l1_reverse.detach().numpy(), state["bias_hh_l1_reverse"]
    )
    again = from_torch(native)
    assert again.recurrent_bias and again.dropout == 0.2
    for name, value in again.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
