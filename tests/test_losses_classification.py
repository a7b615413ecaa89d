"""cross_entropy, nll_loss, binary_cross_entropy, l1_loss, huber_loss and accuracy: values and
gradients against NumPy float64 references and torch.nn.functional, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_numpy, torch_tensor
from twinnn import errors
from twinnn.metrics import accuracy

Array = np.ndarray
torch = pytest.importorskip("torch")
F = torch.nn.functional

# --- NumPy float64 references (torch's formulas, twinnn's weight rule) ----------------------------


def _log_softmax(x: Array) -> Array:
    x = np.asarray(x, np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _reduce(weighted: Array, weights: Array | None, reduction: str) -> Array:
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return np.asarray(weighted.sum())
    if weights is None:
        return np.asarray(weighted.mean())
    total = np.broadcast_to(weights, weighted.shape).sum()
    return np.asarray(weighted.sum() / total if total else 0.0)


def ref_nll_ids(
    log_p: Array,
    target: Array,
    class_weight: Array | None = None,
    ignore_index: int = -100,
    smoothing: float = 0.0,
    weight: Array | None = None,
    reduction: str = "mean",
) -> Array:
    classes = log_p.shape[-1]
    cw = np.ones(classes) if class_weight is None else np.asarray(class_weight, np.float64)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(log_p, safe[..., None], -1)[..., 0]
    item_w = cw[safe] * valid
    losses = -item_w * picked
    if smoothing:
        losses = (1 - smoothing) * losses + smoothing / classes * -(log_p * cw).sum(-1) * valid
    if weight is not None:
        w = np.broadcast_to(np.asarray(weight, np.float64), losses.shape)
        losses, item_w = losses * w, item_w * w
    return _reduce(losses, item_w, reduction)


def ref_cross_entropy(
    logits: Array, target: Array, class_weight: Array | None = None, ignore_index: int = -100,
    label_smoothing: float = 0.0, weight: Array | None = None, reduction: str = "mean",
) -> Array:  # fmt: skip
    log_p = _log_softmax(logits)
    if np.asarray(target).dtype.kind in "iu":
        return ref_nll_ids(
            log_p, target, class_weight, ignore_index, label_smoothing, weight, reduction
        )
    classes = log_p.shape[-1]
    q = np.asarray(target, np.float64) * (1 - label_smoothing) + label_smoothing / classes
    cw = np.ones(classes) if class_weight is None else np.asarray(class_weight, np.float64)
    losses = -(log_p * q * cw).sum(-1)
    if weight is None:
        return _reduce(losses, None, reduction)
    w = np.asarray(weight, np.float64)
    return _reduce(losses * w, w, reduction)


def _softplus(x: Array) -> Array:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def ref_bce(
    x: Array, z: Array, pos_weight: Array | None = None, weight: Array | None = None,
    reduction: str = "mean",
) -> Array:  # fmt: skip
    x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
    if pos_weight is None:
        losses = _softplus(x) - x * z
    else:
        losses = (1 - z) * x + (1 + (np.asarray(pos_weight, np.float64) - 1) * z) * _softplus(-x)
    if weight is None:
        return _reduce(losses, None, reduction)
    w = np.asarray(weight, np.float64)
    return _reduce(losses * w, w, reduction)


def ref_elementwise(kind: str, delta: float = 1.0) -> Callable[..., Array]:
    def loss(
        pred: Array, target: Array, weight: Array | None = None, reduction: str = "mean"
    ) -> Array:
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
        if kind == "l1":
            err = np.abs(d)
        else:
            err = np.where(np.abs(d) < delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))
        if weight is None:
            return _reduce(err, None, reduction)
        w = np.asarray(weight, np.float64)
        return _reduce(err * w, w, reduction)

    return loss


# --- helpers ------------------------------------------------------------------------------------


def value_and_grad(
    fn: Callable[[Any], Any], x: Array, cotangent: Array | None
) -> tuple[Array, Array]:
    """``fn(x)`` and the gradient of ``sum(fn(x) * cotangent)`` (``fn(x)`` for a scalar)
    w.r.t. ``x``, on the current backend's autodiff."""
    if tn.backend() == "torch":
        t = torch_tensor(x, requires_grad=True)
        out = fn(t)
        scalar = out if cotangent is None else (out * torch_tensor(cotangent)).sum()
        (grad,) = torch.autograd.grad(scalar, t)
        return torch_numpy(out), torch_numpy(grad)
    import tensorflow as tf

    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        out = fn(t)
        scalar = out if cotangent is None else tf.reduce_sum(out * cotangent)
    return out.numpy(), tape.gradient(scalar, t).numpy()


