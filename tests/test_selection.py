"""Backend and device selection (DESIGN.md §1): env vars, aliases, lazy import, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import twinnn as tn
from twinnn import backends as registry
from twinnn import config, errors


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TWINNN_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("selected", "other"), [("torch", "tensorflow"), ("tensorflow", "torch")])
def test_import_loads_only_the_selected_framework(selected: str, other: str) -> None:
    if selected not in registry.installed_frameworks():
        pytest.skip(f"{selected} is not installed")
    proc = _run(
        f"""
        import sys
        import twinnn
        assert "{selected}" not in sys.modules and "{other}" not in sys.modules, "eager import"
        model = twinnn.Linear(3, 2)
        twinnn.train_step(model, twinnn.mse_loss, twinnn.SGD(model.parameters(), lr=0.1))(
            [[1.0, 2.0, 3.0]], [[0.0, 1.0]])
        lstm = twinnn.LSTM(3, 4)
        lstm([[[1.0, 2.0, 3.0]]], [1])
        assert "{selected}" in sys.modules
        assert "{other}" not in sys.modules, "the other framework was imported"
        # torch.compile's machinery (about 1 s, 70 MiB) loads only for jit=True steps.
        assert "torch._dynamo" not in sys.modules, "eager use imported torch._dynamo"
        print(twinnn.backend(), twinnn.device())
        """,
        TWINNN_BACKEND=selected,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [selected, "cpu"]


@pytest.mark.parametrize(
    ("alias", "name"), [("pytorch", "torch"), ("TF", "tensorflow"), (" torch ", "torch")]
)
def test_aliases(alias: str, name: str) -> None:
    if name not in registry.installed_frameworks():
        pytest.skip(f"{name} is not installed")
    assert tn.set_backend(alias) == name
    assert tn.backend() == name


def test_unknown_backend_name_lists_choices_and_installed() -> None:
    with pytest.raises(errors.BackendError, match=r"set_backend\(name\).*'jax'.*installed") as info:
        tn.set_backend("jax")
    assert isinstance(info.value, ValueError)
    for choice in ("torch", "tensorflow", "pytorch", "tf"):
        assert choice in str(info.value)


def test_unknown_backend_from_env_var() -> None:
    proc = _run("import twinnn; twinnn.Linear(2, 2)", TWINNN_BACKEND="mxnet")
    assert proc.returncode != 0
    assert "BackendError" in proc.stderr and "TWINNN_BACKEND" in proc.stderr
    assert "'mxnet'" in proc.stderr


def test_missing_framework_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(registry, "framework_installed", lambda name: name != "tensorflow")
    with pytest.raises(
        errors.BackendNotInstalledError, match=r"'tensorflow'.*not installed"
    ) as info:
        tn.set_backend("tf")
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    assert "installed: ['torch']" in str(info.value)


@pytest.mark.parametrize("spec", ["tpu", "gpu:x", "cpu:0", "", "gpu:-1", 3])
def test_unknown_device_string(backend: str, spec: object) -> None:
    with pytest.raises(errors.DeviceError, match=r"set_device\(device\).*'auto', 'cpu'") as info:
        tn.set_device(spec)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_cpu_device_and_parse(backend: str) -> None:
    assert tn.set_device("cpu") == "cpu"
    assert tn.device() == "cpu"
    assert config.parse_device("cuda:3") == ("gpu", 3)
    assert config.parse_device("GPU") == ("gpu", None)


def test_gpu_asked_for_and_absent_is_an_error_not_a_fallback(backend: str) -> None:
    if config.current().visible_gpus():
        pytest.skip("a GPU is visible")
    with pytest.raises(errors.DeviceError, match=r"gpu:0.*sees 0 GPU") as info:
        tn.set_device("gpu")
    assert isinstance(info.value, ValueError)
    assert tn.device() == "cpu"


@pytest.mark.parametrize("name", ["torch", "tensorflow"])
def test_gpu_from_env_var_without_gpu(name: str) -> None:
    if name not in registry.installed_frameworks():
        pytest.skip(f"{name} is not installed")
    proc = _run(
        "import twinnn; print(twinnn.device())", TWINNN_BACKEND=name, TWINNN_DEVICE="cuda:1"
    )
    if proc.returncode == 0:
        pytest.skip("this machine has GPUs")
    assert "DeviceError" in proc.stderr and "TWINNN_DEVICE" in proc.stderr


def test_tf32_is_off_by_default_and_opt_in() -> None:
    assert config.tf32_allowed() is False
    tn.allow_tf32(True)
    assert config.tf32_allowed() is True
    tn.allow_tf32(False)
    assert config.tf32_allowed() is False


def test_tf32_flags_applied_to_torch() -> None:
    if "torch" not in registry.installed_frameworks():
        pytest.skip("torch is not installed")
    import torch

    tn.set_backend("torch")
    tn.allow_tf32(False)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    tn.allow_tf32(True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    tn.allow_tf32(False)


def test_tf32_flag_applied_to_tensorflow() -> None:
    if "tensorflow" not in registry.installed_frameworks():
        pytest.skip("tensorflow is not installed")
    import tensorflow as tf

    tn.set_backend("tensorflow")
    tn.allow_tf32(False)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_bad_seed(backend: str) -> None:
    with pytest.raises(errors.ArgumentTypeError, match=r"seed\(value\).*int.*str"):
        tn.seed("1")  # type: ignore[arg-type]
    with pytest.raises(errors.ArgumentError, match=r"seed\(value\).*>= 0.*-3"):
        tn.seed(-3)


def test_objects_keep_their_backend(both_backends: list[str]) -> None:
    tn.set_backend("torch")
    tn.seed(0)
    torch_layer = tn.Linear(3, 2)
    tn.set_backend("tensorflow")
    tn.seed(0)
    tf_layer = tn.Linear(3, 2)
    x = np.ones((2, 3), np.float32)
    # Called while tensorflow is current, the torch layer still runs on torch.
    out = torch_layer(x)
    assert type(out).__module__.startswith("torch")
    np.testing.assert_allclose(tn.to_numpy(tf_layer(x)), out.detach().numpy(), rtol=1e-6)

    with pytest.raises(errors.BackendMismatchError, match=r"'x'.*torch.*tensorflow backend"):
        tf_layer(out)
    with pytest.raises(errors.BackendMismatchError, match=r"torch.*tensorflow"):
        tf_layer.extra = torch_layer
    with pytest.raises(errors.BackendMismatchError, match=r"optimizer.*'tensorflow'.*'torch'"):
        tn.train_step(torch_layer, tn.mse_loss, tn.SGD(tf_layer.parameters(), lr=0.1))
    assert issubclass(errors.BackendMismatchError, TypeError)
