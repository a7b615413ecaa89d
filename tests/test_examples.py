"""The examples added for real-model workloads: each trains, and ``twinnn compare`` says SAME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinnn import backends as registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_text_classifier_learns_and_is_the_same_on_both_backends(tmp_path: Path) -> None:
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"needs both frameworks; missing {missing}")
    report = tmp_path / "compare.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TWINNN_REPORT_FILE", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinnn",
            "compare",
            str(ROOT / "examples" / "text_classifier.py"),
            "--json",
            str(report),
            "--timeout",
            "600",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["verdict"] == "same"
    metrics = {m["name"]: m for m in result["metrics"]}
    assert set(metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    val_accuracy = metrics["val_accuracy"]["a"]
    assert len(val_accuracy) == 6 and val_accuracy[-1] > 0.9  # from chance (1/3)
    assert metrics["loss"]["a"][-1] < 0.5 * metrics["loss"]["a"][0]


@pytest.mark.slow
def test_word_language_model_is_the_same_on_both_backends_with_dropout(tmp_path: Path) -> None:
    """Dropout on (0.2): the hash masks make the two backends' runs the same."""
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"needs both frameworks; missing {missing}")
    report = tmp_path / "compare.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TWINNN_REPORT_FILE", None)
    script = ROOT / "examples" / "word_language_model.py"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinnn",
            "compare",
            str(script),
            "--json",
            str(report),
            "--timeout",
            "600",
            "--",
            "--tokens",
            "30000",
            "--epochs",
            "3",
            "--tied",
            "--emsize",
            "48",
            "--nhid",
            "48",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["verdict"] == "same"
    metrics = {m["name"]: m for m in result["metrics"]}
    val = metrics["val_loss"]["a"]
    assert len(val) == 3 and val[-1] < val[0] < 3.0  # perplexity below e**3 of 57 words
