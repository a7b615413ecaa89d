"""One measurement in a fresh process: ``python -m benchmarks.worker SPEC_JSON``.

Started by :mod:`benchmarks.run` with ``TWINNN_BACKEND``, ``KERAS_BACKEND`` and the device
already in the environment. ``SPEC_JSON`` holds ``mode`` and its arguments and ``out``, the
path the result (a JSON object) is written to. Modes:

* ``import``: time the first import of one implementation's stack in this fresh process:
  ``framework`` (``import torch`` / ``import tensorflow``), ``twinnn`` (``import twinnn;
  twinnn.set_backend(...)``, which imports the framework) or ``keras3`` (``import keras``
  with ``KERAS_BACKEND`` set, which imports the framework).
* ``memory``: the same import timing, then, per workload, the peak resident set size while
  one implementation builds its model and runs its first steps (the high-water mark is reset
  before each workload; see :mod:`benchmarks.timing`), and the GPU allocator's peak on a GPU.
* ``timing``: every implementation of every workload in this one process, interleaved.

Nothing but the standard library is imported before the import timing.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

#: What each implementation imports first, per backend.
_IMPORTS = {
    "native": {"torch": "import torch", "tensorflow": "import tensorflow"},
    "twinnn": {
        "torch": "import twinnn; twinnn.set_backend('torch')",
        "tensorflow": "import twinnn; twinnn.set_backend('tensorflow')",
    },
    "keras3": {"torch": "import keras", "tensorflow": "import keras"},
}


_NO_LSTM = "twinnn.LSTM is not available in this twinnn"


def _twinnn_has_lstm() -> bool:
    from benchmarks.twinnn_impl import lstm_available

    return lstm_available()


def _timed_import(impl: str, backend: str) -> float:
    """Seconds to import ``impl``'s stack (must be the first import of it in this process)."""
    code = _IMPORTS[impl][backend]
    start = time.perf_counter()
    exec(code, {})
    return time.perf_counter() - start


def _builder(impl: str, backend: str) -> Any:
    module = {
        "twinnn": "benchmarks.twinnn_impl",
        "native": "benchmarks.native_torch" if backend == "torch" else "benchmarks.native_tf",
        "keras3": "benchmarks.keras3",
    }[impl]
    return importlib.import_module(module).build


def _resolve_device(backend: str, requested: str) -> tuple[str, str]:
    """``(device, description)``; ``device`` is ``"cpu"`` or ``"gpu"``."""
    if backend == "torch":
        import torch

        has_gpu = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if has_gpu else ""
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        has_gpu = bool(gpus)
        name = (
            str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU"))
            if gpus
            else ""
        )
    if requested == "gpu" and not has_gpu:
        raise RuntimeError(f"--device gpu, but {backend} sees no GPU")
    device = "gpu" if requested != "cpu" and has_gpu else "cpu"
    return device, (f"gpu:0 ({name})" if device == "gpu" else "cpu")


def _versions(backend: str) -> dict[str, str]:
    import platform

    import keras  # type: ignore[import-untyped]
    import numpy

    import twinnn

    versions = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "keras": keras.__version__,
        "twinnn": twinnn.__version__,
    }
    if backend == "torch":
        import torch

        versions["torch"] = str(torch.__version__)
        versions["torch_threads"] = str(torch.get_num_threads())
    else:
        import tensorflow as tf

        versions["tensorflow"] = str(tf.__version__)
    return versions


class _GpuPeak:
    """The framework allocator's peak GPU memory (MiB) since the last ``reset``."""

    def __init__(self, backend: str, device: str) -> None:
        self.backend = backend
        self.on = device == "gpu"

    def reset(self) -> None:
        if not self.on:
            return
        if self.backend == "torch":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_mb(self) -> float | None:
        if not self.on:
            return None
        if self.backend == "torch":
            import torch

            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated()) / 2**20
        import tensorflow as tf

        return float(tf.config.experimental.get_memory_info("GPU:0")["peak"]) / 2**20


def _error(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:500]


def _mode_import(spec: dict[str, Any]) -> dict[str, Any]:
    return {"import_s": _timed_import(spec["impl"], spec["backend"])}


