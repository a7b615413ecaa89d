"""The checkpoint format: recognising a safetensors file (and naming a foreign one), reading
and validating its header, metadata and tensors into a :class:`Checkpoint`. Every problem with
a file's contents is a :class:`~twinnn.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import safetensors.numpy

from twinnn.errors import ArgumentTypeError, CheckpointError, describe_shape
from twinnn.io.files import read_regular_file

__all__ = ["FORMAT_VERSION", "Checkpoint", "read"]


#: The format version this twinnn writes; it reads every version up to this one.
FORMAT_VERSION = 2

_MODEL = "model/"

_OPTIMIZER = "optimizer/"  # optimizer/<slot>/<parameter name>
_BUFFER = "optimizer/momentum_buffer/"  # format 1: SGD momentum buffers

_USER = "user."

_HEADER_LIMIT = 100_000_000  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class Checkpoint:
    """The validated contents of a checkpoint file (see :func:`read`).

    Attributes:
        path: the file it came from.
        format_version: the file's format version (``<= FORMAT_VERSION``).
        backend: the backend that wrote it (``"torch"`` or ``"tensorflow"``).
        model_class: the class name of the saved model.
        parameters: ``{name: float32 ndarray}`` in the neutral layout, saved order.
        optimizer: the optimiser's ``state_dict()`` (``type``, ``step``, ``param_groups``,
            ``state``; a format-1 file's SGD state converted to it), or None.
        metadata: the user's ``{str: str}`` metadata.
    """

    path: str
    format_version: int
    backend: str
    model_class: str
    parameters: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None
    metadata: dict[str, str]


def _check_path(path: object, argument: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{argument} must be a str or os.PathLike, got {type(path).__name__}"
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ArgumentTypeError(f"{argument} must be a non-empty str path, got {text!r}")
    return text


def read(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint without a model: header, format version, every tensor.

    Raises:
        CheckpointError: the path is not a regular file (a directory, a FIFO, a device), or
            the file is truncated, not a safetensors file (a torch ``.pt`` zip or pickle, an
            HDF5 file, random bytes: the message names the format it recognises), not a twinnn
            checkpoint, internally inconsistent (malformed or too deeply nested JSON, settings
            out of range), or written by a newer twinnn.
        OSError: the file cannot be opened.
    """
    where = _check_path(path, "load(path)")
    data = read_regular_file(where)
    header = _parse_header(data, where)
    meta = _metadata_of(header, where)
    version = _format_version(meta, where)
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as exc:  # the safetensors decoder rejects corrupt offsets, dtypes, sizes
        raise CheckpointError(
            f"checkpoint {where!r}: cannot decode the tensors ({exc}); the file is corrupt"
        ) from exc
    parameters = _parameters_of(meta, tensors, where)
    if version == 1:
        optimizer, known_optimizer = _sgd_of_format_1(meta, tensors, where)
    else:
        optimizer, known_optimizer = _optimizer_of(meta, tensors, where)
    known = {_MODEL + n for n in parameters} | known_optimizer
    stray = sorted(set(tensors) - known)
    if stray:
        _corrupt(where, f"tensors {stray} are not listed in its metadata")
    return Checkpoint(
        path=where,
        format_version=version,
        backend=meta.get("twinnn.backend", "unknown"),
        model_class=meta.get("twinnn.model", "unknown"),
        parameters=parameters,
        optimizer=optimizer,
        metadata={k[len(_USER) :]: v for k, v in meta.items() if k.startswith(_USER)},
    )


def _corrupt(where: str, problem: str) -> NoReturn:
    raise CheckpointError(f"checkpoint {where!r} is corrupt: {problem}")


_LENGTH = 8  # a safetensors file starts with its JSON header's length, a little-endian u64

