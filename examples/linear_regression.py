"""The seed article's Example 1, written once: a 5 -> 1 linear model, MSE, SGD(lr=0.01),
100 epochs on 100 x 5 random data.

    TWINNN_BACKEND=torch      python examples/linear_regression.py
    TWINNN_BACKEND=tensorflow python examples/linear_regression.py

Both print the same losses (within float32 rounding).
"""

from __future__ import annotations

import numpy as np

import twinnn as tn


def main() -> None:
    tn.seed(0)
    data = np.random.default_rng(0)
    x = data.standard_normal((100, 5)).astype(np.float32)
    y = data.standard_normal((100, 1)).astype(np.float32)

    model = tn.Linear(5, 1)
    optimizer = tn.SGD(model.parameters(), lr=0.01)
    step = tn.train_step(model, tn.mse_loss, optimizer)

    print(f"backend={tn.backend()} device={tn.device()}")
    for epoch in range(1, 101):
        loss = step(x, y)
        if epoch == 1 or epoch % 10 == 0:
            print(f"epoch {epoch:3d}  loss {float(tn.to_numpy(loss)):.6f}")
    weight = model.state_dict()["weight"].ravel()
    print("weight", np.array2string(weight, precision=5))


if __name__ == "__main__":
    main()
