"""A small Transformer encoder classifier, written the way research code writes one.

Token ids through an ``Embedding`` plus fixed sinusoidal positions and dropout, ``--layers``
encoder blocks, the mean over the valid tokens, a ``Linear`` head, cross-entropy, ``AdamW`` with
a linear warm-up then a cosine decay of the learning rate (per update), the gradient clipped to
a global norm of 1, accuracy and a validation set through ``fit``. A block is torch's
``nn.TransformerEncoderLayer(activation="gelu", batch_first=True)``, post-norm as torch's
default: ``x = LayerNorm(x + Dropout(MultiHeadAttention(x, key_lengths)))`` (dropout on the
attention probabilities too), then ``x = LayerNorm(x + Dropout(Linear(Dropout(gelu(Linear(
x))))))``. ``--norm_first`` gives pre-norm blocks instead (``x = x + f(LayerNorm(x))``, torch's
``norm_first=True``).

The task (generated, so the script runs anywhere) needs attention: is the first token of the
sequence there again later? Each sequence holds 8 to 32 tokens over 8 ids; the others are drawn
from the 7 ids that differ from the first, and for half of the sequences (label 1) one of them,
at a random position, is replaced by the first id. A model that looks at each token alone and
averages -- a bag of tokens plus positions -- cannot tell (the answer is a match between two
tokens, not a sum of per-token scores): chance, 0.5. Sequences are padded to 32 with random
ids, the first id included, that the model must ignore (``key_lengths`` hides them from the
attention, the masked mean from the pooling).

At the defaults (4096 training sequences, 10 epochs of 64 updates, 67,586 parameters; about a
minute per backend on a 2-core CPU) the loss sits near log 2 for three epochs, then attention
finds the match. Validation accuracy per epoch, torch backend: 0.49, 0.57, 0.58, 0.65, 0.75,
0.86, 0.91, 0.93, 0.92, 0.92; TensorFlow backend: the same four first, then 0.75, 0.85, 0.92,
0.94, 0.94, 0.94.

The two backends agree to about 1e-8 relative while the model sits on that plateau, and
``twinnn compare`` says SAME at reduced sizes (``tests/test_examples.py`` runs ``--train 1024
--valid 200 --epochs 3``). Leaving the plateau is a saddle escape that amplifies any difference
in the weights by about 100x per epoch: from epoch 4 on, float32 rounding differences (torch and
TensorFlow sum in different orders) grow to 1e-4, then 1e-2 relative, beyond ``twinnn
compare``'s tolerance. This is the training's sensitivity, not a difference between backends: on
the torch backend alone, multiplying the initial weights by ``1 + 1e-7 * N(0, 1)`` moves the
training loss by 5e-4 relative at epoch 5 and 1.5e-2 at epoch 10 (switching backends: 1e-4 and
8e-2).

    TWINNN_BACKEND=torch      python examples/transformer_classifier.py
    TWINNN_BACKEND=tensorflow python examples/transformer_classifier.py
    twinnn compare examples/transformer_classifier.py --train 1024 --valid 200 --epochs 3
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

import twinnn as tn
from twinnn.schedules import CosineAnnealingLR, LinearLR, SequentialLR

VOCAB, CLASSES = 8, 2


def sinusoidal_positions(time: int, dim: int) -> np.ndarray:
    """``(time, dim)`` float32: ``sin(t / 10000**(2i / dim))`` in column ``2i``, ``cos`` in
    ``2i + 1`` (Vaswani et al. 2017), fixed (not a parameter)."""
    steps = np.arange(time, dtype=np.float64)[:, None]
    rates = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((time, dim))
    table[:, 0::2] = np.sin(steps * rates)
    table[:, 1::2] = np.cos(steps * rates[: dim // 2])
    return table.astype(np.float32)


class GELU(tn.Module):
    def forward(self, x: Any) -> Any:
        return tn.gelu(x)


class EncoderBlock(tn.Module):
    """torch's ``nn.TransformerEncoderLayer(E, H, F, dropout, activation="gelu",
    batch_first=True, norm_first=norm_first)``: ``(B, T, E)`` -> ``(B, T, E)``; the padded keys
    (``t >= lengths[b]``) are masked."""

    def __init__(
        self, embed: int, heads: int, hidden: int, dropout: float, norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attention = tn.MultiHeadAttention(embed, heads, dropout=dropout)
        self.drop_attention = tn.Dropout(dropout)
        self.norm1 = tn.LayerNorm(embed)
        self.mlp = tn.Sequential(
            tn.Linear(embed, hidden), GELU(), tn.Dropout(dropout), tn.Linear(hidden, embed)
        )
        self.drop_mlp = tn.Dropout(dropout)
        self.norm2 = tn.LayerNorm(embed)

    def forward(self, x: Any, lengths: Any) -> Any:
        if self.norm_first:  # pre-norm: x + f(LayerNorm(x))
            x = x + self.drop_attention(self.attention(self.norm1(x), key_lengths=lengths))
            return x + self.drop_mlp(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop_attention(self.attention(x, key_lengths=lengths)))
        return self.norm2(x + self.drop_mlp(self.mlp(x)))


class TransformerClassifier(tn.Module):
    """``tokens (B, T)`` int, ``lengths (B,)`` -> logits ``(B, classes)``."""

    positions: Any  # the (T, E) sinusoidal table, a non-persistent buffer

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.time = args.time
        self.embed = tn.Embedding(VOCAB, args.embed, init="torch")  # N(0, 1), as torch's
        self.register_buffer("positions", sinusoidal_positions(args.time, args.embed), False)
        self.drop = tn.Dropout(args.dropout)
        self.blocks = tn.ModuleList(
            [
                EncoderBlock(args.embed, args.heads, args.mlp, args.dropout, args.norm_first)
                for _ in range(args.layers)
            ]
        )
        self.head = tn.Linear(args.embed, CLASSES)

    def forward(self, tokens: Any, lengths: Any) -> Any:
        x = self.drop(self.embed(tokens) + self.positions)  # (B, T, E)
        for block in self.blocks:
            x = block(x, lengths)
        valid = tn.expand_dims(tn.sequence_mask(lengths, self.time), axis=-1)  # (B, T, 1)
        counts = tn.expand_dims(tn.cast(lengths, "float32"), axis=-1)  # (B, 1)
        return self.head(tn.sum(x * valid, axis=1) / counts)  # the mean over valid tokens


def make_split(data: np.random.Generator, count: int, time: int) -> tuple[np.ndarray, ...]:
    """``tokens (count, time)`` int64, ``lengths (count,)`` in [8, time], labels ``(count,)``:
    1 where the first token appears again within the length, else 0 (half each)."""
    lengths = data.integers(8, time + 1, size=count)
    first = data.integers(0, VOCAB, size=count)
    shift = data.integers(1, VOCAB, size=(count, time))  # any id but the first one
    tokens = (first[:, None] + shift) % VOCAB
    tokens[:, 0] = first
    labels = data.integers(0, 2, size=count)
    rows = np.flatnonzero(labels)
    where = 1 + (data.random(len(rows)) * (lengths[rows] - 1)).astype(np.int64)
    tokens[rows, where] = first[rows]  # once more, somewhere in [1, length)
    pad = np.arange(time)[None, :] >= lengths[:, None]
    tokens[pad] = data.integers(0, VOCAB, size=int(pad.sum()))  # garbage, the first id too
    return tokens.astype(np.int64), lengths.astype(np.int64), labels.astype(np.int64)


def batches_of(split: tuple[np.ndarray, ...], size: int) -> list[tuple[np.ndarray, ...]]:
    count = len(split[0])
    return [tuple(a[i : i + size] for a in split) for i in range(0, count, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--norm_first", action="store_true", help="pre-norm blocks")
    parser.add_argument("--time", type=int, default=32)
    parser.add_argument("--train", type=int, default=4096, help="training sequences")
    parser.add_argument("--valid", type=int, default=500, help="validation sequences")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the updates")
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="the data's seed")
    args = parser.parse_args()

    tn.seed(int(os.environ.get("TWINNN_SEED", "0")))  # twinnn compare sets TWINNN_SEED
    data = np.random.default_rng(args.seed)
    print(f"backend={tn.backend()} device={tn.device()}")
    train = batches_of(make_split(data, args.train, args.time), args.batch_size)
    valid = batches_of(make_split(data, args.valid, args.time), 100)

    model = TransformerClassifier(args)
    total = args.epochs * len(train)
    warmup = max(1, int(args.warmup * total))
    schedule = SequentialLR(
        [
            LinearLR(args.lr, start_factor=1.0 / warmup, total_iters=warmup),
            CosineAnnealingLR(args.lr, T_max=max(1, total - warmup)),
        ],
        milestones=[warmup],
    )
    optimizer = tn.AdamW(model, lr=schedule, weight_decay=args.weight_decay)
    step = tn.train_step(model, tn.cross_entropy, optimizer, clip_norm=args.clip, outputs=True)
    evaluate = tn.eval_step(model, tn.cross_entropy, outputs=True)
    history = tn.fit(
        step,
        train,
        epochs=args.epochs,
        validation=(evaluate, valid),
        metrics={"accuracy": tn.accuracy},
    )
    for epoch in range(len(history.epoch_losses)):
        values = {
            "loss": history.epoch_losses[epoch],
            "accuracy": history.metrics["accuracy"][epoch],
            "val_loss": history.val_losses[epoch],
            "val_accuracy": history.metrics["val_accuracy"][epoch],
        }
        tn.report(step=epoch, **values)
        print(f"epoch {epoch + 1}  " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    count = sum(tn.to_numpy(p).size for p in model.parameters())
    print(f"{count} parameters; chance accuracy {1 / CLASSES:.3f}")


if __name__ == "__main__":
    main()
