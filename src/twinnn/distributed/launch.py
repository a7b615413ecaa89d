"""``twinnn run -n N [--backend B] [--timeout S] SCRIPT [ARGS...]``: N local processes of one
script, wired for each framework's own distributed engine.

Each process is ``python SCRIPT ARGS`` in the current directory, in its own session (so
stopping it also stops what it started), with the environment of the command plus:

- torchrun's variables: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
  ``GROUP_RANK=0``, ``GROUP_WORLD_SIZE=1``, ``ROLE_RANK``, ``ROLE_WORLD_SIZE``,
  ``ROLE_NAME=default``, ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT`` (a free port, the same for
  every rank);
- ``TF_CONFIG``: ``{"cluster": {"worker": ["127.0.0.1:p0", ...]}, "task": {"type": "worker",
  "index": rank}}`` with N distinct free ports (distinct from ``MASTER_PORT`` too);
- ``TWINNN_DIST_TIMEOUT``: how long a rank waits for the others in a collective before
  raising (``--timeout``, default 300 s); ``TWINNN_BACKEND`` when ``--backend`` is given;
  ``PYTHONUNBUFFERED=1`` unless set, so lines arrive as they are printed.

Every line a process writes to stdout (stderr) is copied to the command's stdout (stderr) with
the prefix ``[rank r] ``. When a process exits non-zero or is killed, the others get
``GRACE_S`` seconds to end (and print their own errors), then SIGTERM, then SIGKILL
``KILL_AFTER_S`` seconds later, each on its whole process group; the command then names the
rank that failed first and exits with its exit code (1 if it was killed by a signal). A rank
that only lost its peer (an uncaught ``DistributedError``: exit code ``PEER_LOST_EXIT``) is not
named when another rank failed for a reason of its own, even if it ended first. SIGINT,
SIGTERM or SIGHUP to the command stops every process the same way (exit ``128 + signal``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from twinnn import backends as registry
from twinnn.distributed.world import PEER_LOST_EXIT
from twinnn.errors import TwinnnError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRACE_S",
    "KILL_AFTER_S",
    "TIMEOUT_ENV",
    "add_parser",
    "free_ports",
    "launch",
    "rank_env",
    "run_command",
]

#: The variable a rank reads for the time it waits for the others in a collective (seconds).
TIMEOUT_ENV = "TWINNN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
#: After the first failure, how long the other ranks may take to end on their own.
GRACE_S = 5.0
#: After the stop signal, how long before SIGKILL.
KILL_AFTER_S = 5.0
HOST = "127.0.0.1"
EXIT_USAGE = 2
_PREFIX = "twinnn run: "


# --- the environment of each rank -----------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on ``127.0.0.1`` now (all bound to port 0 at once,
    then released). Another program may take one before the ranks bind it: the window is the
    start of the processes."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def rank_env(
    rank: int,
    world_size: int,
    *,
    master_port: int,
    tf_ports: Sequence[int],
    timeout: float,
    backend: str | None = None,
) -> dict[str, str]:
    """The variables ``twinnn run`` adds to rank ``rank``'s environment (see the module doc)."""
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "1",
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(world_size),
        "ROLE_NAME": "default",
        "MASTER_ADDR": HOST,
        "MASTER_PORT": str(master_port),
        "TF_CONFIG": json.dumps(
            {
                "cluster": {"worker": [f"{HOST}:{port}" for port in tf_ports]},
                "task": {"type": "worker", "index": rank},
            }
        ),
        TIMEOUT_ENV: format(timeout, "g"),
    }
    if backend is not None:
        env["TWINNN_BACKEND"] = backend
    return env


# --- output forwarding ----------------------------------------------------------------------------


class _Writer:
    """Writes whole lines to a stream from several threads (bytes when it has a buffer)."""

    def __init__(self, stream: IO[str], lock: threading.Lock) -> None:
        self.stream = stream
        self.lock = lock

    def line(self, data: bytes) -> None:
        if not data.endswith(b"\n"):
            data += b"\n"
        with self.lock:
            buffer = getattr(self.stream, "buffer", None)
            try:
                if buffer is not None:
                    self.stream.flush()
                    buffer.write(data)
                    buffer.flush()
                else:
                    self.stream.write(data.decode("utf-8", errors="replace"))
                    self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: drop, keep reading
                pass


def _forward(pipe: IO[bytes], prefix: bytes, writer: _Writer) -> None:
    with pipe:
        for data in iter(pipe.readline, b""):
            writer.line(prefix + data)


# --- stopping -------------------------------------------------------------------------------------


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to ``process``'s process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _describe(code: int) -> str:
    return f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"


