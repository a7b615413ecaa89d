"""Checkpoints: one safetensors file, written atomically, readable under either backend.

File layout (format version 2). Tensors in the neutral layout, float32 (integer and bool
buffers keep their dtype)::

    model/<parameter or buffer name>    e.g. model/encoder.w_ih_l0   (in, 4H)
    optimizer/<slot>/<parameter name>   e.g. optimizer/exp_avg/encoder.w_ih_l0, same shape

String metadata (safetensors ``__metadata__``)::

    twinnn.format_version  "2"
    twinnn.backend         backend that wrote the file: "torch" or "tensorflow"
    twinnn.version         twinnn version that wrote the file
    twinnn.model           the model's class name (informative only)
    twinnn.parameters      JSON [[name, [dim, ...]], ...] in state_dict() order (parameters,
                           then persistent buffers)
    twinnn.optimizer       JSON {"type": "Adam", "step": k, "param_groups": [{"params":
                           [names], "lr": float or {"schedule": {...}}, options...}]}
                           (only with an optimizer: its ``state_dict()`` less the slots)
    user.<key>             the caller's ``metadata`` entries

Format 1 (SGD only: ``optimizer/momentum_buffer/<name>`` and ``twinnn.optimizer`` JSON
``{"type": "SGD", "lr", "momentum", "nesterov", "weight_decay", "parameters"}``) is still read;
it holds no step count.

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

from twinnn.distributed.world import world
from twinnn.errors import ArgumentTypeError, CheckpointError, StateDictError, describe_shape
from twinnn.io.files import atomic_write
from twinnn.io.format import (
    _MODEL,
    _OPTIMIZER,
    _USER,
    FORMAT_VERSION,
    Checkpoint,
    _brief,
    _check_path,
    read,
)
from twinnn.module import Module
from twinnn.optim import Optimizer

__all__ = ["FORMAT_VERSION", "Checkpoint", "load", "read", "save"]


def save(
    path: str | os.PathLike[str],
    model: Module,
    optimizer: Optimizer | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``model`` (and ``optimizer``'s state) to ``path`` as one safetensors file.

    The write is atomic: readers, and a crash at any moment, see either the previous file or
    the complete new one.

    Args:
        path: the file to write (``.safetensors`` by convention); its folder must exist.
        model: a :class:`twinnn.Module` of either backend.
        optimizer: a twinnn optimizer (:class:`twinnn.SGD`, :class:`twinnn.Adam`, ...); its
            ``state_dict()`` is saved too: type, step count, parameter groups (learning rate
            or schedule, options) as metadata, every slot (``exp_avg``, ...) as a tensor.
        metadata: extra ``{str: str}`` entries (an epoch, a git hash), returned by :func:`load`.

    Raises:
        ArgumentError: ``optimizer`` updates parameters that are not ``model``'s (an optimiser
            built for another model: its state would be saved under the wrong names).
        ArgumentTypeError: an argument of the wrong type.
        OSError: the file cannot be written; ``path`` then still holds its previous contents.

    Under data parallelism (``twinnn run -n N``) only rank 0 writes (after the same checks on
    every rank); the other ranks return at once. Call :func:`twinnn.distributed.barrier`
    before other ranks ``load`` the file.
    """
    target = _check_path(path, "save(path)")
    _check_model_and_optimizer("save", model, optimizer)
    user = _check_metadata(metadata)
    if not world().is_main:  # data parallelism: every rank holds the same state; rank 0 writes
        return
    from twinnn import __version__

    state = model.state_dict()
    # np.array(order="C"), not np.ascontiguousarray, which makes a 0-d array 1-d
    tensors = {_MODEL + name: np.array(a, order="C") for name, a in state.items()}
    header: dict[str, str] = {
        "twinnn.format_version": str(FORMAT_VERSION),
        "twinnn.backend": model.backend,
        "twinnn.version": __version__,
        "twinnn.model": type(model).__name__,
        "twinnn.parameters": json.dumps([[n, list(a.shape)] for n, a in state.items()]),
    }
    if optimizer is not None:
        opt = optimizer.state_dict()
        spec = {"type": opt["type"], "step": opt["step"], "param_groups": opt["param_groups"]}
        header["twinnn.optimizer"] = json.dumps(spec)
        for name, slots in opt["state"].items():
            for slot, value in slots.items():
                tensors[f"{_OPTIMIZER}{slot}/{name}"] = np.array(value, np.float32, order="C")
    header.update({_USER + k: v for k, v in user.items()})
    atomic_write(target, safetensors.numpy.save(tensors, metadata=header))


