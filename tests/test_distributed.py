"""Data-parallel training (DESIGN.md §16): N processes compute what one process computes on
the global batch.

The multi-process tests start ``tests/dp_script.py`` under ``twinnn run -n 2`` (gloo on torch,
MultiWorkerMirroredStrategy with RING on TensorFlow, over 127.0.0.1) and compare what rank 0
wrote with the same script run alone: ``shards=2`` in one process (bit for bit, for
``reduce="deterministic"``), and one process on the global batch (float32 rounding). Every
run is bounded by a timeout, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import twinnn as tn
from twinnn import errors

SCRIPT = Path(__file__).with_name("dp_script.py")
RUN_TIMEOUT_S = 240
_cache: dict[tuple[str, ...], tuple[subprocess.CompletedProcess[str], Path]] = {}


def _run(
    backend: str, mode: str, tmp: Path, *flags: str, ranks: int = 2, timeout: str = "60"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the script (``twinnn run -n ranks`` for deterministic/fast, else alone); cached
    per argument list for the module (several tests read the same run)."""
    key = (backend, mode, *flags)
    if key in _cache:
        return _cache[key]
    out = tmp / f"{'_'.join(key).replace('/', '_').replace('=', '-')}.npz"
    env = {**os.environ, "TWINNN_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    script = [str(SCRIPT), mode, str(out), *flags]
    if mode in ("deterministic", "fast"):
        command = [sys.executable, "-m", "twinnn", "run", "-n", str(ranks), "--timeout", timeout]
        command += script
    else:
        command = [sys.executable, *script]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp
    )
    _cache[key] = (done, out)
    return done, out


def _results(backend: str, mode: str, tmp: Path, *flags: str) -> dict[str, np.ndarray]:
    done, out = _run(backend, mode, tmp, *flags)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dp")


def test_deterministic_reduce_is_bit_identical_to_shards_in_one_process(
    backend: str, runs: Path
) -> None:
    """Two processes with ``reduce="deterministic"`` == ``train_step(..., shards=2)`` alone,
    bit for bit: an MLP with BatchNorm (global statistics, forward and backward), dropout
    (masks keyed on the global row), momentum SGD and clipping after the reduce; a 2-layer
    LSTM with lengths, dropout between layers, an ignored target and Adam; global batches
    of 7 rows (4 + 3: uneven) and 8."""
    ranks = _results(backend, "deterministic", runs, f"save={runs / (backend + '.ckpt')}")
    alone = _results(backend, "shards", runs)
    assert sorted(ranks) == sorted(alone)
    for name in alone:
        if not name.startswith("fit_"):  # fit's eval_step has no shards= (checked below)
            np.testing.assert_array_equal(ranks[name], alone[name], err_msg=name)
    assert len(alone["mlp_losses"]) == 6 and len(alone["tagger_losses"]) == 6


@pytest.mark.backends("torch")
def test_bucketed_reduction_from_backward_hooks_keeps_the_bits(backend: str, runs: Path) -> None:
    """torch reduces the gradients in buckets started from backward hooks (as DDP): with
    buckets of 64 bytes nearly every parameter is its own bucket, launched while the backward
    pass runs, and the deterministic run is still ``shards=2`` bit for bit; the native
    all-reduce still computes the global batch."""
    ranks = _results(backend, "deterministic", runs, "tiny-buckets")
    alone = _results(backend, "shards", runs)
    for name in alone:
        if not name.startswith("fit_"):
            np.testing.assert_array_equal(ranks[name], alone[name], err_msg=name)
    fast = _results(backend, "fast", runs, "tiny-buckets")
    single = _results(backend, "single", runs)
    for name in single:
        np.testing.assert_allclose(fast[name], single[name], rtol=2e-5, atol=2e-6, err_msg=name)


def test_two_processes_compute_the_global_batch(backend: str, runs: Path) -> None:
    """The native all-reduce (``reduce="fast"``) agrees with one process on the global batch
    to float32 rounding (uneven slices included: the losses divide by the global count);
    so do ``fit``'s losses, validation loss and accuracies, which are global on every rank."""
    ranks = _results(backend, "fast", runs)
    alone = _results(backend, "single", runs)
    for name in alone:
        np.testing.assert_allclose(ranks[name], alone[name], rtol=2e-5, atol=2e-6, err_msg=name)


def test_torch_and_tensorflow_two_process_runs_agree(both_backends: None, runs: Path) -> None:
    torch_run = _results("torch", "deterministic", runs, f"save={runs / 'torch.ckpt'}")
    tf_run = _results("tensorflow", "deterministic", runs, f"save={runs / 'tensorflow.ckpt'}")
    for name in torch_run:
        np.testing.assert_allclose(
            torch_run[name], tf_run[name], rtol=2e-5, atol=2e-6, err_msg=name
        )


def test_a_checkpoint_of_a_two_process_run_resumes_in_one_process_on_the_other_backend(
    both_backends: None, runs: Path
) -> None:
    """Rank 0 alone writes the checkpoint at step 3 of a 2-process torch run; one TensorFlow
    process loads it and trains steps 3-5 on the global batches: the losses of the 2-process
    run's steps 3-5."""
    path = runs / "torch.ckpt"
    ranks = _results("torch", "deterministic", runs, f"save={path}")
    assert path.exists()
    resumed = _results("tensorflow", "single", runs, f"resume={path}")
    np.testing.assert_allclose(resumed["mlp_losses"], ranks["mlp_losses"][3:], rtol=2e-5)


