"""Regenerate the figures quoted in README.md and docs/ (every one but the benchmark timings).

    python scripts/doc_figures.py --list              # the figures and the pages that quote them
    python scripts/doc_figures.py                     # all of them (about 1-2 minutes on 2 cores)
    python scripts/doc_figures.py compare-lstm        # one (or several) by name

Each figure prints the text block (or the numbers) that its page quotes; the page names the
figure. Timings, speed ratios and memory in docs/performance.md and docs/lstm.md come from
the benchmark harness (``python -m benchmarks``), not from here, and no test asserts them.

Which test holds each promise at the strength the page states is listed in
``tests/test_doc_claims.py`` (and in the pages themselves). A figure below is an observation
on the machine that ran the script -- float32 rounding differences depend on the CPU's
kernels -- so the tests hold the stated *bounds*, not these exact values.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

__all__ = [
    "FIGURES",
    "compare",
    "compare_index",
    "compare_linear",
    "compare_lstm",
    "first_losses",
    "linear_example",
    "linear_example_column",
    "lstm_tolerances",
    "main",
]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TWINNN_DEVICE": "cpu", **extra}
    for name in ("TWINNN_REPORT_FILE", "TWINNN_EAGER", "TWINNN_TF32", "TWINNN_SEED"):
        env.pop(name, None)
    return env


def _run(command: list[str], cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        command, cwd=cwd, env=_env(**extra), capture_output=True, text=True, timeout=600
    )
    if proc.returncode not in (0, 1):  # compare exits 1 on a difference: that is a result
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


# --- twinnn compare on the examples ---------------------------------------------------------------
def compare(script: Path, *options: str, cwd: Path = ROOT) -> dict[str, Any]:
    """``twinnn compare SCRIPT OPTIONS --json``: the JSON document plus ``"stdout"``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compare.json"
        proc = _run(
            [sys.executable, "-m", "twinnn", "compare", str(script), *options, "--json", str(out)],
            cwd=cwd,
        )
        result: dict[str, Any] = json.loads(out.read_text())
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("wrote ")]
    if "--plot" in options:
        lines.append(f"wrote {options[options.index('--plot') + 1]}")
    result["stdout"] = "\n".join(lines)
    return result


def _metric(result: dict[str, Any], name: str = "loss") -> dict[str, Any]:
    metric: dict[str, Any] = next(m for m in result["metrics"] if m["name"] == name)
    return metric


def compare_linear() -> dict[str, Any]:
    """docs/cli.md ("The report", "The JSON file"), README.md (largest relative loss difference
    over the 100 steps of examples/linear_regression.py)."""
    result = compare(Path("examples/linear_regression.py"))
    loss = _metric(result)
    print(f"$ twinnn compare examples/linear_regression.py\n{result['stdout']}\n")
    print(f"max_abs {loss['max_abs']:.3g}  max_rel {loss['max_rel']:.3g}")
    return result


def compare_lstm(image: Path | None = ROOT / "docs" / "images" / "parity.png") -> dict[str, Any]:
    """README.md: ``twinnn compare examples/sequence_lstm.py`` and its plot
    (docs/images/parity.png), and the held-out losses the example prints."""
    options: tuple[str, ...] = ()
    if image is not None:  # relative to the repository, as the page shows it
        options = ("--plot", str(image.relative_to(ROOT) if image.is_relative_to(ROOT) else image))
    result = compare(Path("examples/sequence_lstm.py"), *options)
    print(f"$ twinnn compare examples/sequence_lstm.py\n{result['stdout']}\n")
    for run in result["runs"]:
        held_out = [line for line in run["stdout"].splitlines() if line.startswith("held-out")]
        print(f"{run['backend']}: " + "; ".join(held_out))
    result["held_out"] = {run["backend"]: _held_out(run["stdout"]) for run in result["runs"]}
    return result


def _held_out(stdout: str) -> list[float]:
    return [float(line.split()[-1]) for line in stdout.splitlines() if line.startswith("held-out")]