#: Signatures of formats people mistake for checkpoints, tried only on a file that is not
#: safetensors (see :func:`_parse_header`). A pickle is ``\x80``, protocol 2-5, then an opcode
#: (never ``\x00``, which a safetensors length of ``0x0?80`` would have there).
_FOREIGN_FORMATS = (
    (rb"PK\x03\x04|PK\x05\x06", "a zip archive (a torch.save .pt file, which holds a pickle?)"),
    (rb"\x80[\x02-\x05][^\x00]", "a pickle (an old torch.save .pt file?)"),
    (rb"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 file?)"),
    (rb"\x93NUMPY", "a NumPy .npy file"),
    (rb"\x1f\x8b", "a gzip-compressed file"),
    (rb"GGUF", "a GGUF file"),
)


def _parse_header(data: bytes, where: str) -> dict[str, Any]:
    """The JSON header of the safetensors file ``data``, or a CheckpointError saying what it is.

    Why in this order: byte 0 of a safetensors file is the low byte of its header length, so it
    takes any value -- 0x80, a pickle's first byte, for one header length in 256 -- and sniffing
    foreign formats first refused valid checkpoints. ``data`` is a safetensors file when its
    length field fits the file (and safetensors' limit) and the header starts with ``{``, as
    the format requires; only when it is not one is it compared with other formats.
    """
    size = int.from_bytes(data[:_LENGTH], "little")
    fits = len(data) > _LENGTH and size <= min(_HEADER_LIMIT, len(data) - _LENGTH)
    if not (fits and data[_LENGTH : _LENGTH + 1] == b"{"):
        raise CheckpointError(_not_safetensors(data, size, where))
    header = _decode_json(data[_LENGTH : _LENGTH + size], where, "the safetensors header")
    if not isinstance(header, dict):
        _corrupt(where, f"the header is a JSON {type(header).__name__}, expected an object")
    return dict(header)


def _not_safetensors(data: bytes, size: int, where: str) -> str:
    """Why ``data`` is not a safetensors file: the format it is, else the first check it fails."""
    for signature, name in _FOREIGN_FORMATS:
        if re.match(signature, data):
            return (
                f"checkpoint {where!r} must be a safetensors file written by twinnn.save, got "
                f"{name}; twinnn never unpickles files nor runs code from them (convert the "
                f"weights with twinnn.interop.torch / twinnn.interop.keras and save them)"
            )
    start = f"checkpoint {where!r} is not a safetensors file, or truncated or corrupt:"
    if len(data) <= _LENGTH:
        return f"{start} it has {len(data)} bytes, a safetensors file has {_LENGTH + 2} or more"
    if size > _HEADER_LIMIT:
        return f"{start} its header length field says {size} bytes, the limit is {_HEADER_LIMIT}"
    if size > len(data) - _LENGTH:
        return (
            f"{start} its header length field says {size} bytes, the file has "
            f"{len(data) - _LENGTH} after the length field"
        )
    found = data[_LENGTH : _LENGTH + 1]
    return f"{start} its header must start with '{{' at byte {_LENGTH}, got {found!r}"


def _decode_json(text: str | bytes, where: str, what: str) -> Any:
    """``json.loads`` of UTF-8 ``text``, every failure a CheckpointError naming ``what``.

    Why RecursionError: ``[[[[...`` nested deeper than Python's recursion limit makes ``json``
    raise RecursionError, not a JSONDecodeError (a ValueError, as UnicodeDecodeError is).
    """
    try:
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"checkpoint {where!r} is corrupt: {what} must be valid UTF-8 JSON, got an error: "
            f"{str(exc)[:200]}"
        ) from exc


