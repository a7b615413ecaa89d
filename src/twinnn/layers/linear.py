"""``Linear``: ``y = x @ weight + bias``."""

from __future__ import annotations

import math
from typing import Any

from twinnn import initializers as init_
from twinnn._checks import check_bool, check_positive_int, require_dims
from twinnn.errors import ShapeError, describe_shape
from twinnn.module import Module, parameter

__all__ = ["Linear"]


class Linear(Module):
    """Affine layer on the last axis: ``y = x @ weight + bias``.

    Args:
        in_features: size ``in`` of the last input axis.
        out_features: size ``out`` of the last output axis.
        bias: whether to add ``bias``.
        init: ``"default"``/``"keras"`` (``weight`` Glorot-uniform, ``bias`` zeros) or
            ``"torch"`` (``weight`` and ``bias`` ``U(-1/sqrt(in), 1/sqrt(in))``).

    Parameters: ``weight`` ``(in, out)`` (the transpose of ``torch.nn.Linear.weight``, the
    layout of Keras' ``Dense.kernel``), ``bias`` ``(out,)``.

    Shapes: ``x`` ``(..., in)`` -> ``(..., out)``, any number of leading axes (none included).
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *, init: str = "default"
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "Linear(in_features)")
        self.out_features = check_positive_int(out_features, "Linear(out_features)")
        use_bias = check_bool(bias, "Linear(bias)")
        preset = init_.check_preset(init, "Linear")
        shape = (self.in_features, self.out_features)
        if preset == "torch":
            bound = 1.0 / math.sqrt(self.in_features)
            self.weight = parameter(init_.uniform(shape, bound))
            self.bias = parameter(init_.uniform((self.out_features,), bound)) if use_bias else None
        else:
            self.weight = parameter(init_.glorot_uniform(shape))
            self.bias = parameter(init_.zeros((self.out_features,))) if use_bias else None

    def forward(self, x: Any) -> Any:
        impl = self._backend
        x = impl.convert_float(x, "x")
        shape = impl.static_shape(x)
        if not shape or shape[-1] not in (None, self.in_features):
            raise ShapeError(self._shape_message().replace("{x}", describe_shape(shape)))
        if shape[-1] is None:  # flatten() of dims unknown while tracing: checked as it runs
            template = self._shape_message()
            x, _ = require_dims(impl, x, self.weight, [(len(shape) - 1, 0)], template)
        return impl.linear(x, self.weight, self.bias)

    def _shape_message(self) -> str:
        # Built only on the error path (an f-string of a traced int breaks torch.compile graphs).
        return (
            f"Linear.forward: argument 'x' must have shape (batch..., {self.in_features}) "
            f"(in_features={self.in_features}), got {{x}}"
        )

    def __repr__(self) -> str:
        return (
            f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None})"
        )
