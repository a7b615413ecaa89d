"""torch backend: device, precision, tensors, parameters and the neutral ops."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from twinnn.backends.host import as_array
from twinnn.errors import (
    BackendMismatchError,
    DeviceError,
    DTypeError,
    ShapeError,
)

NAME = "torch"

_device = torch.device("cpu")


def framework_version() -> str:
    return str(torch.__version__)


def visible_gpus() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def set_device(kind: str, index: int | None, argument: str) -> str:
    """Resolve ``auto``/``cpu``/``gpu[:N]`` to a ``torch.device``; no silent CPU fallback."""
    global _device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "cpu" or (kind == "auto" and count == 0):
        _device = torch.device("cpu")
    else:
        wanted = 0 if index is None else index
        if wanted >= count:
            raise DeviceError(
                f"{argument} asks for gpu:{wanted} but torch sees {count} GPU(s)"
                + (" (this torch build has no CUDA)" if torch.version.cuda is None else "")
                + "; use 'cpu' or 'auto'"
            )
        _device = torch.device("cuda", wanted)
    return current_device()


def current_torch_device() -> torch.device:
    """The ``torch.device`` new tensors go to."""
    return _device


def current_device() -> str:
    return "cpu" if _device.type == "cpu" else f"gpu:{_device.index or 0}"


def set_tf32(enabled: bool) -> None:
    # torch's cuDNN LSTM uses TF32 by default (cudnn.allow_tf32=True): a silent parity breaker.
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def seed(value: int) -> None:
    torch.manual_seed(value)


# --- tensors ------------------------------------------------------------------------------------


def is_native(x: object) -> bool:
    return isinstance(x, torch.Tensor)


def _framework_of(x: object) -> str:
    return type(x).__module__.split(".", 1)[0]


_NUMERIC = frozenset(
    {
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    }
)


def _check_native(x: torch.Tensor, name: str) -> None:
    if x.is_complex() or x.dtype not in _NUMERIC:
        raise DTypeError(
            f"argument {name!r} must hold numbers or bools, got a torch tensor of dtype "
            f"{dtype_name(x)}"
        )
    if x.is_nested:
        raise ShapeError(f"argument {name!r} must be a dense tensor, got a nested (ragged) one")


def _check_float32(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and x.dtype != torch.float32:
        raise DTypeError(
            f"argument {name!r} must be float32, got a torch tensor of dtype "
            f"{dtype_name(x)}; cast it with .float() "
            "(twinnn does not change the dtype of native tensors silently)"
        )


def _refuse_foreign(x: object, name: str) -> None:
    if _framework_of(x) in ("tensorflow", "keras", "jax", "jaxlib"):
        raise BackendMismatchError(
            f"argument {name!r} is a {type(x).__module__}.{type(x).__name__}, but this object "
            "runs on the torch backend; pass a NumPy array or a torch tensor"
        )


def convert(x: object, name: str, dtype: str | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        _check_native(x, name)
        if dtype is not None:
            return x.to(device=_device, dtype=getattr(torch, dtype))
        _check_float32(x, name)
        return x if x.device == _device else x.to(_device)
    _refuse_foreign(x, name)
    return torch.as_tensor(as_array(x, name, dtype), device=_device)


def convert_float(x: object, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        _check_native(x, name)
        _check_float32(x, name)
        return x.to(device=_device, dtype=torch.float32)  # no-op when already there
    _refuse_foreign(x, name)
    return torch.as_tensor(as_array(x, name, "float32"), device=_device)


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


def static_shape(x: Any) -> tuple[int | None, ...]:
    return tuple(int(d) for d in x.shape)


def dtype_name(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


# --- parameters ---------------------------------------------------------------------------------


def make_parameter(value: np.ndarray) -> torch.nn.Parameter:
    # np.array(order="C") copies and keeps 0-d shapes (np.ascontiguousarray makes them 1-d).
    data = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
    return torch.nn.Parameter(data.to(_device))


def is_parameter(x: object) -> bool:
    return isinstance(x, torch.nn.Parameter)


def assign(param: Any, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(np.asarray(value, dtype=np.dtype(dtype_name(param)))))


def make_buffer(value: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(value, order="C")).to(_device)


def write_buffer(buffer: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        buffer.copy_(value.detach())


def no_grad() -> AbstractContextManager[Any]:
    return torch.no_grad()


# --- ops ----------------------------------------------------------------------------------------

relu = torch.relu
tanh = torch.tanh
sigmoid = torch.sigmoid
square = torch.square
matmul = torch.matmul


def concat(tensors: Sequence[Any], axis: int = -1) -> Any:
    return torch.cat(list(tensors), dim=axis)


def reshape(x: Any, shape: Sequence[int]) -> Any:
    return torch.reshape(x, tuple(shape))


def _dims(axis: int | Sequence[int] | None) -> Any:
    return axis if axis is None or isinstance(axis, int) else tuple(axis)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    if axis is None:
        return torch.mean(x, dim=None, keepdim=keepdims) if keepdims else torch.mean(x)
    return torch.mean(x, dim=_dims(axis), keepdim=keepdims)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    if axis is None:
        return torch.sum(x, dim=None, keepdim=keepdims) if keepdims else torch.sum(x)
    return torch.sum(x, dim=_dims(axis), keepdim=keepdims)


def broadcast_like(x: Any, like: Any) -> Any:
    return torch.broadcast_to(x, like.shape)


def sequence_mask(lengths: Any, time: Any) -> Any:
    steps = torch.arange(int(time), device=lengths.device)
    return (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float32)
