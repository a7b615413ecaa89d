"""Neutral layers."""

from twinnn.layers.attention import MultiHeadAttention
from twinnn.layers.conv import Conv1D, Conv2D
from twinnn.layers.dropout import Dropout
from twinnn.layers.embedding import Embedding
from twinnn.layers.gru import GRU
from twinnn.layers.linear import Linear
from twinnn.layers.lstm import LSTM
from twinnn.layers.normalization import BatchNorm, LayerNorm

__all__ = [
    "GRU",
    "LSTM",
    "BatchNorm",
    "Conv1D",
    "Conv2D",
    "Dropout",
    "Embedding",
    "LayerNorm",
    "Linear",
    "MultiHeadAttention",
]
