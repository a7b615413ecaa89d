"""The first script of docs/index.md, with the ``twinnn.report`` callback it adds for
``twinnn compare`` (tests/test_doc_claims.py checks that the page's code is this code).

    TWINNN_BACKEND=torch      python scripts/doc_examples/train.py
    TWINNN_BACKEND=tensorflow python scripts/doc_examples/train.py
    python scripts/doc_figures.py compare-index     # the page's `twinnn compare` output
"""

import os

import numpy as np

import twinnn as tn

tn.seed(int(os.environ.get("TWINNN_SEED", "0")))  # same seed => identical initial weights
data = np.random.default_rng(0)
x = data.standard_normal((100, 5)).astype(np.float32)
y = data.standard_normal((100, 1)).astype(np.float32)

model = tn.Linear(5, 1)  # y = x @ weight + bias, weight (5, 1)
optimizer = tn.SGD(model.parameters(), lr=0.01)
step = tn.train_step(model, tn.mse_loss, optimizer)  # forward, loss, gradients, update

batches = [(x[i : i + 20], y[i : i + 20]) for i in range(0, 100, 20)]


def log(epoch, index, loss):
    tn.report(step=epoch * len(batches) + index, loss=loss)


history = tn.fit(step, batches, epochs=10, callbacks=log)
print(tn.backend(), history.epoch_losses[-1])