@pytest.mark.parametrize("fault", ["raise-at=3", "kill-at=3"])
def test_a_failing_rank_stops_the_run_with_a_clear_error(
    backend: str, runs: Path, fault: str
) -> None:
    """Rank 1 raises (or is killed by SIGKILL) before step 3 while rank 0 waits in a
    collective: the run ends within the grace period, names rank 1, leaves no process."""
    start = time.monotonic()
    done, _ = _run(backend, "deterministic", runs, fault)
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert "rank 1 failed first" in done.stderr, done.stderr[-2000:]
    what = "killed by SIGKILL" if fault.startswith("kill") else "fails on purpose at step 3"
    assert what in done.stdout + done.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"
    leftovers = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and _cmdline(pid).count(str(SCRIPT)) and fault in _cmdline(pid)
    ]
    assert leftovers == []


def test_a_stalled_rank_makes_the_others_time_out(backend: str, runs: Path) -> None:
    """Rank 1 stays alive but stops taking part (it sleeps before step 3): rank 0's
    collective raises a DistributedError after ``--timeout`` (10 s), and the run ends."""
    start = time.monotonic()
    done, _ = _run(backend, "deterministic", runs, "stall-at=3", timeout="10")
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert "rank 0 failed first" in done.stderr, done.stderr[-2000:]
    assert "DistributedError: rank 0:" in done.stdout + done.stderr
    assert "did not reach the same step in time" in done.stdout + done.stderr
    assert elapsed < 120, f"took {elapsed:.0f} s"


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_ranks_that_start_from_different_parameters_are_refused(backend: str, runs: Path) -> None:
    done, _ = _run(backend, "deterministic", runs, "seed1=8")
    assert done.returncode != 0
    assert "DistributedError" in done.stdout + done.stderr
    assert "the initial parameters of rank(s) [1] differ from rank 0's" in done.stdout + done.stderr


# --- in one process ------------------------------------------------------------------------------


def test_shards_in_one_process_match_the_global_batch(backend: str) -> None:
    """``shards=3`` on 7 rows (3 + 2 + 2) against the global batch, with BatchNorm, dropout
    and a weighted loss: the losses and weights agree to float32 rounding."""

    class Net(tn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.bn, self.drop = tn.Linear(4, 8), tn.BatchNorm(8), tn.Dropout(0.3)
            self.b = tn.Linear(8, 2)

        def forward(self, x):
            return self.b(self.drop(self.bn(tn.ops.tanh(self.a(x)))))

    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 4)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    w = rng.uniform(0.1, 2.0, (7, 1)).astype(np.float32)

    def loss_fn(pred, target):
        return tn.mse_loss(pred, target[:, :2], weight=target[:, 2:])

    results = []
    for shards in (1, 3):
        tn.seed(11)
        model = Net()
        step = tn.train_step(model, loss_fn, tn.SGD(model, lr=0.1, momentum=0.9), shards=shards)
        losses = [float(step(x, np.concatenate([y, w], axis=1))) for _ in range(4)]
        results.append((losses, model.state_dict()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    for name, value in results[0][1].items():
        np.testing.assert_allclose(results[1][1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_shards_with_outputs_return_one_per_slice(backend: str) -> None:
    model = tn.Linear(3, 2)
    step = tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1), shards=2, outputs=True)
    x = np.ones((5, 3), np.float32)
    _, outputs = step(x, np.zeros((5, 2), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(3, 2), (2, 2)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"shards": 0}, errors.ArgumentError, r"train_step\(shards=...\) must be >= 1, got 0"),
        ({"shards": "2"}, errors.ArgumentTypeError, r"shards=...\) must be an int, got str"),
        ({"reduce": "mean"}, errors.ArgumentError, r"must be one of \['fast', 'deterministic'\]"),
    ],
)
def test_bad_data_parallel_arguments(
    backend: str, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    model = tn.Linear(3, 2)
    with pytest.raises(error, match=message):
        tn.train_step(model, tn.mse_loss, tn.SGD(model, lr=0.1), **kwargs)  # type: ignore[arg-type]


def test_a_world_of_one_changes_nothing() -> None:
    here = tn.distributed.init()
    assert (here.rank, here.world_size, here.is_main) == (0, 1, True)
    batch = (np.arange(6), np.arange(6))
    assert tn.distributed.shard(batch) is batch
    tn.distributed.barrier()


def test_slices_follow_numpy_array_split() -> None:
    for total in range(1, 12):
        for parts in range(1, total + 1):
            expected = [len(a) for a in np.array_split(np.arange(total), parts)]
            bounds = [tn.distributed.slice_bounds(total, parts, i) for i in range(parts)]
            assert [end - start for start, end in bounds] == expected
            assert bounds[0][0] == 0 and bounds[-1][1] == total


def test_more_processes_than_gpus_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL refuses two ranks on one GPU only at the first collective (as a lost peer):
    ``init`` says what is wrong before joining."""
    world_module = importlib.import_module("twinnn.distributed.world")  # the module, not world()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(
        errors.DistributedError,
        match=r"rank 1: 2 processes on this machine \(LOCAL_WORLD_SIZE\) but 1 visible GPU",
    ):
        world_module._check_one_gpu_per_process(1, 1, 1)
    world_module._check_one_gpu_per_process(1, 1, 2)  # one GPU each: fine
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    with pytest.raises(errors.DistributedError, match="3 processes on this machine"):
        world_module._check_one_gpu_per_process(2, 2, 2)  # LOCAL_RANK 2 needs a third GPU
