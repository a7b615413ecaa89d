"""Checkpoint files on disk: the atomic write (temporary file, fsync, rename, folder fsync),
the clean-up of temporaries a killed save left behind, and the bounded read of a regular file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat

from twinnn.errors import CheckpointError

__all__ = ["atomic_write", "read_regular_file"]


def atomic_write(path: str, data: bytes) -> None:
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


def read_regular_file(where: str) -> bytes:
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