def _metadata_of(header: dict[str, Any], where: str) -> dict[str, str]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or "twinnn.format_version" not in meta:
        raise CheckpointError(
            f"checkpoint {where!r} is a safetensors file but not a twinnn checkpoint "
            f"(its metadata has no 'twinnn.format_version')"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        _corrupt(where, "its metadata is not a mapping of str -> str")
    return meta


def _format_version(meta: dict[str, str], where: str) -> int:
    """The file's format version, refusing newer ones.

    Why not ``str.isdigit``: it accepts ``"²"``, which ``int`` rejects, and other Unicode
    digits; 9 digits at most keep ``int`` fast (it refuses over 4300).
    """
    text = meta["twinnn.format_version"]
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        _corrupt(
            where,
            f"twinnn.format_version must be a positive int of 1-9 ASCII digits, got {_brief(text)}",
        )
    version = int(text)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where!r} has format version {version}, written by a newer twinnn "
            f"({meta.get('twinnn.version', 'unknown version')}); this twinnn reads format "
            f"versions up to {FORMAT_VERSION}: upgrade twinnn to load it"
        )
    return version


def _json(meta: dict[str, str], key: str, where: str) -> Any:
    if key not in meta:
        _corrupt(where, f"metadata {key!r} is missing")
    return _decode_json(meta[key], where, f"metadata {key!r}")


#: dtypes of model tensors: float32 parameters and buffers, integer and bool buffers.
_MODEL_DTYPES = ("float32", "int32", "int64", "bool")


def _take(
    tensors: dict[str, np.ndarray],
    key: str,
    shape: tuple[int, ...],
    where: str,
    dtypes: tuple[str, ...] = ("float32",),
) -> np.ndarray:
    if key not in tensors:
        _corrupt(where, f"tensor {key!r} is listed in its metadata but missing")
    array = tensors[key]
    if array.dtype.name not in dtypes:
        expected = " or ".join(dtypes)
        _corrupt(where, f"tensor {key!r} has dtype {array.dtype}, expected {expected}")
    if array.shape != shape:
        _corrupt(
            where,
            f"tensor {key!r} has shape {describe_shape(array.shape)}, its metadata says "
            f"{describe_shape(shape)}",
        )
    return array


def _parameters_of(
    meta: dict[str, str], tensors: dict[str, np.ndarray], where: str
) -> dict[str, np.ndarray]:
    listing = _json(meta, "twinnn.parameters", where)
    ok = isinstance(listing, list) and all(
        isinstance(e, list)
        and len(e) == 2
        and isinstance(e[0], str)
        and isinstance(e[1], list)
        and all(isinstance(d, int) and d >= 0 for d in e[1])
        for e in listing
    )
    if not ok:
        _corrupt(where, "metadata 'twinnn.parameters' is not a list of [name, shape]")
    return {
        name: _take(tensors, _MODEL + name, tuple(shape), where, _MODEL_DTYPES)
        for name, shape in listing
    }


def _optimizer_of(
    meta: dict[str, str], tensors: dict[str, np.ndarray], where: str
) -> tuple[dict[str, Any] | None, set[str]]:
    """Format 2: the optimiser's state dict (its settings are checked by the optimiser's own
    ``load_state_dict`` when loaded) and the tensor keys it uses."""
    if "twinnn.optimizer" not in meta:
        return None, set()
    spec = _json(meta, "twinnn.optimizer", where)
    problem = _optimizer_spec_problem(spec)
    if problem is not None:
        _corrupt(where, f"metadata 'twinnn.optimizer' must be an optimizer state: {problem}")
    # in the groups' order, as state_dict() has it (not a set's order, which varies by run)
    state: dict[str, dict[str, np.ndarray]] = {
        n: {} for g in spec["param_groups"] for n in g["params"]
    }
    known = set()
    for key in tensors:
        if not key.startswith(_OPTIMIZER):
            continue
        slot, _, name = key[len(_OPTIMIZER) :].partition("/")
        if name not in state:
            _corrupt(where, f"tensor {key!r} belongs to no parameter of the optimizer")
        state[name][slot] = _take(tensors, key, tensors[key].shape, where)
        known.add(key)
    return {**spec, "state": state}, known