def compare_index() -> dict[str, Any]:
    """docs/index.md: ``twinnn compare train.py --plot parity.png`` on the page's script
    (scripts/doc_examples/train.py), run from a scratch folder as the page shows it."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "scripts" / "doc_examples" / "train.py", Path(tmp) / "train.py")
        result = compare(Path("train.py"), "--plot", "parity.png", cwd=Path(tmp))
    print(f"$ twinnn compare train.py --plot parity.png\n{result['stdout']}\n")
    result["final"] = {
        run["backend"]: float(run["stdout"].split()[-1]) for run in result["runs"]
    }  # the script's last line: "<backend> <final epoch loss>"
    print("final epoch losses:", result["final"])
    return result


#: The lines of examples/linear_regression.py's output that README.md shows (None: "..."),
#: and the column where the tensorflow run's lines start.
SHOWN = (0, 1, 2, 3, 4, None, 11, 12)
COLUMN = 66
_COMMAND = "$ TWINNN_BACKEND={} python examples/linear_regression.py"


def linear_example() -> dict[str, list[str]]:
    """README.md: what ``examples/linear_regression.py`` prints under each backend, side by
    side (the lines in ``SHOWN``)."""
    printed = {}
    for backend in ("torch", "tensorflow"):
        proc = _run([sys.executable, "examples/linear_regression.py"], TWINNN_BACKEND=backend)
        printed[backend] = proc.stdout.splitlines()
    rows = [(_COMMAND.format("torch"), _COMMAND.format("tensorflow"))]
    for index in SHOWN:
        rows.append(
            ("...", "...")
            if index is None
            else (printed["torch"][index], printed["tensorflow"][index])
        )
    for left, right in rows:
        print(left.ljust(COLUMN) + right)
    return printed


def linear_example_column(block: str, backend: str) -> list[str]:
    """One backend's column of README.md's side-by-side block, the lines of ``SHOWN``."""
    lines = block.rstrip("\n").splitlines()
    assert lines[0] == _COMMAND.format("torch").ljust(COLUMN) + _COMMAND.format("tensorflow")
    column = [line[:COLUMN].rstrip() if backend == "torch" else line[COLUMN:] for line in lines]
    assert len(column) == 1 + len(SHOWN)
    return column[1:]


# --- the LSTM's float tolerances ------------------------------------------------------------------
def _tests_module(name: str) -> Any:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return __import__(name)


def lstm_tolerances() -> dict[str, float]:
    """docs/lstm.md ("Float tolerance observed"): the errors that tests/test_lstm.py allows,
    as observed on the tests' own problems."""
    import twinnn as tn

    t = _tests_module("test_lstm")
    figures: dict[str, float] = {}
    for backend in ("torch", "tensorflow"):
        value_err = grad_err = grad_frac = 0.0
        for num_layers, bidirectional in t.CONFIGS:
            tn.set_backend(backend)
            tn.seed(0)
            dirs = 2 if bidirectional else 1
            data = t._problem(num_layers, dirs)
            layer = tn.LSTM(t.F, t.H, num_layers, bidirectional, init="torch")
            x, h0, c0 = (t.leaf(backend, data[k]) for k in ("x", "h0", "c0"))
            seeds = tuple(tn.tensor(data[k]) for k in ("R", "Sh", "Sc"))
            got: dict[str, Any] = {}

            def loss_of(
                x: Any = x,
                state: Any = (h0, c0),
                layer: Any = layer,
                seeds: Any = seeds,
                got: dict[str, Any] = got,
            ) -> Any:
                out, (h, c) = layer(x, t.LENGTHS, state)
                got.update(out=out, h=h, c=c)
                r, sh, sc = seeds
                return tn.sum(out * r) + tn.sum(h * sh) + tn.sum(c * sc)

            names = [n for n, _ in layer.named_parameters()]
            wrt = [p for _, p in layer.named_parameters()] + [x, h0, c0]
            grads = t.native_grads(backend, loss_of, wrt)
            out, h, c, expected = t.reference_lstm(
                layer.state_dict(),
                data["x"],
                t.LENGTHS,
                (data["h0"], data["c0"]),
                num_layers,
                dirs,
                (data["R"], data["Sh"], data["Sc"]),
            )
            for name, want in (("out", out), ("h", h), ("c", c)):
                value_err = max(value_err, float(np.abs(tn.to_numpy(got[name]) - want).max()))
            for name, g in zip([*names, "x", "h0", "c0"], grads, strict=True):
                err = float(np.abs(g - expected[name]).max())
                grad_err = max(grad_err, err)
                grad_frac = max(grad_frac, err / float(np.abs(expected[name]).max()))
        figures[f"{backend} values max abs error"] = value_err
        figures[f"{backend} gradients max abs error"] = grad_err
        figures[f"{backend} gradients max error / largest entry"] = grad_frac

    runs = {b: t.train_state_reader(b, 100) for b in ("torch", "tensorflow")}
    a, b = runs["torch"], runs["tensorflow"]
    rel = np.abs(a["losses"] - b["losses"]) / np.maximum(np.abs(a["losses"]), np.abs(b["losses"]))
    figures["training loss max rel diff, 50 steps"] = float(rel[:50].max())
    figures["training loss max rel diff, 100 steps"] = float(rel.max())
    for part in ("gradient", "params", "held_out"):
        figures[f"training {part} max abs diff"] = max(
            float(np.abs(a[part][k] - b[part][k]).max()) for k in a[part]
        )
    figures["training tensorflow traces"] = float(b["trace_count"])
    for name, value in figures.items():
        print(f"{name:50s} {value:.2g}")
    return figures


