"""Checkpoints: round trips of every optimiser (same backend, across backends in one process and
in fresh processes), format-1 files, every header length, bad and hostile files, no unpickling,
the optimiser-of-the-model check, atomic writes, cleanup of stale temporaries."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy

import twinnn
from twinnn import io as tio
from twinnn.backends import installed_frameworks
from twinnn.errors import ArgumentError, ArgumentTypeError, CheckpointError, StateDictError

SRC = Path(__file__).resolve().parents[1] / "src" / "twinnn"

NAMES = ["hidden.weight", "hidden.bias", "head.weight", "head.bias"]


class Net(twinnn.Module):
    """Two Linear layers with a tanh between: dotted names, two parameter shapes each."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = twinnn.Linear(4, hidden)
        self.head = twinnn.Linear(hidden, 3)

    def forward(self, x: Any) -> Any:
        return self.head(twinnn.tanh(self.hidden(x)))


class SeqNet(twinnn.Module):
    """A bidirectional LSTM over padded sequences, its final states into a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = twinnn.LSTM(3, 5, bidirectional=True)
        self.head = twinnn.Linear(10, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, (h, _) = self.lstm(x, lengths=lengths)
        return self.head(twinnn.concat([h[-2], h[-1]], axis=-1))


def _seq_data() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 7, 3)).astype(np.float32)
    return (x, np.array([7, 2, 5, 1, 7, 4])), rng.standard_normal((6, 1)).astype(np.float32)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return (
        rng.standard_normal((16, 4)).astype(np.float32),
        rng.standard_normal((16, 3)).astype(np.float32),
    )


def _trained(steps: int = 3) -> tuple[Net, twinnn.SGD]:
    model = Net()
    opt = twinnn.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
    step = twinnn.train_step(model, twinnn.mse_loss, opt)
    x, y = _data()
    for _ in range(steps):
        step(x, y)
    return model, opt


def _grads(model: twinnn.Module, seed: int) -> list[np.ndarray]:
    """Gradients for every parameter of ``model``, in order, the same on both backends."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(a.shape).astype(np.float32) for a in model.state_dict().values()]


def _snapshot(model: twinnn.Module, opt: twinnn.Optimizer) -> tuple[dict[str, np.ndarray], Any]:
    return model.state_dict(), opt.state_dict()


def _assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """The same names, and bit for bit the same float32 arrays (NaN payloads and -0.0 too)."""
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def _assert_same_optimizer(a: dict[str, Any], b: dict[str, Any], *, step: bool = True) -> None:
    """Two optimiser state dicts are equal: type, step, groups (lr or schedule, every option)
    and every slot of every parameter, bit for bit."""
    skip = {"state"} if step else {"state", "step"}
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }
    assert list(a["state"]) == list(b["state"])
    for name, slots in a["state"].items():
        assert sorted(slots) == sorted(b["state"][name]), name
        _assert_identical(dict(sorted(slots.items())), dict(sorted(b["state"][name].items())))


def _assert_same(a: Any, b: Any) -> None:
    model_a, opt_a = a
    model_b, opt_b = b
    _assert_identical(model_a, model_b)
    _assert_same_optimizer(opt_a, opt_b)


#: Every optimiser and the options that shape its state (slots), as (the optimiser that is
#: saved, one built with other settings of the same shape that loads it, its slots).
OPTIMIZERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], list[str]]] = {
    "SGD": (
        lambda p: twinnn.SGD(p, lr=0.05, weight_decay=1e-3),
        # the loading optimiser differs in every value but those that shape the update
        lambda p: twinnn.SGD(p, lr=0.5, weight_decay=0.5),
        [],
    ),
    "SGD-momentum": (
        lambda p: twinnn.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
        lambda p: twinnn.SGD(p, lr=0.5, momentum=0.5, weight_decay=0.5),
        ["momentum_buffer"],
    ),
    "SGD-nesterov": (
        lambda p: twinnn.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
        lambda p: twinnn.SGD(p, lr=0.5, momentum=0.2, nesterov=True),
        ["momentum_buffer"],
    ),
    "Adam-amsgrad": (
        lambda p: twinnn.Adam(
            p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, amsgrad=True
        ),
        lambda p: twinnn.Adam(p, lr=0.3, weight_decay=0.5, amsgrad=True),
        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
    ),
    "Adam-StepLR": (  # the schedule and the step decide the next rates
        lambda p: twinnn.Adam(p, lr=twinnn.schedules.StepLR(0.1, step_size=2)),
        lambda p: twinnn.Adam(p, lr=0.3),
        ["exp_avg", "exp_avg_sq"],
    ),
    "AdamW": (
        lambda p: twinnn.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda p: twinnn.AdamW(p, lr=0.3, betas=(0.5, 0.6), eps=1e-3),
        ["exp_avg", "exp_avg_sq"],
    ),
    "RMSprop-centered-momentum": (
        lambda p: twinnn.RMSprop(
            p, lr=0.01, alpha=0.9, eps=1e-6, weight_decay=1e-3, momentum=0.5, centered=True
        ),
        lambda p: twinnn.RMSprop(p, lr=0.3, momentum=0.9, centered=True, weight_decay=0.5),
        ["square_avg", "momentum_buffer", "grad_avg"],
    ),
    "Adagrad": (
        lambda p: twinnn.Adagrad(
            p, lr=0.1, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1
        ),
        # initial_accumulator_value only fills the slot at the start: the loaded one may differ
        lambda p: twinnn.Adagrad(p, lr=0.7, eps=1e-3, weight_decay=1e-4),
        ["sum"],
    ),
}


def _updated(model: twinnn.Module, opt: Any, seeds: range) -> None:
    for seed in seeds:
        opt.apply_gradients(_grads(model, seed))


# --- round trips in one process -------------------------------------------------------------------
def test_round_trip_same_backend(backend: str, tmp_path: Path) -> None:
    model, opt = _trained()
    path = tmp_path / "ckpt.safetensors"
    twinnn.save(path, model, opt, metadata={"epoch": "3", "note": "ünïcode"})
    twinnn.seed(1)
    fresh = Net()
    fresh_opt = twinnn.SGD(fresh, lr=0.5, momentum=0.9, weight_decay=1e-3)
    assert not np.array_equal(fresh.state_dict()["head.weight"], model.state_dict()["head.weight"])
    meta = twinnn.load(str(path), fresh, fresh_opt)
    assert meta == {"epoch": "3", "note": "ünïcode"}
    _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
    assert fresh_opt.lr == 0.05
    assert fresh_opt.step_count == 3


