"""Optimisers with one definition each (torch's formulas and defaults), computed by the same
sequence of float32 operations on both backends: one update is bit-identical on torch and
TensorFlow for the same gradients. See :mod:`twinnn.optim.base`."""

from __future__ import annotations

from twinnn.optim.adagrad import Adagrad
from twinnn.optim.adam import Adam, AdamW
from twinnn.optim.base import Optimizer
from twinnn.optim.rmsprop import RMSprop
from twinnn.optim.sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop"]