# --- the benchmark implementations' first-step losses ---------------------------------------------
def _reference_first_loss(workload: Any, batch: tuple[np.ndarray, ...], w: dict[str, Any]) -> float:
    """The first batch's loss from the initial weights, in float64 NumPy."""
    w64 = {k: np.asarray(v, np.float64) for k, v in w.items()}
    if workload.kind == "linear":
        x, y = batch
        pred = x.astype(np.float64) @ w64["weight"] + w64["bias"]
        return float(np.mean((pred - y) ** 2))
    x, lengths, y = batch
    hidden = workload.hidden
    h = np.zeros((x.shape[0], hidden))
    c = np.zeros_like(h)
    for t in range(x.shape[1]):
        z = x[:, t].astype(np.float64) @ w64["lstm.w_ih_l0"] + h @ w64["lstm.w_hh_l0"]
        z += w64["lstm.bias_l0"]
        i, f, g, o = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
        c_new = sig(f) * c + sig(i) * np.tanh(g)
        h_new = sig(o) * np.tanh(c_new)
        valid = (t < lengths)[:, None]
        h, c = np.where(valid, h_new, h), np.where(valid, c_new, c)
    pred = h @ w64["head.weight"] + w64["head.bias"]
    return float(np.mean((pred - y) ** 2))


def _first_losses_here(backend: str) -> dict[str, dict[str, float]]:
    """In a process started with ``TWINNN_BACKEND`` and ``KERAS_BACKEND`` set to ``backend``:
    the first-step loss of every implementation of every workload, and the float64 one."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import keras3, twinnn_impl
    from benchmarks.workloads import WORKLOADS, make_batches, make_weights

    native = importlib.import_module(f"benchmarks.native_{'torch' if backend == 'torch' else 'tf'}")
    builders = {"twinnn": twinnn_impl.build, "native": native.build, "keras3": keras3.build}
    result: dict[str, dict[str, float]] = {}
    for name, workload in WORKLOADS.items():
        if workload.kind not in ("linear", "lstm"):  # lm, transformer, cnn: test_benchmarks.py
            continue
        batches, weights = make_batches(workload), make_weights(workload)
        result[name] = {"float64": _reference_first_loss(workload, batches[0], weights)}
        for impl_name, build in builders.items():
            impl = build(workload, batches, weights, "cpu")
            result[name][impl_name] = impl.to_float(impl.step(*impl.batches[0]))
    return result


def first_losses() -> dict[str, dict[str, dict[str, float]]]:
    """docs/performance.md: the first-step losses of twinnn, the native code and Keras 3 on
    every workload (the check that the harness times the same computation), each backend in
    its own process, and their largest relative differences."""
    losses = {}
    for backend in ("torch", "tensorflow"):
        proc = _run(
            [sys.executable, str(Path(__file__).resolve()), "_first-losses", backend],
            TWINNN_BACKEND=backend,
            KERAS_BACKEND=backend,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        losses[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    for backend, workloads in losses.items():
        for name, values in workloads.items():
            impls = [values[k] for k in ("twinnn", "native", "keras3")]
            spread = (max(impls) - min(impls)) / abs(values["float64"])
            worst = max(abs(v - values["float64"]) for v in impls) / abs(values["float64"])
            print(
                f"{backend:10s} {name:12s} twinnn {values['twinnn']:.9g}  "
                f"native {values['native']:.9g}  keras3 {values['keras3']:.9g}  "
                f"float64 {values['float64']:.9g}  spread {spread:.2g}  vs float64 {worst:.2g}"
            )
    return losses


FIGURES: dict[str, tuple[str, Callable[[], Any]]] = {
    "linear-example": ("README.md", linear_example),
    "compare-linear": ("docs/cli.md, README.md", compare_linear),
    "compare-lstm": ("README.md, docs/images/parity.png", compare_lstm),
    "compare-index": ("docs/index.md", compare_index),
    "lstm-tolerances": ("docs/lstm.md", lstm_tolerances),
    "first-losses": ("docs/performance.md", first_losses),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_first-losses"]:  # the worker process of first_losses()
        print(json.dumps(_first_losses_here(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", metavar="FIGURE", help="default: all")
    parser.add_argument("--list", action="store_true", help="list the figures and their pages")
    args = parser.parse_args(argv)
    unknown = [name for name in args.figures if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    if args.list:
        for name, (pages, _) in FIGURES.items():
            print(f"{name:16s} {pages}")
        return 0
    for name in args.figures or list(FIGURES):
        pages, make = FIGURES[name]
        print(f"== {name} ({pages})", flush=True)
        make()
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
