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
* ``timing``: every implementation of every workload in this one process, interleaved
  (the two workloads of a :data:`benchmarks.DROPOUT_PAIRS` pair in the same rounds).
  Before timing, each implementation's first ``AGREEMENT_STEPS`` losses from the shared
  weights are recorded (``agreement_losses``; ``first_loss`` is the first). For a workload
  with dropout they come from a copy with dropout 0 (masks differ between frameworks; see
  :func:`benchmarks.workloads.agreement_variant`) and the timed model's own are
  ``timed_losses``.

``"tiny": true`` in the spec shrinks every workload (:func:`benchmarks.workloads.tiny`).

Keras 3 is optional: where ``keras`` is not installed its measurements are skipped, not
failed -- ``{"skipped": KERAS_MISSING}`` in place of the ``keras3`` import, memory and
implementation results, and ``"not installed"`` as its version -- and the other
implementations are measured as usual.

Nothing but the standard library is imported before the import timing.
"""

from __future__ import annotations

import importlib
import importlib.util
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


#: The note that replaces Keras 3's results where ``keras`` is not installed.
KERAS_MISSING = "Keras 3 is not installed (pip install keras)"


def _keras_missing() -> str | None:
    """:data:`KERAS_MISSING` if ``keras`` cannot be imported (found without importing it)."""
    return KERAS_MISSING if importlib.util.find_spec("keras") is None else None


#: Steps whose losses are recorded before timing (``agreement_losses``): the first checks the
#: shared weights and the forward pass, the next ones the update and any carried state.
AGREEMENT_STEPS = 3


def _losses(impl: Any, steps: int, start: int = 0) -> list[float]:
    """The losses of ``impl``'s next ``steps`` steps on batches ``start, start + 1, ...``."""
    k = len(impl.batches)
    return [impl.to_float(impl.step(*impl.batches[(start + i) % k])) for i in range(steps)]


def _twinnn_lacks(workload: Any) -> str | None:
    """Why twinnn cannot run ``workload`` (the layers it lacks), or None."""
    from benchmarks.twinnn_impl import missing

    lacking = missing(workload)
    if not lacking:
        return None
    names = ", ".join(f"twinnn.{name}" for name in lacking)
    return f"{names} {'is' if len(lacking) == 1 else 'are'} not available in this twinnn"


def _workload(name: str, spec: dict[str, Any]) -> Any:
    """The workload ``name``, shrunk to its smoke-test size with ``"tiny"`` in ``spec``."""
    from benchmarks.workloads import WORKLOADS, tiny

    workload = WORKLOADS[name]
    return tiny(workload) if spec.get("tiny") else workload


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

    import numpy

    import twinnn

    if _keras_missing():
        keras_version = "not installed"
    else:
        import keras  # type: ignore[import-untyped]

        keras_version = keras.__version__
    versions = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "keras": keras_version,
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
    missing = _keras_missing() if spec["impl"] == "keras3" else None
    if missing:
        return {"skipped": missing}
    return {"import_s": _timed_import(spec["impl"], spec["backend"])}