def test_file_is_plain_safetensors_in_the_neutral_layout(backend: str, tmp_path: Path) -> None:
    model, opt = _trained()
    path = tmp_path / "ckpt.safetensors"
    twinnn.save(path, model, opt)
    tensors = safetensors.numpy.load_file(str(path))
    assert set(tensors) == {
        *(f"model/{n}" for n in ("hidden.weight", "hidden.bias", "head.weight", "head.bias")),
        *(f"optimizer/momentum_buffer/{n}" for n in ("hidden.weight", "hidden.bias")),
        *(f"optimizer/momentum_buffer/{n}" for n in ("head.weight", "head.bias")),
    }
    assert tensors["model/hidden.weight"].shape == (4, 8)  # (in, out): neutral layout
    np.testing.assert_array_equal(tensors["model/head.bias"], model.state_dict()["head.bias"])
    # the metadata is the optimiser's state dict less its slots, as JSON
    meta = _raw_metadata(path)
    assert meta["twinnn.format_version"] == "2"
    assert json.loads(meta["twinnn.optimizer"]) == {
        "type": "SGD",
        "step": 3,
        "param_groups": [
            {
                "params": NAMES,
                "lr": 0.05,
                "momentum": 0.9,
                "dampening": 0.0,
                "weight_decay": 1e-3,
                "nesterov": False,
            }
        ],
    }
    assert json.loads(meta["twinnn.parameters"]) == [
        ["hidden.weight", [4, 8]],
        ["hidden.bias", [8]],
        ["head.weight", [8, 3]],
        ["head.bias", [3]],
    ]
    ckpt = tio.read(path)
    assert ckpt.format_version == tio.FORMAT_VERSION == 2
    assert ckpt.backend == backend
    assert ckpt.model_class == "Net"
    assert list(ckpt.parameters) == ["hidden.weight", "hidden.bias", "head.weight", "head.bias"]
    assert ckpt.optimizer is not None
    _assert_same_optimizer(ckpt.optimizer, opt.state_dict())


def test_without_optimizer_and_without_momentum(backend: str, tmp_path: Path) -> None:
    model = Net()
    path = tmp_path / "m.safetensors"
    twinnn.save(path, model)
    assert tio.read(path).optimizer is None
    assert "twinnn.optimizer" not in _raw_metadata(path)
    fresh = Net()
    assert twinnn.load(path, fresh) == {}
    _assert_identical(model.state_dict(), fresh.state_dict())
    plain = twinnn.SGD(model, lr=0.1)
    twinnn.save(path, model, plain)
    assert not any(k.startswith("optimizer/") for k in safetensors.numpy.load_file(str(path)))
    assert tio.read(path).optimizer == {
        "type": "SGD",
        "step": 0,
        "param_groups": [
            {
                "params": NAMES,
                "lr": 0.1,
                "momentum": 0.0,
                "dampening": 0.0,
                "weight_decay": 0.0,
                "nesterov": False,
            }
        ],
        "state": {n: {} for n in NAMES},
    }
    other = twinnn.SGD(fresh, lr=0.3)
    twinnn.load(path, fresh, other)
    assert other.lr == 0.1


def test_overwrite_and_symlink(backend: str, tmp_path: Path) -> None:
    model = Net()
    real = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    twinnn.save(real, model, metadata={"v": "1"})
    link.symlink_to(real)
    twinnn.save(link, model, metadata={"v": "2"})
    assert link.is_symlink()
    assert tio.read(real).metadata == {"v": "2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.safetensors", "real.safetensors"]


# --- every optimiser ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_every_optimizer_round_trips_bit_exact(backend: str, tmp_path: Path, kind: str) -> None:
    """Its step, learning rate, every option and every slot come back bit for bit into an
    optimiser built with other settings (of the same slots), and the updates that follow are
    the uninterrupted run's."""
    make, make_other, slots = OPTIMIZERS[kind]
    model = Net()
    opt = make(model)
    _updated(model, opt, range(3))
    path = tmp_path / "c.safetensors"
    twinnn.save(path, model, opt)
    assert set(safetensors.numpy.load_file(str(path))) == {
        *(f"model/{n}" for n in NAMES),
        *(f"optimizer/{slot}/{n}" for slot in slots for n in NAMES),
    }
    twinnn.seed(1)
    fresh = Net()
    fresh_opt = make_other(fresh)
    _updated(fresh, fresh_opt, range(10, 12))  # a step and state of its own
    assert fresh_opt.state_dict()["param_groups"] != opt.state_dict()["param_groups"]
    assert twinnn.load(path, fresh, fresh_opt) == {}
    assert fresh_opt.step_count == 3
    assert fresh_opt.lr == opt.lr
    _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
    _updated(model, opt, range(3, 5))
    _updated(fresh, fresh_opt, range(3, 5))
    _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))


def test_every_optimizer_resumes_across_backends_in_one_process(
    both_backends: list[str], tmp_path: Path
) -> None:
    """Saved under one backend, loaded under the other: the state arrives bit for bit, and the
    updates that follow, from the same gradients, are bit-identical to the saving backend's
    (each update is the same float32 operations on both, see twinnn.optim.base)."""
    path = tmp_path / "c.safetensors"
    for first, second in [("torch", "tensorflow"), ("tensorflow", "torch")]:
        for kind, (make, make_other, _) in OPTIMIZERS.items():
            twinnn.set_backend(first)
            twinnn.seed(0)
            model = Net()
            opt = make(model)
            _updated(model, opt, range(3))
            twinnn.save(path, model, opt, metadata={"from": first})
            twinnn.set_backend(second)
            twinnn.seed(1)
            fresh = Net()
            fresh_opt = make_other(fresh)
            assert fresh.backend == fresh_opt.backend == second
            assert twinnn.load(path, fresh, fresh_opt) == {"from": first}
            _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
            _updated(model, opt, range(3, 5))
            _updated(fresh, fresh_opt, range(3, 5))
            try:
                _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
            except AssertionError as exc:
                raise AssertionError(f"{kind}, saved under {first}: {exc}") from exc


def test_schedule_round_trip(backend: str, tmp_path: Path) -> None:
    """An Adam whose lr is a StepLR, saved after 3 updates: the loaded one (built with a float
    lr) has the schedule and the step, so its next learning rates and updates are the saved
    one's."""
    schedules = pytest.importorskip("twinnn.schedules")
    if not hasattr(schedules, "StepLR"):
        pytest.skip("twinnn.schedules has no StepLR")
    model = Net()
    opt = twinnn.Adam(model, lr=schedules.StepLR(0.1, step_size=2))
    _updated(model, opt, range(3))
    path = tmp_path / "c.safetensors"
    twinnn.save(path, model, opt)
    group = json.loads(_raw_metadata(path)["twinnn.optimizer"])["param_groups"][0]
    assert group["lr"] == {"schedule": schedules.StepLR(0.1, step_size=2).to_config()}
    twinnn.seed(1)
    fresh = Net()
    fresh_opt = twinnn.Adam(fresh, lr=0.5)
    twinnn.load(path, fresh, fresh_opt)
    assert fresh_opt.param_groups[0].lr == opt.param_groups[0].lr
    assert fresh_opt.step_count == 3
    assert fresh_opt.lr == opt.lr == pytest.approx(0.1 * 0.1)  # update 3: one decay
    _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
    for k in range(3, 6):
        assert fresh_opt.lr == opt.lr
        opt.apply_gradients(_grads(model, k))
        fresh_opt.apply_gradients(_grads(fresh, k))
        _assert_same(_snapshot(model, opt), _snapshot(fresh, fresh_opt))
    assert fresh_opt.lr == opt.lr == pytest.approx(0.1 * 0.1**3)  # update 6: three decays


