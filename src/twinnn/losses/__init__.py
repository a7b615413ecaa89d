"""Losses with one definition on both backends (DESIGN.md section 14).

Every loss takes ``reduction="mean"|"sum"|"none"`` and an optional non-negative ``weight=``
with one rule (:mod:`twinnn.losses._reduce`): the weighted mean is
``sum(w * l) / sum(broadcast w)``, and 0 when every weight is 0. Predictions are never
broadcast against targets, and the class axis is the last. Formulas: torch's.
The formulas, weights and the choices made: docs/losses.md.
"""

from __future__ import annotations

from twinnn.losses._reduce import require_same_shape as require_same_shape
from twinnn.losses.classification import binary_cross_entropy, cross_entropy, nll_loss
from twinnn.losses.regression import huber_loss, l1_loss, mse_loss

__all__ = [
    "binary_cross_entropy",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "nll_loss",
]
