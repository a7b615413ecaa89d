"""Checkpoints: one safetensors file, written atomically, readable under either backend.

File layout (format version 1). Tensors, all float32 in the neutral layout::

    model/<parameter name>                      e.g. model/encoder.w_ih_l0   (in, 4H)
    optimizer/momentum_buffer/<parameter name>  SGD with momentum only, same shapes

String metadata (safetensors ``__metadata__``)::

    twinnn.format_version  "1"
    twinnn.backend         backend that wrote the file: "torch" or "tensorflow"
    twinnn.version         twinnn version that wrote the file
    twinnn.model           the model's class name (informative only)
    twinnn.parameters      JSON [[name, [dim, ...]], ...] in named_parameters() order
    twinnn.optimizer       JSON {"type": "SGD", "lr", "momentum", "nesterov",
                           "weight_decay", "parameters": [names]} (only with an optimizer)
    user.<key>             the caller's ``metadata`` entries

Saving writes a temporary file next to the target, flushes and fsyncs it, renames it over the
target with :func:`os.replace` and fsyncs the folder: a crash at any moment leaves either the
previous checkpoint or the new one, never a mix. Loading reads and checks the whole file
(format version, names, shapes, dtypes, the optimiser's settings) before changing the model or
the optimiser. Nothing in the file is ever executed or unpickled: safetensors is a JSON header
plus raw little-endian arrays.

File-system errors (``FileNotFoundError``, ``PermissionError``, a full disk) propagate as the
usual :class:`OSError`; every problem with the file's *contents* is a
:class:`~twinnn.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.numpy

from twinnn.errors import ArgumentTypeError, CheckpointError, StateDictError, describe_shape
from twinnn.module import Module
from twinnn.optim import SGD

__all__ = ["FORMAT_VERSION", "Checkpoint", "load", "read", "save"]

#: The format version this twinnn writes; it reads every version up to this one.
FORMAT_VERSION = 1

_MODEL = "model/"
_BUFFER = "optimizer/momentum_buffer/"
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
        optimizer: ``SGD.state_dict()``-style dict (``lr``, ``momentum``, ``nesterov``,
            ``weight_decay``, ``momentum_buffers``) plus ``"parameters"`` (the names), or None.
        metadata: the user's ``{str: str}`` metadata.
    """

    path: str
    format_version: int
    backend: str
    model_class: str
    parameters: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None
    metadata: dict[str, str]


