"""``no_grad``: evaluation without recording anything for gradients."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from twinnn import config

__all__ = ["no_grad"]


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run a block (or, as a decorator, a function) without recording gradients.

    torch: ``torch.no_grad()`` -- no autograd graph is built, saving memory and time in an
    evaluation loop; tensors computed inside have ``requires_grad=False``. TensorFlow records
    operations only under a ``GradientTape``, so there is nothing to switch off. Compiled
    ``eval_step`` and ``predict_step`` already run without gradients; this is for direct calls
    such as ``with twinnn.no_grad(): logits = model(x)``.
    """
    with config.current().no_grad():
        yield