# --- format 1 -------------------------------------------------------------------------------------
def _write_format_1(
    path: Path,
    parameters: dict[str, np.ndarray],
    sgd: dict[str, Any] | None,
    *,
    backend: str = "torch",
    metadata: dict[str, str] | None = None,
    spec: str | None = None,
) -> None:
    """A file as twinnn's format-1 ``save`` wrote it (SGD only), from an SGD ``state_dict()``:
    tensors ``model/<name>`` and ``optimizer/momentum_buffer/<name>``, metadata
    ``twinnn.optimizer`` = ``{"type": "SGD", "lr", "momentum", "nesterov", "weight_decay",
    "parameters"}`` (``spec`` replaces that JSON text)."""
    tensors = {f"model/{n}": np.ascontiguousarray(a) for n, a in parameters.items()}
    header = {
        "twinnn.format_version": "1",
        "twinnn.backend": backend,
        "twinnn.version": "0.1.0",
        "twinnn.model": "Net",
        "twinnn.parameters": json.dumps([[n, list(a.shape)] for n, a in parameters.items()]),
    }
    if sgd is not None:
        group = sgd["param_groups"][0]
        header["twinnn.optimizer"] = spec or json.dumps(
            {
                "type": "SGD",
                "lr": group["lr"],
                "momentum": group["momentum"],
                "nesterov": group["nesterov"],
                "weight_decay": group["weight_decay"],
                "parameters": list(group["params"]),
            }
        )
        for name, slots in sgd["state"].items():
            if "momentum_buffer" in slots:
                tensors[f"optimizer/momentum_buffer/{name}"] = slots["momentum_buffer"]
    header.update({f"user.{k}": v for k, v in (metadata or {}).items()})
    path.write_bytes(safetensors.numpy.save(tensors, metadata=header))


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.9, False), (0.9, True), (0.0, False)])
def test_format_1_file_loads_and_training_continues(
    backend: str, tmp_path: Path, momentum: float, nesterov: bool
) -> None:
    """A file of twinnn's first format (no step count) loads into an SGD built with other
    settings; its step is 1 where momentum buffers exist (they are not started afresh), and
    training continues exactly as the uninterrupted run."""
    x, y = _data()
    model = Net()
    opt = twinnn.SGD(model, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=1e-3)
    step = twinnn.train_step(model, twinnn.mse_loss, opt)
    for _ in range(3):
        step(x, y)
    path = tmp_path / "v1.safetensors"
    _write_format_1(
        path, model.state_dict(), opt.state_dict(), backend=backend, metadata={"epoch": "3"}
    )
    saved = opt.state_dict()
    expected = [twinnn.to_numpy(step(x, y)).tobytes() for _ in range(3)]

    ckpt = tio.read(path)
    assert ckpt.format_version == 1
    assert ckpt.optimizer is not None
    _assert_same_optimizer(ckpt.optimizer, saved, step=False)
    assert ckpt.optimizer["step"] == (1 if momentum else 0)
    twinnn.seed(1)
    fresh = Net()
    fresh_opt = twinnn.SGD(fresh, lr=0.5, momentum=0.5 if momentum else 0.0)
    assert twinnn.load(path, fresh, fresh_opt) == {"epoch": "3"}
    assert fresh_opt.step_count == (1 if momentum else 0)
    assert (fresh_opt.lr, fresh_opt.momentum, fresh_opt.nesterov) == (0.05, momentum, nesterov)
    assert fresh_opt.weight_decay == 1e-3
    _assert_same_optimizer(fresh_opt.state_dict(), saved, step=False)
    # the step is built after the load, as a resumed run does
    fresh_step = twinnn.train_step(fresh, twinnn.mse_loss, fresh_opt)
    assert [twinnn.to_numpy(fresh_step(x, y)).tobytes() for _ in range(3)] == expected
    _assert_identical(model.state_dict(), fresh.state_dict())
    _assert_same_optimizer(fresh_opt.state_dict(), opt.state_dict(), step=False)
    # and saving it again writes format 2
    twinnn.save(path, fresh, fresh_opt)
    assert tio.read(path).format_version == 2


# --- every header length loads --------------------------------------------------------------------
def test_header_length_128_mod_256_is_not_taken_for_a_pickle(backend: str, tmp_path: Path) -> None:
    """Regression: byte 0 of a safetensors file is the low byte of its header length; for these
    files it is 0x80, a pickle's first byte, and load refused them. (Format 1 wrote such
    headers for ``Linear(n, 1)`` with a momentum SGD under torch; here a metadata entry pads
    each header to a length of 128 mod 256, under either backend.)"""
    path = tmp_path / "small.safetensors"
    first_bytes = set()
    for n in range(1, 10):
        model = twinnn.Linear(n, 1)
        params = model.parameters()
        opt = twinnn.SGD(params, lr=0.1, momentum=0.9) if n % 2 else twinnn.Adam(params, lr=0.1)
        _updated(model, opt, range(n, n + 1))
        twinnn.save(path, model, opt, metadata={"pad": ""})
        length = int.from_bytes(path.read_bytes()[:8], "little")  # padded to a multiple of 8
        pad = "x" * ((0x80 - length) % 256)  # then the padded length is 128 mod 256
        twinnn.save(path, model, opt, metadata={"pad": pad})
        first_bytes.add(path.read_bytes()[0])
        saved = _snapshot(model, opt)
        _updated(model, opt, range(n + 1, n + 2))  # then the file must bring all of it back
        assert twinnn.load(path, model, opt) == {"pad": pad}
        _assert_same(saved, _snapshot(model, opt))
    assert first_bytes == {0x80}
    # cut short, such a file is reported as truncated, not as a pickle
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="header length field says") as info:
        tio.read(path)
    assert "pickle" not in str(info.value)


def test_every_header_length_mod_256_loads(backend: str, tmp_path: Path) -> None:
    model = twinnn.Linear(2, 1)
    opt = twinnn.SGD(model, lr=0.1, momentum=0.9)
    saved = _snapshot(model, opt)
    path = tmp_path / "c.safetensors"
    # twinnn.save (safetensors) pads the header to a multiple of 8: 32 residues, 8 bytes apart
    lows = set()
    for extra in range(0, 256, 8):
        twinnn.save(path, model, opt, metadata={"pad": "x" * extra})
        lows.add(path.read_bytes()[0])
        assert twinnn.load(path, model, opt) == {"pad": "x" * extra}
    assert len(lows) == 32
    # other writers need not pad: the same file with an unpadded header of every length mod 256
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + size]), data[8 + size :]
    lows = set()
    for extra in range(256):
        header["__metadata__"]["user.pad"] = "x" * extra
        text = json.dumps(header, separators=(",", ":")).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + body)
        lows.add(len(text) % 256)
        assert twinnn.load(path, model, opt) == {"pad": "x" * extra}
        _assert_same(saved, _snapshot(model, opt))
    assert lows == set(range(256))


