"""Neutral layers."""

from twinnn.layers.linear import Linear

__all__ = ["Linear"]