def _stop(processes: Sequence[subprocess.Popen[bytes]], signum: int, kill_after: float) -> None:
    """``signum`` to every running process's group; SIGKILL after ``kill_after`` seconds; then
    SIGKILL to every group, so nothing a rank started is left behind."""
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signum)
    deadline = time.monotonic() + kill_after
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
    for process in processes:
        _signal_group(process, signal.SIGKILL)
    for process in processes:
        process.wait()


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise ``_Interrupted`` in the main thread meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    signums = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _ranks(ranks: Sequence[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


# --- the launcher ---------------------------------------------------------------------------------


def launch(
    nprocs: int,
    script: str,
    args: Sequence[str] = (),
    *,
    backend: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    grace: float = GRACE_S,
    kill_after: float = KILL_AFTER_S,
) -> int:
    """Run ``python SCRIPT ARGS`` as ranks ``0 .. nprocs-1`` (see the module doc); return the
    exit status: 0 when every rank exits 0, else the exit code of the rank that failed first
    (1 if a signal killed it), or ``128 + signal`` when this process is interrupted."""
    ports = free_ports(nprocs + 1)
    master_port, tf_ports = ports[0], ports[1:]
    base = dict(os.environ)
    base.setdefault("PYTHONUNBUFFERED", "1")
    lock = threading.Lock()
    out, err = _Writer(sys.stdout, lock), _Writer(sys.stderr, lock)
    events: queue.Queue[tuple[int, int]] = queue.Queue()
    processes: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []

    def watch(rank: int, process: subprocess.Popen[bytes]) -> None:
        events.put((rank, process.wait()))

    def thread(target: Any, *targs: Any) -> None:
        worker = threading.Thread(target=target, args=targs, daemon=True)
        worker.start()
        threads.append(worker)

    codes: dict[int, int] = {}
    failures: list[int] = []  # ranks in the order they failed
    first: int | None = None
    interrupted: int | None = None
    stopped: list[int] = []
    with _interruptible():
        try:
            for rank in range(nprocs):
                env = base | rank_env(
                    rank,
                    nprocs,
                    master_port=master_port,
                    tf_ports=tf_ports,
                    timeout=timeout,
                    backend=backend,
                )
                process = subprocess.Popen(
                    [sys.executable, script, *args],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # stopping a rank stops what it started
                )
                processes.append(process)
                prefix = f"[rank {rank}] ".encode()
                assert process.stdout is not None and process.stderr is not None
                thread(_forward, process.stdout, prefix, out)
                thread(_forward, process.stderr, prefix, err)
                thread(watch, rank, process)
            deadline: float | None = None
            while len(codes) < nprocs:
                wait = 0.2 if deadline is None else min(deadline - time.monotonic(), 0.2)
                if wait <= 0:
                    break
                try:
                    rank, code = events.get(timeout=wait)
                except queue.Empty:
                    continue
                codes[rank] = code
                if code != 0:
                    failures.append(rank)
                if code != 0 and first is None:
                    first, deadline = rank, time.monotonic() + grace
        except _Interrupted as exc:
            interrupted = exc.signum
        finally:
            stopped = [r for r, p in enumerate(processes) if p.poll() is None]
            # the interrupted launcher passes its signal on (Python scripts see SIGINT as
            # KeyboardInterrupt); otherwise SIGTERM
            try:
                _stop(processes, signal.SIGTERM if interrupted is None else interrupted, kill_after)
            except _Interrupted:  # a second Ctrl-C: no more waiting
                _stop(processes, signal.SIGKILL, 0.0)
            for worker in threads:
                worker.join(timeout=kill_after)
    note = f"; stopped {_ranks(stopped)}" if stopped else ""
    if interrupted is not None:
        err.line(f"{_PREFIX}interrupted by {_signal_name(interrupted)}{note}".encode())
        return 128 + interrupted
    if first is None:
        return 0
    # A rank that only lost its peer (it exits PEER_LOST_EXIT) may end before the rank that
    # caused it; the cause is the first failure that is not such a consequence.
    causes = [r for r in failures if codes[r] != PEER_LOST_EXIT]
    first = causes[0] if causes else first
    code = codes[first]
    err.line(f"{_PREFIX}rank {first} failed first ({_describe(code)}){note}".encode())
    return code if code > 0 else 1


# --- the command line -----------------------------------------------------------------------------


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _backend(text: str) -> str:
    try:
        return registry.canonical_name(text, "--backend")
    except TwinnnError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``run`` command to ``commands`` (an ``argparse`` subparsers object)."""
    run: argparse.ArgumentParser = commands.add_parser(
        "run",
        allow_abbrev=False,
        usage="twinnn run -n N [--backend B] [--timeout SECONDS] SCRIPT [ARGS...]",
        help="run a script as N processes of one data-parallel training (this machine)",
        description=(
            "Start N processes of `python SCRIPT ARGS` in the current directory, with the "
            "variables of torch.distributed (torchrun's RANK, WORLD_SIZE, MASTER_ADDR/PORT, ...) "
            "and of tf.distribute (a TF_CONFIG per worker) set for one machine; "
            "twinnn.distributed.init() in the script joins them. Each output line is prefixed "
            "with [rank r]. Everything after SCRIPT is passed to the script."
        ),
        epilog=(
            "exit status: 0 every rank succeeded; 2 bad usage; otherwise the exit code of the "
            f"rank that failed first (1 if a signal killed it): the others are stopped after "
            f"{GRACE_S:g} s"
        ),
    )
    run.add_argument(
        "-n",
        "--nproc-per-node",
        dest="nprocs",
        type=_count,
        required=True,
        metavar="N",
        help="the number of processes (ranks)",
    )
    run.add_argument(
        "--backend",
        type=_backend,
        default=None,
        metavar="B",
        help="torch or tensorflow, set as TWINNN_BACKEND (default: as inherited)",
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=(
            f"how long a rank waits for the others in a collective before raising, as "
            f"{TIMEOUT_ENV} (default {DEFAULT_TIMEOUT_S:g})"
        ),
    )
    run.add_argument("script", metavar="SCRIPT", help="the Python script to run")
    run.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="its arguments")
    run.set_defaults(parser=run)
    return run


def run_command(args: argparse.Namespace) -> int:
    """``twinnn run`` with parsed ``args``; bad usage exits 2 through ``args.parser``."""
    parser: argparse.ArgumentParser = args.parser
    if not Path(args.script).is_file():
        parser.error(f"SCRIPT {args.script!r} is not a file")
    if args.backend is not None and args.backend not in registry.installed_frameworks():
        parser.error(
            f"--backend {args.backend}: not installed "
            f"(installed: {registry.installed_frameworks() or 'none'})"
        )
    return launch(
        args.nprocs, args.script, list(args.args), backend=args.backend, timeout=args.timeout
    )
