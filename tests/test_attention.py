"""MultiHeadAttention (DESIGN.md §13): values against a NumPy float64 reference, gradients
against torch's own ``nn.MultiheadAttention`` in float64 (converted weights, its mask
convention), the masks (lengths, causal, each mask shape, combined, fully masked rows), hash
dropout on the probabilities, init presets, interop with torch and Keras, a converted
``nn.TransformerEncoderLayer`` trained side by side, compiled TF steps and bad input."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from test_dropout import reference_keep
from twinnn.errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError

torch = pytest.importorskip("torch")

from twinnn.interop.torch import from_torch, to_torch  # noqa: E402

B, TQ, TK, E, H = 3, 5, 4, 8, 2
VALUES = {"rtol": 1e-5, "atol": 2e-6}
GRADS = {"rtol": 1e-4, "atol": 1e-5}


def _data(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _layer(bias: bool = True, dropout: float = 0.0, seed: int = 0) -> tn.MultiHeadAttention:
    """An ``(E, H)`` layer with non-zero biases (the default init zeroes them)."""
    layer = tn.MultiHeadAttention(E, H, dropout=dropout, bias=bias)
    state = layer.state_dict()
    rng = np.random.default_rng(seed)
    state.update(
        {k: (0.3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in state.items()}
    )
    layer.load_state_dict(state)
    return layer


def _rank4(mask: np.ndarray) -> np.ndarray:
    return mask[None, None] if mask.ndim == 2 else mask[:, None] if mask.ndim == 3 else mask


def allowed_of(
    tq: int,
    tk: int,
    mask: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    causal: bool = False,
    batch: int = B,
) -> np.ndarray:
    """The combined ``(B, H, Tq, Tk)`` bool mask, True = may attend (the documented AND)."""
    allowed = np.ones((batch, H, tq, tk), bool)
    if mask is not None:
        allowed &= _rank4(mask)
    if lengths is not None:
        allowed &= (np.arange(tk)[None, :] < np.asarray(lengths)[:, None])[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((tq, tk), bool))
    return allowed


def reference(
    state: dict[str, np.ndarray],
    query: np.ndarray,
    key: np.ndarray,
    value: np.ndarray,
    allowed: np.ndarray,
    keep: np.ndarray | None = None,
    p: float = 0.0,
) -> np.ndarray:
    """The documented formula in float64; a query row with no allowed key gives zeros."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    d = E // H

    def project(x: np.ndarray, w: str, b: str) -> np.ndarray:
        y = x.astype(np.float64) @ s[w]
        return y + s[b] if b in s else y

    def split(y: np.ndarray) -> np.ndarray:
        return y.reshape(y.shape[0], y.shape[1], H, d).transpose(0, 2, 1, 3)

    q, k, v = (
        split(project(x, f"w_{n}", f"b_{n}"))
        for x, n in zip((query, key, value), "qkv", strict=True)
    )
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    allowed = np.broadcast_to(allowed, scores.shape)
    shifted = np.where(allowed, scores, -np.inf)
    top = shifted.max(-1, keepdims=True, initial=-np.inf)
    exps = np.where(allowed, np.exp(shifted - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = exps.sum(-1, keepdims=True)
    probs = np.divide(exps, total, out=np.zeros_like(exps), where=total > 0)
    if keep is not None:
        probs = probs * np.where(keep, float(np.float32(1.0 / (1.0 - p))), 0.0)
    heads = (probs @ v).transpose(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], E)
    return project(heads, "w_o", "b_o")


def run(
    backend: str, layer: tn.Module, inputs: dict[str, np.ndarray], g: np.ndarray, **kwargs: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(out, grads)`` of ``loss = sum(layer(**inputs, **kwargs) * g)`` by the backend's own
    autograd; ``grads`` has the inputs' and the parameters' names."""
    names = [*inputs, *(n for n, _ in layer.named_parameters())]
    params = [p for _, p in layer.named_parameters()]
    if backend == "torch":
        tensors = {k: torch_tensor(v, requires_grad=True) for k, v in inputs.items()}
        out = layer(**tensors, **kwargs)
        loss = (out * torch_tensor(g)).sum()
        found = torch.autograd.grad(loss, [*tensors.values(), *params])
        arrays = [torch_numpy(f) for f in found]
        out_array = torch_numpy(out)
    else:
        import tensorflow as tf

        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        with tf.GradientTape() as tape:
            tape.watch(list(tensors.values()))
            out = layer(**tensors, **kwargs)
            loss = tf.reduce_sum(out * tf.constant(g))
        found = tape.gradient(loss, [*tensors.values(), *params])
        arrays = [tf.convert_to_tensor(f).numpy() for f in found]
        out_array = out.numpy()
    return out_array, dict(zip(names, arrays, strict=True))


def native_grads(
    layer: tn.MultiHeadAttention, inputs: dict[str, np.ndarray], g: np.ndarray, allowed: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The same with torch's ``nn.MultiheadAttention`` in float64 (``to_torch`` weights, its
    mask convention: ``attn_mask`` True = *blocked*, one ``(B*H, Tq, Tk)`` mask), gradients
    mapped back to twinnn's names and layout."""
    native = to_torch(layer).double()
    tensors = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in inputs.items()}
    query = tensors["query"]
    key = tensors.get("key", query)
    value = tensors.get("value", key)
    batch, tq, tk = query.shape[0], query.shape[1], key.shape[1]
    blocked = ~np.broadcast_to(allowed, (batch, H, tq, tk)).reshape(batch * H, tq, tk)
    out = native(query, key, value, attn_mask=torch.tensor(blocked), need_weights=False)[0]
    (out * torch.tensor(g.astype(np.float64))).sum().backward()
    grads = {k: t.grad.numpy() for k, t in tensors.items()}
    packed = native.in_proj_weight.grad.numpy()
    for i, n in enumerate("qkv"):
        grads[f"w_{n}"] = packed[i * E : (i + 1) * E].T
        if native.in_proj_bias is not None:
            grads[f"b_{n}"] = native.in_proj_bias.grad.numpy()[i * E : (i + 1) * E]
    grads["w_o"] = native.out_proj.weight.grad.numpy().T
    if native.out_proj.bias is not None:
        grads["b_o"] = native.out_proj.bias.grad.numpy()
    return out.detach().numpy(), grads


CROSS = {"key": (B, TK, E), "value": (B, TK, E)}
CASES = {
    "self": ({}, {}),
    "cross": (CROSS, {}),
    "key-is-value": ({"key": (B, TK, E)}, {}),
    "bias-false": (CROSS, {"bias": False}),
    "lengths": (CROSS, {"key_lengths": [4, 1, 3]}),
    "causal": ({}, {"causal": True}),
    "causal-cross": (CROSS, {"causal": True}),
    "mask-2d": (CROSS, {"mask": (TQ, TK)}),
    "mask-3d": (CROSS, {"mask": (B, TQ, TK)}),
    "mask-4d": (CROSS, {"mask": (B, H, TQ, TK)}),
    "mask-broadcast": (CROSS, {"mask": (1, 1, TQ, TK)}),
    "combined": ({}, {"mask": (B, TQ, TQ), "key_lengths": [5, 2, 4], "causal": True}),
}


def _case(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any], bool]:
    shapes, options = CASES[name]
    inputs = {"query": _data(B, TQ, E, seed=1)}
    inputs.update({k: _data(*shape, seed=2 + i) for i, (k, shape) in enumerate(shapes.items())})
    kwargs = dict(options)
    bias = kwargs.pop("bias", True)
    if "mask" in kwargs:
        mask = np.random.default_rng(7).random(kwargs["mask"]) > 0.35
        mask[..., 0] = True  # every row keeps a key: torch's reference gives NaN otherwise
        kwargs["mask"] = mask
    if "key_lengths" in kwargs:
        kwargs["key_lengths"] = np.array(kwargs["key_lengths"])
    return inputs, kwargs, bias


