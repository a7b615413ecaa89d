"""A data-parallel training script for ``tests/test_distributed.py``, written as a user would.

``python dp_script.py MODE OUT [FLAGS...]`` under ``twinnn run -n 2`` (MODE ``deterministic`` or
``fast``) or alone (MODE ``shards``: ``train_step(..., shards=2)`` in one process; ``single``:
one process on the global batch). Trains two models on the same global batches (7 rows, then
8: uneven then even slices on 2 ranks) -- an MLP with BatchNorm and dropout, and a 2-layer
LSTM over padded sequences with lengths and a masked mean -- and rank 0 writes every loss and
the final weights to OUT (``.npz``). FLAGS: ``save=PATH`` (checkpoint the MLP after 3
steps), ``resume=PATH`` (load it and run the last 3 steps only), ``raise-at=K`` /
``kill-at=K`` / ``stall-at=K`` (rank 1 raises / kills itself with SIGKILL / sleeps
600 s before step K), ``seed1=S`` (rank 1
builds its models after another seed), ``tiny-buckets`` (torch: gradient buckets of 64 bytes,
so that nearly every parameter's collective starts from its own backward hook).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import twinnn as tn

world = tn.distributed.init()  # first: TensorFlow configures its collectives before any op

mode, out, *flags = sys.argv[1:]
options = dict(f.split("=", 1) if "=" in f else (f, "1") for f in flags)
STEPS = 6


class MLP(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = tn.Linear(6, 16)
        self.norm = tn.BatchNorm(16)
        self.drop = tn.Dropout(0.25)
        self.out = tn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.drop(tn.ops.relu(self.norm(self.inp(x)))))


class Tagger(tn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = tn.LSTM(5, 12, num_layers=2, dropout=0.2)
        self.head = tn.Linear(12, 4)

    def forward(self, x, lengths):
        out, _ = self.rnn(x, lengths=lengths)
        mask = tn.ops.expand_dims(tn.ops.cast(tn.ops.sequence_mask(lengths, 9), "float32"), -1)
        pooled = tn.ops.sum(out * mask, axis=1) / tn.ops.expand_dims(
            tn.ops.cast(lengths, "float32"), -1
        )
        return self.head(pooled)


def batches(step: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The global batches of step ``step``: the same on every rank."""
    rng = np.random.default_rng(100 + step)
    rows = 7 if step % 2 == 0 else 8
    x = rng.standard_normal((rows, 6)).astype(np.float32)
    y = rng.standard_normal((rows, 3)).astype(np.float32)
    seq = rng.standard_normal((rows, 9, 5)).astype(np.float32)
    lengths = rng.integers(1, 10, rows).astype(np.int64)
    labels = rng.integers(0, 4, rows).astype(np.int64)
    labels[1] = -100  # an ignored target: excluded from the global count
    return (x, y), (seq, lengths, labels)


seed = int(options["seed1"]) if "seed1" in options and world.rank == 1 else 7
tn.seed(seed)
mlp, tagger = MLP(), Tagger()
mlp_opt = tn.SGD(mlp, lr=0.1, momentum=0.9)
tagger_opt = tn.Adam(tagger, lr=3e-3)
first = 0
if "resume" in options:
    tn.load(options["resume"], mlp, mlp_opt)
    first = 3
    mlp.drop.updates = first  # the mask counter is not in checkpoints (docs/layers.md)

if "tiny-buckets" in options and tn.backend() == "torch":
    from twinnn.backends.torch import distributed as torch_distributed

    torch_distributed.FIRST_BUCKET_BYTES = torch_distributed.BUCKET_BYTES = 64

kwargs: dict[str, object] = {"shards": 2} if mode == "shards" else {}
if mode in ("deterministic", "fast"):
    kwargs = {"reduce": mode}
mlp_step = tn.train_step(mlp, tn.mse_loss, mlp_opt, clip_norm=1.0, **kwargs)
tagger_step = tn.train_step(tagger, tn.cross_entropy, tagger_opt, **kwargs)
here = tn.distributed.shard if mode in ("deterministic", "fast") else (lambda b: b)

losses: dict[str, list[float]] = {"mlp": [], "tagger": []}
for step in range(first, STEPS):
    if world.rank == 1 and options.get("raise-at") == str(step):
        raise RuntimeError(f"rank 1 fails on purpose at step {step}")
    if world.rank == 1 and options.get("kill-at") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
    if world.rank == 1 and options.get("stall-at") == str(step):
        time.sleep(600)  # alive but gone: rank 0's collective must time out
    flat, seq = batches(step)
    losses["mlp"].append(float(mlp_step(*here(flat))))
    if "resume" not in options:
        losses["tagger"].append(float(tagger_step(*here(seq))))
    if step == 2 and "save" in options:
        tn.save(options["save"], mlp, mlp_opt)  # rank 0 writes; the others return at once

# fit shards the global batches itself; its losses, validation loss and accuracies are global.
tn.seed(9)
fitted = Tagger()
fit_kwargs: dict[str, object] = {"reduce": mode} if mode in ("deterministic", "fast") else {}
train = tn.train_step(
    fitted, tn.cross_entropy, tn.Adam(fitted, lr=1e-2), outputs=True, **fit_kwargs
)


def labelled(step: int) -> tuple[np.ndarray, ...]:
    seq, lengths, labels = batches(step)[1]
    return seq, lengths, np.maximum(labels, 0)  # accuracy takes class ids only


history = tn.fit(
    train,
    [labelled(s) for s in range(3)],
    epochs=2,
    validation=(tn.eval_step(fitted, tn.cross_entropy, outputs=True), [labelled(9)]),
    metrics={"accuracy": tn.accuracy},
    progress=False,
)

if world.is_main:
    weights = {f"mlp/{k}": v for k, v in mlp.state_dict().items()}
    weights.update({f"tagger/{k}": v for k, v in tagger.state_dict().items()})
    fit_results = {
        "fit_losses": history.losses,
        "fit_val_losses": history.val_losses,
        "fit_accuracy": history.metrics["accuracy"],
        "fit_val_accuracy": history.metrics["val_accuracy"],
    }
    np.savez(
        out, mlp_losses=losses["mlp"], tagger_losses=losses["tagger"], **weights, **fit_results
    )
print(f"rank {world.rank} of {world.world_size}: done", flush=True)