def _mode_memory(spec: dict[str, Any]) -> dict[str, Any]:
    impl_name, backend = spec["impl"], spec["backend"]
    import_s = _timed_import(impl_name, backend)
    import gc

    from benchmarks import timing
    from benchmarks.workloads import WORKLOADS, make_batches, make_weights

    device, device_name = _resolve_device(backend, spec["device"])
    build = _builder(impl_name, backend)
    gpu = _GpuPeak(backend, device)
    result: dict[str, Any] = {
        "import_s": import_s,
        "rss_after_import_mb": timing.current_rss_mb(),
        "device": device_name,
        "workloads": {},
    }
    for name in spec["workloads"]:
        workload = WORKLOADS[name]
        if workload.kind == "lstm" and impl_name == "twinnn" and not _twinnn_has_lstm():
            result["workloads"][name] = {"skipped": _NO_LSTM}
            continue
        batches, weights = make_batches(workload), make_weights(workload)
        gc.collect()
        reset = timing.reset_peak_rss()
        gpu.reset()
        before = timing.current_rss_mb()
        try:
            impl = build(workload, batches, weights, device)
            for i in range(1 + spec["steps"]):
                impl.step(*impl.batches[i % len(impl.batches)])
            impl.sync()
        except Exception as exc:
            result["workloads"][name] = {"error": _error(exc)}
            continue
        peak = timing.peak_rss_mb()
        result["workloads"][name] = {
            "rss_before_mb": before,
            "peak_rss_mb": peak,
            "peak_delta_mb": peak - before,
            "peak_reset": reset,
            "gpu_peak_mb": gpu.peak_mb(),
        }
        del impl
    return result


def _mode_timing(spec: dict[str, Any]) -> dict[str, Any]:
    backend = spec["backend"]
    start = time.perf_counter()
    import numpy as np

    import twinnn

    twinnn.set_backend(backend)
    from benchmarks import keras3, timing, twinnn_impl
    from benchmarks.workloads import WORKLOADS, make_batches, make_weights

    device, device_name = _resolve_device(backend, spec["device"])
    builders = {"twinnn": twinnn_impl.build, "native": _builder("native", backend)}
    builders["keras3"] = keras3.build
    result: dict[str, Any] = {
        "setup_s": time.perf_counter() - start,
        "versions": _versions(backend),
        "device": device_name,
        "twinnn_device": twinnn.device(),
        "workloads": {},
    }
    for name in spec["workloads"]:
        workload = WORKLOADS[name]
        entry: dict[str, Any] = {"description": workload.description}
        result["workloads"][name] = entry
        if workload.kind == "lstm" and not _twinnn_has_lstm():
            entry["skipped"] = _NO_LSTM
            continue
        batches, weights = make_batches(workload), make_weights(workload)
        impls: dict[str, Any] = {}
        entry["implementations"] = {}
        for impl_name, build in builders.items():
            try:
                impl = build(workload, batches, weights, device)
                first = time.perf_counter()
                loss = impl.to_float(impl.step(*impl.batches[0]))
                impl.sync()
                first_s = time.perf_counter() - first
            except Exception as exc:
                entry["implementations"][impl_name] = {"error": _error(exc)}
                continue
            impls[impl_name] = impl
            entry["implementations"][impl_name] = {
                "first_step_s": first_s,
                "first_loss": loss,
                "notes": impl.notes,
            }
        stats = timing.interleaved(
            impls, rounds=spec["rounds"], block_s=spec["block_s"], warmup_s=spec["warmup_s"]
        )
        for impl_name, summary in stats.items():
            entry["implementations"][impl_name].update(summary)
        done = entry["implementations"]
        ok = {k: v for k, v in done.items() if "median_us" in v}
        if "twinnn" in ok:
            ref = ok["twinnn"]
            for other in ("native", "keras3"):
                if other in ok:
                    entry[f"ratio_{other}"] = ref["median_us"] / ok[other]["median_us"]
                    entry[f"loss_rel_diff_{other}"] = float(
                        abs(ref["first_loss"] - ok[other]["first_loss"])
                        / max(abs(ok[other]["first_loss"]), np.finfo(np.float32).tiny)
                    )
        del impls
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    mode = {"import": _mode_import, "memory": _mode_memory, "timing": _mode_timing}[spec["mode"]]
    try:
        result = mode(spec)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": _error(exc)}
    tmp = spec["out"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, spec["out"])
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