@pytest.mark.parametrize("case", list(CASES))
def test_values_and_gradients_match_float64_references(backend: str, case: str) -> None:
    inputs, kwargs, bias = _case(case)
    layer = _layer(bias=bias)
    g = _data(B, TQ, E, seed=9)
    out, grads = run(backend, layer, inputs, g, **kwargs)
    query = inputs["query"]
    key = inputs.get("key", query)
    value = inputs.get("value", key)
    allowed = allowed_of(
        TQ, key.shape[1], kwargs.get("mask"), kwargs.get("key_lengths"), kwargs.get("causal", False)
    )
    np.testing.assert_allclose(
        out, reference(layer.state_dict(), query, key, value, allowed), **VALUES
    )
    native_out, expected = native_grads(layer, inputs, g, allowed)
    np.testing.assert_allclose(out, native_out, **VALUES)
    assert sorted(grads) == sorted(expected)
    for name, value_ in expected.items():
        np.testing.assert_allclose(grads[name], value_, **GRADS, err_msg=name)


def test_key_defaults_to_query_and_value_to_key(backend: str) -> None:
    layer = _layer()
    x, y = _data(B, TQ, E, seed=1), _data(B, TK, E, seed=2)
    np.testing.assert_array_equal(tn.to_numpy(layer(x)), tn.to_numpy(layer(x, x, x)))
    np.testing.assert_array_equal(tn.to_numpy(layer(x, y)), tn.to_numpy(layer(x, y, y)))


