"""Checkpoint properties (hypothesis), on each backend.

- Round trips: whatever the model (Linear of many sizes, with and without bias, small LSTMs,
  a two-layer net), the optimiser (none, SGD with or without momentum, Adam with or without
  amsgrad, AdamW, RMSprop centered and with momentum or plain, Adagrad) and its settings (any
  learning rate or a StepLR schedule, any step count, momentum, Nesterov, dampening, betas,
  eps, weight decay, ...), the weights and the optimiser's slots (any float32 bit pattern: NaN
  payloads, infinities, -0.0, subnormals) and the metadata (any unicode, empty to long),
  ``load`` gives back bit for bit what ``save`` wrote, after the model and the optimiser (its
  slots, step and settings) were changed in between.
- Corrupt files: truncated anywhere, bytes appended, bytes flipped or overwritten in the length
  field and the header, random bytes: ``load`` raises only ``CheckpointError`` (never an
  ``IndexError``, ``RecursionError``, ``UnicodeDecodeError`` or a framework error), and a failed
  load leaves the model and the optimiser exactly as they were.

Building layers is slow under TensorFlow (each variable is a graph object), so every test draws
from a small per-backend pool of models and optimisers, built once, and varies their weights,
slots, step and settings with ``load_state_dict`` per example (an optimiser loads any settings
that keep its slots: momentum on or off, amsgrad and centered are the pool's).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import twinnn
from twinnn import io as tio
from twinnn.errors import CheckpointError

#: Examples per backend and test: TF's variable assignment makes a round trip ~10x slower.
ROUND_TRIPS = {"torch": 1500, "tensorflow": 500}
CORRUPTIONS = {"torch": 500, "tensorflow": 300}


class TwoLayers(twinnn.Module):
    """Dotted parameter names (``hidden.weight``), one layer without bias."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = twinnn.Linear(3, 4)
        self.head = twinnn.Linear(4, 2, bias=False)


ARCHITECTURES: list[Callable[[], twinnn.Module]] = [
    lambda: twinnn.Linear(1, 1),
    lambda: twinnn.Linear(4, 3, bias=False),
    lambda: twinnn.Linear(9, 1),
    lambda: twinnn.Linear(2, 17, bias=False),
    TwoLayers,
    lambda: twinnn.LSTM(2, 3),
    lambda: twinnn.LSTM(1, 2, bidirectional=True),
    lambda: twinnn.LSTM(2, 2, num_layers=2),
]

#: The pooled optimisers: a class and the options that decide its slots.
SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),  # momentum_buffer
    ("Adam", {}),  # exp_avg, exp_avg_sq
    ("Adam", {"amsgrad": True}),  # ... and max_exp_avg_sq
    ("AdamW", {"amsgrad": True}),
    ("RMSprop", {}),  # square_avg
    ("RMSprop", {"momentum": 0.5, "centered": True}),  # ... momentum_buffer, grad_avg
    ("Adagrad", {}),  # sum
]
MOMENTA = (0.5, 0.9, 0.99)
WEIGHT_DECAYS = (0.0, 1e-4, 0.5)
EPSILONS = (0.0, 1e-10, 1e-8, 0.1)
FRACTIONS = (0.0, 0.5, 0.9, 0.999)  # betas, alpha, dampening


@functools.cache
def pooled_model(backend: str, index: int) -> twinnn.Module:
    """One model per architecture and backend, built once for all tests."""
    twinnn.set_backend(backend)
    return ARCHITECTURES[index]()


@functools.cache
def pooled_optimizer(backend: str, index: int, shape: int) -> twinnn.Optimizer:
    kind, options = SHAPES[shape]
    optimizer: twinnn.Optimizer = getattr(twinnn, kind)(pooled_model(backend, index), **options)
    return optimizer


