"""tensorflow backend: device, precision, tensors, parameters and the neutral ops."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import tensorflow as tf

from twinnn.backends.host import as_array
from twinnn.errors import (
    BackendMismatchError,
    DeviceError,
    DTypeError,
    ShapeError,
)

NAME = "tensorflow"


_device = "cpu"  # neutral name, "cpu" or "gpu:N"
_tf_device = "/CPU:0"


def framework_version() -> str:
    return str(tf.__version__)


def visible_gpus() -> list[str]:
    return [d.name for d in tf.config.list_physical_devices("GPU")]


def set_device(kind: str, index: int | None, argument: str) -> str:
    """Resolve ``auto``/``cpu``/``gpu[:N]``; no silent CPU fallback."""
    global _device, _tf_device
    count = len(tf.config.list_physical_devices("GPU"))
    if kind == "cpu" or (kind == "auto" and count == 0):
        _device, _tf_device = "cpu", "/CPU:0"
    else:
        wanted = 0 if index is None else index
        if wanted >= count:
            raise DeviceError(
                f"{argument} asks for gpu:{wanted} but tensorflow sees {count} GPU(s)"
                + (" (this is a CPU-only build)" if not tf.test.is_built_with_cuda() else "")
                + "; use 'cpu' or 'auto'"
            )
        _device, _tf_device = f"gpu:{wanted}", f"/GPU:{wanted}"
    return _device


def current_device() -> str:
    return _device


def device_scope() -> Any:
    """``tf.device`` context for the resolved device (ops and variables are placed there)."""
    return tf.device(_tf_device)


def set_tf32(enabled: bool) -> None:
    # TensorFlow enables TF32 by default on Ampere and later: a silent parity breaker.
    tf.config.experimental.enable_tensor_float_32_execution(enabled)


def seed(value: int) -> None:
    tf.random.set_seed(value)


# --- tensors ------------------------------------------------------------------------------------


def is_native(x: object) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _framework_of(x: object) -> str:
    return type(x).__module__.split(".", 1)[0]


def _check_native(x: Any, name: str) -> None:
    dtype = x.dtype
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
        raise DTypeError(
            f"argument {name!r} must hold numbers or bools, got a tensorflow tensor of dtype "
            f"{dtype.name}"
        )


def _check_float32(x: Any, name: str) -> None:
    if x.dtype.is_floating and x.dtype != tf.float32:
        raise DTypeError(
            f"argument {name!r} must be float32, got a tensorflow tensor of dtype "
            f"{x.dtype.name}; cast it with tf.cast(x, 'float32') "
            "(twinnn does not change the dtype of native tensors silently)"
        )


def _refuse_other(x: object, name: str) -> None:
    if isinstance(x, (tf.RaggedTensor, tf.SparseTensor)):
        raise ShapeError(
            f"argument {name!r} must be a dense tensor, got a {type(x).__name__}; "
            "convert it with .to_tensor() or tf.sparse.to_dense"
        )
    if _framework_of(x) in ("torch", "jax", "jaxlib"):
        raise BackendMismatchError(
            f"argument {name!r} is a {type(x).__module__}.{type(x).__name__}, but this object "
            "runs on the tensorflow backend; pass a NumPy array or a tf.Tensor"
        )


def convert(x: object, name: str, dtype: str | None = None) -> Any:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        _check_native(x, name)
        if dtype is not None:
            return tf.cast(x, dtype) if x.dtype.name != dtype else x
        _check_float32(x, name)
        return x
    _refuse_other(x, name)
    array = as_array(x, name, dtype)
    with tf.device(_tf_device):
        return tf.convert_to_tensor(array)


def convert_float(x: object, name: str) -> Any:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        _check_native(x, name)
        _check_float32(x, name)
        return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)
    _refuse_other(x, name)
    array = as_array(x, name, "float32")
    with tf.device(_tf_device):
        return tf.convert_to_tensor(array)


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        return np.asarray(x.numpy())
    return np.asarray(x)


def static_shape(x: Any) -> tuple[int | None, ...]:
    return tuple(x.shape.as_list())


def dtype_name(x: Any) -> str:
    return str(x.dtype.name)


# --- parameters ---------------------------------------------------------------------------------


def make_parameter(value: np.ndarray) -> tf.Variable:
    with tf.device(_tf_device):
        return tf.Variable(np.asarray(value, dtype=np.float32), trainable=True)


def is_parameter(x: object) -> bool:
    return isinstance(x, tf.Variable) and bool(x.trainable)


def assign(param: Any, value: np.ndarray) -> None:
    param.assign(np.asarray(value, dtype=param.dtype.as_numpy_dtype))


def make_buffer(value: np.ndarray) -> tf.Variable:
    with tf.device(_tf_device):
        return tf.Variable(np.array(value), trainable=False)


def write_buffer(buffer: tf.Variable, value: Any) -> None:
    buffer.assign(tf.stop_gradient(value))


def no_grad() -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


# --- ops ----------------------------------------------------------------------------------------

relu = tf.nn.relu
tanh = tf.tanh
sigmoid = tf.sigmoid
square = tf.square
matmul = tf.linalg.matmul


def concat(tensors: Sequence[Any], axis: int = -1) -> Any:
    return tf.concat(list(tensors), axis=axis)


def reshape(x: Any, shape: Sequence[int]) -> Any:
    return tf.reshape(x, list(shape))


def _axes(axis: int | Sequence[int] | None) -> Any:
    return axis if axis is None or isinstance(axis, int) else list(axis)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    return tf.reduce_mean(x, axis=_axes(axis), keepdims=keepdims)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    return tf.reduce_sum(x, axis=_axes(axis), keepdims=keepdims)


def broadcast_like(x: Any, like: Any) -> Any:
    return tf.broadcast_to(x, tf.shape(like))


def sequence_mask(lengths: Any, time: Any) -> Any:
    return tf.sequence_mask(lengths, maxlen=time, dtype=tf.float32)
