"""``python -m benchmarks.distributed``: twinnn's data-parallel step against hand-written DDP
and a hand-written ``MultiWorkerMirroredStrategy`` loop, 2 processes on this machine.

For each backend, one ``twinnn run -n 2 --backend B benchmarks/distributed_worker.py`` (so
both implementations run in the same two processes, with the same environment: torchrun's
variables and ``TF_CONFIG``); every rank sets the same thread count for its framework
(``--threads``, default 1: ``torch.set_num_threads`` / TensorFlow's intra- and inter-op
threads, and ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS``,
``TF_NUM_INTEROP_THREADS``). See :mod:`benchmarks.distributed_worker` for what each rank
builds and times.

Reported per backend and workload: the median over rounds of the per-step time (per round
the slower rank's), twinnn over native, the communication share of a step (the all-reduce
alone, timed in the same processes and rounds, over the step: twinnn's buffer over twinnn's
step, the native gradients' all-reduce over the native step), one small collective's time,
and the first-loss difference (twinnn's global loss against the native global loss: the mean
of the ranks' local means for DDP, the sum of the ranks' ``compute_average_loss`` for TF).

Typical use::

    python -m benchmarks.distributed                         # both backends, both workloads
    python -m benchmarks.distributed --backend torch --workload lstm_len --steps 20
    python -m benchmarks.distributed --tiny --backend torch  # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import BACKENDS
from benchmarks.run import _cpu_name, _installed, _load, _worker_env

__all__ = ["WORKLOADS", "main", "parse_args", "render", "run"]

_ROOT = Path(__file__).resolve().parent.parent
_WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
WORKLOADS = ("lstm_len", "lm_lstm")
_ALIASES = {"torch": "torch", "pytorch": "torch", "tensorflow": "tensorflow", "tf": "tensorflow"}
#: Default steps per timed block, by workload (a block takes ~0.3-1 s at 1 thread).
_STEPS = {"lstm_len": 10, "lm_lstm": 3}
_ROUNDS, _WARMUP = 15, 3
_TINY = (3, 2, 2)  # rounds, steps, warm-up steps
_WORLD = 2
_TIMED = (
    "twinnn",
    "native",
    "comm_twinnn",
    "comm_native",
    "gather",
    "twinnn_local",
    "native_local",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed",
        description="twinnn's data-parallel step (2 processes) against DDP and MWMS.",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*_ALIASES, "all"],
        help="backend(s) to measure (repeatable; default: every installed one)",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=[*WORKLOADS, "all"],
        help="workload(s) to run (repeatable; default: both)",
    )
    parser.add_argument("--steps", type=int, help="steps per timed block (default 10 / 3)")
    parser.add_argument("--rounds", type=int, help=f"timed rounds (default {_ROUNDS})")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="seconds one backend's run may take before it is stopped (default 1200)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smoke-test sizes (tests the harness; timings mean nothing)",
    )
    parser.add_argument(
        "--no-local",
        action="store_true",
        help="skip the steps without communication (the second table)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = parser.parse_args(argv)
    for name in ("steps", "rounds", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    return args


def _launch(spec: dict[str, Any], backend: str, threads: int, timeout: float) -> dict[str, Any]:
    """``twinnn run -n 2`` of the worker; returns ``{"ranks": [...]}`` or ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="twinnn-dist-bench-") as tmp:
        command = [
            sys.executable,
            "-m",
            "twinnn",
            "run",
            "-n",
            str(_WORLD),
            "--backend",
            backend,
            "--timeout",
            "300",
            str(_WORKER),
            json.dumps({**spec, "out": tmp}),
        ]
        env = _worker_env(backend, "cpu", threads)
        proc = subprocess.Popen(
            command,
            cwd=_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # `twinnn run` stops its ranks' process groups
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            return {"error": f"stopped after {timeout:g} s", "stderr": err[-3000:]}
        ranks = []
        for r in range(_WORLD):
            try:
                ranks.append(json.loads((Path(tmp) / f"rank{r}.json").read_text()))
            except (OSError, ValueError):
                ranks.append({"error": f"rank {r} wrote no result"})
        errors = [r["error"] for r in ranks if "error" in r]
        if proc.returncode != 0 or errors:
            why = errors[0] if errors else f"twinnn run exited with {proc.returncode}"
            return {"error": why, "stderr": err[-3000:], "stdout": out[-2000:], "ranks": ranks}
        return {"ranks": ranks}


def _combine(backend: str, ranks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """One workload's summary from every rank's record."""
    entries = [r["workloads"][name] for r in ranks]
    first = entries[0]
    out: dict[str, Any] = {
        k: first[k] for k in ("description", "global_batch", "local_batch", "parameters")
    }
    for impl in _TIMED:
        if impl not in first:
            continue
        samples = [e[impl]["samples_s"] for e in entries]
        per_round = [max(values) for values in zip(*samples, strict=True)]
        out[impl] = {
            "median_ms": 1e3 * statistics.median(per_round),
            "q25_ms": 1e3 * statistics.quantiles(per_round, n=4, method="inclusive")[0],
            "q75_ms": 1e3 * statistics.quantiles(per_round, n=4, method="inclusive")[2],
            "per_round_ms": [1e3 * s for s in per_round],
            "notes": first[impl]["notes"],
        }
    twinnn_losses = first["twinnn"]["losses"]
    native_parts = [e["native"]["losses"] for e in entries]
    if backend == "torch":  # DDP: every rank's local mean (even shards: the global mean)
        native_losses = [statistics.fmean(parts) for parts in zip(*native_parts, strict=True)]
    else:  # compute_average_loss: every rank's sum / global count
        native_losses = [sum(parts) for parts in zip(*native_parts, strict=True)]
    out["twinnn_losses"], out["native_losses"] = twinnn_losses, native_losses
    out["loss_rel_diff"] = max(
        abs(a - b) / max(abs(b), 1e-30) for a, b in zip(twinnn_losses, native_losses, strict=True)
    )
    out["first_loss_rel_diff"] = abs(twinnn_losses[0] - native_losses[0]) / max(
        abs(native_losses[0]), 1e-30
    )
    if "agreement" in first:
        out["agreement"] = first["agreement"]
    t, n = out["twinnn"]["median_ms"], out["native"]["median_ms"]
    out["ratio"] = t / n
    out["comm_share_twinnn"] = out["comm_twinnn"]["median_ms"] / t
    out["comm_share_native"] = out["comm_native"]["median_ms"] / n
    return out


def run(args: argparse.Namespace, log: Any = sys.stderr) -> dict[str, Any]:
    """Every measurement ``args`` asks for; returns the JSON document."""
    chosen = args.backend or ["all"]
    backends = list(BACKENDS) if "all" in chosen else [_ALIASES[b] for b in chosen]
    backends = list(dict.fromkeys(backends))
    chosen = args.workload or ["all"]
    workloads = list(WORKLOADS) if "all" in chosen else list(dict.fromkeys(chosen))
    rounds, steps_tiny, warmup = _TINY if args.tiny else (_ROUNDS, None, _WARMUP)
    rounds = args.rounds or rounds
    steps = {w: args.steps or steps_tiny or _STEPS[w] for w in workloads}
    meta: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "processes": _WORLD,
        "threads": args.threads,
        "rounds": rounds,
        "steps": steps,
        "warmup_steps": warmup,
        "tiny": bool(args.tiny),
        "load_before": _load(),
    }
    results: dict[str, Any] = {}
    started = time.time()
    for backend in dict.fromkeys(backends):
        if not _installed(backend):
            results[backend] = {"skipped": f"{backend} is not installed"}
            continue
        print(f"[{backend}] 2 processes: {', '.join(workloads)} (load {_load()})", file=log)
        spec = {
            "workloads": workloads,
            "rounds": rounds,
            "steps": steps,
            "warmup": warmup,
            "threads": args.threads,
            "tiny": bool(args.tiny),
            "local": not args.no_local,
        }
        launched = _launch(spec, backend, args.threads, args.timeout)
        if "error" in launched:
            print(f"  failed: {launched['error']}\n{launched.get('stderr', '')}", file=log)
            results[backend] = {"error": launched["error"]}
            continue
        ranks = launched["ranks"]
        results[backend] = {
            "threads_in_use": ranks[0]["threads"],
            "workloads": {w: _combine(backend, ranks, w) for w in workloads},
        }
    meta["load_after"] = _load()
    meta["wall_s"] = time.time() - started
    return {"meta": meta, "results": results}


def render(doc: dict[str, Any]) -> str:
    """The Markdown table of a :func:`run` document."""
    meta = doc["meta"]
    lines = [
        f"CPU: {meta['cpu']} ({meta['cpu_count']} cores); {meta['processes']} processes x "
        f"{meta['threads']} thread(s); {meta['rounds']} interleaved rounds; median step time "
        f"(per round the slower rank); load average before {meta['load_before']}, after "
        f"{meta['load_after']}.",
        "",
        "| backend | workload | twinnn | native | twinnn/native | comm share (twinnn / native) "
        "| small collective | first-loss Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, entry in doc["results"].items():
        if "workloads" not in entry:
            why = str(entry.get("skipped") or entry.get("error")).splitlines()[0]
            lines.append(f"| {backend} | — | {why} | | | | | |")
            continue
        for name, w in entry["workloads"].items():
            t, n = w["twinnn"]["median_ms"], w["native"]["median_ms"]
            comm = (
                f"{100 * w['comm_share_twinnn']:.0f}% ({w['comm_twinnn']['median_ms']:.2f} ms) / "
                f"{100 * w['comm_share_native']:.0f}% ({w['comm_native']['median_ms']:.2f} ms)"
            )
            lines.append(
                f"| {backend} | {name} | {t:.2f} ms | {n:.2f} ms | **{t / n:.2f}x** | {comm} "
                f"| {w['gather']['median_ms']:.3f} ms | {w['first_loss_rel_diff']:.0e} |"
            )
    return "\n".join(lines + _breakdown(doc))


def _breakdown(doc: dict[str, Any]) -> list[str]:
    """Rows of where the time goes: each step with and without communication."""
    rows = []
    for backend, entry in doc["results"].items():
        for name, w in entry.get("workloads", {}).items():
            if "twinnn_local" not in w:
                continue
            cells = []
            for impl in ("twinnn", "native"):
                dist, alone = w[impl]["median_ms"], w[f"{impl}_local"]["median_ms"]
                cells += [f"{dist:.2f} ms", f"{alone:.2f} ms", f"{dist - alone:+.2f} ms"]
            rows.append(
                f"| {backend} | {name} | {' | '.join(cells)} "
                f"| {w['comm_twinnn']['median_ms']:.2f} / {w['comm_native']['median_ms']:.2f} ms |"
            )
    if not rows:
        return []
    return [
        "",
        "Where the time goes: each step in the world of 2, the same step on the rank's shard "
        "without communication (twinnn's train_step built as in a world of 1; the "
        "single-process native code), their difference, and the all-reduce alone.",
        "",
        "| backend | workload | twinnn | twinnn alone | overhead | native | native alone "
        "| overhead | all-reduce alone (twinnn / native) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    print(render(doc))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    return 1 if any("error" in e for e in doc["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