def test_torch_mask_conventions_are_the_negation(backend: str) -> None:
    """torch's ``attn_mask`` / ``key_padding_mask`` (True = blocked) vs twinnn's mask (True =
    may attend) and key_lengths, with the native layer as it is used (float32, batch first)."""
    layer = _layer()
    native = to_torch(layer)
    x, y = _data(B, TQ, E, seed=1), _data(B, TK, E, seed=2)
    lengths = np.array([4, 2, 3])
    blocked = np.random.default_rng(3).random((TQ, TK)) > 0.6
    blocked[:, 0] = False
    padding = np.arange(TK)[None, :] >= lengths[:, None]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        expected = native(
            xt,
            yt,
            yt,
            attn_mask=torch.from_numpy(blocked),
            key_padding_mask=torch.from_numpy(padding),
            need_weights=False,
        )[0].numpy()
    got = tn.to_numpy(layer(x, y, mask=~blocked, key_lengths=lengths))
    np.testing.assert_allclose(got, expected, **VALUES)
    padded = tn.to_numpy(layer(x, y, mask=~blocked[None] & ~padding[:, None, :]))
    np.testing.assert_allclose(padded, expected, **VALUES)


# --- fully masked rows -------------------------------------------------------------------------
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["fused", "explicit-dropout"])
@pytest.mark.parametrize("causal", [False, True])
def test_fully_masked_rows_give_the_output_bias_and_finite_gradients(
    backend: str, dropout: float, causal: bool
) -> None:
    tn.seed(4)
    layer = _layer(dropout=dropout)
    x = _data(B, TQ, E, seed=1)
    mask = np.ones((B, TQ, TQ), bool)
    mask[0, 1] = False  # query 1 of sequence 0 may attend nothing
    if causal:
        mask[0, 3, :4] = False  # only key 4 left, which causal forbids to query 3
    lengths = np.array([5, 0, 3])  # sequence 1 has no keys at all
    g = _data(B, TQ, E, seed=9)
    out, grads = run(backend, layer, {"query": x}, g, mask=mask, key_lengths=lengths, causal=causal)
    empty = ~allowed_of(TQ, TQ, mask, lengths, causal).any(-1)[:, 0]  # (B, Tq)
    assert empty[0, 1] and empty[1].all() and empty[0, 3] == causal and not empty[2].any()
    b_o = layer.state_dict()["b_o"]
    np.testing.assert_array_equal(out[empty], np.broadcast_to(b_o, out[empty].shape))
    assert all(np.isfinite(v).all() for v in grads.values())
    np.testing.assert_array_equal(grads["query"][1], 0.0)  # no key: nothing flows back
    if dropout == 0.0:
        allowed = allowed_of(TQ, TQ, mask, lengths, causal)
        np.testing.assert_allclose(out, reference(layer.state_dict(), x, x, x, allowed), **VALUES)


def test_no_key_at_all(backend: str) -> None:
    """``Tk = 0`` would be an empty softmax: every row attends to nothing."""
    layer = _layer()
    out = tn.to_numpy(layer(_data(B, TQ, E), np.zeros((B, 0, E), np.float32)))
    np.testing.assert_array_equal(out, np.broadcast_to(layer.state_dict()["b_o"], out.shape))


