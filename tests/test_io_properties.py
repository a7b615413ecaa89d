"""Checkpoint properties (hypothesis), on each backend.

- Round trips: whatever the model (Linear of many sizes, with and without bias, small LSTMs,
  a two-layer net), the optimiser (none, SGD with or without momentum, Nesterov, weight decay,
  any learning rate), the weights (any float32 bit pattern: NaN payloads, infinities, -0.0,
  subnormals) and the metadata (any unicode, empty to long), ``load`` gives back bit for bit
  what ``save`` wrote, after the model and the optimiser were changed in between.
- Corrupt files: truncated anywhere, bytes appended, bytes flipped or overwritten in the length
  field and the header, random bytes: ``load`` raises only ``CheckpointError`` (never an
  ``IndexError``, ``RecursionError``, ``UnicodeDecodeError`` or a framework error), and a failed
  load leaves the model and the optimiser exactly as they were.

Building layers is slow under TensorFlow (each variable is a graph object), so every test draws
from a small per-backend pool of models and optimisers, built once, and varies their weights
with ``load_state_dict`` and their learning rate, metadata and optimiser settings per example.
"""

from __future__ import annotations

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
MOMENTA = (0.0, 0.5, 0.9)
WEIGHT_DECAYS = (0.0, 1e-4, 0.5)


@functools.cache
def pooled_model(backend: str, index: int) -> twinnn.Module:
    """One model per architecture and backend, built once for all tests."""
    twinnn.set_backend(backend)
    return ARCHITECTURES[index]()


@functools.cache
def pooled_sgd(
    backend: str, index: int, momentum: float, nesterov: bool, weight_decay: float
) -> twinnn.SGD:
    model = pooled_model(backend, index)
    return twinnn.SGD(
        model, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )


@dataclass
class Case:
    index: int
    optimizer: tuple[float, bool, float] | None  # momentum, nesterov, weight_decay
    lr: float
    seed: int
    raw_bits: bool  # any float32 bit pattern, else normal numbers
    metadata: dict[str, str]


metadata_values = st.one_of(
    st.text(max_size=40),
    # long values, cheap to draw: header lengths of every size, multi-byte characters included
    st.tuples(st.text(min_size=1, max_size=4), st.integers(1, 800)).map(lambda t: t[0] * t[1]),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    momentum = draw(st.sampled_from(MOMENTA))
    optimizer = (
        momentum,
        momentum > 0 and draw(st.booleans()),
        draw(st.sampled_from(WEIGHT_DECAYS)),
    )
    return Case(
        index=draw(st.integers(0, len(ARCHITECTURES) - 1)),
        optimizer=draw(st.sampled_from([optimizer, None])),
        lr=draw(
            st.one_of(
                st.just(0.0), st.floats(0.0, 1e6), st.floats(0.0, 1e-30, allow_subnormal=True)
            )
        ),
        seed=draw(st.integers(0, 2**32 - 1)),
        raw_bits=draw(st.booleans()),
        metadata=draw(
            st.dictionaries(st.text(min_size=1, max_size=20), metadata_values, max_size=5)
        ),
    )


def random_like(state: dict[str, np.ndarray], rng: np.random.Generator, raw_bits: bool) -> Any:
    if raw_bits:
        return {
            n: rng.integers(0, 2**32, a.shape, dtype=np.uint32).view(np.float32)
            for n, a in state.items()
        }
    return {n: rng.standard_normal(a.shape).astype(np.float32) for n, a in state.items()}


def bits(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Bit patterns, so that NaN payloads and -0.0 compare exactly."""
    return {n: np.ascontiguousarray(a, np.float32).tobytes() for n, a in arrays.items()}


def snapshot(model: twinnn.Module, opt: twinnn.SGD | None) -> Any:
    if opt is None:
        return bits(model.state_dict()), None
    state = opt.state_dict()
    return bits(model.state_dict()), (state["lr"], bits(state["momentum_buffers"]))


def set_state(
    model: twinnn.Module, opt: twinnn.SGD | None, case: Case, rng: np.random.Generator
) -> None:
    weights = random_like(model.state_dict(), rng, case.raw_bits)
    model.load_state_dict(weights)
    if opt is not None:
        buffers = random_like(weights, rng, case.raw_bits) if opt.momentum else {}
        opt.load_state_dict({"lr": case.lr, "momentum_buffers": buffers})


def pooled(backend: str, case: Case) -> tuple[twinnn.Module, twinnn.SGD | None]:
    model = pooled_model(backend, case.index)
    opt = None if case.optimizer is None else pooled_sgd(backend, case.index, *case.optimizer)
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
        set_state(model, opt, case, np.random.default_rng(case.seed))
        saved = snapshot(model, opt)
        twinnn.save(path, model, opt, metadata=case.metadata)
        # change everything the file holds, then load it back
        set_state(model, opt, case, np.random.default_rng(case.seed + 1))
        if opt is not None:
            opt.lr = case.lr + 1.0
        assert twinnn.load(path, model, opt) == case.metadata
        assert snapshot(model, opt) == saved

    check()


# --- corrupt files --------------------------------------------------------------------------------
@functools.cache
def good_file(backend: str, index: int) -> bytes:
    """A checkpoint of pooled model ``index`` with a momentum SGD and some metadata."""
    model, opt = pooled_model(backend, index), pooled_sgd(backend, index, 0.9, True, 1e-4)
    set_state(model, opt, Case(index, None, 0.25, 0, False, {}), np.random.default_rng(index))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "good.safetensors")
        twinnn.save(path, model, opt, metadata={"epoch": "7", "note": "ünï ☃"})
        with open(path, "rb") as file:
            return file.read()


def header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


@st.composite
def corruptions(draw: st.DrawFn, backend: str) -> tuple[int, str, bytes]:
    """(model index, kind, corrupt bytes) from a good file of that model."""
    index = draw(st.sampled_from([0, 4, 6]))
    data = good_file(backend, index)
    kind = draw(st.sampled_from(["truncate", "append", "flip", "overwrite", "noise"]))
    head = header_end(data)
    if kind == "truncate":
        return index, kind, data[: draw(st.integers(0, len(data) - 1))]
    if kind == "append":
        return index, kind, data + draw(st.binary(min_size=1, max_size=64))
    if kind == "noise":
        return index, kind, draw(st.binary(max_size=300))
    corrupt = bytearray(data)
    position = st.one_of(st.integers(0, 7), st.integers(0, head - 1))  # length field, header
    for _ in range(draw(st.integers(1, 4))):
        at = draw(position)
        if kind == "flip":
            corrupt[at] ^= draw(st.integers(1, 255))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            corrupt[at : at + len(chunk)] = chunk
    return index, kind, bytes(corrupt)


def test_corrupt_files_raise_checkpoint_error_and_change_nothing(
    backend: str, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.safetensors"

    @settings(max_examples=CORRUPTIONS[backend], deadline=None)
    @given(corruption=corruptions(backend), seed=st.integers(0, 2**32 - 1))
    def check(corruption: tuple[int, str, bytes], seed: int) -> None:
        index, kind, data = corruption
        model, opt = pooled_model(backend, index), pooled_sgd(backend, index, 0.9, True, 1e-4)
        set_state(model, opt, Case(index, None, 0.5, 0, True, {}), np.random.default_rng(seed))
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
