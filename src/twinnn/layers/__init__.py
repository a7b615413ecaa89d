"""Neutral layers."""

from twinnn.layers.linear import Linear
from twinnn.layers.lstm import LSTM

__all__ = ["LSTM", "Linear"]
