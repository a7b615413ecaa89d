"""Running a script once per backend for ``twinnn compare`` and reading what it reported.

Each run is ``python SCRIPT ARGS`` with ``TWINNN_BACKEND``, ``TWINNN_SEED`` and
``TWINNN_REPORT_FILE`` set, in its own session (so a timeout also ends the processes it
started); its stdout and stderr go to files, so a chatty script can never block on a full pipe.

Each run's working directory is its own fresh, empty temporary directory, removed afterwards:
a file the script writes at a relative path (a checkpoint it reloads if present, say) is
private to that run and never read by the other backend's run, nor left in the user's
directory. So that the command means what it meant in the user's directory, the script path,
every argument that names an existing file or directory (``data.npz``, ``--data=data/x.npz``)
and every relative ``PYTHONPATH`` entry are made absolute first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twinnn._compare import Run
from twinnn.report import REPORT_ENV, SEED_ENV

__all__ = ["absolute_args", "read_reports", "run_all"]

_TAIL_LINES = 20


def read_reports(path: Path) -> tuple[dict[str, dict[int, float]], int]:
    """Parse a report file: ``metric -> {step: value}`` (last value wins) and the number of
    unreadable lines (a run killed mid-write leaves at most one)."""
    metrics: dict[str, dict[int, float]] = {}
    bad = 0
    if not path.exists():
        return metrics, bad
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            step = int(record.pop("step"))
            values = {str(k): float(v) for k, v in record.items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            bad += 1
            continue
        for name, value in values.items():
            metrics.setdefault(name, {})[step] = value
    return metrics, bad


def _absolute_if_exists(text: str, cwd: Path) -> str:
    if not text or os.path.isabs(text) or not os.path.lexists(cwd / text):
        return text
    return str(cwd / text)


def absolute_args(args: list[str], cwd: Path) -> list[str]:
    """``args`` with each one that names an existing path relative to ``cwd`` made absolute:
    a whole argument (``data.npz``, ``out/``), or the value of ``--option=value``; options and
    anything else are unchanged."""
    out = []
    for arg in args:
        if arg.startswith("-"):
            option, equals, value = arg.partition("=")
            out.append(option + equals + _absolute_if_exists(value, cwd) if equals else arg)
        else:
            out.append(_absolute_if_exists(arg, cwd))
    return out


def _absolute_pythonpath(value: str, cwd: Path) -> str:
    """``PYTHONPATH`` with relative entries (an empty one is the current directory) made
    absolute against ``cwd``."""
    return os.pathsep.join(
        entry if os.path.isabs(entry) else str(cwd / entry) for entry in value.split(os.pathsep)
    )


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_script(
    backend: str,
    script: str,
    args: list[str],
    *,
    seed: int,
    workdir: Path,
    cwd: Path,
    origin: Path,
) -> subprocess.Popen[bytes]:
    """Start ``python SCRIPT ARGS`` in ``cwd`` with ``TWINNN_BACKEND``, ``TWINNN_SEED`` and the
    report file set; its stdout and stderr go to files in ``workdir``. ``SCRIPT``, the
    arguments naming existing paths and relative ``PYTHONPATH`` entries are taken relative to
    ``origin`` (the user's directory) and passed as absolute paths. Collect it with
    ``finish``."""
    env = dict(os.environ)
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = _absolute_pythonpath(env["PYTHONPATH"], origin)
    env.update(
        {
            "TWINNN_BACKEND": backend,
            SEED_ENV: str(seed),
            REPORT_ENV: str(workdir / f"{backend}.jsonl"),
        }
    )
    with (
        open(workdir / f"{backend}.out", "wb") as out,
        open(workdir / f"{backend}.err", "wb") as err,
    ):
        return subprocess.Popen(
            [sys.executable, str(origin / script), *absolute_args(args, origin)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            start_new_session=True,  # so a timeout can end the script's own children too
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the script and whatever it started (its process group, on POSIX)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            os.killpg(process.pid, signal.SIGKILL)
    else:  # pragma: no cover - Windows
        process.kill()
    process.wait()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def finish(
    backend: str,
    process: subprocess.Popen[bytes],
    started: float,
    deadline: float | None,
    workdir: Path,
) -> Run:
    """Wait for ``process`` until ``deadline`` (``time.monotonic()``), then read what it left."""
    status = "ok"
    try:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        process.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        status = "timeout"
        _kill(process)
    seconds = time.monotonic() - started
    if status == "ok" and process.returncode != 0:
        status = "failed"
    metrics, bad = read_reports(workdir / f"{backend}.jsonl")
    return Run(
        backend=backend,
        status=status,
        returncode=process.returncode,
        seconds=round(seconds, 3),
        stdout=_tail(_read(workdir / f"{backend}.out"), 200),
        stderr_tail=_tail(_read(workdir / f"{backend}.err")),
        metrics=metrics,
        bad_lines=bad,
    )


def run_all(
    backends: list[str],
    script: str,
    args: list[str],
    *,
    seed: int,
    timeout: float | None,
    parallel: bool,
) -> list[Run]:
    """Run the script once per backend (at the same time when ``parallel``).

    Each run starts in its own fresh, empty temporary directory; the script path, arguments
    naming existing paths and relative ``PYTHONPATH`` entries are made absolute against the
    current directory first (see the module doc). The scripts run in their own sessions (so a
    timeout ends their children too); if this process is interrupted, they are killed rather
    than left running.
    """
    origin = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="twinnn-compare-") as tmp:
        workdir = Path(tmp)
        started: dict[str, tuple[subprocess.Popen[bytes], float, float | None]] = {}
        runs: list[Run] = []

        def start(name: str) -> None:
            cwd = workdir / f"{name}.cwd"
            cwd.mkdir()
            t0 = time.monotonic()
            proc = run_script(
                name, script, args, seed=seed, workdir=workdir, cwd=cwd, origin=origin
            )
            started[name] = (proc, t0, None if timeout is None else t0 + timeout)

        try:
            for name in backends:
                start(name)
                if not parallel:
                    runs.append(finish(name, *started[name], workdir))
            if parallel:
                runs = [finish(name, *started[name], workdir) for name in backends]
        finally:
            for proc, _, _ in started.values():
                if proc.poll() is None:
                    _kill(proc)
        return runs
