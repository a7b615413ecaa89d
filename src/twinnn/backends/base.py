"""The typed contract every backend package implements.

A backend is a Python package (``twinnn.backends.torch``, ``twinnn.backends.tensorflow``)
whose module-level names satisfy :class:`Backend`; mypy checks each package against it. The
neutral front (``twinnn.layers``, ``twinnn.losses``, ``twinnn.optim``, ``twinnn.training``)
only ever calls these functions, so nothing framework-specific lives outside the backend
folders.

Shapes in docstrings: ``B`` batch, ``T`` time, ``F`` features, ``H`` hidden size, ``L`` layers,
``D`` directions (1 or 2).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

#: A native tensor (``torch.Tensor`` or ``tf.Tensor``) or variable.
Tensor = Any
#: A native trainable variable (``torch.nn.Parameter`` or ``tf.Variable``).
Param = Any
#: ``(w_ih (in, 4H), w_hh (H, 4H), bias (4H,))`` for one layer and direction, or with torch's
#: second bias ``(w_ih, w_hh, bias_ih (4H,), bias_hh (4H,))`` (``LSTM(recurrent_bias=True)``).
LSTMWeights = tuple[Param, ...]
#: ``(w_ih (in, 3H), w_hh (H, 3H), bias_ih (3H,), bias_hh (3H,))`` for one layer and direction.
GRUWeights = tuple[Param, Param, Param, Param]


class ScalarFeed(Protocol):
    """The float32 scalars of one optimiser update (learning rate, bias corrections, ...),
    computed on the host in float64 and rounded once; read by the update formula."""

    def set(self, values: np.ndarray) -> None:
        """Write the scalars of the next update (host side, before the update runs)."""

    def read(self) -> Sequence[Any]:
        """The scalars as native values (inside a traced step: read when the step runs)."""


class TensorVector(Protocol):
    """The tensors of one parameter group, with element-wise arithmetic on all of them at
    once (torch: multi-tensor ``_foreach`` kernels). ``+ - * /`` take another vector or a
    native scalar; each operation rounds as the per-tensor one does."""

    def __add__(self, other: Any) -> TensorVector: ...
    def __radd__(self, other: Any) -> TensorVector: ...
    def __sub__(self, other: Any) -> TensorVector: ...
    def __mul__(self, other: Any) -> TensorVector: ...
    def __rmul__(self, other: Any) -> TensorVector: ...
    def __truediv__(self, other: Any) -> TensorVector: ...
    def sqrt(self) -> TensorVector:
        """The correctly rounded float32 square root."""

    def maximum(self, other: Any) -> TensorVector: ...
    def scale_(self, factor: Any) -> TensorVector:
        """``self * factor`` (the same bits), written over this vector's own tensors where the
        backend can (torch: dense tensors that share no memory); their old values are lost, so
        only for temporaries the caller owns (a step's gradients)."""

    def as_list(self) -> list[Tensor]:
        """The tensors."""

    def write_to(self, variables: Sequence[Param]) -> None:
        """Overwrite ``variables`` (parameters or slots) in place with these values."""

    def subtract_from(self, variables: Sequence[Param]) -> None:
        """``variables -= self`` in place: the same bits as ``write_to`` of
        ``vector(variables) - self``, without the extra pass over the result."""


class GradientReducer(Protocol):
    """Sums a step's gradients over the ranks while its backward pass runs (torch: bucketed
    asynchronous collectives started from gradient hooks, as ``DistributedDataParallel``)."""

    def backward_hooks(self) -> list[Any]:
        """Install the hooks for one step's backward pass; returns handles (``.remove()``)."""

    def finish(
        self, grads: Sequence[Tensor], extra: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """After the backward pass: the summed ``grads`` and ``extra`` (the loss)."""


class Backend(Protocol):
    """Module-level API of a backend package."""

    NAME: str

    # --- framework, device, precision -------------------------------------------------------
    def framework_version(self) -> str:
        """Version string of the framework (``torch.__version__``)."""

    def visible_gpus(self) -> list[str]:
        """Names of the GPUs the framework sees (empty on a CPU machine)."""

    def set_device(self, kind: str, index: int | None, argument: str) -> str:
        """Place new parameters and tensors on ``kind`` (``auto``, ``cpu`` or ``gpu``).

        Returns the resolved device, ``"cpu"`` or ``"gpu:N"``. Raises
        :class:`twinnn.errors.DeviceError` when a GPU is asked for and absent; its message
        names ``argument`` (``"TWINNN_DEVICE"`` or ``"set_device(device)"``).
        """

    def current_device(self) -> str:
        """The resolved device (``"cpu"`` or ``"gpu:N"``)."""

    def set_tf32(self, enabled: bool) -> None:
        """Allow (True) or forbid (False) TF32 math on GPUs."""

    def seed(self, value: int) -> None:
        """Seed the framework's own random generator."""

    # --- tensors --------------------------------------------------------------------------------
    def is_native(self, x: object) -> bool:
        """True for this framework's tensors and variables."""

    def convert(self, x: object, name: str, dtype: str | None = None) -> Tensor:
        """Turn an array-like or native tensor into a tensor on the device.

        Floating array-likes become float32. A native floating tensor that is not float32
        raises :class:`~twinnn.errors.DTypeError`; a tensor of the other framework raises
        :class:`~twinnn.errors.BackendMismatchError`. ``name`` is the argument name used in
        messages. ``dtype`` (``"float32"``, ``"int64"``, ...) forces a dtype.
        """

    def convert_float(self, x: object, name: str) -> Tensor:
        """Like :meth:`convert` for an argument that must be float32 (a layer input, a target).

        Array-likes and native integer or bool tensors become float32 (exact up to 2**24);
        a native floating tensor that is not float32 raises
        :class:`~twinnn.errors.DTypeError`; anything that is not numeric (strings, ``None``,
        ragged lists) raises a ``twinnn.errors`` error naming ``name``.
        """

    def to_numpy(self, x: Tensor) -> np.ndarray:
        """A NumPy copy of ``x`` (detached, on the host)."""

    def static_shape(self, x: Tensor) -> tuple[int | None, ...]:
        """The shape as known now (``None`` for dims unknown while tracing)."""

    def dtype_name(self, x: Tensor) -> str:
        """NumPy-style dtype name, e.g. ``"float32"``."""

    # --- parameters -----------------------------------------------------------------------------
    def make_parameter(self, value: np.ndarray) -> Param:
        """A trainable float32 variable holding ``value``, on the device."""

    def is_parameter(self, x: object) -> bool:
        """True for variables made by :meth:`make_parameter`."""

    def assign(self, param: Param, value: np.ndarray) -> None:
        """Overwrite ``param`` (or a buffer) in place with ``value`` (same shape and dtype)."""

    def make_buffer(self, value: np.ndarray) -> Tensor:
        """Non-trainable state holding a copy of ``value`` (its dtype), on the device: a plain
        tensor (torch) or a ``tf.Variable(trainable=False)``; never a parameter."""

    def write_buffer(self, buffer: Tensor, value: Tensor) -> None:
        """Overwrite ``buffer`` in place with the native tensor ``value`` (same shape and
        dtype), outside the gradient; works inside a compiled step."""

    def no_grad(self) -> AbstractContextManager[Any]:
        """A context in which nothing is recorded for gradients (torch: ``torch.no_grad``;
        TensorFlow records only under a ``GradientTape``, so nothing to do)."""

    # --- ops (NumPy argument names) -------------------------------------------------------------
    def relu(self, x: Tensor) -> Tensor: ...
    def tanh(self, x: Tensor) -> Tensor: ...
    def sigmoid(self, x: Tensor) -> Tensor: ...
    def square(self, x: Tensor) -> Tensor: ...
    def matmul(self, a: Tensor, b: Tensor) -> Tensor: ...
    def concat(self, tensors: Sequence[Tensor], axis: int = -1) -> Tensor: ...
    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor: ...
    def mean(
        self, x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False
    ) -> Tensor: ...
    def sum(
        self, x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False
    ) -> Tensor: ...
    def broadcast_like(self, x: Tensor, like: Tensor) -> Tensor:
        """``x`` broadcast to the (dynamic) shape of ``like``."""

    def sequence_mask(self, lengths: Tensor, time: int | Tensor) -> Tensor:
        """Float32 ``(B, time)`` mask: ``1.0`` where ``t < lengths[b]``, else ``0.0``."""

    # Element-wise math and reductions. Axes are non-negative and checked by the front; the
    # operands of binary ops have one dtype (Python numbers are taken in that dtype).
    def exp(self, x: Tensor) -> Tensor:
        """``e ** x`` element-wise (float32)."""

    def log(self, x: Tensor) -> Tensor:
        """Natural logarithm element-wise (float32; ``-inf`` at 0, NaN below)."""

    def log1p(self, x: Tensor) -> Tensor:
        """``log(1 + x)`` element-wise, accurate for small ``x`` (float32)."""

    def abs(self, x: Tensor) -> Tensor:
        """``|x|`` element-wise, same dtype (signed integers and float32); gradient
        ``sign(x)`` (0 at 0)."""

    def maximum(self, a: Tensor, b: Tensor) -> Tensor:
        """Element-wise maximum with NumPy broadcasting; NaN propagates. Gradient: the larger
        operand gets it, a tie sends half to each (torch's rule, on both backends)."""

    def minimum(self, a: Tensor, b: Tensor) -> Tensor:
        """Element-wise minimum (ties and NaN as :meth:`maximum`)."""

    def where(self, condition: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """``x`` where the bool ``condition`` holds, else ``y``; the three broadcast (NumPy)."""

    def max(self, x: Tensor, axis: int | Sequence[int] | None, keepdims: bool) -> Tensor:
        """Maximum over ``axis`` (None: every axis), NaN propagating; the gradient is split
        evenly among the elements equal to the maximum."""

    def min(self, x: Tensor, axis: int | Sequence[int] | None, keepdims: bool) -> Tensor:
        """Minimum over ``axis`` (as :meth:`max`)."""

    def argmax(self, x: Tensor, axis: int) -> Tensor:
        """int64 index of the maximum along ``axis``: the first one among ties, the first NaN
        if any (NumPy)."""

    def argmin(self, x: Tensor, axis: int) -> Tensor:
        """int64 index of the minimum along ``axis`` (ties and NaN as :meth:`argmax`)."""

    def logsumexp(self, x: Tensor, axis: int | Sequence[int] | None, keepdims: bool) -> Tensor:
        """``log(sum(exp(x)))`` over ``axis`` (None: every axis), computed stably (shifted by
        the maximum); gradient ``softmax``."""

    # Shapes, gathers, dtypes.
    def transpose(self, x: Tensor, axes: Sequence[int]) -> Tensor:
        """``x`` with its axes permuted: result axis ``i`` is ``x``'s axis ``axes[i]``."""

    def expand_dims(self, x: Tensor, axis: int) -> Tensor:
        """``x`` with a size-1 axis inserted at ``axis`` (``0 <= axis <= rank``)."""

    def squeeze(self, x: Tensor, axes: Sequence[int]) -> Tensor:
        """``x`` without its size-1 ``axes`` (non-empty; each of size 1)."""

    def stack(self, tensors: Sequence[Tensor], axis: int) -> Tensor:
        """Tensors of one shape ``S`` and dtype joined along a new axis: ``S[:axis] + (N,) +
        S[axis:]``."""

    def split(self, x: Tensor, sizes: Sequence[int], axis: int) -> list[Tensor]:
        """``x`` cut along ``axis`` into pieces of ``sizes`` (which sum to that dim)."""

    def take(self, x: Tensor, indices: Tensor, axis: int) -> Tensor:
        """``np.take``: ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``; ``indices``
        int32/int64 in ``[0, x.shape[axis])`` (checked by the front). Gradient: scatter-add."""

    def take_along_axis(self, x: Tensor, indices: Tensor, axis: int) -> Tensor:
        """``np.take_along_axis``: ``x`` and ``indices`` (int32/int64, in range) of one rank,
        the other axes broadcasting; ``out[..., i, ...] = x[..., indices[..., i, ...], ...]``
        along ``axis``. Gradient: scatter-add."""

    def one_hot(self, indices: Tensor, depth: int) -> Tensor:
        """Float32 ``indices.shape + (depth,)``: 1.0 at each index (int32/int64, in range)."""

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        """``x`` as ``dtype`` (a ``twinnn.ops.TENSOR_DTYPES`` name); float to int truncates
        toward zero; the gradient flows through float-to-float casts."""

    # Activations (float32 in and out).
    def softmax(self, x: Tensor, axis: int) -> Tensor:
        """``exp(x - max) / sum(exp(x - max))`` along ``axis``."""

    def log_softmax(self, x: Tensor, axis: int) -> Tensor:
        """``x - logsumexp(x)`` along ``axis``, computed stably."""

    def gelu(self, x: Tensor, approximate: bool) -> Tensor:
        """``x * Phi(x)`` (``0.5 x (1 + erf(x / sqrt 2))``); with ``approximate`` the tanh form
        ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x**3)))``."""

    def silu(self, x: Tensor) -> Tensor:
        """``x * sigmoid(x)``."""

    def leaky_relu(self, x: Tensor, negative_slope: float) -> Tensor:
        """``x`` where ``x > 0``, else ``negative_slope * x`` (gradient ``negative_slope`` at
        0)."""

    def elu(self, x: Tensor, alpha: float) -> Tensor:
        """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (gradient ``alpha`` at 0)."""

    # --- run-time checks (graph-safe) ------------------------------------------------------
    def assert_dims(
        self,
        x: Tensor,
        y: Tensor,
        pairs: Sequence[tuple[int, int]],
        broadcast: bool,
        error: str,
        template: str,
    ) -> tuple[Tensor, Tensor]:
        """Check at run time that ``x.shape[i] == y.shape[j]`` for every ``(i, j)`` in
        ``pairs`` (or ``x.shape[i] == 1`` when ``broadcast``), for dims unknown while tracing.

        On failure raise ``twinnn.errors.<error>`` with ``template``, its ``{x}`` and ``{y}``
        replaced by the run-time shapes (``(4, 1)``) -- the message eager code gives for the
        same mistake. Returns ``(x, y)`` with ``x`` behind the check when traced: compute
        what follows from the returned ``x`` and nothing that depends on it (no update) runs
        when the check fails.
        """

    def assert_nonnegative(self, x: Tensor, error: str, message: str) -> Tensor:
        """Check at run time that every element of ``x`` is ``>= 0`` (NaN fails); on failure
        raise ``twinnn.errors.<error>(message)``. Returns ``x`` (behind the check when traced).
        """

    def assert_in_range(self, x: Tensor, low: int, high: int, error: str, message: str) -> Tensor:
        """Check at run time that every element of ``x`` satisfies ``low <= x < high`` (a bound
        outside ``x``'s dtype range is not checked); on failure raise
        ``twinnn.errors.<error>(message)``. Returns ``x`` (behind the check when traced).
        """

    def divide_no_nan(self, a: Tensor, b: Tensor) -> Tensor:
        """``a / b`` where ``b != 0``, else ``0`` -- with finite gradients everywhere."""

    # --- layers -----------------------------------------------------------------------------------
    def layer_norm(self, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        """Layer normalisation over the last axis: ``(x - mean) / sqrt(var + eps) * weight +
        bias`` with the biased variance (the framework's fused kernel where it has one)."""

    def stop_gradient(self, x: Tensor) -> Tensor:
        """``x``'s values with no gradient flowing back through them (torch ``detach``, TF
        ``stop_gradient``): the Embedding's padding row."""

    def sparse_cross_entropy(self, logits: Tensor, ids: Tensor) -> Tensor:
        """``-log_softmax(logits, -1)`` at ``ids`` per item: logits ``(..., C)`` float32,
        ``ids`` ``(...)`` int64 in ``[0, C)`` (checked by the caller) -> ``(...)``; the
        framework's fused softmax-cross-entropy kernel, differentiable w.r.t. ``logits``."""

    def linear(self, x: Tensor, weight: Param, bias: Param | None) -> Tensor:
        """``x @ weight + bias`` for ``x`` of shape ``(..., in)``; ``weight`` ``(in, out)``."""

    def lstm(
        self,
        x: Tensor,
        lengths: Tensor | None,
        initial_state: tuple[Tensor, Tensor] | None,
        weights: Sequence[LSTMWeights],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Multi-layer LSTM over a batch-first, right-padded batch (DESIGN.md section 4).

        ``x`` ``(B, T, F)`` float32; ``lengths`` ``(B,)`` integers, ``0 <= len <= T`` (None:
        all ``T``); ``initial_state`` ``(h0, c0)``, each ``(L*D, B, H)`` (None: zeros);
        ``weights`` ``L*D`` triples ``(w_ih (in, 4H), w_hh (H, 4H), bias (4H,))``, layer by
        layer, forward before backward, ``in = F`` for layer 0 and ``H*D`` above. Per step,
        gates ``i, f, g, o``: ``z = x_t @ w_ih + h @ w_hh + bias``, ``c = f*c + i*g``,
        ``h = o * tanh(c)``.

        Returns ``(outputs (B, T, H*D), h (L*D, B, H), c (L*D, B, H))``: outputs exactly zero
        at ``t >= len``; ``h``, ``c`` the state after step ``len - 1`` (the initial state for
        ``len == 0``); the backward direction reads each sequence from ``len - 1`` down to 0.
        Padded values never influence any output, state or gradient. The backend checks the
        values of ``lengths`` (:class:`~twinnn.errors.ArgumentError` where it can without a
        device round trip, a framework assertion otherwise). With four weights per layer
        (``recurrent_bias``) ``bias = bias_ih + bias_hh``, each getting the full gradient.
        """

    def gru(
        self,
        x: Tensor,
        lengths: Tensor | None,
        initial_state: Tensor | None,
        weights: Sequence[GRUWeights],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Tensor, Tensor]:
        """Multi-layer GRU over a batch-first, right-padded batch (DESIGN.md section 13), with
        :meth:`lstm`'s shapes and guarantees for ``x``, ``lengths`` and the outputs.

        ``initial_state`` ``h0`` ``(L*D, B, H)`` (None: zeros); ``weights`` ``L*D`` quadruples
        ``(w_ih (in, 3H), w_hh (H, 3H), bias_ih (3H,), bias_hh (3H,))``, gates ``r, z, n``
        (torch's equations, the reset gate after the hidden matmul)::

            r = sigmoid(x_t @ w_ir + b_ir + h @ w_hr + b_hr)
            z = sigmoid(x_t @ w_iz + b_iz + h @ w_hz + b_hz)
            n = tanh(x_t @ w_in + b_in + r * (h @ w_hn + b_hn))
            h = (1 - z) * n + z * h

        Returns ``(outputs (B, T, H*D), h (L*D, B, H))``: outputs exactly zero at
        ``t >= len``, ``h`` the state after step ``len - 1`` (``h0`` for ``len == 0``).
        """

    def roll_time(self, x: Tensor, shifts: Tensor) -> Tensor:
        """``x`` ``(B, T, ...)`` with each row rolled along axis 1:
        ``out[b, t] = x[b, (t - shifts[b]) mod T]`` (``shifts`` ``(B,)`` int64, any sign), as
        one gather on the device; its gradient is the inverse permutation (exact)."""

    # --- convolutions and pooling (backends' ``conv`` modules) -----------------------------------
    # Channels last: ``x`` ``(B, W, C)`` (1-D) or ``(B, H, W, C)`` (2-D), float32; ``strides``,
    # ``dilation``, ``window`` one positive int per spatial dim. Shapes and arguments are checked
    # by the front (twinnn.ops._window); the padding rule is twinnn.backends.window's.
    def conv(
        self,
        x: Tensor,
        weight: Param,
        bias: Param | None,
        strides: Sequence[int],
        dilation: Sequence[int],
        padding: str | Sequence[tuple[int, int]],
    ) -> Tensor:
        """Cross-correlation (no kernel flip) ``weight`` ``(k..., C, O)`` plus ``bias``
        ``(O,)`` -> ``(B, W', O)`` / ``(B, H', W', O)``. ``padding`` is ``"same"``
        (TensorFlow's SAME rule from the run-time sizes) or one ``(before, after)`` pair of
        zero padding per spatial dim."""

    def max_pool(
        self, x: Tensor, window: Sequence[int], strides: Sequence[int], same: bool
    ) -> Tensor:
        """Maximum over each window, with no padding or TensorFlow's SAME padding (``same``)
        that never wins; gradient to the first maximum of each window."""

    def avg_pool(
        self, x: Tensor, window: Sequence[int], strides: Sequence[int], same: bool
    ) -> Tensor:
        """Mean over each window; with ``same`` (TensorFlow's SAME padding) the sum of the
        valid elements divided by their count (padding is not counted)."""

    def flatten(self, x: Tensor) -> Tensor:
        """``(B, d1, ..., dn)`` (``n >= 1``) -> ``(B, d1 * ... * dn)``, on dims unknown while
        tracing too."""

    def assert_min_dims(
        self, x: Tensor, minimums: Sequence[tuple[int, int]], error: str, template: str
    ) -> Tensor:
        """Check at run time that ``x.shape[axis] >= low`` for every ``(axis, low)`` (dims
        unknown while tracing); on failure raise ``twinnn.errors.<error>`` with ``template``'s
        ``{x}`` replaced by the run-time shape. Returns ``x`` (behind the check when traced)."""

    # --- attention (backends' ``attention`` modules) -------------------------------------------
    def attention(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        num_heads: int,
        mask: Tensor | None,
        key_lengths: Tensor | None,
        causal: bool,
        scale: float,
        dropout: Callable[[Tensor], Tensor] | None,
        lengths_message: str | None,
    ) -> Tensor:
        """Multi-head scaled dot-product attention on projected inputs -> ``(B, Tq, E)``.

        ``q`` ``(B, Tq, E)``, ``k`` and ``v`` ``(B, Tk, E)`` float32, ``E = num_heads * D``;
        head ``h`` reads columns ``h*D:(h+1)*D`` and writes them in the result. Per head::

            allowed = mask & (j < key_lengths[b]) & (j <= i if causal)   # absent terms: True
            p = softmax over the allowed keys of (q_h @ k_h^T) * scale    # 0 elsewhere
            out_h = dropout(p) @ v_h

        ``mask`` bool of rank 4, broadcastable to ``(B, H, Tq, Tk)``, True = may attend (or
        None); ``key_lengths`` ``(B,)`` int64 (or None); ``dropout`` a function applied to the
        ``(B, H, Tq, Tk)`` float32 probabilities (or None). A query row with no allowed key
        gives zeros, never NaN, with finite (zero) gradients. ``lengths_message``: None when
        the front has checked ``0 <= key_lengths <= Tk``; else (``Tk`` unknown to the front, a
        traced step) the backend checks it when the step runs and raises
        :class:`~twinnn.errors.ArgumentError` with this message, ``{time}`` replaced by
        ``Tk``. The framework's fused kernel where it keeps parity (torch: SDPA).
        """

    # --- counter-based random bits (dropout; backends' ``random`` modules) -----------------------
    # A *words* tensor holds unsigned 32-bit values in the backend's own dtype (torch: int32
    # bit patterns, TensorFlow: uint32); arithmetic is modulo 2**32. The hash itself is written
    # once, in twinnn.layers.dropout, with these primitives; each backend returns the same
    # bits. Python ints given as operands are in [0, 2**32).
    def element_words(
        self, x: Tensor, row_offset: int | Tensor, mix_high: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Words shaped like ``x``: for the element with int64 global index ``e = (row_offset +
        row) * (size / rows) + j`` (``row`` on axis 0, ``j`` its flat index within the row; a
        rank-0 ``x`` is one row), ``e_lo ^ mix_high(e_hi)``. ``mix_high(0) == 0``: the backend
        skips it where every ``e < 2**32``."""

    def int_words(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(low, high)`` 32-bit words of the int64 tensor ``x >= 0``."""

    def xor_words(self, a: Tensor, b: Tensor | int) -> Tensor:
        """``a ^ b`` (``b`` a words tensor that broadcasts against ``a``, or a Python int)."""

    def xorshift_words(self, x: Tensor, shift: int) -> Tensor:
        """``x ^ (x >> shift)``, a logical shift, ``0 < shift < 32``."""

    def mul_words(self, x: Tensor, factor: int) -> Tensor:
        """``x * factor`` modulo ``2**32``."""

    def words_at_least(self, x: Tensor, threshold: int) -> Tensor:
        """Bool: ``x >= threshold`` as unsigned values, ``0 <= threshold <= 2**32`` (all False
        at ``2**32``)."""

    def apply_keep(self, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        """``x * (keep ? scale : 0)`` for float32 ``x`` and a bool ``keep`` of its shape,
        ``scale`` a float32 value: ``x * scale`` where kept, ``x * 0`` (zero, or NaN for
        inf/NaN) elsewhere, bit for bit; the gradient is the same mask."""

    # --- optimiser and steps ----------------------------------------------------------------------
    def make_scalar_feed(self, count: int) -> ScalarFeed:
        """A :class:`ScalarFeed` of ``count`` float32 scalars."""

    def make_slot(self, param: Param, fill: float) -> Param:
        """Optimiser state shaped like ``param`` (same device), filled with ``fill``."""

    def sqrt(self, x: Tensor) -> Tensor:
        """The correctly rounded float32 square root (the same bits on every backend)."""

    def l2_norm(self, x: Tensor) -> Tensor:
        """``sqrt(sum(x**2))`` over every element, a 0-d tensor (one pass, as fused as the
        framework allows; equal to the written formula within rounding)."""

    def clip(self, x: Tensor, low: float | None, high: float | None) -> Tensor:
        """``x`` clamped to ``[low, high]`` (None: no bound on that side)."""

    def vector(self, tensors: Sequence[Tensor]) -> TensorVector:
        """A :class:`TensorVector` over ``tensors`` (parameters, gradients or slots)."""

    def build_train_step(
        self,
        loss_of: Callable[..., tuple[Tensor, Any]],
        params: Sequence[Param],
        apply_gradients: Callable[[Sequence[Tensor]], None],
        *,
        prepare: Callable[[], Hashable],
        finish: Callable[[], None],
        check_args: Callable[[Sequence[tuple[int | None, ...]]], None],
        missing_gradients: Callable[[list[int]], None] | None,
        eager: bool,
        jit: bool,
        gradients: Callable[..., tuple[Tensor, Any, list[Tensor]]] | None = None,
    ) -> Callable[..., Any]:
        """A function ``step(*args)``: converts ``args`` with :meth:`convert`, calls
        ``check_args(shapes)`` with their shapes on the host (every call, before anything
        runs), runs ``loss, outputs = loss_of(*tensors)``, differentiates ``loss`` w.r.t.
        ``params`` and calls ``apply_gradients(grads)``; ``prepare()`` runs on the host before
        the update (every call, after ``check_args``) and ``finish()`` after a successful one;
        what ``prepare()`` returns selects code at trace time (which optimiser passes run), so a
        compiled step keeps one graph per returned value as it does per argument structure.
        Returns ``loss`` when ``outputs`` is None, else ``(loss, outputs)`` with ``outputs``
        (a nested tuple/list/dict of tensors) detached from the gradient. Parameters without a
        gradient path get zeros when ``missing_gradients`` is None; otherwise it is called
        with their indices (and raises) before any update -- at trace time where the framework
        knows it then. Compiled unless ``eager`` (TensorFlow: ``tf.function`` that does not
        retrace for new leading dims; torch: ``torch.compile`` when ``jit``). A failed graph
        check is re-raised as the ``twinnn.errors`` class it names.

        ``gradients`` (data parallelism) replaces the plain ``loss, outputs, grads =
        grads_of(*tensors)`` by ``gradients(grads_of, *tensors)``, ``grads_of`` being this
        backend's differentiation of ``loss_of`` (traceable): it runs the slices and reduces
        the gradients. Under a TensorFlow strategy the body runs inside ``strategy.run``.
        """

    def build_eval_step(
        self,
        forward: Callable[..., Any],
        *,
        check_args: Callable[[Sequence[tuple[int | None, ...]]], None],
        eager: bool,
        jit: bool,
    ) -> Callable[..., Tensor]:
        """A function ``step(*args)`` returning ``forward(*tensors)`` (a tensor or a nested
        tuple/list/dict of tensors), converted and checked like :meth:`build_train_step`'s,
        without gradients or update."""

    # --- data parallelism (the framework's own engine; twinnn.distributed uses these) ----------
    def join_group(self, rank: int, world_size: int, timeout_s: float, gpu: bool) -> None:
        """Join the framework's process group / strategy as ``rank`` of ``world_size``
        (torch: ``init_process_group`` from torchrun's variables; TensorFlow:
        ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``); collectives raise
        :class:`~twinnn.errors.DistributedError` after ``timeout_s`` seconds."""

    def leave_group(self) -> None:
        """Leave the group joined by :meth:`join_group` (nothing when none was joined)."""

    def all_gather(self, x: Tensor) -> Tensor:
        """``(world_size, *x.shape)``: every rank's ``x`` stacked in rank order (inside a step
        body wrapped by :meth:`in_replica`; graph-safe)."""

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """The elementwise sum of every rank's ``x`` by the framework's native all-reduce."""

    def gradient_reducer(
        self, params: Sequence[Param], combine: Callable[[Tensor], Tensor] | None
    ) -> GradientReducer | None:
        """A reducer that overlaps the gradients' collectives with the backward pass, or
        None where the backend has none (the step then reduces one buffer afterwards).
        ``combine`` None: the native all-reduce; else gather and ``combine(stacked)``."""

    def rows(self, x: Tensor) -> int | Tensor:
        """``x.shape[0]``: an int when known, else an int64 scalar tensor (a traced dim)."""

    def keep_written_arithmetic(self) -> None:
        """Compile later steps with their arithmetic as written (TensorFlow: no grappler
        arithmetic rewrites, process-wide), so data-parallel ranks and ``shards=N`` agree to
        the bit."""

    def snapshot(self, x: Tensor) -> Tensor:
        """A copy of ``x``'s value now (a buffer: later writes leave the copy unchanged)."""

    def flatten_all(self, tensors: Sequence[Tensor]) -> Tensor:
        """Every tensor flattened and concatenated, in order (one buffer, one collective)."""

    def unflatten_like(self, flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
        """The inverse of :meth:`flatten_all`: pieces of ``flat`` shaped like ``like``."""

    def custom_gradient(
        self, forward: Callable[[Tensor], Tensor], backward: Callable[[Tensor], Tensor], x: Tensor
    ) -> Tensor:
        """``forward(x)``, whose gradient w.r.t. ``x`` is ``backward(dy)``."""

    def in_replica(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """``body`` as it must run for its collectives to work: inside ``strategy.run`` on
        TensorFlow when a strategy is set up (returning this worker's values), as it is on
        torch. Called eagerly it runs at once (TensorFlow traces a one-off function)."""
