"""The data-parallel path on one GPU (issue 13), torch backend: ``twinnn run -n 1`` against the
same script run alone, ``train_step(..., shards=2)`` against the global batch, GPU against CPU,
and two processes on one GPU refused at start-up. Uses ``tests/dp_script.py``; prints a table
of the largest differences and exits non-zero when a check fails."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "tests" / "dp_script.py")


def run(tag: str, command: list[str], device: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TWINNN_BACKEND": "torch", "TWINNN_DEVICE": device}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150, cwd=tmp)
    print(f"{tag}: exit {done.returncode}")
    return done


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def largest(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, str]:
    worst = max(a, key=lambda k: float(np.max(np.abs(a[k] - b[k])) if a[k].size else 0.0))
    return float(np.max(np.abs(a[worst] - b[worst]))), worst


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    launcher = [sys.executable, "-m", "twinnn", "run", "-n"]
    runs = {
        "alone, GPU": ([sys.executable, SCRIPT, "single", str(tmp / "single.npz")], "gpu"),
        "twinnn run -n 1, GPU": (
            [*launcher, "1", SCRIPT, "deterministic", str(tmp / "one.npz")],
            "auto",
        ),
        "shards=2, GPU": ([sys.executable, SCRIPT, "shards", str(tmp / "shards.npz")], "gpu"),
        "alone, CPU": ([sys.executable, SCRIPT, "single", str(tmp / "cpu.npz")], "cpu"),
    }
    ok = True
    for tag, (command, device) in runs.items():
        done = run(tag, command, device, tmp)
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-3000:])
            ok = False
    if not ok:
        return 1
    single, one = load(tmp / "single.npz"), load(tmp / "one.npz")
    shards, cpu = load(tmp / "shards.npz"), load(tmp / "cpu.npz")
    print("| compared | largest |diff| | where | expected |")
    print("|---|---|---|---|")
    for name, a, b, bound in (
        ("twinnn run -n 1 vs alone (GPU)", one, single, 0.0),
        ("shards=2 vs global batch (GPU)", shards, single, 1e-4),
        ("GPU vs CPU (alone)", single, cpu, 1e-4),
    ):
        diff, where = largest(a, b)
        ok &= diff <= bound
        print(f"| {name} | {diff:.3g} | {where} | <= {bound:g} |")
    two = run("twinnn run -n 2 on one GPU", [*launcher, "2", SCRIPT, "fast", "x.npz"], "auto", tmp)
    refused = two.returncode != 0 and "NCCL needs a GPU of its own" in two.stdout + two.stderr
    print("two processes on one GPU refused with a clear error:", refused)
    if not refused:
        print(two.stdout[-2000:], two.stderr[-2000:])
    return 0 if ok and refused else 1


if __name__ == "__main__":
    sys.exit(main())
