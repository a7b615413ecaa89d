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


@pytest.mark.slow
def test_cnn_classifier_learns_and_is_the_same_on_both_backends(tmp_path: Path) -> None:
    """Conv2D (SAME, stride 2 with TensorFlow's end padding), pooling, BatchNorm and dropout:
    six of the ten default epochs, one CPU thread per run (two runs share the machine)."""
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"needs both frameworks; missing {missing}")
    report = tmp_path / "compare.json"
    threads = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **dict.fromkeys(threads, "1")}
    env.pop("TWINNN_REPORT_FILE", None)
    script = ROOT / "examples" / "cnn_classifier.py"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "twinnn", "compare", str(script)),
            *("--json", str(report), "--timeout", "300", "--"),
            *("--epochs", "6", "--valid", "500"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["verdict"] == "same"
    metrics = {m["name"]: m for m in result["metrics"]}
    assert set(metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    val_accuracy = metrics["val_accuracy"]["a"]
    assert len(val_accuracy) == 6 and val_accuracy[-1] > 0.6  # from chance (1/6)
    assert metrics["loss"]["a"][-1] < 0.6 * metrics["loss"]["a"][0]


@pytest.mark.slow
def test_transformer_classifier_is_the_same_on_both_backends_with_dropout(tmp_path: Path) -> None:
    """The Transformer example at reduced sizes (dropout 0.1 in the attention, the MLP, the
    residual branches and on the embeddings; AdamW with warm-up and cosine decay; clipping):
    ``twinnn compare`` says SAME for every metric of every epoch."""
    missing = [b for b in ("torch", "tensorflow") if b not in registry.installed_frameworks()]
    if missing:
        pytest.skip(f"needs both frameworks; missing {missing}")
    report = tmp_path / "compare.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TWINNN_REPORT_FILE", None)
    script = ROOT / "examples" / "transformer_classifier.py"
    reduced = ["--train", "1024", "--valid", "200", "--epochs", "3"]  # the default model
    run = subprocess.run(
        [
            *(sys.executable, "-m", "twinnn", "compare", str(script)),
            *("--json", str(report), "--timeout", "600", "--", *reduced),
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
    assert all(len(m["a"]) == 3 for m in metrics.values())
    assert 0.5 < metrics["loss"]["a"][0] < 1.0  # binary cross-entropy near log(2) at the start