@functools.cache
def slots_of(backend: str, index: int, shape: int) -> dict[str, tuple[str, ...]]:
    """The slot names of each parameter of a pooled optimiser."""
    state = pooled_optimizer(backend, index, shape).state_dict()["state"]
    return {name: tuple(slots) for name, slots in state.items()}


# Strategies are built once: hypothesis validates each new strategy object, which costs more
# than a round trip when it happens at every draw.
momenta = st.sampled_from(MOMENTA)
weight_decays = st.sampled_from(WEIGHT_DECAYS)
epsilons = st.sampled_from(EPSILONS)
fractions = st.sampled_from(FRACTIONS)


@st.composite
def optimizer_settings(draw: st.DrawFn, shape: int) -> dict[str, Any]:
    """Options a pooled optimiser of ``SHAPES[shape]`` accepts without changing its slots."""
    kind, fixed = SHAPES[shape]
    decay = draw(weight_decays)
    options: dict[str, Any]
    if kind == "SGD":
        momentum = draw(momenta) if fixed.get("momentum") else 0.0
        nesterov = momentum > 0 and draw(st.booleans())
        dampening = 0.0 if nesterov else draw(fractions)
        options = {"momentum": momentum, "dampening": dampening, "nesterov": nesterov}
    elif kind in ("Adam", "AdamW"):
        options = {
            "betas": (draw(fractions), draw(fractions)),
            "eps": draw(epsilons),
            "amsgrad": bool(fixed.get("amsgrad")),
        }
    elif kind == "RMSprop":
        options = {
            "alpha": draw(fractions),
            "eps": draw(epsilons),
            "momentum": draw(momenta) if fixed.get("momentum") else 0.0,
            "centered": bool(fixed.get("centered")),
        }
    else:
        options = {
            "lr_decay": draw(st.sampled_from((0.0, 0.01, 3.0))),
            "eps": draw(epsilons),
            "initial_accumulator_value": 0.0,  # the pool's: it is the slot's starting value
        }
    return {**options, "weight_decay": decay}


#: Learning rates from 0 through subnormal to 1e6, or a StepLR schedule (as its config).
float_rates = st.one_of(
    st.just(0.0), st.floats(0.0, 1e6), st.floats(0.0, 1e-30, allow_subnormal=True)
)
learning_rates = st.one_of(
    float_rates,
    st.builds(
        lambda lr, size, gamma: {
            "schedule": twinnn.schedules.StepLR(lr, step_size=size, gamma=gamma).to_config()
        },
        float_rates,
        st.integers(1, 1000),
        st.floats(1e-3, 1.0),
    ),
)
steps = st.one_of(st.integers(0, 20), st.integers(0, 2**63 - 1))
#: An optimiser's options, lr and step, per SHAPES index.
full_settings = [
    st.builds(
        lambda o, lr, k: {**o, "lr": lr, "step": k}, optimizer_settings(i), learning_rates, steps
    )
    for i in range(len(SHAPES))
]
shapes_or_none = st.sampled_from([*range(len(SHAPES)), None])


@dataclass
class Case:
    index: int
    shape: int | None  # SHAPES index, or no optimiser
    settings: dict[str, Any]  # the optimiser's options, lr and step
    seed: int
    raw_bits: bool  # any float32 bit pattern, else normal numbers
    metadata: dict[str, str]


metadata_values = st.one_of(
    st.text(max_size=40),
    # long values, cheap to draw: header lengths of every size, multi-byte characters included
    st.tuples(st.text(min_size=1, max_size=4), st.integers(1, 800)).map(lambda t: t[0] * t[1]),
)


metadata = st.dictionaries(st.text(min_size=1, max_size=20), metadata_values, max_size=5)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes_or_none)
    return Case(
        index=draw(st.integers(0, len(ARCHITECTURES) - 1)),
        shape=shape,
        settings={} if shape is None else draw(full_settings[shape]),
        seed=draw(st.integers(0, 2**32 - 1)),
        raw_bits=draw(st.booleans()),
        metadata=draw(metadata),
    )