# --- dropout -----------------------------------------------------------------------------------
def test_dropout_masks_are_the_hash_masks_and_reset_by_eval(backend: str) -> None:
    p = 0.25
    tn.seed(21)
    tn.Dropout(0.5)  # random layer 0: the attention is layer 1
    layer = _layer(dropout=p)
    assert (layer.seed, layer.layer) == (21, 1)
    x, y = _data(B, TQ, E, seed=1), _data(B, TK, E, seed=2)
    lengths = np.array([4, 2, 3])
    allowed = allowed_of(TQ, TK, None, lengths)
    state = layer.state_dict()
    for update in range(2):
        got = tn.to_numpy(layer(x, y, key_lengths=lengths))
        keep = reference_keep(21, 1, update, (B, H, TQ, TK), p)
        np.testing.assert_allclose(got, reference(state, x, y, y, allowed, keep, p), **VALUES)
    assert int(tn.to_numpy(layer.updates)) == 2
    layer.eval()
    np.testing.assert_allclose(
        tn.to_numpy(layer(x, y, key_lengths=lengths)), reference(state, x, y, y, allowed), **VALUES
    )
    assert int(tn.to_numpy(layer.updates)) == 2
    assert "updates" not in layer.state_dict()


def test_dropout_gradients_use_the_same_mask(backend: str) -> None:
    """Gradients of the explicit (dropout) path against torch float64 given the same mask: the
    torch reference multiplies its probabilities by the reference keep mask."""
    p = 0.4
    tn.seed(3)
    layer = _layer(dropout=p)
    x = _data(B, TQ, E, seed=1)
    g = _data(B, TQ, E, seed=9)
    _, grads = run(backend, layer, {"query": x}, g, causal=True)
    keep = reference_keep(3, 0, 0, (B, H, TQ, TQ), p)
    params = {
        k: torch.tensor(v.astype(np.float64), requires_grad=True)
        for k, v in layer.state_dict().items()
    }
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)

    def split(t: Any) -> Any:
        return t.reshape(B, TQ, H, E // H).transpose(1, 2)

    q, k, v = (split(xt @ params[f"w_{n}"] + params[f"b_{n}"]) for n in "qkv")
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(E // H)
    scores = scores.masked_fill(~torch.tensor(np.tril(np.ones((TQ, TQ), bool))), -math.inf)
    scale = float(np.float32(1.0 / (1.0 - p)))
    probs = torch.softmax(scores, -1) * torch.tensor(np.where(keep, scale, 0.0))
    out = (probs @ v).transpose(1, 2).reshape(B, TQ, E) @ params["w_o"] + params["b_o"]
    (out * torch.tensor(g.astype(np.float64))).sum().backward()
    np.testing.assert_allclose(grads["query"], xt.grad.numpy(), **GRADS)
    for name, param in params.items():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), **GRADS, err_msg=name)


def test_dropout_row_offset_gives_the_whole_batch_masks(backend: str) -> None:
    tn.seed(8)
    layer = _layer(dropout=0.5)
    x = _data(6, TQ, E, seed=1)
    whole = tn.to_numpy(layer(x))
    parts = []
    for start, stop in [(0, 2), (2, 6)]:
        layer.updates = 0
        layer.row_offset = start
        parts.append(tn.to_numpy(layer(x[start:stop])))
    np.testing.assert_allclose(np.concatenate(parts), whole, **VALUES)


def test_dropout_and_init_identical_on_both_backends(both_backends: list[str]) -> None:
    results = []
    for name in both_backends:
        with tn.use_backend(name):
            tn.seed(13)
            layers = [
                tn.MultiHeadAttention(E, H, dropout=0.3, init=i) for i in ("default", "torch")
            ]
            layer = layers[0]
            x = _data(B, TQ, E, seed=1)
            outs = [tn.to_numpy(layer(x, causal=True)) for _ in range(2)]
            results.append(([lay.state_dict() for lay in layers], outs))
    (states_a, outs_a), (states_b, outs_b) = results
    for a, b in zip(states_a, states_b, strict=True):
        assert list(a) == list(b)
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), key
    for a, b in zip(outs_a, outs_b, strict=True):
        np.testing.assert_allclose(a, b, **VALUES)
    assert not np.allclose(outs_a[0], outs_a[1])  # a new mask per call