def _mode_memory(spec: dict[str, Any]) -> dict[str, Any]:
    impl_name, backend = spec["impl"], spec["backend"]
    missing = _keras_missing() if impl_name == "keras3" else None
    if missing:
        return {"skipped": missing}
    import_s = _timed_import(impl_name, backend)
    import gc

    from benchmarks import timing
    from benchmarks.workloads import make_batches, make_weights

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
        workload = _workload(name, spec)
        lacks = _twinnn_lacks(workload) if impl_name == "twinnn" else None
        if lacks:
            result["workloads"][name] = {"skipped": lacks}
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
    from benchmarks import timing, twinnn_impl

    device, device_name = _resolve_device(backend, spec["device"])
    builders = {"twinnn": twinnn_impl.build, "native": _builder("native", backend)}
    keras_missing = _keras_missing()
    if not keras_missing:
        builders["keras3"] = _builder("keras3", backend)
    result: dict[str, Any] = {
        "setup_s": time.perf_counter() - start,
        "versions": _versions(backend),
        "device": device_name,
        "twinnn_device": twinnn.device(),
        "workloads": {},
    }
    prepared: dict[str, dict[str, Any]] = {}
    for name in spec["workloads"]:
        workload = _workload(name, spec)
        entry: dict[str, Any] = {"description": workload.description}
        result["workloads"][name] = entry
        lacks = _twinnn_lacks(workload)
        if lacks:
            entry["skipped"] = lacks
            continue
        prepared[name] = _prepare(workload, entry, builders, device)
        if keras_missing:
            entry["implementations"]["keras3"] = {"skipped": keras_missing}
    for group in _timing_groups(list(prepared)):
        impls = {f"{name}/{impl}": v for name in group for impl, v in prepared[name].items()}
        stats = timing.interleaved(
            impls, rounds=spec["rounds"], block_s=spec["block_s"], warmup_s=spec["warmup_s"]
        )
        del impls
        for key, summary in stats.items():
            name, impl_name = key.split("/")
            result["workloads"][name]["implementations"][impl_name].update(summary)
        for name in group:
            del prepared[name]
            entry = result["workloads"][name]
            if len(group) > 1:
                entry["interleaved_with"] = [other for other in group if other != name]
            ok = {k: v for k, v in entry["implementations"].items() if "median_us" in v}
            if "twinnn" in ok:
                ref = ok["twinnn"]
                for other in ("native", "keras3"):
                    if other in ok:
                        entry[f"ratio_{other}"] = ref["median_us"] / ok[other]["median_us"]
                        entry[f"loss_rel_diff_{other}"] = float(
                            abs(ref["first_loss"] - ok[other]["first_loss"])
                            / max(abs(ok[other]["first_loss"]), np.finfo(np.float32).tiny)
                        )
    return result


def _timing_groups(names: list[str]) -> list[list[str]]:
    """The workloads timed together: each pair of :data:`benchmarks.DROPOUT_PAIRS` that is
    all in ``names`` forms one group (so drift hits both alike), every other workload its own;
    in the order of ``names``."""
    from benchmarks import DROPOUT_PAIRS

    partner = {}
    for a, b in DROPOUT_PAIRS:
        if a in names and b in names:
            partner[a], partner[b] = b, a
    groups: list[list[str]] = []
    done: set[str] = set()
    for name in names:
        if name in done:
            continue
        group = [name] + ([partner[name]] if name in partner else [])
        done.update(group)
        groups.append(group)
    return groups


def _prepare(
    workload: Any, entry: dict[str, Any], builders: dict[str, Any], device: str
) -> dict[str, Any]:
    """Build every implementation of ``workload``, run and record its first steps (see the
    module docstring) into ``entry["implementations"]``; return those that worked."""
    from benchmarks.workloads import agreement_variant, make_batches, make_weights

    batches, weights = make_batches(workload), make_weights(workload)
    check = agreement_variant(workload)
    if check is not workload:
        entry["agreement"] = "first losses compared on a copy with dropout 0"
    impls: dict[str, Any] = {}
    entry["implementations"] = {}
    for impl_name, build in builders.items():
        try:
            probe_losses = None
            if check is not workload:  # masks differ between frameworks: compare p = 0
                probe = build(check, batches, weights, device)
                probe_losses = _losses(probe, AGREEMENT_STEPS)
                del probe
            impl = build(workload, batches, weights, device)
            first = time.perf_counter()
            loss = impl.to_float(impl.step(*impl.batches[0]))
            impl.sync()
            first_s = time.perf_counter() - first
            losses = [loss, *_losses(impl, AGREEMENT_STEPS - 1, start=1)]
        except Exception as exc:
            entry["implementations"][impl_name] = {"error": _error(exc)}
            continue
        impls[impl_name] = impl
        agreement = losses if probe_losses is None else probe_losses
        entry["implementations"][impl_name] = {
            "first_step_s": first_s,
            "first_loss": agreement[0],
            "agreement_losses": agreement,
            "notes": impl.notes,
        }
        if probe_losses is not None:
            entry["implementations"][impl_name]["timed_losses"] = losses
    return impls


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