# --- saving ---------------------------------------------------------------------------------------
def save(
    path: str | os.PathLike[str],
    model: Module,
    optimizer: SGD | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``model`` (and ``optimizer``'s state) to ``path`` as one safetensors file.

    The write is atomic: readers, and a crash at any moment, see either the previous file or
    the complete new one.

    Args:
        path: the file to write (``.safetensors`` by convention); its folder must exist.
        model: a :class:`twinnn.Module` of either backend.
        optimizer: a :class:`twinnn.SGD`; its hyper-parameters and momentum buffers (by
            parameter name) are saved too.
        metadata: extra ``{str: str}`` entries (an epoch, a git hash), returned by :func:`load`.
    """
    target = _check_path(path, "save(path)")
    _check_model_and_optimizer("save", model, optimizer)
    user = _check_metadata(metadata)
    from twinnn import __version__

    state = model.state_dict()
    tensors = {_MODEL + name: np.ascontiguousarray(a) for name, a in state.items()}
    header: dict[str, str] = {
        "twinnn.format_version": str(FORMAT_VERSION),
        "twinnn.backend": model.backend,
        "twinnn.version": __version__,
        "twinnn.model": type(model).__name__,
        "twinnn.parameters": json.dumps([[n, list(a.shape)] for n, a in state.items()]),
    }
    if optimizer is not None:
        opt = optimizer.state_dict()
        header["twinnn.optimizer"] = json.dumps(
            {
                "type": "SGD",
                "lr": opt["lr"],
                "momentum": opt["momentum"],
                "nesterov": opt["nesterov"],
                "weight_decay": opt["weight_decay"],
                "parameters": list(optimizer.names),
            }
        )
        for name, buffer in opt["momentum_buffers"].items():
            tensors[_BUFFER + name] = np.ascontiguousarray(buffer, dtype=np.float32)
    header.update({_USER + k: v for k, v in user.items()})
    _atomic_write(target, safetensors.numpy.save(tensors, metadata=header))


def _check_model_and_optimizer(function: str, model: object, optimizer: object) -> None:
    if not isinstance(model, Module):
        raise ArgumentTypeError(
            f"{function}(model) must be a twinnn.Module, got {type(model).__name__}"
        )
    if optimizer is not None and not isinstance(optimizer, SGD):
        raise ArgumentTypeError(
            f"{function}(optimizer) must be a twinnn.SGD or None, got {type(optimizer).__name__}"
        )


def _check_path(path: object, argument: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{argument} must be a str or os.PathLike, got {type(path).__name__}"
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ArgumentTypeError(f"{argument} must be a non-empty str path, got {text!r}")
    return text


def _check_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ArgumentTypeError(
            f"save(metadata) must be a dict of str -> str or None, got {type(metadata).__name__}"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise ArgumentTypeError(f"save(metadata) keys must be non-empty str, got {key!r}")
        if not isinstance(value, str):
            raise ArgumentTypeError(
                f"save(metadata)[{key!r}] must be a str, got {type(value).__name__} {value!r} "
                f"(convert numbers with str())"
            )
    return dict(metadata)


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` always holds a complete file.

    A uniquely named temporary file in the same folder (so the rename stays on one file
    system) is written, flushed and fsynced, then :func:`os.replace`-d over ``path``; the
    folder is fsynced so the rename itself survives a power cut. On any failure the
    temporary file is removed and ``path`` is untouched. A process killed with SIGKILL
    mid-write can leave a ``.<name>.<pid>.<hex>.tmp`` file behind; it never shadows ``path``.
    """
    real = os.path.realpath(path)  # write through a symlink rather than replacing it
    folder, name = os.path.split(real)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise OSError(exc.errno, f"twinnn.save cannot write {path!r}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    if os.name == "nt":  # Windows cannot open a folder for fsync; NTFS journals the rename
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and FUSE mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)


# --- reading --------------------------------------------------------------------------------------
def read(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint without a model: header, format version, every tensor.

    Raises:
        CheckpointError: the file is truncated, not a safetensors file (a torch ``.pt`` pickle,
            random bytes), not a twinnn checkpoint, internally inconsistent, or written by a
            newer twinnn.
        OSError: the file cannot be opened.
    """
    where = _check_path(path, "load(path)")
    with open(where, "rb") as file:
        data = file.read()
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
    optimizer = _optimizer_of(meta, tensors, where)
    known = {_MODEL + n for n in parameters}
    if optimizer is not None:
        known |= {_BUFFER + n for n in optimizer["momentum_buffers"]}
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


def _corrupt(where: str, problem: str) -> None:
    raise CheckpointError(f"checkpoint {where!r} is corrupt: {problem}")


def _parse_header(data: bytes, where: str) -> dict[str, Any]:
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        raise CheckpointError(
            f"checkpoint {where!r} is a zip archive or pickle (a torch.save .pt file?), not a "
            f"safetensors file; twinnn never unpickles files (convert the weights with "
            f"twinnn.interop.torch instead)"
        )
    if len(data) < 8:
        raise CheckpointError(
            f"checkpoint {where!r} is {len(data)} bytes, too short for a safetensors header "
            f"(truncated or empty file)"
        )
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, _HEADER_LIMIT):
        raise CheckpointError(
            f"checkpoint {where!r}: the safetensors header claims {size} bytes but the file "
            f"has {len(data) - 8} after the length field (truncated, or not a safetensors file)"
        )
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {where!r}: the safetensors header is not valid JSON ({exc}); "
            f"the file is corrupt or not a safetensors file"
        ) from exc
    if not isinstance(header, dict):
        _corrupt(where, f"the header is a JSON {type(header).__name__}, expected an object")
    return dict(header)


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
    text = meta["twinnn.format_version"]
    if not text.isdigit() or int(text) < 1:
        _corrupt(where, f"twinnn.format_version must be a positive int, got {text!r}")
    version = int(text)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where!r} has format version {version}, written by a newer twinnn "
            f"({meta.get('twinnn.version', 'unknown version')}); this twinnn reads format "
            f"versions up to {FORMAT_VERSION}: upgrade twinnn to load it"
        )
    return version


def _json(meta: dict[str, str], key: str, where: str) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {where!r} is corrupt: metadata {key!r} is missing or not JSON"
        ) from exc


def _take(
    tensors: dict[str, np.ndarray], key: str, shape: tuple[int, ...], where: str
) -> np.ndarray:
    if key not in tensors:
        _corrupt(where, f"tensor {key!r} is listed in its metadata but missing")
    array = tensors[key]
    if array.dtype != np.float32:
        _corrupt(where, f"tensor {key!r} has dtype {array.dtype}, expected float32")
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
    return {name: _take(tensors, _MODEL + name, tuple(shape), where) for name, shape in listing}


def _optimizer_of(
    meta: dict[str, str], tensors: dict[str, np.ndarray], where: str
) -> dict[str, Any] | None:
    if "twinnn.optimizer" not in meta:
        return None
    spec = _json(meta, "twinnn.optimizer", where)
    types = {"lr": float, "momentum": float, "nesterov": bool, "weight_decay": float}
    ok = (
        isinstance(spec, dict)
        and spec.get("type") == "SGD"
        and all(isinstance(spec.get(k), t) for k, t in types.items())
        and isinstance(spec.get("parameters"), list)
        and all(isinstance(n, str) for n in spec["parameters"])
    )
    if not ok:
        _corrupt(where, f"metadata 'twinnn.optimizer' is not a valid SGD state: {spec!r}")
    buffers: dict[str, np.ndarray] = {}
    if spec["momentum"] != 0.0:
        for name in spec["parameters"]:
            key = _BUFFER + name
            if key not in tensors:
                _corrupt(where, f"momentum buffer {key!r} is missing")
            buffers[name] = _take(tensors, key, tensors[key].shape, where)
    state = {k: spec[k] for k in types}
    state["momentum_buffers"] = buffers
    state["parameters"] = list(spec["parameters"])
    return state


# --- loading --------------------------------------------------------------------------------------
def load(
    path: str | os.PathLike[str], model: Module, optimizer: SGD | None = None
) -> dict[str, str]:
    """Load a checkpoint written by :func:`save` (under either backend) into ``model``.

    The whole file is read and checked first -- format version, every name, shape and dtype,
    and, with ``optimizer``, its settings and momentum buffers -- and only then are the model
    and the optimiser changed. On any problem a :class:`~twinnn.errors.CheckpointError` lists
    them all and neither is changed. The optimiser's learning rate is restored too.

    Args:
        path: a file written by :func:`save`.
        model: a model with exactly the saved parameter names and shapes.
        optimizer: a :class:`twinnn.SGD` with the saved ``momentum``, ``nesterov`` and
            ``weight_decay``, over the same parameter names; None skips the optimiser state.

    Returns:
        The user metadata saved with the file (``{str: str}``).
    """
    _check_model_and_optimizer("load", model, optimizer)
    ckpt = read(path)
    problems = _model_problems(ckpt, model)
    if optimizer is not None:
        problems += _optimizer_problems(ckpt, optimizer)
    if problems:
        raise CheckpointError(
            f"checkpoint {ckpt.path!r} (a {ckpt.model_class} saved under {ckpt.backend}) does "
            f"not fit this {type(model).__name__}: " + "; ".join(problems) + " (nothing was loaded)"
        )
    previous = model.state_dict() if optimizer is not None else None
    try:
        model.load_state_dict(ckpt.parameters)
        if optimizer is not None and ckpt.optimizer is not None:
            optimizer.load_state_dict(ckpt.optimizer)
    except StateDictError as exc:  # not expected after the checks above; keep both unchanged
        if previous is not None:
            model.load_state_dict(previous)
        raise CheckpointError(f"checkpoint {ckpt.path!r}: {exc}") from exc
    return dict(ckpt.metadata)


def _shape_problems(
    what: str,
    saved: Mapping[str, tuple[int | None, ...]],
    current: Mapping[str, tuple[int | None, ...]],
) -> list[str]:
    problems = []
    missing = [n for n in current if n not in saved]
    unexpected = [n for n in saved if n not in current]
    if missing:
        problems.append(f"{what} {missing} are not in the file")
    if unexpected:
        problems.append(f"the file has {what} {unexpected} that this one lacks")
    for name, shape in saved.items():
        if name in current and tuple(current[name]) != tuple(shape):
            problems.append(
                f"{what[:-1]} {name!r}: the file has shape {describe_shape(shape)}, this one "
                f"{describe_shape(current[name])}"
            )
    return problems


def _model_problems(ckpt: Checkpoint, model: Module) -> list[str]:
    shape_of = model._backend.static_shape
    current = {n: shape_of(p) for n, p in model.named_parameters()}
    saved = {n: a.shape for n, a in ckpt.parameters.items()}
    return _shape_problems("parameters", saved, current)


def _optimizer_problems(ckpt: Checkpoint, optimizer: SGD) -> list[str]:
    state = ckpt.optimizer
    if state is None:
        return ["the file holds no optimizer state (it was saved without one)"]
    problems = [
        f"optimizer {key}: the file has {state[key]!r}, this SGD {getattr(optimizer, key)!r}"
        for key in ("momentum", "nesterov", "weight_decay")
        if state[key] != getattr(optimizer, key)
    ]
    shape_of = optimizer._backend.static_shape
    current = {n: shape_of(p) for n, p in zip(optimizer.names, optimizer.params, strict=True)}
    saved_names = state["parameters"]
    buffers = state["momentum_buffers"]
    saved: dict[str, tuple[int | None, ...]] = {
        n: (buffers[n].shape if n in buffers else current.get(n, ())) for n in saved_names
    }
    problems += _shape_problems("optimizer parameters", saved, current)
    return problems
