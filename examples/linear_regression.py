"""The seed article's Example 1, written once: a 5 -> 1 linear model, MSE, SGD(lr=0.01),
100 epochs on 100 x 5 random data.

    TWINNN_BACKEND=torch      python examples/linear_regression.py
    TWINNN_BACKEND=tensorflow python examples/linear_regression.py
    twinnn compare examples/linear_regression.py --plot parity.png

Both print the same losses (within float32 rounding); ``twinnn compare`` runs both and checks
every epoch's loss, which the script hands over with ``twinnn.report``.
"""

from __future__ import annotations

import os

import numpy as np

import twinnn as tn


def main() -> None:
    tn.seed(int(os.environ.get("TWINNN_SEED", "0")))  # twinnn compare sets TWINNN_SEED
    data = np.random.default_rng(0)
    x = data.standard_normal((100, 5)).astype(np.float32)
    y = data.standard_normal((100, 1)).astype(np.float32)

    model = tn.Linear(5, 1)
    optimizer = tn.SGD(model.parameters(), lr=0.01)
    step = tn.train_step(model, tn.mse_loss, optimizer)

    print(f"backend={tn.backend()} device={tn.device()}")

    def log(epoch: int, _: int, loss: float) -> None:
        tn.report(step=epoch, loss=loss)
        if epoch == 0 or (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss:.6f}")

    # One full batch per epoch, so no progress bar; the callback prints and reports each loss.
    tn.fit(step, [(x, y)], epochs=100, progress=False, callbacks=log)
    weight = model.state_dict()["weight"].ravel()
    print("weight", np.array2string(weight, precision=5))


if __name__ == "__main__":
    main()
