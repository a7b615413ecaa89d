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

import contextlib
import json
import math
import os
import re
import reprlib
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

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
    _atomic_write(target, safetensors.numpy.save(tensors, metadata=header))


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
    mid-write can leave a ``.<name>.<pid>.<hex>.tmp`` file behind; it never shadows ``path``,
    and the next save to ``path`` removes it (:func:`_remove_stale_temporaries`).
    """
    real = os.path.realpath(path)  # write through a symlink rather than replacing it
    folder, name = os.path.split(real)
    _remove_stale_temporaries(folder, name)
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


def _temporary_pattern(name: str) -> re.Pattern[str]:
    """The names :func:`_atomic_write` gives its temporary files for ``name``; group 1 is the
    pid. ASCII digits and lowercase hex only, exactly as written: nothing else is ever removed."""
    return re.compile(rf"\.{re.escape(name)}\.([0-9]{{1,10}})\.[0-9a-f]{{8}}\.tmp")


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete the temporary files of saves to ``name`` whose process is gone.

    Why: a save killed mid-write (SIGKILL, OOM killer) cannot clean up, and each leftover is
    as large as a checkpoint; a training loop that is killed and restarted would pile them up.
    A file whose process is alive -- this one (another thread saving the same path) or another
    one -- may still be being written and is left alone, as is every name that does not match
    :func:`_temporary_pattern` exactly. Failures are ignored: cleaning up must never make a
    save fail.
    """
    pattern = _temporary_pattern(name)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and not _process_may_exist(int(match[1])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def _process_may_exist(pid: int) -> bool:
    """False only when ``pid`` is surely no live process (``kill(pid, 0)`` finds none).

    True when unsure: this process, pid 0, a pid too large to signal, another user's process
    (``PermissionError``), and always on Windows, where ``os.kill`` would terminate the process.
    """
    if pid <= 0 or pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


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
        CheckpointError: the path is not a regular file (a directory, a FIFO, a device), or
            the file is truncated, not a safetensors file (a torch ``.pt`` zip or pickle, an
            HDF5 file, random bytes: the message names the format it recognises), not a twinnn
            checkpoint, internally inconsistent (malformed or too deeply nested JSON, settings
            out of range), or written by a newer twinnn.
        OSError: the file cannot be opened.
    """
    where = _check_path(path, "load(path)")
    data = _read_regular_file(where)
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


def _corrupt(where: str, problem: str) -> NoReturn:
    raise CheckpointError(f"checkpoint {where!r} is corrupt: {problem}")


_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)  # Windows: no newline translation
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO without a writer would block the open itself
    | getattr(os, "O_NOCTTY", 0)  # a terminal must not become our controlling terminal
)

_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def _read_regular_file(where: str) -> bytes:
    """The bytes of ``where`` (symlinks followed), which must be a regular file.

    Why: reading a FIFO blocks forever and reading ``/dev/zero`` never ends (until memory runs
    out). The type is checked with ``fstat`` on the open descriptor, so a file swapped in
    between a check and the open cannot slip through, and at most the size ``fstat`` reported
    is read, so a file that grows meanwhile cannot make us read more.
    """
    fd = os.open(where, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in _KINDS if test(info.st_mode)), "special file")
            raise CheckpointError(
                f"checkpoint {where!r} must be a regular file, got a {kind} "
                f"(mode {stat.filemode(info.st_mode)}); twinnn does not read from it"
            )
        with open(fd, "rb", closefd=False) as file:
            return file.read(info.st_size)
    finally:
        os.close(fd)


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
        and _sgd_settings_in_range(spec)
    )
    if not ok:
        _corrupt(
            where, f"metadata 'twinnn.optimizer' must be a valid SGD state, got {_brief(spec)}"
        )
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


def _sgd_settings_in_range(spec: dict[str, Any]) -> bool:
    """Whether :class:`~twinnn.SGD` accepts these settings (JSON allows NaN and Infinity)."""
    lr, momentum, decay = spec["lr"], spec["momentum"], spec["weight_decay"]
    finite = math.isfinite(lr) and math.isfinite(decay)
    in_range = lr >= 0.0 and 0.0 <= momentum < 1.0 and decay >= 0.0
    return finite and in_range and (momentum > 0.0 or not spec["nesterov"])


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _brief(value: object) -> str:
    """A ``repr`` cut short: a hostile file must not make the error message huge (or deep)."""
    return _REPR.repr(value)


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
