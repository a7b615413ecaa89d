"""twinnn: one model script, the same numbers on PyTorch and TensorFlow.

Importing twinnn imports neither framework; the backend chosen by ``TWINNN_BACKEND`` (or
:func:`set_backend`) is imported when first used.
"""

from __future__ import annotations

from twinnn import errors, schedules
from twinnn.config import (
    allow_tf32,
    backend,
    device,
    seed,
    set_backend,
    set_device,
    use_backend,
)
from twinnn.fit import fit
from twinnn.io import load, save
from twinnn.layers import LSTM, Linear
from twinnn.losses import mse_loss
from twinnn.module import Module, ParameterList, parameter
from twinnn.ops import (
    concat,
    matmul,
    mean,
    relu,
    reshape,
    sequence_mask,
    sigmoid,
    sum,
    tanh,
    tensor,
    to_numpy,
)
from twinnn.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from twinnn.report import report
from twinnn.training import eval_step, train_step

__version__ = "0.1.0"

__all__ = [
    "LSTM",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "Linear",
    "Module",
    "ParameterList",
    "__version__",
    "allow_tf32",
    "backend",
    "concat",
    "device",
    "errors",
    "eval_step",
    "fit",
    "load",
    "matmul",
    "mean",
    "mse_loss",
    "parameter",
    "relu",
    "report",
    "reshape",
    "save",
    "schedules",
    "seed",
    "sequence_mask",
    "set_backend",
    "set_device",
    "sigmoid",
    "sum",
    "tanh",
    "tensor",
    "to_numpy",
    "train_step",
    "use_backend",
]
