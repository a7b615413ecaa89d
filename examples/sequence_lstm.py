"""The seed article's Example 2, written once: an LSTM over sequences of different lengths.

Part 1 is the seed's snippet: 3 random sequences of random lengths < 10, 32 features, padded
to 10 steps, through ``LSTM(32 -> 128)``: outputs ``(3, 10, 128)``, exactly zero past each
sequence's length on both backends (PyTorch packs, Keras masks and copies the last output
forward; twinnn does neither difference).

Part 2 trains on synthetic variable-length data: predict the mean of each sequence's valid
steps from the LSTM's final state. The loss falls from about 0.3 to about 0.01, and both
backends print the same numbers (within float32 rounding).

    TWINNN_BACKEND=torch      python examples/sequence_lstm.py
    TWINNN_BACKEND=tensorflow python examples/sequence_lstm.py
    twinnn compare examples/sequence_lstm.py
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import twinnn as tn

FEATURES, HIDDEN, TIME = 2, 16, 12


def seed_example(data: np.random.Generator) -> None:
    """3 sequences of random lengths < 10, 32 features, padded to 10; LSTM(32 -> 128)."""
    lengths = data.integers(1, 10, size=3)
    x = np.zeros((3, 10, 32), dtype=np.float32)
    for b, n in enumerate(lengths):
        x[b, :n] = data.standard_normal((n, 32))
    lstm = tn.LSTM(32, 128)
    outputs, (h, _) = lstm(x, lengths)
    out = tn.to_numpy(outputs)
    padded_zero = all(np.all(out[b, n:] == 0.0) for b, n in enumerate(lengths))
    print(f"lengths {lengths.tolist()}  outputs {tuple(out.shape)}  h {tuple(h.shape)}")
    print(f"padded steps exactly zero: {padded_zero}")


class MeanRegressor(tn.Module):
    """``LSTM(F -> H)`` then ``Linear(H -> 1)`` on the final hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = tn.LSTM(FEATURES, HIDDEN)
        self.head = tn.Linear(HIDDEN, 1)

    def forward(self, x: Any, lengths: Any) -> Any:
        _, (h, _) = self.lstm(x, lengths)
        return self.head(h[-1])


def make_batch(data: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
    """``x (B, TIME, F)``: a per-sequence level plus noise, random values in the padding too;
    ``lengths`` in [1, TIME]; target ``(B, 1)``: the mean of x over the valid steps."""
    lengths = data.integers(1, TIME + 1, size=batch)
    level = data.uniform(-1.0, 1.0, size=(batch, 1, 1))
    noise = data.uniform(-1.0, 1.0, size=(batch, TIME, FEATURES))
    x = (level + noise).astype(np.float32)
    valid = np.arange(TIME)[None, :] < lengths[:, None]
    target = (x * valid[:, :, None]).sum(axis=(1, 2)) / (lengths * FEATURES)
    return x, lengths, target[:, None].astype(np.float32)


def main() -> None:
    tn.seed(int(os.environ.get("TWINNN_SEED", "0")))  # twinnn compare sets TWINNN_SEED
    data = np.random.default_rng(0)
    print(f"backend={tn.backend()} device={tn.device()}")
    seed_example(data)

    model = MeanRegressor()
    optimizer = tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = tn.train_step(model, tn.mse_loss, optimizer)
    evaluate = tn.eval_step(model, tn.mse_loss)
    batches = [make_batch(data, 32) for _ in range(16)]
    held_out = make_batch(data, 256)
    print(f"held-out loss before training {float(tn.to_numpy(evaluate(*held_out))):.6f}")
    # 15 epochs over 16 batches, with a progress bar when stdout is a terminal.
    history = tn.fit(step, batches, epochs=15)
    for epoch, loss in enumerate(history.epoch_losses):
        tn.report(step=epoch, loss=loss)
        if epoch % 2 == 0 or epoch == 14:
            print(f"epoch {epoch + 1:2d}  loss {loss:.6f}")
    print(f"held-out loss after training {float(tn.to_numpy(evaluate(*held_out))):.6f}")


if __name__ == "__main__":
    main()