# --- init ---------------------------------------------------------------------------------------
def test_init_presets_and_layout(backend: str) -> None:
    tn.seed(0)
    e = 64
    default = tn.MultiHeadAttention(e, 4)
    names = ["w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o"]
    assert [n for n, _ in default.named_parameters()] == names
    state = default.state_dict()
    keras_limit = math.sqrt(6.0 / (2 * e))  # Keras 3: fans from the input / output axes
    for n in names[:4]:
        assert state[n].shape == (e, e) and state[n].dtype == np.float32
        assert 0.95 * keras_limit < np.abs(state[n]).max() <= keras_limit
    for n in names[4:]:
        np.testing.assert_array_equal(state[n], np.zeros(e, np.float32))
    torch_state = tn.MultiHeadAttention(e, 4, init="torch").state_dict()
    for n, limit in [
        ("w_q", math.sqrt(6 / (4 * e))),
        ("w_v", math.sqrt(6 / (4 * e))),
        ("w_o", 1 / math.sqrt(e)),
    ]:
        assert 0.95 * limit < np.abs(torch_state[n]).max() <= limit, n
    assert not any("b_" in n for n, _ in tn.MultiHeadAttention(e, 4, bias=False).named_parameters())
    assert "MultiHeadAttention(embed_dim=64, num_heads=4" in repr(default)


def test_init_limits_match_keras_and_torch() -> None:
    """The presets' limits are the native layers' (Keras 3 computes the fans of its per-head
    kernels from the input and output axes: ``sqrt(6 / (2E))``, not the 3-D shape's)."""
    keras = pytest.importorskip("keras")
    e, heads = 64, 4
    native = keras.layers.MultiHeadAttention(heads, e // heads)
    native.build((None, None, e), (None, None, e))
    for sub in (native.query_dense, native.output_dense):
        kernel = keras.ops.convert_to_numpy(sub.kernel)
        assert 0.95 * math.sqrt(6 / (2 * e)) < np.abs(kernel).max() <= math.sqrt(6 / (2 * e))
    torch_native = torch.nn.MultiheadAttention(e, heads)
    assert torch_native.in_proj_weight.abs().max() <= math.sqrt(6 / (4 * e))
    assert torch_native.out_proj.weight.abs().max() <= 1 / math.sqrt(e)
    assert torch_native.in_proj_bias.abs().max() == 0 == torch_native.out_proj.bias.abs().max()


# --- interop ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_and_to_torch(backend: str, bias: bool, batch_first: bool) -> None:
    torch.manual_seed(0)
    native = torch.nn.MultiheadAttention(E, H, dropout=0.1, bias=bias, batch_first=batch_first)
    with torch.no_grad():
        for param in native.parameters():
            param.uniform_(-0.5, 0.5)
    layer = from_torch(native)
    assert isinstance(layer, tn.MultiHeadAttention) and layer.backend == backend
    assert (layer.num_heads, layer.dropout, layer.b_q is not None) == (H, 0.1, bias)
    native.eval()
    layer.eval()
    x, y = _data(B, TQ, E, seed=1), _data(B, TK, E, seed=2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if not batch_first:
        xt, yt = xt.transpose(0, 1), yt.transpose(0, 1)
    with torch.no_grad():
        expected = native(xt, yt, yt, need_weights=False)[0]
    expected = (expected if batch_first else expected.transpose(0, 1)).numpy()
    np.testing.assert_allclose(tn.to_numpy(layer(x, y)), expected, **VALUES)
    back = to_torch(layer)
    assert back.batch_first and back.dropout == 0.1
    for (name, a), (_, b) in zip(back.named_parameters(), native.named_parameters(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"kdim": 6}, "kdim, vdim"),
        ({"add_bias_kv": True}, "add_bias_kv"),
        ({"add_zero_attn": True}, "add_zero_attn"),
    ],
)
def test_from_torch_refuses(backend: str, kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ArgumentError, match=f"MultiheadAttention\\({setting}="):
        from_torch(torch.nn.MultiheadAttention(E, H, **kwargs))