def changed_settings(case: Case) -> dict[str, Any]:
    """Other settings of the same slots, each option a value ``optimizer_settings`` never
    draws, another lr and step: everything the file holds differs after ``set_state``."""
    kind = SHAPES[case.shape][0] if case.shape is not None else ""
    other = {k: 0.3 for k in case.settings if k in ("dampening", "alpha", "eps", "lr_decay")}
    if case.settings.get("momentum"):
        other["momentum"] = 0.3
    if "betas" in case.settings:
        other["betas"] = (0.3, 0.3)
    if kind == "SGD" and other.get("momentum"):
        other["nesterov"] = not case.settings["nesterov"]
        other["dampening"] = 0.0 if other["nesterov"] else 0.3
    return {
        **case.settings,
        **other,
        "weight_decay": 0.25,
        "lr": 1.5 if case.settings["lr"] != 1.5 else 2.5,
        "step": (case.settings["step"] + 1) % 2**63,
    }


def random_like(
    shapes: dict[str, tuple[int, ...]], rng: np.random.Generator, raw_bits: bool
) -> dict[str, np.ndarray]:
    if raw_bits:
        return {
            n: rng.integers(0, 2**32, shape, dtype=np.uint32).view(np.float32)
            for n, shape in shapes.items()
        }
    return {n: rng.standard_normal(shape).astype(np.float32) for n, shape in shapes.items()}


