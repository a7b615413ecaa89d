"""Backend and device selection (DESIGN.md §1): env vars, aliases, lazy import, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import twinnn as tn
from twinnn import backends as registry
from twinnn import config, errors
from twinnn.backends.base import Backend


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
    # TWINNN_DEVICE unset (auto): the first GPU where the framework sees one, else the CPU
    device = "gpu:0" if registry.load(selected).visible_gpus() else "cpu"
    assert proc.stdout.split() == [selected, device]


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


@contextmanager
def _device_restored() -> Iterator[Backend]:
    """The current backend; its device is put back afterwards (a GPU test may move it)."""
    impl = config.current()
    before = impl.current_device()
    try:
        yield impl
    finally:
        impl.set_device(*config.parse_device(before), "test")


def test_set_device_gpu(backend: str) -> None:
    """On a GPU machine "gpu" resolves to gpu:0; without one it is an error, never a fallback."""
    with _device_restored() as impl:
        if impl.visible_gpus():
            assert tn.set_device("gpu") == "gpu:0"
            assert tn.device() == "gpu:0"
            return
        with pytest.raises(errors.DeviceError) as info:
            tn.set_device("gpu")
        message = str(info.value)
        assert message.startswith("set_device(device) asks for gpu:0 but ")
        assert "sees 0 GPU" in message and "TWINNN_DEVICE" not in message
        assert isinstance(info.value, ValueError)
        assert tn.device() == "cpu"
        assert config._device_spec is None  # the failed call recorded nothing


@pytest.mark.parametrize(("spec", "index"), [("gpu", 0), ("cuda:1", 1)])
def test_device_from_env_var(
    backend: str, spec: str, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TWINNN_DEVICE is applied when the backend is first activated (simulated here)."""
    with _device_restored() as impl:
        monkeypatch.setenv("TWINNN_DEVICE", spec)
        monkeypatch.setattr(config, "_device_spec", None)
        monkeypatch.setattr(config, "_configured", set())
        if len(impl.visible_gpus()) > index:
            assert tn.device() == f"gpu:{index}"
            return
        with pytest.raises(errors.DeviceError) as info:
            tn.device()
        message = str(info.value)
        assert message.startswith(f"TWINNN_DEVICE asks for gpu:{index} but ")
        assert "set_device" not in message
        assert backend not in config._configured  # nothing half-applied
        assert impl.current_device() == "cpu"


# --- TF32, environment flags, seeds -------------------------------------------------------------


def _tf32_flags(name: str) -> list[bool]:
    """The framework's own TF32 switches."""
    if name == "torch":
        import torch

        return [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]
    import tensorflow as tf

    return [tf.config.experimental.tensor_float_32_execution_enabled()]


def _set_tf32_flags(name: str, value: bool) -> None:
    if name == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = value
    else:
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(value)


def test_tf32_is_off_by_default_and_opt_in(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINNN_TF32", raising=False)
    monkeypatch.setattr(config, "_tf32", None)
    try:
        # The frameworks' own defaults turn TF32 on (TensorFlow; torch for cuDNN): twinnn must
        # turn it off when it activates the backend.
        _set_tf32_flags(backend, True)
        monkeypatch.setattr(config, "_configured", set())
        config.current()
        assert config.tf32_allowed() is False
        assert _tf32_flags(backend) == [False] * len(_tf32_flags(backend))

        tn.allow_tf32(True)
        assert config.tf32_allowed() is True
        assert all(_tf32_flags(backend))
        tn.allow_tf32(False)
        assert not any(_tf32_flags(backend))

        monkeypatch.setattr(config, "_tf32", None)
        monkeypatch.setenv("TWINNN_TF32", "On")
        monkeypatch.setattr(config, "_configured", set())
        config.current()
        assert all(_tf32_flags(backend))
    finally:
        _set_tf32_flags(backend, False)


def test_allow_tf32_applies_to_every_loaded_backend(both_backends: list[str]) -> None:
    for name in both_backends:
        tn.set_backend(name)
    try:
        tn.allow_tf32(True)
        assert all(all(_tf32_flags(name)) for name in both_backends)
    finally:
        tn.allow_tf32(False)
    assert not any(any(_tf32_flags(name)) for name in both_backends)


@pytest.mark.parametrize("value", ["false", 1, None, np.float32(1)])
def test_allow_tf32_needs_a_bool(backend: str, value: object) -> None:
    before = _tf32_flags(backend)
    with pytest.raises(errors.ArgumentTypeError) as info:
        tn.allow_tf32(value)  # type: ignore[arg-type]
    assert str(info.value).startswith("allow_tf32(enabled) must be a bool, got ")
    assert repr(value) in str(info.value)
    assert config.tf32_allowed() is False and _tf32_flags(backend) == before


TRUE_SPELLINGS = ["1", "true", "TRUE", " Yes ", "on", "On"]
FALSE_SPELLINGS = ["0", "false", "False", "no", "OFF", "", "  ", None]


@pytest.mark.parametrize("variable", ["TWINNN_TF32", "TWINNN_EAGER"])
@pytest.mark.parametrize(
    ("spelling", "expected"),
    [(s, True) for s in TRUE_SPELLINGS] + [(s, False) for s in FALSE_SPELLINGS],
)
def test_env_flag_spellings(
    variable: str, spelling: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "_tf32", None)
    if spelling is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, spelling)
    read = config.tf32_allowed if variable == "TWINNN_TF32" else config.eager_default
    assert read() is expected


