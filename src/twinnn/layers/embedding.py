"""``Embedding``: a lookup table of ``num_embeddings`` vectors, gathered by integer id."""

from __future__ import annotations

from numbers import Integral
from typing import Any

from twinnn import initializers as init_
from twinnn._checks import check_positive_int
from twinnn.errors import ArgumentError, ArgumentTypeError
from twinnn.module import Module, parameter
from twinnn.ops._args import index_tensor

__all__ = ["Embedding"]

#: Keras' ``Embedding`` default initialiser: ``RandomUniform(-0.05, 0.05)``.
KERAS_BOUND = 0.05


def _padding_index(padding_idx: object, num_embeddings: int) -> int | None:
    """``padding_idx`` as a row in ``[0, num)``; negative counts from the end (torch)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, Integral):
        raise ArgumentTypeError(
            f"Embedding(padding_idx) must be None or an int, got {type(padding_idx).__name__} "
            f"{padding_idx!r}"
        )
    index = int(padding_idx)
    if not -num_embeddings <= index < num_embeddings:
        raise ArgumentError(
            f"Embedding(padding_idx) must be in [-{num_embeddings}, {num_embeddings}) "
            f"(a row of the table; negative counts from the end), got {index}"
        )
    return index % num_embeddings


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by id:
    ``out[..., :] = weight[ids[...], :]``.

    Args:
        num_embeddings: rows ``N`` of the table (ids are in ``[0, N)``).
        embedding_dim: size ``D`` of each vector.
        padding_idx: a row that stays fixed in training (PyTorch's ``padding_idx``): zero at
            init, and no gradient ever reaches it from the lookups -- its positions still output
            the row's value. A negative value counts from the end (``-1`` is row ``N - 1``).
        init: ``"default"``/``"keras"``: ``weight`` ``U(-0.05, 0.05)`` (Keras' ``Embedding``
            default) or ``"torch"``: ``N(0, 1)`` (``torch.nn.Embedding``'s). Both drawn from
            twinnn's generator; the padding row is then set to zero.

    Parameters: ``weight`` ``(N, D)`` (torch's ``weight``, Keras' ``embeddings``: the same
    layout).

    Shapes: ``ids`` integers of any shape ``(...)`` (NumPy arrays, lists or native integer
    tensors) -> float32 ``(..., D)``. The lookup is a gather on both backends (never a one-hot
    matmul), and its gradient adds into the looked-up rows (a repeated id accumulates).

    Ids outside ``[0, N)`` are an :class:`~twinnn.errors.ArgumentError` on both backends -- a
    graph-safe check for native tensors, inside a compiled TensorFlow step too, where nothing
    is updated (TensorFlow's GPU gather returns zeros silently; twinnn never does). On a torch
    GPU a step reads it with its other checks, once, before the update (docs/errors.md).

    With weight decay the padding row behaves as in torch: its gradient is zero, so a zero row
    stays zero under every twinnn optimiser (``SGD``, ``Adam``, ``AdamW``, ...).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.num_embeddings = check_positive_int(num_embeddings, "Embedding(num_embeddings)")
        self.embedding_dim = check_positive_int(embedding_dim, "Embedding(embedding_dim)")
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings)
        preset = init_.check_preset(init, "Embedding")
        shape = (self.num_embeddings, self.embedding_dim)
        torch_init = preset == "torch"
        values = init_.normal(shape) if torch_init else init_.uniform(shape, KERAS_BOUND)
        if self.padding_idx is not None:
            values[self.padding_idx] = 0.0
        self.weight = parameter(values)

    def forward(self, ids: Any) -> Any:
        """``weight[ids]``: float32 ``ids.shape + (embedding_dim,)``."""
        impl = self._backend
        native = index_tensor(
            impl,
            ids,
            "Embedding.forward: argument 'ids'",
            self.num_embeddings,
            f"num_embeddings={self.num_embeddings}",
        )
        out = impl.take(self.weight, native, 0)
        if self.padding_idx is None:
            return out
        # torch's padding_idx: the row's value, but no gradient into it from these positions.
        is_pad = impl.expand_dims(native == self.padding_idx, len(impl.static_shape(native)))
        return impl.where(is_pad, impl.stop_gradient(out), out)

    def __repr__(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"
