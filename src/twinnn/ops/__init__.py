"""Neutral tensor ops with NumPy argument names (``axis``, ``keepdims``, never ``dim``).

Each accepts NumPy arrays, Python lists and native tensors of the current backend and returns
a native tensor (``torch.Tensor`` / ``tf.Tensor``) on the current device.

Arguments are checked here, once for both backends, against the shapes known before the op
runs (host-side Python, no device work); a bad axis, shape or dtype raises the same
``twinnn.errors`` exception with the same message on both backends. Inside a traced
TensorFlow graph, dims unknown while tracing are not checked. Value checks (ids of ``take``,
``take_along_axis``, ``one_hot``) run on the host for host data and as graph-safe run-time
checks for native tensors.

Float ops (``relu``, ``tanh``, ``sigmoid``, ``matmul``, ``mean``, ``exp``, ``log``,
``log1p``, ``sqrt``, ``softmax``, ``log_softmax``, ``logsumexp`` and the activations) cast
integer and bool inputs to float32 on both backends; a native floating tensor that is not
float32 (float64, say) is refused with :class:`~twinnn.errors.DTypeError` rather than cast
silently (:func:`cast` converts it). The others keep the dtype, as NumPy.

The ops live in submodules: ``twinnn.ops.tensors`` (tensors and the first ops),
``twinnn.ops.math`` (element-wise math and reductions), ``twinnn.ops.shape`` (shapes, gathers,
dtypes), ``twinnn.ops.activations`` and ``twinnn.ops.pooling`` (``max_pool``, ``avg_pool``,
``flatten``); every name is importable from ``twinnn.ops``. Where
torch and TensorFlow differ and what twinnn does: ``docs/ops.md``.
"""

from __future__ import annotations

from twinnn.ops.activations import elu, gelu, leaky_relu, log_softmax, logsumexp, silu, softmax
from twinnn.ops.math import (
    abs,
    argmax,
    argmin,
    clip,
    exp,
    log,
    log1p,
    max,
    maximum,
    min,
    minimum,
    sqrt,
    square,
    where,
)
from twinnn.ops.pooling import avg_pool, flatten, max_pool
from twinnn.ops.shape import (
    cast,
    expand_dims,
    one_hot,
    split,
    squeeze,
    stack,
    take,
    take_along_axis,
    transpose,
)
from twinnn.ops.tensors import (
    TENSOR_DTYPES,
    concat,
    matmul,
    mean,
    relu,
    reshape,
    sequence_mask,
    sigmoid,
    sum,
    tanh,
    tensor,
    to_numpy,
)

__all__ = [
    "TENSOR_DTYPES",
    "abs",
    "argmax",
    "argmin",
    "avg_pool",
    "cast",
    "clip",
    "concat",
    "elu",
    "exp",
    "expand_dims",
    "flatten",
    "gelu",
    "leaky_relu",
    "log",
    "log1p",
    "log_softmax",
    "logsumexp",
    "matmul",
    "max",
    "max_pool",
    "maximum",
    "mean",
    "min",
    "minimum",
    "one_hot",
    "relu",
    "reshape",
    "sequence_mask",
    "sigmoid",
    "silu",
    "softmax",
    "split",
    "sqrt",
    "square",
    "squeeze",
    "stack",
    "sum",
    "take",
    "take_along_axis",
    "tanh",
    "tensor",
    "to_numpy",
    "transpose",
    "where",
]