def numeric_grad(fn: Callable[[Array], Array], x: Array, cotangent: Array | None) -> Array:
    """Central differences of the float64 reference ``sum(fn(x) * cotangent)``."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    h = 1e-6
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        scale = 1.0 if cotangent is None else cotangent
        grad[index] = (np.sum(fn(up) * scale) - np.sum(fn(down) * scale)) / (2 * h)
    return grad


def check(
    twin: Callable[[Any], Any], ref: Callable[[Array], Array], x: Array, reduction: str
) -> None:
    """``twin`` (on a native float32 ``x``) against ``ref`` (float64): values and gradients."""
    expected = ref(x)
    cotangent = None
    if reduction == "none":
        cotangent = np.random.default_rng(7).standard_normal(expected.shape).astype(np.float32)
    value, grad = value_and_grad(twin, x, cotangent)
    assert value.shape == expected.shape
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, numeric_grad(ref, x, cotangent), rtol=1e-4, atol=1e-6)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


REDUCTIONS = ["mean", "sum", "none"]
# (name, options) of cross_entropy with class-id targets; ids drawn in [0, 5), -100 ignored.
ID_CASES: list[tuple[str, dict[str, Any]]] = [
    ("plain", {}),
    ("ignore", {"ignore": True}),
    ("class-weight-ignore", {"class_weight": True, "ignore": True}),
    ("smoothing", {"label_smoothing": 0.2}),
    ("smoothing-class-weight", {"label_smoothing": 0.3, "class_weight": True, "ignore": True}),
    ("item-weight", {"weight": True, "class_weight": True, "ignore": True}),
    ("ignore-index-in-range", {"ignore_index": 2}),
    ("sequence", {"shape": (2, 3), "ignore": True, "weight": True, "label_smoothing": 0.1}),
]


def _id_case(options: dict[str, Any], seed: int = 0) -> tuple[Array, Array, dict[str, Any]]:
    rng = _rng(seed)
    shape = options.get("shape", (6,))
    logits = (rng.standard_normal((*shape, 5)) * 2).astype(np.float32)
    target = rng.integers(0, 5, shape)
    kwargs: dict[str, Any] = {}
    if options.get("ignore"):
        target.flat[[1, 4]] = -100
    if "ignore_index" in options:
        kwargs["ignore_index"] = options["ignore_index"]
    if options.get("class_weight"):
        kwargs["class_weight"] = np.array([0.5, 2.0, 1.0, 0.0, 3.0], np.float32)
    if "label_smoothing" in options:
        kwargs["label_smoothing"] = options["label_smoothing"]
    if options.get("weight"):
        kwargs["weight"] = rng.uniform(0, 2, shape[-1:]).astype(np.float32)  # broadcasts
    return logits, target, kwargs


def _torch_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    if "class_weight" in out:
        out["weight"] = torch.from_numpy(np.asarray(out.pop("class_weight"), np.float64))
    return out


# --- cross_entropy / nll_loss ---------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "options"), ID_CASES, ids=[name for name, _ in ID_CASES])
def test_cross_entropy_class_ids(
    backend: str, name: str, options: dict[str, Any], reduction: str
) -> None:
    logits, target, kwargs = _id_case(options)
    check(
        lambda x: tn.cross_entropy(x, target, reduction=reduction, **kwargs),
        lambda x: ref_cross_entropy(x, target, reduction=reduction, **kwargs),
        logits,
        reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.25, "class_weight": True}, {"weight": True}]
)
def test_cross_entropy_probability_targets(
    backend: str, options: dict[str, Any], reduction: str
) -> None:
    rng = _rng(1)
    logits = rng.standard_normal((2, 3, 4)).astype(np.float32)
    target = rng.dirichlet(np.ones(4), (2, 3)).astype(np.float32)
    kwargs: dict[str, Any] = {}
    if options.get("class_weight"):
        kwargs["class_weight"] = np.array([1.0, 0.5, 2.0, 0.0], np.float32)
    if "label_smoothing" in options:
        kwargs["label_smoothing"] = options["label_smoothing"]
    if options.get("weight"):
        kwargs["weight"] = np.array([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]], np.float32)
    check(
        lambda x: tn.cross_entropy(x, target, reduction=reduction, **kwargs),
        lambda x: ref_cross_entropy(x, target, reduction=reduction, **kwargs),
        logits,
        reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(backend: str, reduction: str) -> None:
    logits, target, kwargs = _id_case({"class_weight": True, "ignore": True, "weight": True}, 2)
    log_p = _log_softmax(logits).astype(np.float32)
    check(
        lambda x: tn.nll_loss(x, target, reduction=reduction, **kwargs),
        lambda x: ref_nll_ids(x, target, reduction=reduction, **kwargs),
        log_p,
        reduction,
    )


def test_cross_entropy_is_nll_of_log_softmax(backend: str) -> None:
    logits, target, kwargs = _id_case({"class_weight": True, "ignore": True}, 3)
    log_p = _log_softmax(logits).astype(np.float32)
    np.testing.assert_allclose(
        tn.to_numpy(tn.cross_entropy(logits, target, **kwargs)),
        tn.to_numpy(tn.nll_loss(log_p, target, **kwargs)),
        rtol=1e-6,
    )


def test_all_targets_ignored_gives_zero_not_nan(backend: str) -> None:
    """Every target ignored (or every weight 0): mean 0 with zero gradients; torch gives NaN."""
    logits = _rng(4).standard_normal((3, 4)).astype(np.float32)
    ignored = np.full(3, -100)
    for kwargs in ({}, {"class_weight": np.ones(4)}, {"label_smoothing": 0.1}):
        value, grad = value_and_grad(
            lambda x, k=kwargs: tn.cross_entropy(x, ignored, **k), logits, None
        )
        assert float(value) == 0.0 and np.all(grad == 0.0)
    zero_weight = np.zeros(3, np.float32)
    value, grad = value_and_grad(
        lambda x: tn.cross_entropy(x, np.array([0, 1, 2]), weight=zero_weight), logits, None
    )
    assert float(value) == 0.0 and np.all(grad == 0.0)
    assert float(tn.to_numpy(tn.cross_entropy(logits, ignored, reduction="sum"))) == 0.0
    torch_value = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(ignored))
    assert torch.isnan(torch_value)  # docs/losses.md says so


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_are_finite(backend: str, scale: float) -> None:
    logits = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.0]], np.float32) * scale
    target = np.array([1, 2])
    probabilities = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    cases: list[tuple[Callable[[Any], Any], Array]] = [
        (lambda x: tn.cross_entropy(x, target), ref_cross_entropy(logits, target)),
        (
            lambda x: tn.cross_entropy(x, target, label_smoothing=0.1, class_weight=[1, 2, 3]),
            ref_cross_entropy(logits, target, [1, 2, 3], label_smoothing=0.1),
        ),
        (lambda x: tn.cross_entropy(x, probabilities), ref_cross_entropy(logits, probabilities)),
        (
            lambda x: tn.binary_cross_entropy(x, probabilities, pos_weight=[1.0, 2.0, 0.5]),
            ref_bce(logits, probabilities, [1.0, 2.0, 0.5]),
        ),
        (lambda x: tn.binary_cross_entropy(x, probabilities), ref_bce(logits, probabilities)),
    ]
    for fn, expected in cases:
        value, grad = value_and_grad(fn, logits, None)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        assert np.all(np.abs(grad) <= 3.0)  # bounded: softmax/sigmoid minus targets, weighted


# --- binary_cross_entropy, l1_loss, huber_loss ----------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "pos-weight", "weight", "both"])
def test_binary_cross_entropy(backend: str, options: str, reduction: str) -> None:
    rng = _rng(5)
    logits = (rng.standard_normal((4, 3)) * 3).astype(np.float32)
    target = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    target[0] = [0.0, 1.0, 1.0]
    kwargs: dict[str, Any] = {}
    if options in ("pos-weight", "both"):
        kwargs["pos_weight"] = np.array([0.5, 3.0, 1.0], np.float32)  # per class (last axis)
    if options in ("weight", "both"):
        kwargs["weight"] = np.array([[1.0], [0.0], [2.0], [0.5]], np.float32)
    check(
        lambda x: tn.binary_cross_entropy(x, target, reduction=reduction, **kwargs),
        lambda x: ref_bce(x, target, reduction=reduction, **kwargs),
        logits,
        reduction,
    )


def test_binary_cross_entropy_gradient_at_zero_logit(backend: str) -> None:
    """The exact gradient ``sigmoid(0) - z = 0.5 - z`` at the kink of max/abs (pw: 1 at 0)."""
    logits = np.zeros(4, np.float32)
    target = np.array([0.0, 1.0, 0.25, 1.0], np.float32)
    _, grad = value_and_grad(
        lambda x: tn.binary_cross_entropy(x, target, reduction="sum"), logits, None
    )
    np.testing.assert_allclose(grad, 0.5 - target, atol=1e-7)
    pw = np.array([2.0, 2.0, 3.0, 0.5], np.float32)
    _, grad = value_and_grad(
        lambda x: tn.binary_cross_entropy(x, target, pos_weight=pw, reduction="sum"), logits, None
    )
    _, torch_grad = _torch_value_and_grad(
        lambda t: F.binary_cross_entropy_with_logits(
            t, torch.from_numpy(target.astype(np.float64)),
            pos_weight=torch.from_numpy(pw.astype(np.float64)), reduction="sum",
        ),
        logits,
    )  # fmt: skip
    np.testing.assert_allclose(grad, torch_grad, atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ["l1", "huber", "huber-0.5"])
def test_l1_and_huber(backend: str, loss: str, reduction: str) -> None:
    rng = _rng(6)
    pred = rng.standard_normal((3, 4)).astype(np.float32) * 2
    target = rng.standard_normal((3, 4)).astype(np.float32)
    weight = np.array([1.0, 0.0, 2.0, 0.5], np.float32)  # broadcasts over the rows
    if loss == "l1":
        twin: Callable[..., Any] = tn.l1_loss
        ref = ref_elementwise("l1")
    else:
        delta = 0.5 if loss == "huber-0.5" else 1.0
        twin = lambda *a, **k: tn.huber_loss(*a, delta=delta, **k)  # noqa: E731
        ref = ref_elementwise("huber", delta)
    for w in (None, weight):
        check(
            lambda x, w=w: twin(x, target, weight=w, reduction=reduction),
            lambda x, w=w: ref(x, target, weight=w, reduction=reduction),
            pred,
            reduction,
        )


# --- against torch.nn.functional itself -----------------------------------------------------------


def _torch_value_and_grad(fn: Callable[[Any], Any], x: Array) -> tuple[Array, Array]:
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    out = fn(t)
    (grad,) = torch.autograd.grad(out, t)
    return out.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("seed", range(3))
def test_against_torch_functional(backend: str, seed: int) -> None:
    """Random cases: twinnn (float32) against torch.nn.functional in float64, values and
    gradients, with every option torch has."""
    rng = _rng(100 + seed)
    classes = int(rng.integers(2, 7))
    shape = (int(rng.integers(1, 6)), int(rng.integers(1, 4)))
    logits = (rng.standard_normal((*shape, classes)) * 3).astype(np.float32)
    ids = rng.integers(0, classes, shape)
    ids[rng.uniform(size=shape) < 0.3] = -1
    cw = rng.uniform(0.1, 2, classes).astype(np.float32)
    eps = float(rng.uniform(0, 0.5))
    probabilities = rng.dirichlet(np.ones(classes), shape).astype(np.float32)
    moved = lambda t: t.movedim(-1, 1)  # noqa: E731 -- torch wants the classes in axis 1
    ids_t, p_t, cw_t = (torch.from_numpy(a) for a in (ids, probabilities.astype(np.float64), cw))
    cw_t = cw_t.double()
    cases: list[tuple[Callable[[Any], Any], Callable[[Any], Any]]] = [
        (
            lambda x: tn.cross_entropy(
                x, ids, class_weight=cw, ignore_index=-1, label_smoothing=eps
            ),
            lambda t: F.cross_entropy(
                moved(t), ids_t, weight=cw_t, ignore_index=-1, label_smoothing=eps
            ),
        ),
        (
            lambda x: tn.cross_entropy(x, ids, ignore_index=-1, reduction="sum"),
            lambda t: F.cross_entropy(moved(t), ids_t, ignore_index=-1, reduction="sum"),
        ),
        (
            lambda x: tn.cross_entropy(x, probabilities, class_weight=cw, label_smoothing=eps),
            lambda t: F.cross_entropy(moved(t), moved(p_t), weight=cw_t, label_smoothing=eps),
        ),
        (
            lambda x: tn.nll_loss(x, ids, class_weight=cw, ignore_index=-1),
            lambda t: F.nll_loss(moved(t), ids_t, weight=cw_t, ignore_index=-1),
        ),
        (
            lambda x: tn.binary_cross_entropy(x, probabilities, pos_weight=cw),
            lambda t: F.binary_cross_entropy_with_logits(t, p_t, pos_weight=cw_t),
        ),
        (lambda x: tn.l1_loss(x, probabilities), lambda t: F.l1_loss(t, p_t)),
        (
            lambda x: tn.huber_loss(x, probabilities, delta=0.7, reduction="sum"),
            lambda t: F.huber_loss(t, p_t, delta=0.7, reduction="sum"),
        ),
    ]
    if not (ids != -1).any():
        cases = cases[1:]  # torch's mean is NaN there (twinnn: 0, tested above)
    for twin, native in cases:
        value, grad = value_and_grad(twin, logits, None)
        expected, expected_grad = _torch_value_and_grad(native, logits)
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [("smoothing-class-weight", {"label_smoothing": 0.3, "class_weight": True, "ignore": True})],
)
def test_label_smoothing_with_class_weights_matches_torch_to_1e6(
    backend: str, name: str, options: dict[str, Any]
) -> None:
    logits, target, kwargs = _id_case(options, 9)
    for reduction in REDUCTIONS:
        value = tn.to_numpy(tn.cross_entropy(logits, target, reduction=reduction, **kwargs))
        expected = F.cross_entropy(
            torch.from_numpy(logits.astype(np.float64)),
            torch.from_numpy(target),
            reduction=reduction,
            **_torch_kwargs(kwargs),
        )
        np.testing.assert_allclose(value, expected.numpy(), rtol=1e-6, atol=1e-6)


# --- parity ---------------------------------------------------------------------------------------


def test_parity_across_backends(both_backends: list[str]) -> None:
    logits, target, kwargs = _id_case(ID_CASES[-1][1], 11)
    rng = _rng(12)
    z = rng.uniform(0, 1, logits.shape).astype(np.float32)
    results = {}
    for name in both_backends:
        with tn.use_backend(name):

            def total(x: Any) -> Any:
                return (
                    tn.cross_entropy(x, target, class_weight=[1, 2, 0.5, 1, 3], **kwargs)
                    + tn.binary_cross_entropy(x, z, pos_weight=[2, 1, 1, 0.5, 1])
                    + tn.huber_loss(x, z, delta=0.5)
                    + tn.l1_loss(x, z)
                )

            results[name] = value_and_grad(total, logits, None)
    (v0, g0), (v1, g1) = results.values()
    np.testing.assert_allclose(v0, v1, rtol=2e-6)
    np.testing.assert_allclose(g0, g1, rtol=1e-5, atol=1e-7)


# --- accuracy -------------------------------------------------------------------------------------


def test_accuracy(backend: str) -> None:
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 2.0, 1.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    target = np.array([1, 1, 2, 2])  # right, tie -> first (0) wrong, right, wrong
    value = tn.accuracy(logits, target)
    assert tn.to_numpy(value).dtype == np.float32 and tn.to_numpy(value).shape == ()
    assert float(tn.to_numpy(value)) == 0.5
    weight = np.array([1.0, 0.0, 3.0, 0.0])
    assert float(tn.to_numpy(tn.accuracy(logits, target, weight=weight))) == 1.0
    assert float(tn.to_numpy(tn.accuracy(logits, target, weight=np.zeros(4)))) == 0.0
    native = tn.tensor(target, dtype="int32")
    assert float(tn.to_numpy(accuracy(tn.tensor(logits), native))) == 0.5
    seq = _rng(13).standard_normal((2, 5, 4)).astype(np.float32)
    labels = _rng(14).integers(0, 4, (2, 5))
    expected = np.mean(seq.argmax(-1) == labels)
    np.testing.assert_allclose(float(tn.to_numpy(tn.accuracy(seq, labels))), expected, rtol=1e-7)


def test_binary_accuracy(backend: str) -> None:
    logits = np.array([[2.0], [-1.0], [0.0], [0.5]], np.float32)  # predicts 1, 0, 0, 1
    for target in (
        np.array([1, 0, 1, 0]),
        np.array([[1], [0], [1], [0]]),
        np.array([1.0, 0.2, 0.9, 0.0]),
    ):
        assert float(tn.to_numpy(tn.accuracy(logits, target))) == 0.5
    with pytest.raises(errors.ArgumentError, match=r"must hold 0 or 1, got 2"):
        tn.accuracy(logits, np.array([1, 0, 2, 0]))
    with pytest.raises(errors.ShapeError, match=r"binary 'logits' \(4, 1\)"):
        tn.accuracy(logits, np.zeros((4, 2)))


# --- a compiled TensorFlow step -------------------------------------------------------------------


class Classifier(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = tn.Linear(3, 4)
        self.calls = 0

    def forward(self, x: Any) -> Any:
        self.calls += 1
        return self.linear(x)


@pytest.mark.backends("tensorflow")
def test_cross_entropy_in_a_compiled_step_traces_once(backend: str) -> None:
    model = Classifier()
    before = [tn.to_numpy(p).copy() for p in model.parameters()]

    def loss_fn(logits: Any, target: Any) -> Any:
        return tn.cross_entropy(logits, target, class_weight=[1.0, 2.0, 0.5, 1.0],
                                label_smoothing=0.1)  # fmt: skip

    step = tn.train_step(model, loss_fn, tn.SGD(model, lr=1.0))
    rng = _rng(15)
    for batch in (4, 7, 2, 5):
        x = rng.standard_normal((batch, 3)).astype(np.float32)
        y = rng.integers(0, 4, batch)
        y[rng.uniform(size=batch) < 0.3] = -100
        weights = [tn.to_numpy(p).astype(np.float64) for p in model.parameters()]
        logits = x @ weights[0] + weights[1]
        expected = ref_cross_entropy(logits, y, [1.0, 2.0, 0.5, 1.0], label_smoothing=0.1)
        np.testing.assert_allclose(float(tn.to_numpy(step(x, y))), expected, rtol=1e-5)
    assert step.trace_count == 1 and model.calls == 1  # type: ignore[attr-defined]
    # an out-of-range id inside the graph: the twinnn error, and no update
    params = [tn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(errors.ArgumentError, match=r"class ids in \[0, 4\) or -100"):
        step(np.zeros((3, 3), np.float32), np.array([0, 4, 1]))
    for p, q in zip(params, model.parameters(), strict=True):
        np.testing.assert_array_equal(p, tn.to_numpy(q))
    assert step.trace_count == 1  # type: ignore[attr-defined]
    assert any(
        not np.array_equal(p, tn.to_numpy(q))
        for p, q in zip(before, model.parameters(), strict=True)
    )


# --- bad input: the same class and message on both backends ---------------------------------------


def _native_ids(values: list[int]) -> Any:
    return tn.tensor(np.array(values), dtype="int64")


LOGITS = np.zeros((3, 4), np.float32)
BAD: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("target-shape", lambda: tn.cross_entropy(LOGITS, np.zeros(4, int)), errors.ShapeError,
     r"class ids, so its shape must be the shape of 'logits' \(3, 4\) without the last \(class\) "
     r"axis, got \(4,\)"),
    ("float-target-last-dim", lambda: tn.cross_entropy(LOGITS, np.zeros((3, 5))),
     errors.ShapeError, r"float 'target' holds class probabilities.*\(3, 4\), got \(3, 5\) "
     r"\(class ids must be an integer tensor\)"),
    ("float-ids", lambda: tn.cross_entropy(LOGITS, np.array([0.0, 1.0, 2.0])),
     errors.ShapeError, r"got \(3,\) \(class ids must be an integer tensor\)"),
    ("bool-target", lambda: tn.cross_entropy(LOGITS, np.array([True, False, True])),
     errors.DTypeError, r"integer class ids or float probabilities, got dtype bool"),
    ("host-out-of-range", lambda: tn.cross_entropy(LOGITS, np.array([0, 4, 1])),
     errors.ArgumentError, r"class ids in \[0, 4\) or -100 \(C = 4\), got 4$"),
    ("host-negative", lambda: tn.nll_loss(LOGITS, [0, -1, 1]), errors.ArgumentError,
     r"^nll_loss: 'target' must hold class ids in \[0, 4\) or -100 \(C = 4\), got -1$"),
    ("native-out-of-range", lambda: tn.cross_entropy(LOGITS, _native_ids([0, 7, -100])),
     errors.ArgumentError, r"class ids in \[0, 4\) or -100 \(C = 4\), got an id outside"),
    ("native-negative", lambda: tn.nll_loss(LOGITS, _native_ids([0, -3, 1])),
     errors.ArgumentError, r"class ids in \[0, 4\) or -100 \(C = 4\), got an id outside"),
    ("native-float-ids-nll", lambda: tn.nll_loss(LOGITS, tn.tensor([0.0, 1.0, 2.0])),
     errors.DTypeError, r"nll_loss: 'target' must hold integer class ids, got a tensor of "
     r"dtype float32"),
    ("negative-weight", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], weight=[1.0, -1.0, 1.0]),
     errors.ArgumentError, r"'weight' must be >= 0 everywhere"),
    ("negative-class-weight", lambda: tn.cross_entropy(LOGITS, [0, 1, 2],
                                                       class_weight=[1, -1, 1, 1]),
     errors.ArgumentError, r"'class_weight' must be >= 0 everywhere"),
    ("native-negative-class-weight", lambda: tn.cross_entropy(
        LOGITS, [0, 1, 2], class_weight=tn.tensor([1.0, -1.0, 1.0, 1.0])),
     errors.ArgumentError, r"'class_weight' must be >= 0 everywhere"),
    ("class-weight-shape", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], class_weight=[1, 1, 1]),
     errors.ShapeError, r"'class_weight' must have shape \(C,\) = \(4,\).*got \(3,\)"),
    ("weight-shape", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], weight=np.ones(4)),
     errors.ShapeError, r"'weight' must broadcast to the item shape .* \(3,\), got \(4,\)"),
    ("negative-pos-weight", lambda: tn.binary_cross_entropy(LOGITS, LOGITS,
                                                            pos_weight=[1, 1, -1, 1]),
     errors.ArgumentError, r"'pos_weight' must be >= 0 everywhere, got negative"),
    ("bce-shape", lambda: tn.binary_cross_entropy(LOGITS, np.zeros((3, 1))), errors.ShapeError,
     r"'target' must have the shape of 'logits' \(3, 4\), got \(3, 1\)"),
    ("bad-reduction", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], reduction="avg"),
     errors.ArgumentError, r"cross_entropy\(reduction=...\) must be one of .*'avg'"),
    ("bad-reduction-l1", lambda: tn.l1_loss(LOGITS, LOGITS, reduction="batch"),
     errors.ArgumentError, r"l1_loss\(reduction=...\)"),
    ("smoothing-high", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], label_smoothing=1.5),
     errors.ArgumentError, r"cross_entropy\(label_smoothing\) must be in \[0.0, 1.0\], got 1.5"),
    ("smoothing-negative", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], label_smoothing=-0.1),
     errors.ArgumentError, r"label_smoothing\) must be in \[0.0, 1.0\], got -0.1"),
    ("ignore-index-type", lambda: tn.cross_entropy(LOGITS, [0, 1, 2], ignore_index=1.0),
     errors.ArgumentTypeError, r"cross_entropy\(ignore_index\) must be an int, got float"),
    ("ignore-index-probabilities", lambda: tn.cross_entropy(LOGITS, LOGITS, ignore_index=0),
     errors.ArgumentError, r"applies to class-id targets only"),
    ("scalar-logits", lambda: tn.cross_entropy(1.0, 0), errors.ShapeError,
     r"'logits' must have the classes on its last axis, shape \(..., C\), got a 0-d tensor"),
    ("empty-mean", lambda: tn.cross_entropy(np.zeros((0, 4)), np.zeros(0, int)),
     errors.ShapeError, r"'target' has no elements .* the mean of nothing is undefined"),
    ("ragged-ids", lambda: tn.nll_loss(LOGITS, [[0], [1, 2], [3]]), errors.ShapeError,
     r"argument 'target' must be rectangular"),
    ("huber-delta", lambda: tn.huber_loss(LOGITS, LOGITS, delta=0.0), errors.ArgumentError,
     r"huber_loss\(delta\) must be > 0, got 0.0"),
    ("accuracy-float-target", lambda: tn.accuracy(LOGITS, np.zeros(3)), errors.DTypeError,
     r"accuracy: 'target' must hold integer class ids, got ndarray of float64"),
    ("accuracy-out-of-range", lambda: tn.accuracy(LOGITS, _native_ids([0, 1, 9])),
     errors.ArgumentError, r"accuracy: 'target' must hold class ids in \[0, 4\) \(C = 4\)"),
]  # fmt: skip


#: Cases whose values are checked in a native tensor: a device-side assertion on a torch GPU
#: (it fails the CUDA context instead of raising an error a test can catch; docs/errors.md).
NATIVE_VALUES = {
    "native-out-of-range",
    "native-negative",
    "native-negative-class-weight",
    "accuracy-out-of-range",
}


@pytest.mark.parametrize(("name", "call", "error", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(
    both_backends: list[str], name: str, call: Callable[[], Any], error: type, pattern: str
) -> None:
    messages = []
    for backend in both_backends:
        with tn.use_backend(backend):
            if name in NATIVE_VALUES and backend == "torch" and tn.device() != "cpu":
                pytest.skip(f"on {tn.device()} torch checks native values on the device")
            with pytest.raises(error, match=pattern) as info:
                call()
            assert type(info.value) is error
            messages.append(str(info.value))
    assert messages[0] == messages[1]
