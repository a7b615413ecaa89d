"""``python -m benchmarks``: twinnn's train step against native code and Keras 3.

For each backend the parent spawns fresh worker processes (:mod:`benchmarks.worker`), one at a
time, so a framework is never measured while another is loaded and Keras reads the right
``KERAS_BACKEND``:

* one ``timing`` process: every workload, implementations interleaved (see
  :mod:`benchmarks.timing`);
* one ``memory`` process per implementation (its first import is also an import-time sample);
* ``--import-repeats - 1`` more ``import`` processes per implementation, interleaved.

It prints Markdown tables (medians, ratios, spread, import times, peak memory) and, with
``--json FILE``, writes everything, raw samples included. Typical use::

    python -m benchmarks                        # full run, every backend and workload
    python -m benchmarks --quick                # ~30 s smoke run
    python -m benchmarks --backend torch --workload lstm_len --device gpu --json gpu.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import BACKENDS, DROPOUT_PAIRS, IMPLEMENTATIONS, SCHEMA_VERSION

__all__ = ["main", "parse_args", "render"]

_ROOT = Path(__file__).resolve().parent.parent
_BACKEND_ALIASES = {
    "torch": "torch",
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
}
_WORKLOAD_NAMES = (
    "linear_seed",
    "linear_big",
    "lstm_len",
    "lstm_adam",
    "lm_lstm",
    "lm_lstm_nodrop",
    "transformer_small",
    "cnn_small",
)

_LABELS = {"twinnn": "twinnn", "native": "native", "keras3": "Keras 3"}

#: (rounds, block seconds, warm-up seconds, memory steps, import repeats)
_FULL = (21, 0.05, 0.5, 10, 3)
_QUICK = (3, 0.01, 0.05, 2, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Median train-step time of twinnn against native code and Keras 3.",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*_BACKEND_ALIASES, "all"],
        help="backend(s) to measure (repeatable; default: every installed one)",
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=[*_WORKLOAD_NAMES, "all"],
        help="workload(s) to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, help="timing rounds per implementation (default 21; quick 3)"
    )
    parser.add_argument(
        "--import-repeats",
        type=int,
        help="fresh processes per import-time sample (default 3; quick 1)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="auto: the GPU if the framework sees one, else the CPU (default)",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    parser.add_argument(
        "--threads",
        type=int,
        help=(
            "CPU threads per framework (OMP_NUM_THREADS, MKL_NUM_THREADS, TF_NUM_INTRAOP_THREADS, "
            "TF_NUM_INTEROP_THREADS in every worker; default: each framework's own choice)"
        ),
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="shrink every workload to a smoke-test size (tests the harness; timings meaningless)",
    )
    parser.add_argument(
        "--timing-only", action="store_true", help="skip the import-time and memory processes"
    )
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = parser.parse_args(argv)
    for name in ("repeats", "import_repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def _backends(args: argparse.Namespace) -> list[str]:
    chosen = args.backend or ["all"]
    names = list(BACKENDS) if "all" in chosen else [_BACKEND_ALIASES[b] for b in chosen]
    return list(dict.fromkeys(names))


def _workloads(args: argparse.Namespace) -> list[str]:
    chosen = args.workload or ["all"]
    return list(_WORKLOAD_NAMES) if "all" in chosen else list(dict.fromkeys(chosen))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def _worker_env(backend: str, device: str, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if threads is not None:
        env.update(dict.fromkeys(_THREAD_VARIABLES, str(threads)))
    env["TWINNN_BACKEND"] = backend
    env["KERAS_BACKEND"] = backend
    env["TWINNN_DEVICE"] = device
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"  # hide GPUs from every framework, Keras included
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _spawn(
    spec: dict[str, Any], backend: str, device: str, log: Any, threads: int | None = None
) -> dict[str, Any]:
    """Run one worker; return its JSON result (``{"error": ...}`` if it died)."""
    with tempfile.TemporaryDirectory(prefix="twinnn-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        command = [sys.executable, "-m", "benchmarks.worker", json.dumps({**spec, "out": out})]
        proc = subprocess.run(
            command,
            cwd=_ROOT,
            env=_worker_env(backend, device, threads),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        try:
            with open(out) as f:
                result: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            result = {"error": f"worker exited with {proc.returncode} and wrote no result"}
        if "error" in result:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            print(f"  worker failed: {result['error']}\n{tail}", file=log)
        return result


def _median(xs: list[float]) -> float | None:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return None
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def run(args: argparse.Namespace, log: Any = sys.stderr) -> dict[str, Any]:
    """Run every measurement that ``args`` asks for; return the JSON document."""
    rounds, block_s, warmup_s, mem_steps, import_repeats = _QUICK if args.quick else _FULL
    rounds = args.repeats or rounds
    import_repeats = args.import_repeats or import_repeats
    workloads = _workloads(args)
    started = time.time()
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "argv": sys.argv[1:],
        "quick": bool(args.quick),
        "tiny": bool(args.tiny),
        "threads": args.threads,
        "device_requested": args.device,
        "rounds": rounds,
        "block_s": block_s,
        "warmup_s": warmup_s,
        "memory_steps": mem_steps,
        "import_repeats": import_repeats,
        "workloads": workloads,
        "load_before": _load(),
    }
    results: dict[str, Any] = {}
    for backend in _backends(args):
        if not _installed(backend):
            results[backend] = {"skipped": f"{backend} is not installed"}
            print(f"[{backend}] skipped: not installed", file=log)
            continue
        entry: dict[str, Any] = {}
        results[backend] = entry
        print(f"[{backend}] timing {', '.join(workloads)} (load {_load()})", file=log)
        entry["timing"] = _spawn(
            {
                "mode": "timing",
                "backend": backend,
                "device": args.device,
                "workloads": workloads,
                "rounds": rounds,
                "block_s": block_s,
                "warmup_s": warmup_s,
                "tiny": bool(args.tiny),
            },
            backend,
            args.device,
            log,
            args.threads,
        )
        if args.timing_only:
            continue
        samples: dict[str, list[float]] = {"framework": [], "twinnn": [], "keras3": []}
        entry["memory"] = {}
        for impl in IMPLEMENTATIONS:
            print(f"[{backend}] memory + import: {impl}", file=log)
            mem = _spawn(
                {
                    "mode": "memory",
                    "backend": backend,
                    "impl": impl,
                    "device": args.device,
                    "workloads": workloads,
                    "steps": mem_steps,
                    "tiny": bool(args.tiny),
                },
                backend,
                args.device,
                log,
                args.threads,
            )
            if "import_s" in mem:
                samples["framework" if impl == "native" else impl].append(mem.pop("import_s"))
            entry["memory"][impl] = mem
        for _ in range(import_repeats - 1):
            for impl in IMPLEMENTATIONS:
                res = _spawn(
                    {"mode": "import", "backend": backend, "impl": impl},
                    backend,
                    "cpu",
                    log,
                    args.threads,
                )
                if "import_s" in res:
                    samples["framework" if impl == "native" else impl].append(res["import_s"])
        print(f"[{backend}] imports: {import_repeats} sample(s) each", file=log)
        entry["imports"] = {
            name: {"median_s": _median(xs), "samples_s": xs} for name, xs in samples.items()
        }
    meta["load_after"] = _load()
    meta["wall_s"] = time.time() - started
    return {"schema": SCHEMA_VERSION, "meta": meta, "results": results}


# --- report -------------------------------------------------------------------------------------


def _us(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} ms" if value >= 10_000 else f"{value:.0f} µs"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _dropout_cost(doc: dict[str, Any]) -> list[str]:
    """Rows of the cost of dropout: per implementation, the median step time of a workload
    with dropout minus that of the same workload without (both timed in the same interleaved
    rounds)."""
    rows = []
    for backend, entry in doc["results"].items():
        workloads = entry.get("timing", {}).get("workloads", {})
        for with_drop, without in DROPOUT_PAIRS:
            a = workloads.get(with_drop, {}).get("implementations", {})
            b = workloads.get(without, {}).get("implementations", {})
            cells = []
            for impl in IMPLEMENTATIONS:
                if "median_us" in a.get(impl, {}) and "median_us" in b.get(impl, {}):
                    da, db = a[impl]["median_us"], b[impl]["median_us"]
                    cells.append(
                        f"{_us(da - db) if da >= db else '-' + _us(db - da)} "
                        f"({100 * (da - db) / db:+.0f}%)"
                    )
                else:
                    cells.append("—")
            if any(c != "—" for c in cells):
                rows.append(f"| {backend} | {with_drop} - {without} | {' | '.join(cells)} |")
    if not rows:
        return []
    return [
        "",
        "Cost of dropout: median step time with dropout minus without (timed in the same "
        "interleaved rounds), and as a share of the step without.",
        "",
        "| backend | workloads | twinnn | native | Keras 3 |",
        "|---|---|---|---|---|",
        *rows,
    ]


def render(doc: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run` document."""
    meta = doc["meta"]
    lines = [
        f"CPU: {meta['cpu']} ({meta['cpu_count']} cores); load average before "
        f"{meta['load_before']}, after {meta['load_after']}; {meta['rounds']} interleaved "
        f"rounds per implementation; median per-step time (spread = IQR / median)"
        + (f"; {meta['threads']} CPU thread(s) per framework." if meta.get("threads") else "."),
        "",
        "| backend | workload | device | twinnn | native | Keras 3 | twinnn/native "
        "| twinnn/Keras 3 | spread t / n / k | first-loss Δ (n, k) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, entry in doc["results"].items():
        timing = entry.get("timing", {})
        if "skipped" in entry or "error" in timing:
            why = entry.get("skipped") or timing.get("error")
            lines.append(f"| {backend} | — | — | {why} | | | | | | |")
            continue
        for name, w in timing["workloads"].items():
            if "skipped" in w:
                lines.append(f"| {backend} | {name} | — | skipped: {w['skipped']} | | | | | | |")
                continue
            impls = w["implementations"]
            cells = []
            spreads = []
            for impl in IMPLEMENTATIONS:
                r = impls.get(impl, {})
                cells.append(
                    "error"
                    if "error" in r
                    else "not installed"
                    if "skipped" in r
                    else _us(r.get("median_us"))
                )
                spreads.append(f"{r['spread_pct']:.0f}%" if "spread_pct" in r else "—")
            diffs = ", ".join(
                f"{w[k]:.0e}" if k in w else "—"
                for k in ("loss_rel_diff_native", "loss_rel_diff_keras3")
            )
            lines.append(
                f"| {backend} | {name} | {timing.get('device', '?')} | {' | '.join(cells)} "
                f"| {_ratio(w.get('ratio_native'))} | {_ratio(w.get('ratio_keras3'))} "
                f"| {' / '.join(spreads)} | {diffs} |"
            )
            for impl in IMPLEMENTATIONS:
                if "error" in impls.get(impl, {}):
                    error = impls[impl]["error"].replace("|", "/")
                    lines.append(
                        f"| {backend} | {name} | {_LABELS[impl]} failed: {error} |" + " |" * 7
                    )
    lines += _dropout_cost(doc)
    imports = [(b, e["imports"]) for b, e in doc["results"].items() if "imports" in e]
    if imports:
        lines += [
            "",
            "Import time in a fresh process (median of samples): the framework alone, "
            "`import twinnn; twinnn.set_backend(...)`, `import keras`.",
            "",
            "| backend | framework | twinnn | Keras 3 | twinnn - framework |",
            "|---|---|---|---|---|",
        ]
        for backend, imp in imports:
            fw, tw, ks = (imp[k]["median_s"] for k in ("framework", "twinnn", "keras3"))
            delta = f"{tw - fw:+.2f} s" if fw is not None and tw is not None else "—"
            row = " | ".join("—" if v is None else f"{v:.2f} s" for v in (fw, tw, ks))
            lines.append(f"| {backend} | {row} | {delta} |")
    memory = [(b, e["memory"]) for b, e in doc["results"].items() if "memory" in e]
    if memory:
        lines += [
            "",
            "Peak resident memory (MiB) while building the model and running its first steps, "
            "one process per implementation: peak RSS (increase over the RSS just before).",
            "",
            "| backend | workload | twinnn | native | Keras 3 |",
            "|---|---|---|---|---|",
        ]
        for backend, mem in memory:
            names = list(doc["meta"]["workloads"])
            for name in names:
                cells = []
                for impl in IMPLEMENTATIONS:
                    m = mem.get(impl, {}).get("workloads", {}).get(name, {})
                    if "peak_rss_mb" not in m:
                        cells.append("error" if "error" in m else "—")
                        continue
                    gpu = f", GPU {m['gpu_peak_mb']:.0f}" if m.get("gpu_peak_mb") else ""
                    cells.append(f"{m['peak_rss_mb']:.0f} (+{m['peak_delta_mb']:.0f}{gpu})")
                lines.append(f"| {backend} | {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    print(render(doc))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    failed = any(
        "error" in e.get("timing", {}) for e in doc["results"].values() if isinstance(e, dict)
    )
    return 1 if failed else 0
