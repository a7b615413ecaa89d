"""The ``twinnn`` command (``info``, ``compare``), ``twinnn.report`` and the comparison engine.

Subprocess tests are few: each child imports a framework (2-4 s). Scripts that only need to
report numbers do not import one.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import twinnn
from twinnn import backends as registry
from twinnn import config
from twinnn._compare import Comparison, Run, compare_runs, diff_metric
from twinnn._render import PlotUnavailableError, format_comparison, plot_comparison
from twinnn._runner import absolute_args, read_reports
from twinnn.cli import main
from twinnn.errors import ArgumentError, ArgumentTypeError, ShapeError

report_module = importlib.import_module("twinnn.report")  # `twinnn.report` is the function
ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _twinnn(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinnn", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _public(version: str) -> str:
    """``version`` without its local part (``2.11.0+cu130`` -> ``2.11.0``)."""
    return version.split("+")[0]


def _needs_both() -> None:
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"compare needs both frameworks; missing {missing}")


# --- twinnn.report -------------------------------------------------------------------------------
@pytest.fixture
def report_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``report`` active, appending to a fresh file (as under ``compare``)."""
    path = tmp_path / "report.jsonl"
    monkeypatch.setenv(report_module.REPORT_ENV, str(path))
    monkeypatch.setattr(report_module, "_sink", report_module._UNREAD)
    yield path
    sink = report_module._sink
    if sink is not None and sink is not report_module._UNREAD:
        sink.close()


def test_report_writes_json_lines_with_native_scalars(backend: str, report_file: Path) -> None:
    twinnn.report(step=0, loss=1.5, acc=np.float32(0.25))
    twinnn.report(step=1, loss=twinnn.tensor(2.5), acc=twinnn.tensor([[0.75]]))
    records = [json.loads(line) for line in report_file.read_text().splitlines()]
    assert records == [{"step": 0, "loss": 1.5, "acc": 0.25}, {"step": 1, "loss": 2.5, "acc": 0.75}]


def test_report_is_a_no_op_outside_compare(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(report_module.REPORT_ENV, raising=False)
    monkeypatch.setattr(report_module, "_sink", report_module._UNREAD)
    impl = registry.load(backend)

    def no_host_copy(x: Any) -> Any:
        raise AssertionError("report copied a tensor to the host while inactive")

    monkeypatch.setattr(impl, "to_numpy", no_host_copy)
    assert twinnn.report(step=0, loss=twinnn.tensor(1.0)) is None
    assert report_module._sink is None
    # the environment is read once: setting the variable later does not activate it
    monkeypatch.setenv(report_module.REPORT_ENV, str(tmp_path / "late.jsonl"))
    twinnn.report(step=1, loss=2.0)
    assert not (tmp_path / "late.jsonl").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"step": -1, "loss": 1.0}, ArgumentError, ["report(step)", ">= 0", "-1"]),
        ({"step": 1.5, "loss": 1.0}, ArgumentTypeError, ["report(step)", "int", "float"]),
        ({"step": True, "loss": 1.0}, ArgumentTypeError, ["report(step)", "bool"]),
        ({"step": 0}, ArgumentError, ["at least one metric"]),
        ({"step": 0, "loss": "low"}, ArgumentTypeError, ["report(loss=...)", "number", "str"]),
        ({"step": 0, "loss": np.zeros(2)}, ShapeError, ["report(loss=...)", "scalar", "(2,)"]),
        ({"step": 0, "loss": object()}, ArgumentTypeError, ["report(loss=...)", "object"]),
    ],
)
def test_report_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        twinnn.report(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_report_rejects_a_non_scalar_tensor(backend: str) -> None:
    with pytest.raises(ShapeError, match=r"report\(loss=\.\.\.\).*scalar.*\(2, 1\)"):
        twinnn.report(step=0, loss=twinnn.tensor([[1.0], [2.0]]))


# --- the comparison engine (no subprocess) -------------------------------------------------------
def test_diff_metric_finds_the_first_step_beyond_tolerance() -> None:
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 5: 0.0}
    b = {0: 1.0, 1: 2.0 + 2e-5, 2: 3.0 + 1e-4, 3: 4.0, 4: 9.0, 5: 0.0}
    # tolerance at step 1: 1e-6 + 1e-5 * 2.00002 = 2.1e-5 > 2e-5; at step 2: 3.1e-5 < 1e-4
    for x, y in ((a, b), (b, a)):  # symmetric in the two backends
        m = diff_metric("loss", x, y, rtol=1e-5, atol=1e-6)
        assert m.steps == [0, 1, 2, 3, 5]
        assert m.first_bad_step == 2
        assert m.max_abs == pytest.approx(1e-4, rel=1e-9)
        assert m.max_rel == pytest.approx(1e-4 / 3.0001, rel=1e-9)
        assert not m.ok
    assert diff_metric("loss", a, b, 1e-5, 1e-6).only_b == [4]
    assert diff_metric("loss", a, {k: a[k] for k in a}, 1e-5, 1e-6).ok


