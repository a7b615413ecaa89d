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

Before writing, ``save`` also removes the ``.<name>.<pid>.<hex>.tmp`` files that a save killed
mid-write left next to the same target, when their process is gone.

Reading is defensive, because a checkpoint may come from anywhere: only a regular file is read
(a FIFO or ``/dev/zero`` behind a symlink would block or never end), and no more than the size
``fstat`` reported; the file is recognised as safetensors by its own structure before any
foreign signature (zip, pickle, HDF5, ...) is looked for, since byte 0 of a safetensors file is
the low byte of its header length and can take any value; malformed JSON, however deeply
nested, and out-of-range settings are refused.

File-system errors (``FileNotFoundError``, ``PermissionError``, a full disk) propagate as the
usual :class:`OSError`; every problem with the file's *contents* (or a path that is not a regular
file) is a :class:`~twinnn.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import safetensors.numpy

from twinnn.errors import ArgumentTypeError, CheckpointError, StateDictError, describe_shape
from twinnn.io.files import atomic_write
from twinnn.io.format import (
    _BUFFER,
    _MODEL,
    _USER,
    FORMAT_VERSION,
    Checkpoint,
    _check_path,
    read,
)
from twinnn.module import Module
from twinnn.optim import SGD

__all__ = ["FORMAT_VERSION", "Checkpoint", "load", "read", "save"]


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

    Raises:
        ArgumentError: ``optimizer`` updates parameters that are not ``model``'s (an optimiser
            built for another model: its state would be saved under the wrong names).
        ArgumentTypeError: an argument of the wrong type.
        OSError: the file cannot be written; ``path`` then still holds its previous contents.
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
    atomic_write(target, safetensors.numpy.save(tensors, metadata=header))


def _check_model_and_optimizer(function: str, model: object, optimizer: object) -> None:
    """Types first, then that ``optimizer`` belongs to ``model``: checked before any file is
    touched, so a mix-up (``save(path, model_a, optimizer_of_b)``) changes nothing."""
    if not isinstance(model, Module):
        raise ArgumentTypeError(
            f"{function}(model) must be a twinnn.Module, got {type(model).__name__}"
        )
    if optimizer is not None and not isinstance(optimizer, SGD):
        raise ArgumentTypeError(
            f"{function}(optimizer) must be a twinnn.SGD or None, got {type(optimizer).__name__}"
        )
    if optimizer is not None:
        optimizer.check_params_of(model, function)


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

    Raises:
        ArgumentError: ``optimizer`` updates parameters that are not ``model``'s.
        CheckpointError: see :func:`read`, or the file does not fit ``model``/``optimizer``.
        OSError: the file cannot be opened.
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