def _check_model_and_optimizer(function: str, model: object, optimizer: object) -> None:
    """Types first, then that ``optimizer`` belongs to ``model``: checked before any file is
    touched, so a mix-up (``save(path, model_a, optimizer_of_b)``) changes nothing."""
    if not isinstance(model, Module):
        raise ArgumentTypeError(
            f"{function}(model) must be a twinnn.Module, got {type(model).__name__}"
        )
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise ArgumentTypeError(
            f"{function}(optimizer) must be a twinnn optimizer (SGD, Adam, ...) or None, got "
            f"{type(optimizer).__name__}"
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
    path: str | os.PathLike[str], model: Module, optimizer: Optimizer | None = None
) -> dict[str, str]:
    """Load a checkpoint written by :func:`save` (under either backend) into ``model``.

    The whole file is read and checked first -- format version, every name, shape and dtype,
    and, with ``optimizer``, its type, settings and slots (``optimizer.state_problems``) --
    and only then are the model and the optimiser changed. On any problem a
    :class:`~twinnn.errors.CheckpointError` lists them all and neither is changed. The
    optimiser's step count, learning rate (or schedule) and options are restored too, as
    torch's ``load_state_dict`` does. A format-1 file (SGD only) holds no step count: its step
    is 1 where it has momentum buffers, else 0.

    Args:
        path: a file written by :func:`save`.
        model: a model with exactly the saved parameter names and shapes.
        optimizer: an optimiser of the saved type, over the same parameter names and groups,
            whose options keep the same slots (momentum on or off, ``amsgrad``, ``centered``,
            ...); None skips the optimiser state.

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
            f"checkpoint {ckpt.path!r} (a {_cut(ckpt.model_class)} saved under "
            f"{_cut(ckpt.backend)}) does not fit this {type(model).__name__}: "
            + "; ".join(_shorten(p) for p in problems)
            + " (nothing was loaded)"
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
    impl = model._backend
    targets = dict(model._state_items())
    current = {n: impl.static_shape(t) for n, t in targets.items()}
    saved = {n: a.shape for n, a in ckpt.parameters.items()}
    problems = _shape_problems("parameters", saved, current)
    for name, array in ckpt.parameters.items():
        if name in targets and array.dtype.name != impl.dtype_name(targets[name]):
            problems.append(
                f"tensor {name!r}: the file has dtype {array.dtype}, this one "
                f"{impl.dtype_name(targets[name])}"
            )
    return problems


def _optimizer_problems(ckpt: Checkpoint, optimizer: Optimizer) -> list[str]:
    state = ckpt.optimizer
    if state is None:
        return ["the file holds no optimizer state (it was saved without one)"]
    if state["type"] != type(optimizer).__name__:
        return [
            f"the file holds the state of an optimizer of type {_brief(state['type'])}, this "
            f"optimizer is of type {type(optimizer).__name__!r}"
        ]
    shape_of = optimizer._backend.static_shape
    current = {n: shape_of(p) for n, p in zip(optimizer.names, optimizer.params, strict=True)}
    saved: dict[str, tuple[int | None, ...]] = {}
    for group in state["param_groups"]:
        for name in group["params"]:
            slots = state["state"].get(name, {})
            saved[name] = next(iter(slots.values())).shape if slots else current.get(name, ())
    problems = _shape_problems("optimizer parameters", saved, current)
    if problems:
        return problems
    try:
        refused = optimizer.state_problems(state)
    except RecursionError:  # a schedule nested past Python's recursion limit (SequentialLR)
        refused = ["its learning-rate schedule is nested too deeply to rebuild"]
    return [f"optimizer: {p}" for p in refused]


_PROBLEM_LIMIT = 1000


def _cut(text: str, limit: int = 100) -> str:
    """``text`` (a class or backend name from the file) cut to ``limit`` characters."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _shorten(problem: str) -> str:
    """A problem cut to ``_PROBLEM_LIMIT`` characters. Why: the messages quote the file's
    values (a schedule's setting, a list of names), and a hostile file must not make the error
    message huge."""
    if len(problem) <= _PROBLEM_LIMIT:
        return problem
    return f"{problem[: _PROBLEM_LIMIT - 40]} ... ({len(problem)} characters in all)"