@pytest.mark.parametrize("variable", ["TWINNN_TF32", "TWINNN_EAGER"])
@pytest.mark.parametrize("spelling", ["ture", "2", "enabled", "y", "-1", "on1"])
def test_env_flag_bad_spelling(
    variable: str, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "_tf32", None)
    monkeypatch.setenv(variable, spelling)
    read = config.tf32_allowed if variable == "TWINNN_TF32" else config.eager_default
    with pytest.raises(errors.ArgumentError) as info:
        read()
    message = str(info.value)
    assert message.startswith(f"{variable} must be one of 1, true, yes, on (true)")
    assert message.endswith(f"got {spelling!r}")


def test_bad_tf32_variable_leaves_the_backend_unconfigured(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "_tf32", None)
    monkeypatch.setenv("TWINNN_TF32", "ture")
    monkeypatch.setattr(config, "_configured", set())
    with pytest.raises(errors.ArgumentError, match=r"TWINNN_TF32.*'ture'"):
        tn.Linear(2, 2)
    assert backend not in config._configured
    assert not any(_tf32_flags(backend))


@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        ("1", errors.ArgumentTypeError, r"seed\(value\) must be an int, got str '1'"),
        (1.0, errors.ArgumentTypeError, r"seed\(value\) must be an int, got float 1.0"),
        (True, errors.ArgumentTypeError, r"seed\(value\) must be an int, got bool True"),
        (None, errors.ArgumentTypeError, r"seed\(value\) must be an int, got NoneType"),
        (-3, errors.ArgumentError, r"seed\(value\) must be >= 0 and < 2\*\*63, got -3$"),
        (2**63, errors.ArgumentError, r"seed\(value\) must be >= 0 and < 2\*\*63, got 9223"),
        (2**70, errors.ArgumentError, r"seed\(value\) must be >= 0 and < 2\*\*63, got 1180"),
    ],
)
def test_bad_seed_changes_nothing(
    backend: str, value: object, error: type[errors.TwinnnError], pattern: str
) -> None:
    def draws() -> tuple[np.ndarray, np.ndarray]:
        layer = tn.Linear(3, 2)  # twinnn's generator
        noise = config.current().to_numpy(_framework_draw(backend))  # the framework's
        return tn.to_numpy(layer.weight), noise

    tn.seed(7)
    expected = draws()
    tn.seed(7)
    with pytest.raises(error, match=pattern):
        tn.seed(value)  # type: ignore[arg-type]
    assert config._seed == 7
    got = draws()
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def _framework_draw(name: str) -> object:
    if name == "torch":
        import torch

        return torch.rand(3)
    import tensorflow as tf

    return tf.random.uniform([3])


@pytest.mark.parametrize("value", [0, np.int64(5), 2**63 - 1])
def test_seed_range_both_frameworks_accept(backend: str, value: int) -> None:
    tn.seed(value)
    assert config._seed == int(value)
    first = tn.to_numpy(tn.Linear(2, 2).weight), config.current().to_numpy(_framework_draw(backend))
    tn.seed(value)
    second = (
        tn.to_numpy(tn.Linear(2, 2).weight),
        config.current().to_numpy(_framework_draw(backend)),
    )
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


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
    np.testing.assert_allclose(tn.to_numpy(tf_layer(x)), out.detach().cpu().numpy(), rtol=1e-6)

    with pytest.raises(errors.BackendMismatchError, match=r"'x'.*torch.*tensorflow backend"):
        tf_layer(out)
    with pytest.raises(errors.BackendMismatchError, match=r"torch.*tensorflow"):
        tf_layer.extra = torch_layer
    with pytest.raises(errors.BackendMismatchError, match=r"optimizer.*'tensorflow'.*'torch'"):
        tn.train_step(torch_layer, tn.mse_loss, tn.SGD(tf_layer.parameters(), lr=0.1))
    assert issubclass(errors.BackendMismatchError, TypeError)
