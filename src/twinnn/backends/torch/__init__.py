"""The torch backend; its module-level names implement ``twinnn.backends.base.Backend``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinnn.backends.torch.checks import assert_dims, assert_nonnegative, divide_no_nan
from twinnn.backends.torch.core import (
    NAME,
    assign,
    broadcast_like,
    concat,
    convert,
    convert_float,
    current_device,
    dtype_name,
    framework_version,
    is_native,
    is_parameter,
    make_parameter,
    matmul,
    mean,
    relu,
    reshape,
    seed,
    sequence_mask,
    set_device,
    set_tf32,
    sigmoid,
    square,
    static_shape,
    sum,
    tanh,
    to_numpy,
    visible_gpus,
)
from twinnn.backends.torch.nn import linear
from twinnn.backends.torch.optim import (
    clip,
    make_scalar_feed,
    make_slot,
    sqrt,
    updating,
    vector,
)
from twinnn.backends.torch.rnn import lstm
from twinnn.backends.torch.trainer import build_eval_step, build_train_step

__all__ = [
    "NAME",
    "assert_dims",
    "assert_nonnegative",
    "assign",
    "broadcast_like",
    "build_eval_step",
    "build_train_step",
    "clip",
    "concat",
    "convert",
    "convert_float",
    "current_device",
    "divide_no_nan",
    "dtype_name",
    "framework_version",
    "is_native",
    "is_parameter",
    "linear",
    "lstm",
    "make_parameter",
    "make_scalar_feed",
    "make_slot",
    "matmul",
    "mean",
    "relu",
    "reshape",
    "seed",
    "sequence_mask",
    "set_device",
    "set_tf32",
    "sigmoid",
    "sqrt",
    "square",
    "static_shape",
    "sum",
    "tanh",
    "to_numpy",
    "updating",
    "vector",
    "visible_gpus",
]

if TYPE_CHECKING:
    import twinnn.backends.torch as _self
    from twinnn.backends.base import Backend

    _conforms: Backend = _self