# --- across backends, in fresh processes ----------------------------------------------------------
WORKER = r"""
import json, sys
import numpy as np
import twinnn
sys.path.insert(0, sys.argv[4])
from test_io import Net, SeqNet, _data, _seq_data

mode, folder, out = sys.argv[1:4]
result = {"backend": twinnn.backend()}
sgd = lambda model: twinnn.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
adam = lambda model: twinnn.Adam(model, lr=0.01, weight_decay=1e-3, amsgrad=True)
cases = [("linear", Net, _data(), sgd), ("lstm", SeqNet, _seq_data(), sgd)]
cases.append(("linear-adam", Net, _data(), adam))
for kind, cls, (inputs, y), make in cases:
    ckpt = f"{folder}/{kind}.safetensors"
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    twinnn.seed(0 if mode == "first" else 99)
    model = cls()
    opt = make(model)
    step = twinnn.train_step(model, twinnn.mse_loss, opt)
    loss = lambda: float(twinnn.to_numpy(step(*inputs, y)))
    res = result[kind] = {}
    if mode == "first":
        losses = [loss() for _ in range(4)]
        twinnn.save(ckpt, model, opt, metadata={"step": "4"})
    else:
        losses = []
        res["meta"] = twinnn.load(ckpt, model, opt)
    res["step"] = opt.step_count
    res["params"] = {n: a.tolist() for n, a in model.state_dict().items()}
    res["slots"] = {
        f"{slot}/{n}": a.tolist() for n, slots in opt.state_dict()["state"].items()
        for slot, a in slots.items()
    }
    res["outputs"] = twinnn.to_numpy(model(*inputs)).tolist()
    opt.lr = 0.02  # a schedule: the restored momentum buffer must meet the new rate as in torch
    res["losses"] = losses + [loss() for _ in range(4)]
with open(out, "w") as f:
    json.dump(result, f)
"""


def _run_worker(tmp_path: Path, backend: str, mode: str) -> dict[str, Any]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"{mode}.json"
    env = {**os.environ, "TWINNN_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            mode,
            str(tmp_path),
            str(out),
            str(Path(__file__).parent),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["backend"] == backend
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second"), [("torch", "tensorflow"), ("tensorflow", "torch")])
def test_save_under_one_backend_resume_under_the_other(
    first: str, second: str, tmp_path: Path
) -> None:
    missing = [b for b in (first, second) if b not in installed_frameworks()]
    if missing:
        pytest.skip(f"needs both frameworks; missing {missing}")
    saved = _run_worker(tmp_path, first, "first")
    resumed = _run_worker(tmp_path, second, "second")
    for kind in ("linear", "lstm", "linear-adam"):
        before, after = saved[kind], resumed[kind]
        assert after["meta"] == {"step": "4"}
        # the weights, the optimiser's slots and its step arrive bit for bit; the forward pass
        # agrees within the parity tolerance
        assert after["params"] == before["params"]
        assert after["slots"] == before["slots"] != {}
        assert after["step"] == before["step"] == 4
        np.testing.assert_allclose(after["outputs"], before["outputs"], rtol=1e-5, atol=1e-6)
        # the continued run matches the uninterrupted one, learning-rate change included
        np.testing.assert_allclose(after["losses"], before["losses"][4:], rtol=1e-5, atol=1e-7)
        assert before["losses"][4] < before["losses"][0]  # it did train


# --- bad files ------------------------------------------------------------------------------------
@pytest.fixture
def victim(backend: str, tmp_path: Path) -> tuple[Net, twinnn.SGD, Path, Any]:
    """A good checkpoint of a model and its SGD after 3 updates, and another model and SGD
    (other weights, buffers, step and lr) with their snapshot. The updates are applied with
    ``apply_gradients``: the many tests of bad files need no compiled step (TF traces one per
    test)."""
    model = Net()
    opt = twinnn.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
    _updated(model, opt, range(3))
    path = tmp_path / "good.safetensors"
    twinnn.save(path, model, opt)
    twinnn.seed(5)
    target = Net()
    target_opt = twinnn.SGD(target, lr=0.3, momentum=0.9, weight_decay=1e-3)
    _updated(target, target_opt, range(3, 4))  # non-zero buffers
    return target, target_opt, path, _snapshot(target, target_opt)


def _expect_error(path: Path, model: Net, opt: twinnn.Optimizer, *words: str) -> None:
    with pytest.raises(CheckpointError) as info:
        twinnn.load(path, model, opt)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -1])
def test_truncated(victim: Any, tmp_path: Path, keep: int) -> None:
    model, opt, good, before = victim
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: keep if keep >= 0 else len(data) - 1])
    _expect_error(bad, model, opt)
    _assert_same(before, _snapshot(model, opt))


def test_random_bytes(victim: Any, tmp_path: Path) -> None:
    model, opt, _, before = victim
    bad = tmp_path / "noise.safetensors"
    for seed in range(5):
        bad.write_bytes(np.random.default_rng(seed).bytes(4096))
        _expect_error(bad, model, opt)
    _assert_same(before, _snapshot(model, opt))


def test_torch_pickle_is_refused_without_unpickling(
    victim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    model, opt, _, before = victim
    bad = tmp_path / "model.pt"
    torch.save({"hidden.weight": torch.zeros(4, 8)}, bad)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"hidden.weight": np.zeros((4, 8))}))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("twinnn must never unpickle a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    _expect_error(bad, model, opt, "pickle", "never unpickles")
    _expect_error(plain, model, opt, "pickle")
    _assert_same(before, _snapshot(model, opt))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04" + bytes(60), ("zip archive", "torch.save", "pickle")),
        (pickle.dumps({"w": [1.0, 2.0]}, protocol=2), ("a pickle",)),
        (b"\x89HDF\r\n\x1a\n" + bytes(60), ("HDF5", "Keras")),
        (b"\x93NUMPY\x01\x00v\x00" + bytes(60), ("NumPy",)),
        (b"\x1f\x8b\x08\x00" + bytes(60), ("gzip",)),
    ],
)
def test_foreign_formats_are_named(
    victim: Any, tmp_path: Path, content: bytes, words: tuple[str, ...]
) -> None:
    model, opt, _, before = victim
    bad = tmp_path / "foreign.bin"
    bad.write_bytes(content)
    _expect_error(bad, model, opt, "must be a safetensors file", "never unpickles", *words)
    _assert_same(before, _snapshot(model, opt))


