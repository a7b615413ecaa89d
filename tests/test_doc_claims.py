"""What README.md and docs/ promise about the examples, held at the strength the pages state.

The figures the pages quote come from ``scripts/doc_figures.py`` (the page names the figure);
these tests run the same functions and hold the promises: the verdicts, the stated bounds, and
that the numbers a page quotes are the numbers the script prints now. Differences between
the backends are float32 rounding and depend on the CPU's kernels, so a page's observed
differences are held as the bounds the page states, not as exact values.

Elsewhere: the trace and compile counts (tests/test_training.py), the LSTM's tolerances and
its cross-backend training (tests/test_lstm.py), the parity of the MLP (tests/test_parity.py).
The timings and speed ratios (docs/performance.md, docs/lstm.md) come from
``python -m benchmarks`` and no test asserts them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _figures() -> Any:
    spec = importlib.util.spec_from_file_location(
        "doc_figures", ROOT / "scripts" / "doc_figures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = _figures()


def _blocks(page: str, language: str | None = None) -> list[str]:
    text = (ROOT / page).read_text()
    return [code for lang, code in FENCE.findall(text) if language is None or lang == language]


def _block_after(page: str, command: str) -> str:
    """The code block whose first line is ``$ COMMAND`` (a console transcript)."""
    for code in _blocks(page):
        if code.startswith(f"$ {command}\n"):
            return code
    raise AssertionError(f"{page} has no block starting with '$ {command}'")


def _table_row(block: str, metric: str = "loss") -> list[str]:
    row = next(line for line in block.splitlines() if line.startswith(f"{metric} "))
    return row.split()


def _needs_both() -> None:
    from twinnn import backends as registry

    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"the examples run on both frameworks; missing {missing}")


# --- the pages name the script of each figure ----------------------------------------------------
def test_every_figure_is_named_on_its_pages_and_every_named_figure_exists() -> None:
    named: set[str] = set()
    for page in ["README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]:
        named |= set(re.findall(r"doc_figures\.py ([a-z0-9-]+)", (ROOT / page).read_text()))
    assert named == set(figures.FIGURES)
    for name, (pages, _) in figures.FIGURES.items():
        for page in pages.split(", "):
            if page.endswith(".md"):
                assert f"doc_figures.py {name}" in (ROOT / page).read_text(), (page, name)


def test_index_page_code_is_the_script_its_figure_runs() -> None:
    """docs/index.md's first script, with the ``log`` callback its second block adds, is
    scripts/doc_examples/train.py (the first block calls ``fit`` without the callback)."""
    script = (ROOT / "scripts" / "doc_examples" / "train.py").read_text()
    body = script[script.index('"""\n', 3) + 4 :].strip("\n")
    first, log = _blocks("docs/index.md", "python")[:2]
    fit_line = "history = tn.fit(step, batches, epochs=10)  # progress bar on a terminal\n"
    assert fit_line in first
    assert first.replace(fit_line, "\n\n" + log).strip("\n") == body


# --- twinnn compare on the examples (subprocesses: both backends, 10-30 s each) -------------------
@pytest.mark.slow
def test_linear_example_figures_and_bounds() -> None:
    """README.md: the two columns of examples/linear_regression.py's output, and the largest
    relative difference of the loss curves over the 100 steps below 5e-7. docs/cli.md: the
    ``twinnn compare`` report of the same example."""
    _needs_both()
    result = figures.compare_linear()
    (loss,) = result["metrics"]
    assert result["verdict"] == "same" and loss["steps"] == list(range(100))
    assert loss["max_rel"] < 5e-7  # README: "below 5e-7"
    # docs/cli.md's table: the first and last values on each backend, as printed (7 digits)
    row = _table_row(_block_after("docs/cli.md", "twinnn compare examples/linear_regression.py"))
    quoted = [float(v) for v in row[2:6]]
    fresh = [loss["a"][0], loss["b"][0], loss["a"][-1], loss["b"][-1]]
    np.testing.assert_allclose(fresh, quoted, rtol=1e-6)
    # README's two columns: each backend's printed lines, to one unit of their last digit
    block = next(b for b in _blocks("README.md", "text") if "epoch 100" in b)
    for run in result["runs"]:
        column = figures.linear_example_column(block, run["backend"])
        fresh = run["stdout"].splitlines()
        for index, line in zip(figures.SHOWN, column, strict=True):
            if index is None:
                assert line == "..."
            else:
                assert_printed_close(line, fresh[index])
    # and the two backends print the same losses and weights (to one unit of the last digit)
    torch_out, tf_out = (run["stdout"].splitlines()[1:] for run in result["runs"])
    for torch_line, tf_line in zip(torch_out, tf_out, strict=True):
        assert_printed_close(torch_line, tf_line)