def test_diff_metric_nans_and_zero_tolerance() -> None:
    nan = math.nan
    assert diff_metric("x", {0: nan, 1: 1.0}, {0: nan, 1: 1.0}, 1e-5, 1e-6).ok
    assert diff_metric("x", {0: 1.0, 1: nan}, {0: 1.0, 1: 1.0}, 1e-5, 1e-6).first_bad_step == 1
    exact = diff_metric("x", {0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0 + 2**-52}, rtol=0.0, atol=0.0)
    assert exact.first_bad_step == 1


def test_absolute_args_makes_existing_relative_paths_absolute(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.npz").write_bytes(b"")
    (tmp_path / "cfg.yaml").write_text("")
    args = [
        "data/x.npz", "--data=data/x.npz", "--out", "data", "cfg.yaml", ".",  # existing: absolute
        "--epochs", "3", "-", "-1", "--name=run1", "new.safetensors", "--save=new.pt",  # kept
        str(tmp_path / "cfg.yaml"), "",
    ]  # fmt: skip
    assert absolute_args(args, tmp_path) == [
        f"{tmp_path}/data/x.npz", f"--data={tmp_path}/data/x.npz", "--out", f"{tmp_path}/data",
        f"{tmp_path}/cfg.yaml", str(tmp_path),
        "--epochs", "3", "-", "-1", "--name=run1", "new.safetensors", "--save=new.pt",
        str(tmp_path / "cfg.yaml"), "",
    ]  # fmt: skip


def test_read_reports_keeps_the_last_value_and_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"step": 0, "loss": 1.0}\n{"step": 0, "loss": 0.5, "acc": 2}\nnot json\n{"lo')
    metrics, bad = read_reports(path)
    assert metrics == {"loss": {0: 0.5}, "acc": {0: 2.0}}
    assert bad == 2


def _run(backend: str, metrics: dict[str, dict[int, float]], status: str = "ok") -> Run:
    code = 0 if status == "ok" else 1
    return Run(backend, status, code, 0.5, "", "Traceback\nValueError: bad", metrics)


def test_a_metric_missing_on_one_backend_is_a_difference() -> None:
    runs = [
        _run("torch", {"loss": {0: 1.0}, "acc": {0: 0.5}}),
        _run("tensorflow", {"loss": {0: 1.0}}),
    ]
    c = compare_runs("s.py", [], 0, 1e-5, 1e-6, runs)
    assert (c.verdict, c.exit_code, c.missing) == (
        "differ",
        1,
        {"torch": [], "tensorflow": ["acc"]},
    )
    assert "tensorflow did not report ['acc']" in format_comparison(c, {})
    nothing = compare_runs("s.py", [], 0, 1e-5, 1e-6, [_run("torch", {}), _run("tensorflow", {})])
    assert (nothing.verdict, nothing.exit_code) == ("failed", 3)
    assert "no twinnn.report calls?" in format_comparison(nothing, {})


def test_plot_without_matplotlib_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [_run("torch", {"loss": {0: 1.0}}), _run("tensorflow", {"loss": {0: 1.0}})]
    c = compare_runs("s.py", [], 0, 1e-5, 1e-6, runs)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(PlotUnavailableError, match=r"matplotlib.*twinnn\[plot\]"):
        plot_comparison(c, tmp_path / "p.png")
    assert isinstance(PlotUnavailableError("x"), ImportError)


# --- argument handling (in process) --------------------------------------------------------------
def test_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.py"
    script.write_text("")
    assert main(["compare", str(tmp_path / "missing.py")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["compare", "--backends", "torch,torch", str(script)]) == 2
    assert "two different backends" in capsys.readouterr().err
    assert main(["compare", "--backends", "torch,jax", str(script)]) == 2
    assert "'jax'" in capsys.readouterr().err
    assert main(["compare", "--rtol", "-1", str(script)]) == 2
    assert main(["compare"]) == 2
    assert main(["info", "--bogus"]) == 2
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:  # checked before matplotlib: pretend both are installed to reach that check
        assert main(["compare", str(script)]) == 2
        assert f"{missing} not installed" in capsys.readouterr().err
        monkeypatch.setattr(registry, "installed_frameworks", lambda: ["torch", "tensorflow"])
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    assert main(["compare", "--plot", str(tmp_path / "p.png"), str(script)]) == 2
    assert "needs matplotlib" in capsys.readouterr().err


def test_info_reports_a_bad_backend_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWINNN_BACKEND", "jax")
    monkeypatch.setattr(config, "_selected", None)
    assert main(["info", "--no-import"]) == 1
    out, err = capsys.readouterr()
    assert "selected backend: none" in out and "TWINNN_BACKEND=jax" in out
    assert "TWINNN_BACKEND must be one of" in err


def test_info_text_in_process(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"twinnn {twinnn.__version__}" in out
    assert f"selected backend: {backend}" in out
    assert f"device: {twinnn.device()}" in out
    # info prints the distribution's version: it can lack the local tag of the framework's
    # own __version__ (a PyPI torch wheel: 2.11.0 for torch.__version__ 2.11.0+cu130)
    version = _public(registry.load(backend).framework_version())
    assert re.search(rf"^  {backend}\s+{re.escape(version)}.*; GPUs: ", out, re.MULTILINE)
    assert "TF32 on GPUs off" in out


# --- through subprocesses ------------------------------------------------------------------------
@pytest.mark.slow
def test_info_json_subprocess(backend: str) -> None:
    env = {**os.environ, "TWINNN_BACKEND": backend, "TWINNN_DEVICE": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "twinnn", "info", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["twinnn"] == twinnn.__version__
    assert (info["selected_backend"], info["device"], info["errors"]) == (backend, "cpu", [])
    for name in registry.installed_frameworks():
        impl = registry.load(name)
        assert info["backends"][name].startswith(_public(impl.framework_version()))
        assert info["gpus"][name] == impl.visible_gpus()
    assert info["env"]["TWINNN_BACKEND"] == backend and info["env"]["TWINNN_TF32"] is None
    assert info["tf32_allowed"] is False


def test_console_script_version() -> None:
    script = Path(sys.executable).with_name("twinnn")
    if not script.exists():
        pytest.skip("the twinnn console script is not installed next to this python")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"twinnn {twinnn.__version__}")


@pytest.mark.slow
def test_compare_passes_on_the_linear_regression_example(tmp_path: Path) -> None:
    _needs_both()
    out = tmp_path / "c.json"
    proc = _twinnn("compare", "examples/linear_regression.py", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "SAME: 1 metric(s), 100 values agree within rtol=1e-05, atol=1e-06" in proc.stdout
    data = json.loads(out.read_text())
    (loss,) = data["metrics"]
    assert loss["name"] == "loss" and loss["steps"] == list(range(100))
    assert loss["max_rel"] <= 1e-5 and loss["first_bad_step"] is None
    for run in data["runs"]:  # what was reported is what the script printed
        printed = re.findall(r"epoch\s+(\d+)\s+loss (\S+)", run["stdout"])
        assert len(printed) == 11
        reported = run["metrics"]["loss"]["values"]
        for epoch, value in printed:
            assert abs(reported[int(epoch) - 1] - float(value)) <= 5e-7


PERTURBED = """
import os
import sys

import twinnn as tn

on_tf = tn.backend() == "tensorflow"
for step in range(12):
    loss, tiny = 1.0 / (step + 1), 2.0 + step
    if on_tf:
        tiny *= 1 + 1e-7      # far inside rtol=1e-5: not a difference
        if step >= 7:
            loss *= 1 + 1e-4  # beyond rtol=1e-5 from step 7 on
    tn.report(step=step, loss=tn.tensor(loss), tiny=tiny)
print("seed", os.environ["TWINNN_SEED"], "args", sys.argv[1:])
"""


@pytest.mark.slow
def test_compare_finds_a_perturbation_plots_it_and_writes_json(tmp_path: Path) -> None:
    _needs_both()
    script = tmp_path / "perturbed.py"
    script.write_text(PERTURBED)
    png, out = tmp_path / "p.png", tmp_path / "c.json"
    args = [str(script), "--epochs", "3", "--plot", str(png), "--json", str(out), "--seed", "5"]
    proc = _twinnn("compare", *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "DIFFER: 'loss' is beyond tolerance (rtol=1e-05, atol=1e-06) from step 7" in proc.stdout
    assert "tiny" not in proc.stdout.split("DIFFER")[1]

    data = json.loads(out.read_text())
    assert Comparison.from_dict(data).to_dict() == data  # --json round-trips
    assert (data["verdict"], data["exit_code"], data["seed"]) == ("differ", 1, 5)
    loss, tiny = data["metrics"]
    assert (loss["name"], loss["first_bad_step"], tiny["name"], tiny["first_bad_step"]) == (
        "loss", 7, "tiny", None
    )  # fmt: skip
    expected = [float(np.float32(1.0 / (s + 1))) for s in range(12)]
    assert loss["a"] == expected  # torch reported the float32 tensor's value exactly
    np.testing.assert_allclose(loss["b"][7:], np.multiply(expected[7:], 1 + 1e-4), rtol=1e-6)
    assert loss["max_rel"] == pytest.approx(1e-4, rel=1e-2)
    for run in data["runs"]:  # the same seed and the script's own arguments reached both runs
        assert "seed 5 args ['--epochs', '3']" in run["stdout"]

    raw = png.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 500


def test_compare_reports_a_crash_as_a_failure_not_a_difference(tmp_path: Path) -> None:
    _needs_both()
    script = tmp_path / "crash.py"
    script.write_text(
        "import os, twinnn\n"
        "for step in range(3):\n"
        "    twinnn.report(step=step, loss=1.0)\n"
        "if os.environ['TWINNN_BACKEND'] == 'tensorflow':\n"
        "    raise RuntimeError('diverged on purpose')\n"
    )
    out = tmp_path / "c.json"
    proc = _twinnn("compare", str(script), "--json", str(out))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "FAILED on tensorflow: the script exited with 1" in proc.stdout
    assert "RuntimeError: diverged on purpose" in proc.stdout
    assert "DIFFER" not in proc.stdout and "SAME" not in proc.stdout
    data = json.loads(out.read_text())
    assert [r["status"] for r in data["runs"]] == ["ok", "failed"]
    assert data["verdict"] == "failed"


def test_compare_timeout_is_a_failure(tmp_path: Path) -> None:
    _needs_both()
    script = tmp_path / "slow.py"
    script.write_text(
        "import os, time, twinnn\n"
        "twinnn.report(step=0, loss=1.0)\n"
        "if os.environ['TWINNN_BACKEND'] == 'torch':\n"
        "    time.sleep(60)\n"
    )
    started = time.monotonic()
    proc = _twinnn("compare", "--timeout", "2", str(script))
    assert time.monotonic() - started < 30
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "FAILED on torch: the script timed out" in proc.stdout
    assert "tensorflow" in proc.stdout and "TIMED OUT" in proc.stdout


def test_show_output_prints_the_last_200_lines_of_each_run(tmp_path: Path) -> None:
    """docs/cli.md: ``--show-output`` prints each run's standard output, its last 200 lines
    (``--sequential`` runs the backends one after the other; the script imports no framework)."""
    _needs_both()
    script = tmp_path / "chatty.py"
    script.write_text(
        "import os, twinnn\n"
        "for i in range(300):\n"
        "    print(os.environ['TWINNN_BACKEND'], 'line', i)\n"
        "twinnn.report(step=0, loss=1.0)\n"
    )
    proc = _twinnn("compare", "--show-output", "--sequential", str(script))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for backend in ("torch", "tensorflow"):
        shown = re.findall(rf"^{backend} line (\d+)$", proc.stdout, re.MULTILINE)
        assert [int(i) for i in shown] == list(range(100, 300)), backend


CHECKPOINTED = """
import os
import sys
from pathlib import Path

import numpy as np

import helper  # found through PYTHONPATH=lib, relative to the user's directory
import twinnn as tn

tn.seed(int(os.environ["TWINNN_SEED"]))
data = np.load(sys.argv[1])  # a path relative to the user's directory
x, y = data[:, :3], data[:, 3:]
model = tn.Linear(3, 1)
optimizer = tn.SGD(model, lr=0.1)
resumed = Path("ckpt.safetensors").exists()  # a fixed relative path, in the run's directory
if resumed:
    tn.load("ckpt.safetensors", model, optimizer)
step = tn.train_step(model, tn.mse_loss, optimizer)
for i in range(5):
    tn.report(step=i, loss=step(x, y), resumed=float(resumed), scale=helper.SCALE)
tn.save("ckpt.safetensors", model, optimizer)
print("cwd", os.getcwd())
"""


@pytest.mark.slow
def test_compare_runs_each_backend_in_its_own_fresh_directory(tmp_path: Path) -> None:
    """A script that resumes from ``ckpt.safetensors`` when it exists starts from scratch on
    both backends (run one after the other: a shared directory would let the second run load
    the first one's checkpoint), and leaves nothing in the user's directory; the script path,
    a data file named by a relative path and a relative PYTHONPATH still resolve there."""
    _needs_both()
    (tmp_path / "ckpt_script.py").write_text(CHECKPOINTED)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("SCALE = 2.5\n")
    np.save(tmp_path / "data.npy", np.random.default_rng(0).standard_normal((8, 4)))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "c.json"
    proc = subprocess.run(
        [sys.executable, "-m", "twinnn", "compare", "--sequential", "ckpt_script.py", "data.npy",
         "--json", "c.json"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": "lib"}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "SAME: 3 metric(s)" in proc.stdout
    data = json.loads(out.read_text())
    assert data["script"] == "ckpt_script.py" and data["args"] == ["data.npy"]  # as typed
    for run in data["runs"]:
        assert run["metrics"]["resumed"]["values"] == [0.0] * 5
        assert run["metrics"]["scale"]["values"] == [2.5] * 5
    cwds = [re.search(r"^cwd (.+)$", run["stdout"], re.MULTILINE) for run in data["runs"]]
    assert all(cwds) and cwds[0] != cwds[1]
    for match in cwds:
        assert match is not None and Path(match.group(1)) != tmp_path
        assert not Path(match.group(1)).exists()  # removed afterwards
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "c.json"])