def test_good_file_loads_with_pickle_disabled(victim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, good, _ = victim

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("twinnn must never unpickle a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    twinnn.load(good, model, opt)
    saved = safetensors.numpy.load_file(str(good))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, saved[f"model/{name}"])


def test_no_source_path_unpickles() -> None:
    """No module of twinnn imports a deserialiser that can run code, or calls one."""
    unsafe_modules = {
        "pickle",
        "cPickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "joblib",
        "marshal",
        "shelve",
    }
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            offenders += [f"{where}: import {n}" for n in names if n in unsafe_modules]
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func in {"torch.load", "eval", "exec", "pickle.load", "pickle.loads"}:
                    offenders.append(f"{where}: {func}()")
                for kw in node.keywords:
                    if kw.arg in {"allow_pickle", "weights_only"} and ast.unparse(kw.value) != (
                        "False" if kw.arg == "allow_pickle" else "True"
                    ):
                        offenders.append(f"{where}: {kw.arg}={ast.unparse(kw.value)}")
    assert offenders == []


def test_file_of_another_model(victim: Any, tmp_path: Path) -> None:
    model, opt, _, before = victim
    other = tmp_path / "other.safetensors"
    smaller = Net(hidden=5)
    twinnn.save(other, smaller, twinnn.SGD(smaller, lr=0.1, momentum=0.9))
    _expect_error(other, model, opt, "'hidden.weight'", "(4, 5)", "(4, 8)")
    renamed = tmp_path / "renamed.safetensors"
    twinnn.save(renamed, twinnn.Linear(4, 8))
    _expect_error(renamed, model, opt, "weight", "hidden.weight", "not in the file")
    _assert_same(before, _snapshot(model, opt))


def test_optimizer_problems_leave_the_model_unchanged(victim: Any, tmp_path: Path) -> None:
    model, opt, good, before = victim
    no_opt = tmp_path / "no_opt.safetensors"
    twinnn.save(no_opt, model)
    _expect_error(no_opt, model, opt, "no optimizer state")
    # momentum off keeps no momentum buffer: the file's (momentum 0.9) does not fit
    no_momentum = twinnn.SGD(model, lr=0.1, weight_decay=1e-3)
    no_momentum_before = no_momentum.state_dict()
    _expect_error(good, model, no_momentum, "change the shape of the update", "unexpected slots")
    _assert_same_optimizer(no_momentum_before, no_momentum.state_dict())
    # Adam with and without amsgrad
    adam = twinnn.Adam(model, lr=0.01, amsgrad=True)
    _updated(model, adam, range(1))
    adam_file = tmp_path / "adam.safetensors"
    twinnn.save(adam_file, model, adam)
    model.load_state_dict(before[0])
    plain_adam = twinnn.Adam(model, lr=0.01)
    _updated(model, plain_adam, range(1))
    model.load_state_dict(before[0])
    plain_before = plain_adam.state_dict()
    _expect_error(adam_file, model, plain_adam, "change the shape of the update", "max_exp_avg_sq")
    _assert_same_optimizer(plain_before, plain_adam.state_dict())
    _assert_same(before, _snapshot(model, opt))


def test_other_settings_of_the_same_state_are_the_files(victim: Any) -> None:
    """As torch's load_state_dict, the file's settings replace the optimiser's (momentum 0.5 ->
    0.9 here) when they keep the same slots."""
    model, _, good, _ = victim
    other = twinnn.SGD(model, lr=0.1, momentum=0.5, dampening=0.5, nesterov=False)
    twinnn.load(good, model, other)
    assert (other.lr, other.momentum, other.weight_decay, other.step_count) == (0.05, 0.9, 1e-3, 3)
    assert other.param_groups[0].options["dampening"] == 0.0


@pytest.mark.parametrize(
    ("saved", "loading"),
    [("Adam", "SGD"), ("SGD", "Adam"), ("AdamW", "Adam"), ("RMSprop", "Adagrad"), ("v1", "Adam")],
)
def test_file_of_another_optimizer_type(
    victim: Any, tmp_path: Path, saved: str, loading: str
) -> None:
    """Adam's state in an SGD (and the like): refused, naming both, and nothing changes."""
    model, opt, good, before = victim
    path = tmp_path / "other.safetensors"
    if saved == "v1":  # a format-1 file: SGD
        ckpt = tio.read(good)
        assert ckpt.optimizer is not None
        _write_format_1(path, ckpt.parameters, ckpt.optimizer)
        saved = "SGD"
    elif saved != "SGD":
        twinnn.seed(2)
        other_model = Net()
        other_opt = getattr(twinnn, saved)(other_model, lr=0.01)
        _updated(other_model, other_opt, range(2))
        twinnn.save(path, other_model, other_opt)
    else:
        path = good
    loader = opt if loading == "SGD" else getattr(twinnn, loading)(model, lr=0.2)
    if loader is not opt:
        _updated(model, loader, range(1))
        model.load_state_dict(before[0])
    loader_before = loader.state_dict()
    _expect_error(path, model, loader, f"of type {saved!r}, this optimizer is of type {loading!r}")
    _assert_same_optimizer(loader_before, loader.state_dict())
    _assert_same(before, _snapshot(model, opt))


def test_failure_while_applying_the_optimizer_rolls_the_model_back(
    victim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, opt, good, before = victim

    def broken(state: Any) -> None:
        raise StateDictError("simulated failure")

    monkeypatch.setattr(opt, "load_state_dict", broken)
    with pytest.raises(CheckpointError, match="simulated failure"):
        twinnn.load(good, model, opt)
    _assert_same(before, _snapshot(model, opt))


def _opt_spec(group: dict[str, str | None] | None = None, **top: str | None) -> str:
    """The victim's ``twinnn.optimizer`` metadata (format 2) with values replaced by raw JSON
    text, in the top level or, with ``group``, in its one parameter group; None drops a key."""
    group_values: dict[str, str | None] = {
        "params": json.dumps(NAMES),
        "lr": "0.05",
        "momentum": "0.9",
        "dampening": "0.0",
        "weight_decay": "0.001",
        "nesterov": "false",
    }
    group_values.update(group or {})
    fields = ", ".join(f'"{k}": {v}' for k, v in group_values.items() if v is not None)
    values: dict[str, str | None] = {
        "type": '"SGD"',
        "step": "3",
        "param_groups": f"[{{{fields}}}]",
    }
    values.update(top)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in values.items() if v is not None) + "}"


def _sgd_spec(**changes: str) -> str:
    """A format-1 ``twinnn.optimizer`` of the victim with some values replaced by raw JSON."""
    values = {"lr": "0.05", "momentum": "0.9", "nesterov": "false", "weight_decay": "0.001"}
    values.update(changes)
    names = '["hidden.weight", "hidden.bias", "head.weight", "head.bias"]'
    fields = ", ".join(f'"{k}": {v}' for k, v in values.items())
    return f'{{"type": "SGD", {fields}, "parameters": {names}}}'


def _rewrite(good: Path, bad: Path, **changes: str | None) -> None:
    """Copy ``good`` to ``bad`` with metadata entries changed (None deletes one)."""
    meta = _raw_metadata(good)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    bad.write_bytes(safetensors.numpy.save(safetensors.numpy.load_file(str(good)), metadata=meta))


def _raw_metadata(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    meta: dict[str, str] = json.loads(data[8 : 8 + size])["__metadata__"]
    return meta


def test_the_spec_helper_writes_the_victims_metadata(victim: Any) -> None:
    """So that each case below differs from a good file by its change alone."""
    _, _, good, _ = victim
    assert json.loads(_opt_spec()) == json.loads(_raw_metadata(good)["twinnn.optimizer"])


def test_newer_format_is_refused(victim: Any, tmp_path: Path) -> None:
    model, opt, good, before = victim
    bad = tmp_path / "future.safetensors"
    _rewrite(good, bad, twinnn__format_version="3")
    _expect_error(bad, model, opt, "format version 3", "newer twinnn", "upgrade")
    _assert_same(before, _snapshot(model, opt))


def _nested_schedule(depth: int) -> str:
    config = '{"type": "StepLR", "lr": 0.1, "step_size": 2}'
    for _ in range(depth):
        config = f'{{"type": "SequentialLR", "schedules": [{config}], "milestones": []}}'
    return f'{{"schedule": {config}}}'


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"twinnn__format_version": None}, ("not a twinnn checkpoint",)),
        ({"twinnn__format_version": "one"}, ("format_version",)),
        ({"twinnn__parameters": "[[1, 2]]"}, ("twinnn.parameters",)),
        ({"twinnn__parameters": '[["head.bias", [4]]]'}, ("'model/head.bias'", "(4,)")),
        ({"twinnn__parameters": '[["extra", [3]]]'}, ("'model/extra'", "missing")),
        # str.isdigit() accepts both; int() raises for "²" and reads Arabic-Indic one as 1
        ({"twinnn__format_version": "²"}, ("format_version", "ASCII digits", "'²'")),
        ({"twinnn__format_version": "\u0661"}, ("format_version", "ASCII digits")),
        ({"twinnn__format_version": "1\n"}, ("format_version",)),
        ({"twinnn__format_version": "0"}, ("format_version",)),
        ({"twinnn__format_version": "9" * 5000}, ("format_version",)),  # int() refuses 5000 digits
        ({"twinnn__parameters": "[" * 100_000 + "]" * 100_000}, ("twinnn.parameters", "JSON")),
        # the optimiser's metadata: its structure (read) ...
        ({"twinnn__optimizer": "[" * 100_000}, ("twinnn.optimizer", "JSON")),
        ({"twinnn__optimizer": "[]"}, ("twinnn.optimizer", "must be an optimizer state")),
        ({"twinnn__optimizer": '{"type": "Adam"}'}, ("twinnn.optimizer", "'step'")),
        ({"twinnn__optimizer": _opt_spec(type=None)}, ("'type'",)),
        ({"twinnn__optimizer": _opt_spec(type="3")}, ("'type'",)),
        ({"twinnn__optimizer": _opt_spec(step=None)}, ("'step' must be an int", "None")),
        ({"twinnn__optimizer": _opt_spec(step="-1")}, ("'step' must be an int", "-1")),
        ({"twinnn__optimizer": _opt_spec(step="1.5")}, ("'step' must be an int", "1.5")),
        ({"twinnn__optimizer": _opt_spec(step='"3"')}, ("'step' must be an int", "'3'")),
        ({"twinnn__optimizer": _opt_spec(step="true")}, ("'step' must be an int", "True")),
        ({"twinnn__optimizer": _opt_spec(step="NaN")}, ("'step' must be an int",)),
        ({"twinnn__optimizer": _opt_spec(step=str(2**63))}, ("'step' must be an int",)),
        # past float's range: it would load, and the next Adam or Adagrad update overflow
        ({"twinnn__optimizer": _opt_spec(step="9" * 400)}, ("'step' must be an int", "...")),
        ({"twinnn__optimizer": _opt_spec(param_groups=None)}, ("'param_groups'",)),
        ({"twinnn__optimizer": _opt_spec(param_groups="{}")}, ("'param_groups' must be a list",)),
        ({"twinnn__optimizer": _opt_spec(param_groups="[[1]]")}, ("'param_groups'[0]",)),
        ({"twinnn__optimizer": _opt_spec({"params": None})}, ("'param_groups'[0]", "'params'")),
        ({"twinnn__optimizer": _opt_spec({"params": '["head.bias", 3]'})}, ("'param_groups'[0]",)),
        # ... and its values (the optimiser's own checks, when loaded into one)
        ({"twinnn__optimizer": _opt_spec(type='"Lion"')}, ("type 'Lion'", "type 'SGD'")),
        ({"twinnn__optimizer": _opt_spec(param_groups="[]")}, ("belongs to no parameter",)),
        ({"twinnn__optimizer": _opt_spec(group={"lr": "NaN"})}, ("param_groups[0]['lr']",)),
        ({"twinnn__optimizer": _opt_spec(group={"lr": "-0.1"})}, ("param_groups[0]['lr']",)),
        ({"twinnn__optimizer": _opt_spec(group={"lr": "Infinity"})}, ("['lr']", "inf")),
        ({"twinnn__optimizer": _opt_spec(group={"lr": '"fast"'})}, ("['lr']", "'fast'")),
        ({"twinnn__optimizer": _opt_spec(group={"lr": '{"schedule": 5}'})}, ("from_config",)),
        (
            {"twinnn__optimizer": _opt_spec(group={"lr": '{"schedule": {"type": "Nope"}}'})},
            ("Nope",),
        ),
        (
            {
                "twinnn__optimizer": _opt_spec(
                    group={
                        "lr": '{"schedule": {"type": "StepLR", '
                        '"lr": 0.1, "step_size": 2, "gamma": "' + "x" * 1_000_000 + '"}}'
                    }
                )
            },
            ("StepLR(gamma)", "characters in all"),  # the message is not a megabyte long
        ),
        ({"twinnn__optimizer": _opt_spec(group={"momentum": "1.0"})}, ("(momentum)",)),
        (
            {"twinnn__optimizer": _opt_spec(group={"momentum": "0.0"})},
            ("change the shape of the update",),
        ),
        ({"twinnn__optimizer": _opt_spec(group={"dampening": "2"})}, ("(dampening)",)),
        ({"twinnn__optimizer": _opt_spec(group={"weight_decay": "Infinity"})}, ("weight_decay",)),
        ({"twinnn__optimizer": _opt_spec(group={"nesterov": '"yes"'})}, ("(nesterov)",)),
        (
            {"twinnn__optimizer": _opt_spec(group={"nesterov": "true", "dampening": "0.5"})},
            ("nesterov=True", "dampening == 0"),
        ),
        (
            {"twinnn__optimizer": _opt_spec(group={"params": json.dumps(NAMES[::-1])})},
            ("param_groups[0] holds parameters",),
        ),
        (
            {"twinnn__optimizer": _opt_spec(group={"params": json.dumps([*NAMES[:3], "tail"])})},
            ("'optimizer/momentum_buffer/head.bias'", "belongs to no parameter"),
        ),
        (
            {"twinnn__optimizer": _opt_spec(group={"params": json.dumps(NAMES[:3])})},
            ("'optimizer/momentum_buffer/head.bias'", "belongs to no parameter"),
        ),
        (
            {
                "twinnn__optimizer": _opt_spec(
                    param_groups=f'[{{"params": {json.dumps(NAMES[:2])}}}, '
                    f'{{"params": {json.dumps(NAMES[2:])}}}]'
                )
            },
            ("1 group(s), got 2",),
        ),
    ],
)
def test_inconsistent_metadata(
    victim: Any, tmp_path: Path, changes: dict[str, str | None], words: tuple[str, ...]
) -> None:
    model, opt, good, before = victim
    bad = tmp_path / "bad.safetensors"
    _rewrite(good, bad, **changes)
    _expect_error(bad, model, opt, *words)
    _assert_same(before, _snapshot(model, opt))