NUMBER = re.compile(r"-?\d+(?:\.(\d+))?")


def assert_printed_close(quoted: str, fresh: str) -> None:
    """The same text, and the same numbers up to one unit of the last digit printed."""
    assert NUMBER.sub("#", quoted) == NUMBER.sub("#", fresh), (quoted, fresh)
    for a, b in zip(NUMBER.finditer(quoted), NUMBER.finditer(fresh), strict=True):
        unit = 10.0 ** -len(a.group(1) or "")
        assert abs(float(a.group()) - float(b.group())) <= 1.01 * unit, (quoted, fresh)


def _printed_losses(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "loss" in line]


@pytest.mark.slow
def test_lstm_example_figures_and_verdict() -> None:
    """README.md: ``twinnn compare examples/sequence_lstm.py`` says SAME within rtol=1e-5,
    atol=1e-6; both backends print the same numbers (to one unit of the last printed digit);
    the held-out loss goes 0.320 -> 0.0102; the quoted table is what compare prints now."""
    _needs_both()
    result = figures.compare_lstm(image=None)
    (loss,) = result["metrics"]
    assert result["verdict"] == "same" and len(loss["steps"]) == 15
    assert (result["rtol"], result["atol"]) == (1e-5, 1e-6)
    torch_lines, tf_lines = (_printed_losses(run["stdout"]) for run in result["runs"])
    assert len(torch_lines) == len(tf_lines) >= 10
    for torch_line, tf_line in zip(torch_lines, tf_lines, strict=True):
        assert_printed_close(torch_line, tf_line)
    for before, after in result["held_out"].values():
        assert (f"{before:.3f}", f"{after:.3g}") == ("0.320", "0.0102")
    row = _table_row(_block_after("README.md", "twinnn compare examples/sequence_lstm.py"))
    np.testing.assert_allclose(
        [loss["a"][0], loss["b"][0], loss["a"][-1], loss["b"][-1]],
        [float(v) for v in row[2:6]],
        rtol=1e-6,
    )


@pytest.mark.slow
def test_index_script_figures_and_bounds() -> None:
    """docs/index.md: the same loss at every step within rtol=1e-5, atol=1e-6 (SAME), and the
    same final loss "to about six significant digits" (relative difference below 1e-6)."""
    _needs_both()
    result = figures.compare_index()
    (loss,) = result["metrics"]
    assert result["verdict"] == "same" and len(loss["steps"]) == 50
    final = result["final"]
    assert abs(final["torch"] - final["tensorflow"]) < 1e-6 * abs(final["torch"])
    row = _table_row(_block_after("docs/index.md", "twinnn compare train.py --plot parity.png"))
    np.testing.assert_allclose(
        [loss["a"][0], loss["b"][0], loss["a"][-1], loss["b"][-1]],
        [float(v) for v in row[2:6]],
        rtol=1e-6,
    )


# --- the benchmark harness times the same computation ---------------------------------------------
@pytest.mark.slow
def test_benchmark_implementations_compute_the_same_first_loss() -> None:
    """docs/performance.md: on every workload and backend, the first-step losses of twinnn,
    the native code and Keras 3 agree within 2e-7 relative, and each is within 2e-7 of the
    loss computed in float64 NumPy (so the harness times the same computation)."""
    _needs_both()
    pytest.importorskip("keras")
    losses = figures.first_losses()
    for backend, workloads in losses.items():
        assert set(workloads) == {"linear_seed", "linear_big", "lstm_len", "lstm_adam"}
        for name, values in workloads.items():
            exact = values["float64"]
            for impl in ("twinnn", "native", "keras3"):
                assert abs(values[impl] - exact) <= 2e-7 * abs(exact), (backend, name, impl)
            impls = [values[k] for k in ("twinnn", "native", "keras3")]
            assert max(impls) - min(impls) <= 2e-7 * abs(exact), (backend, name, values)
