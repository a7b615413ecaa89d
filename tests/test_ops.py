"""Neutral ops (twinnn.ops): bad input gives the same twinnn error, with the same message, on
both backends; int inputs of float ops are cast to float32; shapes match NumPy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import twinnn as tn
from _native_grads import torch_tensor
from twinnn import config, errors

M23 = np.ones((2, 3), np.float32)
M34 = np.ones((3, 4), np.float32)


class Case:
    """A bad call: the error it must raise and a text its message must contain (the argument)."""

    def __init__(
        self, id_: str, call: Callable[[], Any], error: type[errors.TwinnnError], names: str
    ) -> None:
        self.id, self.call, self.error, self.names = id_, call, error, names


# Inputs are array-likes, so both backends see the same mistake (see test_same_message_...).
BAD: list[Case] = [
    # tensor / conversion of array-likes (shared by every op)
    Case("tensor-None", lambda: tn.tensor(None), errors.ArgumentTypeError, "'data'"),
    Case("tensor-str", lambda: tn.tensor("abc"), errors.DTypeError, "'data'"),
    Case("tensor-bytes", lambda: tn.tensor(b"ab"), errors.DTypeError, "'data'"),
    Case("tensor-ragged", lambda: tn.tensor([[1], [1, 2]]), errors.ShapeError, "'data'"),
    Case("tensor-object", lambda: tn.tensor(np.array([1, None])), errors.DTypeError, "'data'"),
    Case("tensor-huge-int", lambda: tn.tensor([2**70]), errors.DTypeError, "'data'"),
    Case("tensor-complex", lambda: tn.tensor([1 + 2j]), errors.DTypeError, "'data'"),
    Case("dtype-float99", lambda: tn.tensor([1], dtype="float99"), errors.ArgumentError, "dtype"),
    Case("dtype-complex", lambda: tn.tensor([1], "complex64"), errors.ArgumentError, "dtype"),
    Case("dtype-str-type", lambda: tn.tensor([1], dtype=str), errors.ArgumentError, "dtype"),
    Case("dtype-None", lambda: tn.tensor([1], dtype=None), errors.ArgumentTypeError, "dtype"),  # type: ignore[arg-type]
    Case("parameter-None", lambda: tn.parameter(None), errors.ArgumentTypeError, "value"),
    Case("parameter-str", lambda: tn.parameter("abc"), errors.DTypeError, "value"),
    # element-wise float ops
    Case("relu-None", lambda: tn.relu(None), errors.ArgumentTypeError, "'x'"),
    Case("relu-object", lambda: tn.relu(np.array([1.0, None])), errors.DTypeError, "'x'"),
    Case("tanh-str", lambda: tn.tanh(["a", "b"]), errors.DTypeError, "'x'"),
    Case("sigmoid-ragged", lambda: tn.sigmoid([[1.0], [2.0, 3.0]]), errors.ShapeError, "'x'"),
    Case("sigmoid-complex", lambda: tn.sigmoid(np.ones(2, complex)), errors.DTypeError, "'x'"),
    # concat
    Case("concat-empty", lambda: tn.concat([]), errors.ArgumentError, "concat(tensors)"),
    Case("concat-not-list", lambda: tn.concat(M23), errors.ArgumentTypeError, "concat(tensors)"),
    Case("concat-0d", lambda: tn.concat([1.0, 2.0]), errors.ShapeError, "concat(tensors)"),
    Case(
        "concat-rank",
        lambda: tn.concat([M23, np.ones((2, 3, 1))]),
        errors.ShapeError,
        "concat(tensors)",
    ),
    Case(
        "concat-axis-high", lambda: tn.concat([M23, M23], 2), errors.ArgumentError, "concat(axis)"
    ),
    Case("concat-axis-low", lambda: tn.concat([M23], -3), errors.ArgumentError, "concat(axis)"),
    Case(
        "concat-axis-float",
        lambda: tn.concat([M23], axis=1.0),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "concat(axis)",
    ),
    Case(
        "concat-dims", lambda: tn.concat([M23, M34], axis=1), errors.ShapeError, "concat(tensors)"
    ),
    Case(
        "concat-dtype",
        lambda: tn.concat([M23, np.ones((2, 3), np.int64)]),
        errors.DTypeError,
        "concat(tensors)",
    ),
    Case(
        "concat-None-item", lambda: tn.concat([M23, None]), errors.ArgumentTypeError, "tensors[1]"
    ),
    # mean / sum
    Case("mean-axis-high", lambda: tn.mean(M23, axis=2), errors.ArgumentError, "mean(axis)"),
    Case("sum-axis-low", lambda: tn.sum(M23, axis=-3), errors.ArgumentError, "sum(axis)"),
    Case("mean-axis-0d", lambda: tn.mean(3.0, axis=0), errors.ArgumentError, "mean(axis)"),
    Case(
        "mean-axis-repeat", lambda: tn.mean(M23, axis=(1, -1)), errors.ArgumentError, "mean(axis)"
    ),
    Case("sum-axis-repeat", lambda: tn.sum(M23, axis=[0, 0]), errors.ArgumentError, "sum(axis)"),
    Case(
        "mean-axis-float",
        lambda: tn.mean(M23, axis=1.5),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "mean(axis)",
    ),
    Case(
        "sum-axis-str",
        lambda: tn.sum(M23, axis="0"),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "sum(axis)",
    ),
    Case("mean-axis-bool", lambda: tn.mean(M23, axis=True), errors.ArgumentTypeError, "mean(axis)"),
    Case(
        "mean-keepdims-int",
        lambda: tn.mean(M23, keepdims=1),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "mean(keepdims)",
    ),
    Case(
        "sum-keepdims-str",
        lambda: tn.sum(M23, keepdims="yes"),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "sum(keepdims)",
    ),
    Case("mean-None", lambda: tn.mean(None), errors.ArgumentTypeError, "'x'"),
    Case("sum-str", lambda: tn.sum("abc"), errors.DTypeError, "'x'"),
    # reshape
    Case("reshape-count", lambda: tn.reshape(M23, (4, 2)), errors.ShapeError, "reshape(shape)"),
    Case("reshape-infer", lambda: tn.reshape(M23, (4, -1)), errors.ShapeError, "reshape(shape)"),
    Case(
        "reshape-infer-0",
        lambda: tn.reshape(np.ones((0, 3)), (0, -1)),
        errors.ShapeError,
        "reshape(shape)",
    ),
    Case(
        "reshape-two-1", lambda: tn.reshape(M23, (-1, -1)), errors.ArgumentError, "reshape(shape)"
    ),
    Case("reshape-negative", lambda: tn.reshape(M23, (-2, -3)), errors.ArgumentError, "reshape"),
    Case(
        "reshape-float-dim",
        lambda: tn.reshape(M23, (2.0, 3)),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "reshape(shape)",
    ),
    Case(
        "reshape-str",
        lambda: tn.reshape(M23, "6"),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "reshape(shape)",
    ),
    Case(
        "reshape-None",
        lambda: tn.reshape(M23, None),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "reshape(shape)",
    ),
    # matmul
    Case("matmul-0d-a", lambda: tn.matmul(2.0, M23), errors.ShapeError, "matmul(a)"),
    Case("matmul-0d-b", lambda: tn.matmul(M23, 2.0), errors.ShapeError, "matmul(b)"),
    Case("matmul-inner", lambda: tn.matmul(M23, M23), errors.ShapeError, "matmul(a, b)"),
    Case("matmul-vectors", lambda: tn.matmul([1, 2, 3], [1, 2]), errors.ShapeError, "matmul(a, b)"),
    Case(
        "matmul-batch",
        lambda: tn.matmul(np.ones((2, 3, 4)), np.ones((5, 4, 2))),
        errors.ShapeError,
        "matmul(a, b)",
    ),
    Case("matmul-str", lambda: tn.matmul("ab", M23), errors.DTypeError, "'a'"),
    Case("matmul-None", lambda: tn.matmul(M23, None), errors.ArgumentTypeError, "'b'"),
    # sequence_mask
    Case(
        "mask-float-lengths",
        lambda: tn.sequence_mask([1.0, 2.0], 3),
        errors.DTypeError,
        "sequence_mask(lengths)",
    ),
    Case(
        "mask-float64-lengths",
        lambda: tn.sequence_mask(np.array([1.5, 2.0]), 3),
        errors.DTypeError,
        "sequence_mask(lengths)",
    ),
    Case(
        "mask-bool-lengths",
        lambda: tn.sequence_mask([True, False], 3),
        errors.DTypeError,
        "sequence_mask(lengths)",
    ),
    Case(
        "mask-2d-lengths",
        lambda: tn.sequence_mask([[1, 2]], 3),
        errors.ShapeError,
        "sequence_mask(lengths)",
    ),
    Case(
        "mask-None-lengths", lambda: tn.sequence_mask(None, 3), errors.ArgumentTypeError, "lengths"
    ),
    Case("mask-ragged", lambda: tn.sequence_mask([[1], [1, 2]], 3), errors.ShapeError, "lengths"),
    Case(
        "mask-time-float",
        lambda: tn.sequence_mask([1, 2], 2.5),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "sequence_mask(time)",
    ),
    Case(
        "mask-time-negative",
        lambda: tn.sequence_mask([1, 2], -1),
        errors.ArgumentError,
        "sequence_mask(time)",
    ),
    Case(
        "mask-time-str",
        lambda: tn.sequence_mask([1, 2], "3"),  # type: ignore[arg-type]
        errors.ArgumentTypeError,
        "sequence_mask(time)",
    ),
    Case(
        "mask-time-bool",
        lambda: tn.sequence_mask([1, 2], True),
        errors.ArgumentTypeError,
        "sequence_mask(time)",
    ),
]


def _outcome(case: Case) -> tuple[type[BaseException], str]:
    with pytest.raises(errors.TwinnnError) as info:
        case.call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input_raises_a_twinnn_error_naming_the_argument(backend: str, case: Case) -> None:
    cls, message = _outcome(case)
    assert cls is case.error, message
    assert case.names in message
    assert " got " in message  # ... and what was received


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_same_message_on_both_backends(both_backends: list[str], case: Case) -> None:
    outcomes = []
    for name in both_backends:
        tn.set_backend(name)
        outcomes.append(_outcome(case))
    assert outcomes[0] == outcomes[1]


def test_bad_ids_are_unique() -> None:
    assert len({c.id for c in BAD}) == len(BAD)


def _native(array: np.ndarray) -> Any:
    """``array`` as a native tensor of the current backend, its dtype kept."""
    if tn.backend() == "torch":
        return torch_tensor(np.array(array))  # on twinnn's device
    import tensorflow as tf

    return tf.constant(array)


NATIVE_BAD: list[tuple[str, Callable[[], Any], type[errors.TwinnnError], str]] = [
    ("relu-float64", lambda: tn.relu(_native(np.ones(2))), errors.DTypeError, "'x'"),
    (
        "matmul-float16",
        lambda: tn.matmul(_native(np.ones((2, 2), np.float16)), M23),
        errors.DTypeError,
        "'a'",
    ),
    (
        "mean-float64",
        lambda: tn.mean(_native(np.ones(2)), axis=0),
        errors.DTypeError,
        "'x'",
    ),
    (
        "mask-float-lengths",
        lambda: tn.sequence_mask(_native(np.ones(2, np.float32)), 3),
        errors.DTypeError,
        "sequence_mask(lengths)",
    ),
    (
        "mask-float64-lengths",  # not "'lengths' must be float32"
        lambda: tn.sequence_mask(_native(np.ones(2)), 3),
        errors.DTypeError,
        "sequence_mask(lengths) must hold integers",
    ),
    (
        "mask-float-time",
        lambda: tn.sequence_mask([1, 2], _native(np.float32(3))),
        errors.DTypeError,
        "sequence_mask(time)",
    ),
    (
        "concat-int32-int64",
        lambda: tn.concat([_native(np.ones(2, np.int32)), _native(np.ones(2, np.int64))]),
        errors.DTypeError,
        "concat(tensors)",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "names"), [c[1:] for c in NATIVE_BAD], ids=[c[0] for c in NATIVE_BAD]
)
def test_bad_native_tensor(
    backend: str, call: Callable[[], Any], error: type[errors.TwinnnError], names: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert names in str(info.value)


def test_tensorflow_string_and_ragged_tensors_are_refused() -> None:
    tf = pytest.importorskip("tensorflow")
    tn.set_backend("tensorflow")
    with pytest.raises(errors.DTypeError, match=r"'x' must hold numbers.*string"):
        tn.relu(tf.constant(["a"]))
    with pytest.raises(errors.ShapeError, match=r"'x' must be a dense tensor.*RaggedTensor"):
        tn.relu(tf.ragged.constant([[1.0], [2.0, 3.0]]))


# --- what works -----------------------------------------------------------------------------------


def _mask_reference(lengths: list[int], time: int) -> np.ndarray:
    return (np.arange(time)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


@pytest.mark.parametrize("time", [0, 2, 4, 7])
def test_sequence_mask_honours_time(backend: str, time: int) -> None:
    lengths = [0, 2, 4]
    for given in (lengths, np.array(lengths, np.int32), tn.tensor(lengths, dtype="int32")):
        mask = tn.to_numpy(tn.sequence_mask(given, np.int64(time)))
        assert mask.dtype == np.float32
        np.testing.assert_array_equal(mask, _mask_reference(lengths, time))


def test_parameter_keeps_0d_shape(backend: str) -> None:
    p = tn.parameter(0.5)
    assert config.current().static_shape(p) == ()
    assert tn.to_numpy(p).shape == () and float(tn.to_numpy(p)) == 0.5
    assert tn.to_numpy(tn.parameter([[1, 2]])).dtype == np.float32


def test_float_ops_cast_ints_and_bools_to_float32(backend: str) -> None:
    ints = np.array([[1, -2], [3, 4]])
    cases = [
        (tn.relu(ints), np.maximum(ints, 0)),
        (tn.relu(tn.tensor(ints, dtype="int32")), np.maximum(ints, 0)),
        (tn.tanh([True, False]), np.tanh([1.0, 0.0])),
        (tn.sigmoid(tn.tensor([0], dtype="uint8")), [0.5]),
        (tn.matmul(ints, tn.tensor(ints, dtype="int64")), ints @ ints),
        (tn.mean([1, 2]), 1.5),  # not integer division
    ]
    for out, expected in cases:
        result = tn.to_numpy(out)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, np.asarray(expected, np.float32), rtol=1e-6)
    assert tn.to_numpy(tn.sum([1, 2])).dtype == np.int64  # sum keeps the dtype, like NumPy


@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)), ((2, 4, 3), (3,)), ((3,), (5, 3, 2)),
     ((2, 1, 2, 3), (4, 3, 2)), ((1, 3), (2, 3, 4))],
)  # fmt: skip
def test_matmul_follows_numpy(
    backend: str, shape_a: tuple[int, ...], shape_b: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    out = tn.to_numpy(tn.matmul(a, b))
    assert out.shape == (a @ b).shape
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-6)


def test_reductions_reshape_concat_follow_numpy(backend: str) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(tn.to_numpy(tn.mean(x, axis=())), x)  # no axis: nothing
    np.testing.assert_array_equal(tn.to_numpy(tn.sum(x, axis=[-1, 0])), x.sum(axis=(2, 0)))
    np.testing.assert_array_equal(
        tn.to_numpy(tn.mean(x, axis=np.int64(1), keepdims=True)), x.mean(1, keepdims=True)
    )
    np.testing.assert_array_equal(tn.to_numpy(tn.reshape(x, 24)), x.reshape(24))
    np.testing.assert_array_equal(tn.to_numpy(tn.reshape(x, [np.int64(4), -1])), x.reshape(4, -1))
    np.testing.assert_array_equal(tn.to_numpy(tn.reshape(np.ones((0, 3)), (3, 0))).shape, (3, 0))
    np.testing.assert_array_equal(
        tn.to_numpy(tn.concat((x, x[:, :1]), axis=-2)), np.concatenate([x, x[:, :1]], -2)
    )


def test_traced_tensorflow_checks_only_known_dims() -> None:
    tf = pytest.importorskip("tensorflow")
    tn.set_backend("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], autograph=False)
    def fine(x: Any) -> Any:
        y = tn.matmul(x, np.ones((3, 2), np.float32))  # inner dim unknown: not checked here
        z = tn.concat([x, x], axis=0)
        return tn.sum(y) + tn.mean(z, axis=0)[0] + tn.sum(tn.reshape(x, (-1,)))

    assert float(fine(tf.ones((2, 3)))) == 12.0 + 1.0 + 6.0

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)], autograph=False)
    def wrong(x: Any) -> Any:
        return tn.matmul(x, np.ones((3, 2), np.float32))  # 4 != 3 is known while tracing

    with pytest.raises(
        errors.ShapeError, match=r"a's last dim \(4\).*\(3\); got a of shape \(\?, 4\)"
    ):
        wrong(tf.ones((2, 4)))