def test_deeply_nested_schedule_is_refused(victim: Any, tmp_path: Path) -> None:
    """A SequentialLR nested hundreds deep: either its JSON or rebuilding the schedule exceeds
    Python's recursion limit; both are a CheckpointError (never a RecursionError)."""
    model, opt, good, before = victim
    bad = tmp_path / "bad.safetensors"
    messages = []
    for depth in (350, 400, 450, 500, 2000):
        _rewrite(good, bad, twinnn__optimizer=_opt_spec(group={"lr": _nested_schedule(depth)}))
        with pytest.raises(CheckpointError) as info:
            twinnn.load(bad, model, opt)
        messages.append(str(info.value))
        _assert_same(before, _snapshot(model, opt))
    assert any("schedule is nested too deeply" in m for m in messages), messages
    assert "must be valid UTF-8 JSON" in messages[-1]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (_sgd_spec(lr="NaN"), ("twinnn.optimizer", "valid SGD state")),
        (_sgd_spec(lr="-0.1"), ("twinnn.optimizer", "valid SGD state")),
        (_sgd_spec(momentum="1.0"), ("twinnn.optimizer",)),
        (_sgd_spec(weight_decay="Infinity"), ("twinnn.optimizer",)),
        (_sgd_spec(nesterov="true", momentum="0.0"), ("twinnn.optimizer", "valid SGD state")),
        (_sgd_spec(lr="1"), ("twinnn.optimizer", "valid SGD state")),  # format 1 wrote floats
        (_sgd_spec().replace('"SGD"', '"Adam"'), ("twinnn.optimizer", "valid SGD state")),
        (
            _sgd_spec().replace('"head.bias"', '"tail"'),
            ("'optimizer/momentum_buffer/tail'", "missing"),
        ),
        (_sgd_spec().replace('"parameters"', '"params"'), ("valid SGD state",)),
        ("[" * 100_000, ("twinnn.optimizer", "JSON")),
    ],
)
def test_inconsistent_format_1_metadata(
    victim: Any, tmp_path: Path, spec: str, words: tuple[str, ...]
) -> None:
    """Format-1 files are checked as strictly as they were."""
    model, opt, good, before = victim
    ckpt = tio.read(good)
    assert ckpt.optimizer is not None
    bad = tmp_path / "bad.safetensors"
    _write_format_1(bad, ckpt.parameters, ckpt.optimizer, spec=spec)
    _expect_error(bad, model, opt, *words)
    _assert_same(before, _snapshot(model, opt))