def bits(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Bit patterns, so that NaN payloads and -0.0 compare exactly."""
    return {n: np.ascontiguousarray(a, np.float32).tobytes() for n, a in arrays.items()}


def snapshot(model: twinnn.Module, opt: twinnn.Optimizer | None) -> Any:
    if opt is None:
        return bits(model.state_dict()), None
    state = opt.state_dict()
    slots = {n: bits(s) for n, s in state["state"].items()}
    # repr: floats exactly (0.1 + 2**-60 is not 0.1), tuples and lists apart
    return (
        bits(model.state_dict()),
        state["type"],
        state["step"],
        repr(state["param_groups"]),
        slots,
    )


def set_state(
    model: twinnn.Module,
    opt: twinnn.Optimizer | None,
    case: Case,
    rng: np.random.Generator,
    backend: str,
) -> None:
    shapes = {n: a.shape for n, a in model.state_dict().items()}
    model.load_state_dict(random_like(shapes, rng, case.raw_bits))
    if opt is None or case.shape is None:
        return
    settings_ = dict(case.settings)
    lr, step = settings_.pop("lr"), settings_.pop("step")
    slots = slots_of(backend, case.index, case.shape)
    opt.load_state_dict(
        {
            "type": SHAPES[case.shape][0],
            "step": step,
            "param_groups": [{"params": list(opt.names), "lr": lr, **settings_}],
            "state": {
                name: random_like({s: shapes[name] for s in slots[name]}, rng, case.raw_bits)
                for name in opt.names
            },
        }
    )


def pooled(backend: str, case: Case) -> tuple[twinnn.Module, twinnn.Optimizer | None]:
    model = pooled_model(backend, case.index)
    opt = None if case.shape is None else pooled_optimizer(backend, case.index, case.shape)
    return model, opt


def test_round_trips_are_bit_exact(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsync is most of a save's time on a disk; durability is test_io.py's and
    # test_io_crash.py's subject, the bytes of the file are this test's
    monkeypatch.setattr(tio.os, "fsync", lambda fd: None)
    path = tmp_path / "ckpt.safetensors"

    @settings(max_examples=ROUND_TRIPS[backend], deadline=None)
    @given(case=cases())
    def check(case: Case) -> None:
        model, opt = pooled(backend, case)
        set_state(model, opt, case, np.random.default_rng(case.seed), backend)
        saved = snapshot(model, opt)
        twinnn.save(path, model, opt, metadata=case.metadata)
        # change everything the file holds (weights, slots, step, settings), then load it back
        changed = (
            case if opt is None else dataclasses.replace(case, settings=changed_settings(case))
        )
        set_state(model, opt, changed, np.random.default_rng(case.seed + 1), backend)
        assert twinnn.load(path, model, opt) == case.metadata
        assert snapshot(model, opt) == saved

    check()


# --- corrupt files --------------------------------------------------------------------------------
#: (model index, SHAPES index) of the good files that are corrupted
CORRUPTED = [(0, 1), (4, 3), (6, 6), (4, 7)]
GOOD_SETTINGS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.9, "dampening": 0.0, "nesterov": True},
    "Adam": {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": True},
    "RMSprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.5, "centered": True},
    "Adagrad": {"lr_decay": 0.01, "eps": 1e-10, "initial_accumulator_value": 0.0},
}


@functools.cache
def good_file(backend: str, index: int, shape: int) -> bytes:
    """A checkpoint of pooled model ``index`` and optimiser ``shape``, with some metadata."""
    model, opt = pooled_model(backend, index), pooled_optimizer(backend, index, shape)
    lr = {"schedule": {"type": "StepLR", "lr": 0.25, "step_size": 3, "gamma": 0.5}}
    good = {**GOOD_SETTINGS[SHAPES[shape][0]], "weight_decay": 1e-4, "lr": lr, "step": 1234}
    set_state(
        model, opt, Case(index, shape, good, 0, False, {}), np.random.default_rng(index), backend
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "good.safetensors")
        twinnn.save(path, model, opt, metadata={"epoch": "7", "note": "ünï ☃"})
        with open(path, "rb") as file:
            return file.read()


def header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


@st.composite
def corruptions(draw: st.DrawFn, backend: str) -> tuple[int, int, str, bytes]:
    """(model index, optimiser shape, kind, corrupt bytes) from a good file of that pair."""
    index, shape = draw(st.sampled_from(CORRUPTED))
    data = good_file(backend, index, shape)
    kind = draw(st.sampled_from(["truncate", "append", "flip", "overwrite", "noise"]))
    head = header_end(data)
    if kind == "truncate":
        return index, shape, kind, data[: draw(st.integers(0, len(data) - 1))]
    if kind == "append":
        return index, shape, kind, data + draw(st.binary(min_size=1, max_size=64))
    if kind == "noise":
        return index, shape, kind, draw(st.binary(max_size=300))
    corrupt = bytearray(data)
    position = st.one_of(st.integers(0, 7), st.integers(0, head - 1))  # length field, header
    for _ in range(draw(st.integers(1, 4))):
        at = draw(position)
        if kind == "flip":
            corrupt[at] ^= draw(st.integers(1, 255))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            corrupt[at : at + len(chunk)] = chunk
    return index, shape, kind, bytes(corrupt)


def test_corrupt_files_raise_checkpoint_error_and_change_nothing(
    backend: str, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.safetensors"

    @settings(max_examples=CORRUPTIONS[backend], deadline=None)
    @given(corruption=corruptions(backend), seed=st.integers(0, 2**32 - 1))
    def check(corruption: tuple[int, int, str, bytes], seed: int) -> None:
        index, shape, kind, data = corruption
        model, opt = pooled_model(backend, index), pooled_optimizer(backend, index, shape)
        current = {**GOOD_SETTINGS[SHAPES[shape][0]], "weight_decay": 0.5, "lr": 0.5, "step": 9}
        case = Case(index, shape, current, 0, True, {})
        set_state(model, opt, case, np.random.default_rng(seed), backend)
        before = snapshot(model, opt)
        path.write_bytes(data)
        try:
            twinnn.load(path, model, opt)
        except CheckpointError as exc:
            assert str(path) in str(exc)
            assert snapshot(model, opt) == before
        else:  # a changed weight or metadata byte can still be a valid file; never a cut one
            assert kind in ("flip", "overwrite"), kind

    check()
