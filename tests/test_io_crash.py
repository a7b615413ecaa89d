"""Crash safety: a process killed with SIGKILL while saving never leaves a broken checkpoint.

One worker process imports twinnn (torch backend) once, then forks a child per round. Each
child saves an 8 MB model and its optimiser in a loop, every save with new values; the worker
kills it with SIGKILL after a random delay (every other round: a random moment after a
temporary file appeared, so that many kills land inside the write itself) and checks that the
file on disk is complete: it reads, loads, and every tensor (weights and momentum buffers)
holds the one value its metadata names, as do the optimiser's step and learning rate, which is
either the version on disk before the child started or one the child wrote.
The temporary files the killed children leave are not deleted by the test: the next save
removes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import twinnn
from twinnn import io as tio

ROUNDS = 24

WORKER = r"""
import json, os, random, signal, sys, time
import numpy as np
import torch
torch.set_num_threads(1)  # no OpenMP pool to inherit across fork()
import twinnn
from twinnn import io as tio

path, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class Big(twinnn.Module):
    def __init__(self):
        super().__init__()
        self.up = twinnn.Linear(512, 1024)
        self.down = twinnn.Linear(1024, 512)

model = Big()
opt = twinnn.SGD(model, lr=0.1, momentum=0.9)
names = [n for n, _ in model.named_parameters()]
shapes = {n: a.shape for n, a in model.state_dict().items()}

group = opt.state_dict()["param_groups"][0]

def save(version):
    values = {n: np.full(shapes[n], version, np.float32) for n in names}
    model.load_state_dict(values)
    state = {n: {"momentum_buffer": values[n]} for n in names}
    groups = [{**group, "lr": float(version)}]  # the metadata holds the version twice more
    opt.load_state_dict({"type": "SGD", "step": version, "param_groups": groups, "state": state})
    twinnn.save(path, model, opt, metadata={"version": str(version)})

save(0)
started = time.perf_counter()
save(0)
save_seconds = time.perf_counter() - started
rng = random.Random(seed)
folder, name = os.path.split(path)
report = {"save_seconds": save_seconds, "rounds": [], "problems": []}

def temporaries(pid=""):
    return {f for f in os.listdir(folder) if f.startswith(f".{name}.{pid}") and f.endswith(".tmp")}

previous = set()
on_disk, next_version = 0, 1
for r in range(rounds):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: save new versions until killed
        os.close(read_end)
        os.write(write_end, b"go")
        version = next_version
        while True:
            save(version)
            version += 1
    os.close(write_end)
    os.read(read_end, 2)
    os.close(read_end)
    time.sleep(rng.uniform(0.0, 5.0 * save_seconds))
    if r % 2:  # then wait for a temporary file, so that many kills land inside the write itself
        deadline = time.perf_counter() + 5.0
        while time.perf_counter() < deadline and not temporaries(f"{pid}."):
            time.sleep(0.0002)
        time.sleep(rng.uniform(0.0, 0.005))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    leftovers = temporaries()
    try:
        ckpt = tio.read(path)
        version = int(ckpt.metadata["version"])
        fresh = Big()
        fresh_opt = twinnn.SGD(fresh, lr=0.5, momentum=0.9)
        twinnn.load(path, fresh, fresh_opt)
        state = fresh_opt.state_dict()
        buffers = [slots["momentum_buffer"] for slots in state["state"].values()]
        arrays = [*fresh.state_dict().values(), *buffers]
        if len(buffers) != len(names) or not all((a == version).all() for a in arrays):
            report["problems"].append(f"round {r}: tensors disagree with version {version}")
        if (fresh_opt.step_count, fresh_opt.lr) != (version, float(version)):
            report["problems"].append(f"round {r}: optimizer metadata disagrees with {version}")
        if not (version == on_disk or version >= next_version):
            report["problems"].append(f"round {r}: version {version}, on disk {on_disk}")
    except Exception as exc:
        report["problems"].append(f"round {r}: {type(exc).__name__}: {exc}")
        version = on_disk
    report["rounds"].append(
        {
            "version": version,
            "killed_mid_write": bool(temporaries(f"{pid}.")),
            "cleaned": len(previous - leftovers),  # earlier kills' files this child removed
        }
    )
    previous = leftovers
    on_disk, next_version = version, max(version, next_version) + 1000
save(next_version)  # a save after the kills removes every temporary file they left
report["final"] = {"version": next_version, "temporaries": sorted(temporaries())}
print(json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_during_save_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "big.safetensors"
    env = {**os.environ, "TWINNN_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(path), str(ROUNDS), "1234"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["problems"] == []
    rounds = report["rounds"]
    assert len(rounds) == ROUNDS >= 20
    # the kills landed at interesting moments: some mid-write, and new versions got through
    assert sum(r["killed_mid_write"] for r in rounds) >= ROUNDS // 4, rounds
    assert len({r["version"] for r in rounds}) >= ROUNDS // 4, rounds
    # nobody deleted the killed saves' temporary files: the next saves did, all of them
    assert sum(r["cleaned"] for r in rounds) >= ROUNDS // 8, rounds
    assert report["final"]["temporaries"] == []
    # and the last file is a checkpoint this process reads too, with no framework at all
    assert tio.read(path).metadata["version"] == str(report["final"]["version"])
    assert path.stat().st_size > 8_000_000
    assert tio.read(path).format_version == twinnn.io.FORMAT_VERSION == 2