def test_from_and_to_keras(backend: str) -> None:
    keras = pytest.importorskip("keras")
    from twinnn.interop.keras import from_keras, to_keras

    native = keras.layers.MultiHeadAttention(H, E // H, dropout=0.2)
    native.build((None, None, E), (None, None, E))
    rng = np.random.default_rng(1)
    for variable in native.weights:
        variable.assign(rng.uniform(-0.5, 0.5, tuple(variable.shape)).astype(np.float32))
    layer = from_keras(native)
    assert isinstance(layer, tn.MultiHeadAttention) and layer.dropout == 0.2
    x, y = _data(B, TQ, E, seed=1), _data(B, TK, E, seed=2)
    mask = np.random.default_rng(3).random((B, TQ, TK)) > 0.4
    mask[..., 0] = True
    expected = keras.ops.convert_to_numpy(native(x, y, attention_mask=mask))
    layer.eval()
    np.testing.assert_allclose(tn.to_numpy(layer(x, y, mask=mask)), expected, **VALUES)
    causal = keras.ops.convert_to_numpy(native(x, x, use_causal_mask=True))
    np.testing.assert_allclose(tn.to_numpy(layer(x, causal=True)), causal, **VALUES)
    back = to_keras(layer)
    assert back.dropout == 0.2
    for a, b in zip(back.weights, native.weights, strict=True):
        a_, b_ = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        assert a_.shape == b_.shape and a_.tobytes() == b_.tobytes(), a.path
    no_bias = to_keras(tn.MultiHeadAttention(E, H, bias=False))
    assert not no_bias.use_bias and len(no_bias.weights) == 4


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"key_dim": 3}, "key_dim"),
        ({"value_dim": 2}, "value_dim"),
        ({"output_shape": 6}, "output_shape"),
        ({"kernel_regularizer": "l2"}, "kernel_regularizer"),
    ],
)
def test_from_keras_refuses(backend: str, kwargs: dict[str, Any], setting: str) -> None:
    keras = pytest.importorskip("keras")
    from twinnn.interop.keras import from_keras

    options = {"key_dim": E // H, **kwargs}
    native = keras.layers.MultiHeadAttention(H, **options)
    native.build((None, None, E), (None, None, E))
    with pytest.raises(ArgumentError, match=f"MultiHeadAttention\\({setting}="):
        from_keras(native)


# --- a converted TransformerEncoderLayer trains like the original -------------------------------
class EncoderBlock(tn.Module):
    """torch's ``TransformerEncoderLayer(batch_first=True, activation="gelu")``, post-norm:
    ``x = norm1(x + attn(x)); x = norm2(x + linear2(gelu(linear1(x))))``."""

    def __init__(self, embed: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = tn.MultiHeadAttention(embed, heads)
        self.linear1 = tn.Linear(embed, hidden)
        self.linear2 = tn.Linear(hidden, embed)
        self.norm1 = tn.LayerNorm(embed)
        self.norm2 = tn.LayerNorm(embed)

    def forward(self, x: Any, lengths: Any) -> Any:
        x = self.norm1(x + self.self_attn(x, key_lengths=lengths))
        return self.norm2(x + self.linear2(tn.gelu(self.linear1(x))))


def test_transformer_encoder_layer_trains_like_torch(backend: str) -> None:
    torch.manual_seed(0)
    embed, heads, hidden, batch, time = 16, 4, 32, 4, 6
    native = torch.nn.TransformerEncoderLayer(
        embed, heads, hidden, dropout=0.0, activation="gelu", batch_first=True
    )
    block = EncoderBlock(embed, heads, hidden)
    state = {}
    for name in ("self_attn", "linear1", "linear2", "norm1", "norm2"):
        converted = from_torch(getattr(native, name)).state_dict()
        state.update({f"{name}.{k}": v for k, v in converted.items()})
    block.load_state_dict(state)
    x = _data(batch, time, embed, seed=1)
    target = _data(batch, time, embed, seed=2)
    lengths = np.array([6, 3, 1, 5])
    padding = torch.from_numpy(np.arange(time)[None, :] >= lengths[:, None])
    native_opt = torch.optim.Adam(native.parameters(), lr=1e-2)
    step = tn.train_step(block, tn.mse_loss, tn.Adam(block.parameters(), lr=1e-2))
    losses = []
    for i in range(6):
        native_opt.zero_grad()
        out = native(torch.from_numpy(x), src_key_padding_mask=padding)
        expected = torch.nn.functional.mse_loss(out, torch.from_numpy(target))
        expected.backward()
        native_opt.step()
        loss = float(tn.to_numpy(step(x, lengths, target)))
        assert loss == pytest.approx(float(expected.detach()), rel=1e-5), i
        losses.append(loss)
    assert losses[-1] < 0.9 * losses[0]  # it trains


# --- compiled steps -----------------------------------------------------------------------------
class Head(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = tn.MultiHeadAttention(E, H, dropout=0.2)
        self.out = tn.Linear(E, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        self.calls = getattr(self, "calls", 0) + 1
        return self.out(self.attn(x, key_lengths=lengths, causal=True))


def test_train_step_compiled_matches_eager_and_traces_once(backend: str) -> None:
    losses = []
    for eager in (True, False):
        tn.seed(5)
        model = Head()
        step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1), eager=eager)
        run_losses = []
        for batch, time in [(3, 5), (4, 7), (2, 3)]:
            x = _data(batch, time, E, seed=batch)
            lengths = np.arange(batch) % time + 1
            run_losses.append(float(tn.to_numpy(step(x, lengths, _data(batch, time, 1)))))
        losses.append(run_losses)
        if backend == "tensorflow" and not eager:
            assert step.trace_count == 1  # type: ignore[attr-defined]
            assert model.calls == 1
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_key_lengths_checked_inside_a_compiled_step(backend: str) -> None:
    tn.seed(5)
    model = Head()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    before = model.state_dict()
    with pytest.raises(ArgumentError) as caught:
        step(_data(2, 4, E), np.array([4, 5]), _data(2, 4, 1))
    assert str(caught.value) == (
        "MultiHeadAttention.forward: argument 'key_lengths' must be in [0, 4] "
        "(0 <= length <= time of key), got lengths outside that range"
    )
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


class Masked(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = tn.MultiHeadAttention(E, H)
        self.out = tn.Linear(E, 1)

    def forward(self, x: Any, mask: Any) -> Any:
        return self.out(self.attn(x, mask=mask))


def test_masks_of_a_compiled_step_are_checked(backend: str) -> None:
    """A mask argument of a compiled TF step has every axis but the last (``Tk``) unknown: a new
    batch size does not retrace (a new ``Tk`` does: the step fixes each argument's last axis;
    ``key_lengths`` never retraces), and the unknown dims are checked when the step runs."""
    model = Masked()
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.1))
    eager = tn.train_step(model, tn.mse_loss, tn.SGD(model.parameters(), lr=0.0), eager=True)
    for batch in (2, 3, 5):
        mask = np.random.default_rng(batch).random((batch, 1, 4, 4)) > 0.5
        step(_data(batch, 4, E), mask, _data(batch, 4, 1))
    if backend == "tensorflow":
        assert step.trace_count == 1  # type: ignore[attr-defined]
    for shape in [(2, 1, 4, 3), (2, 3, 4, 4)]:
        args = (_data(2, 4, E), np.ones(shape, bool), _data(2, 4, 1))
        with pytest.raises(ShapeError) as compiled:
            step(*args)
        with pytest.raises(ShapeError) as direct:
            eager(*args)
        assert str(compiled.value) == str(direct.value)
        assert "got (2, " in str(compiled.value)


# --- bad input ----------------------------------------------------------------------------------
BAD_CALLS = [
    ({"query": (B, TQ)}, {}, ShapeError, r"'query' must have shape \(batch, time, 8\) .*\(3, 5\)"),
    ({"query": (B, TQ, 6)}, {}, ShapeError, r"'query' must have shape .*got \(3, 5, 6\)"),
    (
        {"key": (B + 1, TK, E)},
        {},
        ShapeError,
        r"'key' must have the batch size of query \(3, 5, 8\), got \(4, 4, 8\)",
    ),
    (
        {"key": (B, TK, E), "value": (B, TK + 1, E)},
        {},
        ShapeError,
        r"'value' must have the batch and time of key",
    ),
    (
        {},
        {"mask": np.ones((TQ, TK), np.float32)},
        DTypeError,
        r"'mask' must hold bools \(True = may attend\), got dtype float32 .*~attn_mask",
    ),
    (
        {},
        {"mask": np.ones((TK,), bool)},
        ShapeError,
        r"'mask' must have shape \(time_q, time_k\), .*got \(4,\)",
    ),
    (
        {},
        {"mask": np.ones((TQ + 1, TK), bool)},
        ShapeError,
        r"'mask' must have shape .*time_q of query \(3, 5, 8\)\), got \(6, 4\)",
    ),
    (
        {},
        {"mask": np.ones((B, TQ, TK + 1), bool)},
        ShapeError,
        r"time_k of key \(3, 4, 8\)\), got \(3, 5, 5\)",
    ),
    (
        {},
        {"mask": np.ones((B, 3, TQ, TK), bool)},
        ShapeError,
        r"\(num_heads=2\), got \(3, 3, 5, 4\)",
    ),
    (
        {},
        {"key_lengths": np.array([1.0, 2.0, 3.0])},
        DTypeError,
        r"'key_lengths' must hold integers, got dtype float",
    ),
    (
        {},
        {"key_lengths": np.array([[1], [2], [3]])},
        ShapeError,
        r"'key_lengths' must have shape \(batch,\), the batch of query \(3, 5, 8\), got \(3, 1\)",
    ),
    (
        {},
        {"key_lengths": np.array([1, 2])},
        ShapeError,
        r"'key_lengths' must have shape \(batch,\).*got \(2,\)",
    ),
    (
        {},
        {"key_lengths": np.array([1, 5, -1])},
        ArgumentError,
        r"'key_lengths' must be in \[0, 4\] \(0 <= length <= time of key\)",
    ),
    (
        {},
        {"causal": 1},
        ArgumentTypeError,
        r"MultiHeadAttention.forward\(causal\) must be a bool, got int 1",
    ),
]


@pytest.mark.parametrize(("shapes", "kwargs", "error", "pattern"), BAD_CALLS)
def test_bad_calls(
    backend: str, shapes: dict[str, Any], kwargs: dict[str, Any], error: type, pattern: str
) -> None:
    layer = _layer()
    inputs = {"query": _data(B, TQ, E), "key": _data(B, TK, E)}
    inputs.update({k: _data(*shape) for k, shape in shapes.items()})
    with pytest.raises(error, match=pattern):
        layer(**inputs, **kwargs)
    with pytest.raises(error, match=pattern):  # the forward's own checks, without __call__
        layer.forward(**inputs, **kwargs)


def _make(**kwargs: Any) -> Any:
    return lambda: tn.MultiHeadAttention(**{"embed_dim": 8, "num_heads": 2, **kwargs})


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (
            _make(embed_dim=10, num_heads=3),
            ArgumentError,
            r"MultiHeadAttention\(num_heads\) must divide embed_dim=10 .*got num_heads=3",
        ),
        (_make(embed_dim=0), ArgumentError, r"\(embed_dim\) must be > 0, got 0"),
        (_make(num_heads=2.0), ArgumentTypeError, r"\(num_heads\) must be an int"),
        (_make(dropout=1.5), ArgumentError, r"\(dropout\) must be in"),
        (_make(bias=1), ArgumentTypeError, r"\(bias\) must be a bool"),
        (_make(init="xavier"), ArgumentError, r"\(init=\.\.\.\) must be one of"),
    ],
)
def test_bad_arguments(backend: str, make: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()


def test_errors_are_identical_on_both_backends(both_backends: list[str]) -> None:
    messages = []
    for name in both_backends:
        with tn.use_backend(name):
            layer = _layer()
            found = []
            for shapes, kwargs, error, _ in BAD_CALLS:
                inputs = {"query": _data(B, TQ, E), "key": _data(B, TK, E)}
                inputs.update({k: _data(*shape) for k, shape in shapes.items()})
                with pytest.raises(error) as caught:
                    layer(**inputs, **kwargs)
                found.append((type(caught.value), str(caught.value)))
            messages.append(found)
    assert messages[0] == messages[1]
