"""Where a torch GPU step's time goes: twinnn against native torch, per workload.

``python -m benchmarks.profile_gpu [--workload NAME ...] [--steps N]`` builds both
implementations of each workload on the GPU (``TWINNN_DEVICE=gpu``, torch backend), then:

* times ``N`` steps (wall, with a sync at the end) and the host time to *issue* them (before
  that sync): a step whose issue time is near its wall time is bound by the host (Python and
  kernel launches), not by the GPU;
* counts, under ``torch.profiler``, the kernel launches and the host-device synchronisations
  per step, and lists the host operators that cost twinnn the most.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from typing import Any

os.environ.setdefault("TWINNN_BACKEND", "torch")
os.environ.setdefault("TWINNN_DEVICE", "auto")

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import native_torch, twinnn_impl
from benchmarks.workloads import WORKLOADS, make_batches, make_weights

_GPU = torch.cuda.is_available()  # without one it runs on the CPU (a smoke test of the script)
_DEVICE = "gpu" if _GPU else "cpu"
_sync = torch.cuda.synchronize if _GPU else (lambda: None)
_SYNC = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
_COPY = ("cudaMemcpyAsync", "cudaMemcpy")


def _run(impl: Any, steps: int, start: int = 0) -> None:
    for i in range(start, start + steps):
        impl.step(*impl.batches[i % len(impl.batches)])


def _measure(impl: Any, steps: int) -> dict[str, Any]:
    _run(impl, 10)
    _sync()
    begin = time.perf_counter()
    _run(impl, steps)
    issued = time.perf_counter()
    _sync()
    end = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _run(impl, 5)
        _sync()
    names = Counter(e.name for e in prof.events())
    launches = sum(n for k, n in names.items() if k in ("cudaLaunchKernel", "cuLaunchKernel"))
    averages = prof.key_averages()
    top = sorted(
        (a for a in averages if a.device_type.name == "CPU" and not a.key.startswith("cuda")),
        key=lambda a: a.self_cpu_time_total,
        reverse=True,
    )[:12]
    return {
        "wall_us": (end - begin) / steps * 1e6,
        "issue_us": (issued - begin) / steps * 1e6,
        "launches": launches / 5,
        "syncs": sum(names[k] for k in _SYNC) / 5,
        "copies": sum(names[k] for k in _COPY) / 5,
        "top": [(a.key, a.self_cpu_time_total / 5, a.count / 5) for a in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_gpu")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for name in args.workload or ["cnn_small", "transformer_small", "lm_lstm"]:
        workload = WORKLOADS[name]
        batches, weights = make_batches(workload), make_weights(workload)
        rows = {
            "twinnn": _measure(twinnn_impl.build(workload, batches, weights, _DEVICE), args.steps),
            "native": _measure(native_torch.build(workload, batches, weights, _DEVICE), args.steps),
        }
        print(f"\n## {name}\n")
        print("| impl | wall µs/step | issue µs/step | kernel launches | syncs | copies |")
        print("|---|---|---|---|---|---|")
        for impl, r in rows.items():
            print(
                f"| {impl} | {r['wall_us']:.0f} | {r['issue_us']:.0f} | {r['launches']:.0f} "
                f"| {r['syncs']:.0f} | {r['copies']:.0f} |"
            )
        print("\ntwinnn's costliest host operators (self µs per step, calls per step):")
        for key, us, count in rows["twinnn"]["top"]:
            print(f"  {us:8.0f} µs {count:6.1f}x  {key}")


if __name__ == "__main__":
    main()