def test_wrong_dtype_and_stray_tensors(victim: Any, tmp_path: Path) -> None:
    model, opt, good, before = victim
    tensors = safetensors.numpy.load_file(str(good))
    meta = _raw_metadata(good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(
        safetensors.numpy.save(
            {**tensors, "model/head.bias": tensors["model/head.bias"].astype(np.float64)}, meta
        )
    )
    _expect_error(bad, model, opt, "'model/head.bias'", "float64")
    bad.write_bytes(safetensors.numpy.save({**tensors, "stowaway": np.zeros(2, np.float32)}, meta))
    _expect_error(bad, model, opt, "stowaway")
    _assert_same(before, _snapshot(model, opt))


@pytest.mark.parametrize("kind", ["SGD-momentum", "Adam-amsgrad"])
def test_hostile_optimizer_tensors(backend: str, tmp_path: Path, kind: str) -> None:
    """Slots of unknown parameters or names, missing, of the wrong shape or dtype, a format-1
    buffer in a format-2 file: refused, naming the tensor, and nothing changes."""
    make, _, slots = OPTIMIZERS[kind]
    saved_model = Net()
    saved_opt = make(saved_model)
    _updated(saved_model, saved_opt, range(2))
    good = tmp_path / "good.safetensors"
    twinnn.save(good, saved_model, saved_opt)
    twinnn.seed(5)
    model = Net()
    opt = make(model)
    _updated(model, opt, range(5, 6))
    before = _snapshot(model, opt)
    tensors = safetensors.numpy.load_file(str(good))
    meta = _raw_metadata(good)
    last = f"optimizer/{slots[-1]}/"
    zeros = np.zeros
    cases: list[tuple[dict[str, np.ndarray], list[str], tuple[str, ...]]] = [
        ({f"{last}ghost": zeros(3, np.float32)}, [], (f"'{last}ghost'", "belongs to no parameter")),
        ({last[:-1]: zeros(3, np.float32)}, [], (f"'{last[:-1]}'", "belongs to no parameter")),
        ({"optimizer/": zeros(3, np.float32)}, [], ("'optimizer/'", "belongs to no parameter")),
        ({"optimizer/sum/head.bias": zeros(3, np.float32)}, [], ("unexpected slots ['sum']",)),
        ({"optimizer//head.bias": zeros(3, np.float32)}, [], ("unexpected slots ['']",)),
        ({}, [f"{last}head.bias"], (f"state['head.bias'] is missing '{slots[-1]}'",)),
        ({f"{last}head.bias": zeros(4, np.float32)}, [], ("head.bias", "(4,)", "(3,)")),
        (
            {f"{last}head.weight": zeros((3, 8), np.float32)},
            [],
            ("head.weight", "(3, 8)", "(8, 3)"),
        ),
        ({f"{last}head.bias": zeros((), np.float32)}, [], ("head.bias", "(3,)")),
        ({f"{last}head.bias": zeros(3, np.float64)}, [], (f"'{last}head.bias'", "float64")),
        ({f"{last}head.bias": zeros(3, np.float16)}, [], (f"'{last}head.bias'", "float16")),
        ({f"{last}head.bias": zeros(3, np.int32)}, [], (f"'{last}head.bias'", "int32")),
    ]
    bad = tmp_path / "bad.safetensors"
    for added, removed, words in cases:
        changed = {k: v for k, v in tensors.items() if k not in removed}
        changed.update(added)
        bad.write_bytes(safetensors.numpy.save(changed, meta))
        try:
            _expect_error(bad, model, opt, *words)
            _assert_same(before, _snapshot(model, opt))
        except AssertionError as exc:
            raise AssertionError(f"{sorted(added)} added, {removed} removed: {exc}") from exc


def test_foreign_safetensors_file(victim: Any, tmp_path: Path) -> None:
    model, opt, _, before = victim
    bad = tmp_path / "hf.safetensors"
    bad.write_bytes(safetensors.numpy.save({"weight": np.zeros((4, 8), np.float32)}))
    _expect_error(bad, model, opt, "not a twinnn checkpoint")
    _assert_same(before, _snapshot(model, opt))


@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_header_is_refused(victim: Any, tmp_path: Path, depth: int) -> None:
    """json raises RecursionError past Python's recursion limit; safetensors refuses > 128."""
    model, opt, _, before = victim
    meta = b'{"__metadata__": {"twinnn.format_version": "1"}, "a": '
    text = meta + b"[" * depth + b"]" * depth + b"}"
    bad = tmp_path / "deep.safetensors"
    bad.write_bytes(len(text).to_bytes(8, "little") + text)
    _expect_error(bad, model, opt, "corrupt")
    _assert_same(before, _snapshot(model, opt))


@pytest.mark.parametrize(
    "claimed", [2**64 - 1, tio.format._HEADER_LIMIT + 1, tio.format._HEADER_LIMIT]
)
def test_huge_header_length_allocates_nothing(victim: Any, tmp_path: Path, claimed: int) -> None:
    model, opt, _, before = victim
    bad = tmp_path / "huge.safetensors"
    bad.write_bytes(claimed.to_bytes(8, "little") + b'{"__metadata__": {}}' + bytes(100))
    tracemalloc.start()
    try:
        _expect_error(bad, model, opt, "header length field says", str(claimed))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    _assert_same(before, _snapshot(model, opt))


READ_IN_A_BOX = r"""
import os, resource, sys
from twinnn import io
if os.path.exists("/proc/self/statm"):  # then 1 GiB more at most: a read must not run forever
    used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard < 0 else min(limit, hard), hard))
try:
    io.read(sys.argv[1])
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX special files")
@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/null", "fifo", "directory"])
def test_non_regular_files_are_refused_before_reading(
    victim: Any, tmp_path: Path, kind: str
) -> None:
    model, opt, _, before = victim
    path = tmp_path / "ckpt.safetensors"
    if kind.startswith("/dev/"):
        if not os.path.exists(kind):
            pytest.skip(f"no {kind}")
        path.symlink_to(kind)  # a symlink to an endless device
        words: tuple[str, ...] = ("got a character device",)
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a plain open() blocks
        words = ("got a FIFO",)
    else:
        path.mkdir()
        words = ("got a directory",)
    # first in a child with a time and memory limit, in case it blocks or reads forever
    proc = subprocess.run(
        [sys.executable, "-c", READ_IN_A_BOX, str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout.startswith("CheckpointError"), proc.stdout + proc.stderr[-2000:]
    _expect_error(path, model, opt, "must be a regular file", *words)
    _assert_same(before, _snapshot(model, opt))


def test_missing_file_is_file_not_found(backend: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        twinnn.load(tmp_path / "absent.safetensors", Net())


# --- arguments and failed writes ------------------------------------------------------------------
def test_argument_checks(backend: str, tmp_path: Path) -> None:
    model = Net()
    path = tmp_path / "c.safetensors"
    with pytest.raises(ArgumentTypeError, match=r"save\(metadata\)\['epoch'\] must be a str"):
        twinnn.save(path, model, metadata={"epoch": 3})  # type: ignore[dict-item]
    with pytest.raises(ArgumentTypeError, match=r"save\(metadata\) keys"):
        twinnn.save(path, model, metadata={"": "x"})
    with pytest.raises(ArgumentTypeError, match=r"save\(model\) must be a twinnn.Module"):
        twinnn.save(path, {"w": np.zeros(2)})  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"save\(optimizer\)"):
        twinnn.save(path, model, optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"save\(path\)"):
        twinnn.save(3, model)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"load\(model\)"):
        twinnn.load(path, None)  # type: ignore[arg-type]
    assert not path.exists()


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    model = Net()
    path = tmp_path / "c.safetensors"
    twinnn.save(path, model, metadata={"v": "old"})
    old = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fd: int, mode: str) -> None:
                self._file = real_fdopen(fd, mode)

            def __enter__(self) -> Full:
                return self

            def __exit__(self, *exc: object) -> None:
                self._file.close()

            def write(self, data: bytes) -> int:
                self._file.write(data[: len(data) // 2])
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(tio.os, "fdopen", Full)
    else:
        monkeypatch.setattr(tio.os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        twinnn.save(path, model, metadata={"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
    assert twinnn.load(path, model) == {"v": "old"}


def test_optimizer_of_another_model_is_refused(backend: str, tmp_path: Path) -> None:
    model_a, model_b = Net(), Net()
    opt_b = twinnn.SGD(model_b, lr=0.1, momentum=0.9)
    path = tmp_path / "c.safetensors"
    match = r"(save|load)\(optimizer\) must update parameters of the model \(Net\).*another model"
    with pytest.raises(ArgumentError, match=match.replace("(save|load)", "save")):
        twinnn.save(path, model_a, opt_b)
    assert list(tmp_path.iterdir()) == []
    twinnn.save(path, model_b, opt_b)
    twinnn.seed(3)
    model_a = Net()
    before_a, before_b = _snapshot(model_a, opt_b), _snapshot(model_b, opt_b)
    with pytest.raises(ArgumentError, match=match.replace("(save|load)", "load")):
        twinnn.load(path, model_a, opt_b)
    _assert_same(before_a, _snapshot(model_a, opt_b))
    _assert_same(before_b, _snapshot(model_b, opt_b))
    # an optimiser over some of the model's parameters is the model's
    head_only = twinnn.SGD(model_a.named_parameters()[2:], lr=0.1, momentum=0.9)
    twinnn.save(path, model_a, head_only)
    twinnn.load(path, model_a, head_only)


@pytest.mark.skipif(os.name == "nt", reason="twinnn does not check pids on Windows")
def test_save_removes_temporaries_of_dead_processes_only(backend: str, tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = finished.pid  # reaped: no process has this pid any more
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    name = "ckpt.safetensors"
    stale = [f".{name}.{dead}.0123abcd.tmp", f".{name}.{dead}.ffffffff.tmp"]
    kept = [
        f".{name}.{alive.pid}.0123abcd.tmp",  # a live process may still be writing it
        f".{name}.{os.getpid()}.0123abcd.tmp",  # so may another thread of this process
        f".{name}.{dead}.0123ABCD.tmp",  # below: not the exact pattern, never touched
        f".{name}.{dead}.0123abc.tmp",
        f".{name}.{dead}.0123abcd.tmp.bak",
        f".{name}.{dead}x.0123abcd.tmp",
        f".{name}.²{dead}.0123abcd.tmp",
        f".{name}.0.0123abcd.tmp",
        f"{name}.{dead}.0123abcd.tmp",
        f".other.safetensors.{dead}.0123abcd.tmp",  # another checkpoint's
        "notes.txt",
    ]
    try:
        for entry in stale + kept:
            (tmp_path / entry).write_bytes(b"partial")
        (tmp_path / f".{name}.{dead}.89abcdef.tmp").mkdir()  # matches, but is no file
        kept.append(f".{name}.{dead}.89abcdef.tmp")
        twinnn.save(tmp_path / name, Net())
    finally:
        alive.kill()
        alive.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, *kept])
    assert all((tmp_path / entry).read_bytes() == b"partial" for entry in kept[:-1])


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot open a folder to fsync it")
def test_the_folder_is_fsynced_after_the_rename(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the folder's fsync, a power cut after save returns can undo the rename."""
    model = Net()
    path = tmp_path / "c.safetensors"
    events: list[tuple[Any, ...]] = []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def record_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(file, flags, *args, **kwargs)
        events.append(("open", os.fspath(file), fd))
        return fd

    def record_fsync(fd: int) -> None:
        events.append(("fsync", fd))
        real_fsync(fd)

    def record_replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(tio.os, "open", record_open)
    monkeypatch.setattr(tio.os, "fsync", record_fsync)
    monkeypatch.setattr(tio.os, "replace", record_replace)
    twinnn.save(path, model)
    monkeypatch.undo()
    replaced = next(i for i, e in enumerate(events) if e[0] == "replace")
    temporary = events[replaced][1]
    assert events[replaced][2] == os.path.realpath(path)
    before, after = events[:replaced], events[replaced + 1 :]
    # the data reached the disk before the rename ...
    assert any(e[0] == "open" and e[1] == temporary for e in before), events
    file_fd = next(e[2] for e in before if e[0] == "open" and e[1] == temporary)
    assert ("fsync", file_fd) in before, events
    # ... and the folder, holding the rename, after it
    folder = os.path.realpath(tmp_path)
    folder_fds = [e[2] for e in after if e[0] == "open" and e[1] == folder]
    assert any(("fsync", fd) in after for fd in folder_fds), events


def test_missing_folder_names_the_path(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "absent" / "c.safetensors"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        twinnn.save(path, Net())