def _optimizer_spec_problem(spec: Any) -> str | None:
    """What is wrong with the structure of a format-2 ``twinnn.optimizer`` (None: nothing; the
    values are the optimiser's to check)."""
    if not isinstance(spec, dict):
        return f"a JSON object, got {_brief(spec)}"
    if not isinstance(spec.get("type"), str):
        return f"'type' must be the optimizer's class name, got {_brief(spec.get('type'))}"
    if not _is_step(spec.get("step")):
        return f"'step' must be an int in [0, 2**63), got {_brief(spec.get('step'))}"
    groups = spec.get("param_groups")
    if not isinstance(groups, list):
        return f"'param_groups' must be a list of groups, got {_brief(groups)}"
    for i, group in enumerate(groups):
        params = group.get("params") if isinstance(group, dict) else None
        if not (isinstance(params, list) and all(isinstance(n, str) for n in params)):
            return (
                f"'param_groups'[{i}] must be an object whose 'params' is a list of parameter "
                f"names, got {_brief(group)}"
            )
    return None


#: Steps are below 2**63 (torch and Keras count in int64). Why a bound: JSON ints have up to
#: 4300 digits, and a step past float's range loads but makes the next update raise
#: OverflowError (Adam's ``beta ** t``, Adagrad's ``k * lr_decay``).
_STEP_LIMIT = 2**63


def _is_step(value: object) -> bool:
    """Whether ``value`` is an update count: an int (not a bool) in ``[0, 2**63)``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _STEP_LIMIT


def _sgd_of_format_1(
    meta: dict[str, str], tensors: dict[str, np.ndarray], where: str
) -> tuple[dict[str, Any] | None, set[str]]:
    """Format 1 (SGD only): its settings and momentum buffers as today's SGD state dict. The
    file holds no step count: with momentum buffers the step is 1 (the buffers exist), else 0."""
    if "twinnn.optimizer" not in meta:
        return None, set()
    spec = _json(meta, "twinnn.optimizer", where)
    types = {"lr": float, "momentum": float, "nesterov": bool, "weight_decay": float}
    ok = (
        isinstance(spec, dict)
        and spec.get("type") == "SGD"
        and all(isinstance(spec.get(k), t) for k, t in types.items())
        and isinstance(spec.get("parameters"), list)
        and all(isinstance(n, str) for n in spec["parameters"])
        and _sgd_settings_in_range(spec)
    )
    if not ok:
        _corrupt(
            where, f"metadata 'twinnn.optimizer' must be a valid SGD state, got {_brief(spec)}"
        )
    state: dict[str, dict[str, np.ndarray]] = {n: {} for n in spec["parameters"]}
    if spec["momentum"] != 0.0:
        for name in spec["parameters"]:
            key = _BUFFER + name
            if key not in tensors:
                _corrupt(where, f"momentum buffer {key!r} is missing")
            state[name]["momentum_buffer"] = _take(tensors, key, tensors[key].shape, where)
    group = {k: spec[k] for k in types}
    group.update({"params": list(spec["parameters"]), "dampening": 0.0})
    step = 1 if spec["momentum"] != 0.0 else 0
    optimizer = {"type": "SGD", "step": step, "param_groups": [group], "state": state}
    return optimizer, {_BUFFER + n for n in state if state[n]}


def _sgd_settings_in_range(spec: dict[str, Any]) -> bool:
    """Whether :class:`~twinnn.SGD` accepts these settings (JSON allows NaN and Infinity)."""
    lr, momentum, decay = spec["lr"], spec["momentum"], spec["weight_decay"]
    finite = math.isfinite(lr) and math.isfinite(decay)
    in_range = lr >= 0.0 and 0.0 <= momentum < 1.0 and decay >= 0.0
    return finite and in_range and (momentum > 0.0 or not spec["nesterov"])


_REPR = reprlib.Repr()


def _brief(value: object) -> str:
    """A ``repr`` cut short: a hostile file must not make the error message huge (or deep)."""
    return _REPR.repr(value)
