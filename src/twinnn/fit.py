"""``twinnn.fit``: run a training step over batches for some epochs, with a progress bar, and
optionally a validation pass and metrics at the end of each epoch.

The loss a step returns (and every metric value) stays a native tensor until it is needed on
the host: they are copied to the host together, in one transfer per bar refresh (about twice
a second while the bar is shown), at the end of each epoch, every 1024 steps, or every step
when ``callbacks`` are given. A validation pass copies its losses and metric values in one
transfer at its end (or every 1024 batches). The returned ``History`` always holds every
step's loss.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinnn import backends as _registry
from twinnn._checks import check_bool, check_positive_int
from twinnn.backends.base import Backend
from twinnn.distributed.world import gather_on_host, shard, world
from twinnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    NonFiniteLossError,
    ShapeError,
    describe_shape,
)

__all__ = ["Callback", "History", "Metric", "fit"]

#: ``callback(epoch, step_index, loss)``: epoch from 0, step index within the epoch from 0,
#: the step's loss as a Python float.
Callback = Callable[[int, int, float], None]
#: ``metric(outputs, target) -> scalar``: the model's outputs for a batch (native tensors) and
#: the batch's target (its last element); returns a scalar native tensor or a number.
Metric = Callable[[Any, Any], Any]
Batches = Iterable[Sequence[Any]] | Callable[[], Iterable[Sequence[Any]]]

_REFRESH_S = 0.5  # host copies of the loss while the bar is shown: at most this often
_MAX_PENDING = 1024  # and at least every this many steps
_NO_OUTPUTS: Any = object()  # a step that returned its loss alone


@dataclass
class History:
    """What ``fit`` returns.

    Attributes:
        losses: every step's loss, in order, all epochs (Python floats).
        epoch_losses: per epoch, the mean of its steps' losses (computed in float64; every step
            counts once, whatever its batch size).
        steps_per_epoch: per epoch, how many steps ran.
        val_losses: per epoch, the validation loss (``validation=``; empty without it): the
            mean of the validation batches' losses weighted by their example counts.
        metrics: per metric, its value per epoch, named as in Keras: ``"accuracy"`` on the
            training batches (when ``step`` returns ``(loss, outputs)``), ``"val_accuracy"``
            on the validation batches; each weighted by the batches' example counts.
    """

    losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    steps_per_epoch: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def epoch(self, index: int) -> list[float]:
        """The step losses of epoch ``index`` (from 0)."""
        start = sum(self.steps_per_epoch[:index])
        return self.losses[start : start + self.steps_per_epoch[index]]


class _LossBuffer:
    """Collects each step's loss and metric values (native scalars or numbers) and copies them
    to the host in bulk. ``what`` names the step in messages (``fit(step)``)."""

    def __init__(self, what: str = "fit(step)") -> None:
        self.what = what
        self.pending: list[list[Any]] = []  # per step: the loss, then the metric values
        self.impl: Backend | None = None
        self.checked = False

    def add(self, loss: Any, extras: Sequence[tuple[str, Any]] = ()) -> None:
        """Queue ``loss`` and ``extras`` (``(metric name, value)`` pairs) of one step."""
        if not self.checked:  # the first loss fixes which backend converts the rest
            self.impl = _backend_of(loss, self.what)
            self.checked = True
        elif not (self.impl.is_native(loss) if self.impl is not None else _is_number(loss)):
            kind = f"a {self.impl.NAME} tensor" if self.impl is not None else "a number"
            raise ArgumentTypeError(
                f"{self.what} returned {kind} first, then a {type(loss).__module__}."
                f"{type(loss).__name__}; it must return the same kind of loss every step"
            )
        shape = self.impl.static_shape(loss) if self.impl is not None else np.shape(loss)
        if tuple(shape) != ():
            raise ShapeError(
                f"{self.what} must return a scalar loss, got shape {describe_shape(shape)}"
            )
        for name, value in extras:
            _check_metric_value(name, value)
        self.pending.append([loss, *(value for _, value in extras)])

    def flush(self) -> list[list[float]]:
        """The pending rows (loss, metric values) as floats, in order: one device-to-host copy
        per backend involved (one in practice)."""
        if not self.pending:
            return []
        rows, self.pending = self.pending, []
        flat = _to_host([x for row in rows for x in row])
        out, start = [], 0
        for row in rows:
            out.append(flat[start : start + len(row)])
            start += len(row)
        return out


def _to_host(items: list[Any]) -> list[float]:
    """Scalars (native tensors of any loaded backend, or numbers) as floats, in order; the
    native ones of one backend in a single transfer."""
    values: list[float | None] = [None] * len(items)
    groups: dict[str, tuple[Backend, list[int]]] = {}
    for i, x in enumerate(items):
        impl = _native_backend(x)
        if impl is None:
            values[i] = float(np.asarray(x, dtype=np.float64))
        else:
            groups.setdefault(impl.NAME, (impl, []))[1].append(i)
    for impl, indexes in groups.values():
        if len(indexes) == 1:
            host = impl.to_numpy(items[indexes[0]]).reshape(1)
        else:
            host = impl.to_numpy(impl.concat([impl.reshape(items[i], [1]) for i in indexes], 0))
        for i, v in zip(indexes, host, strict=True):
            values[i] = float(v)
    assert all(v is not None for v in values)
    return values  # type: ignore[return-value]


def _is_number(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.number, np.ndarray))


def _native_backend(x: object) -> Backend | None:
    for impl in _registry.loaded().values():
        if impl.is_native(x):
            return impl
    return None


def _backend_of(loss: Any, what: str) -> Backend | None:
    impl = _native_backend(loss)
    if impl is None and not _is_number(loss):
        raise ArgumentTypeError(
            f"{what} must return the loss as a native scalar tensor or a number (or a "
            f"(loss, outputs) pair), got {type(loss).__module__}.{type(loss).__name__}"
        )
    return impl


def _check_metric_value(name: str, value: Any) -> None:
    impl = _native_backend(value)
    if impl is None and not _is_number(value):
        raise ArgumentTypeError(
            f"fit(metrics): metric {name!r} must return a scalar native tensor or a number, "
            f"got {type(value).__module__}.{type(value).__name__}"
        )
    shape = impl.static_shape(value) if impl is not None else np.shape(value)
    if tuple(shape) != ():
        raise ShapeError(
            f"fit(metrics): metric {name!r} must return a scalar, got shape {describe_shape(shape)}"
        )


def _split(result: Any, what: str) -> tuple[Any, Any]:
    """A step's result as ``(loss, outputs)``; outputs ``_NO_OUTPUTS`` for a loss alone."""
    if isinstance(result, tuple):
        if len(result) != 2:
            raise ArgumentTypeError(
                f"{what} must return a loss or a (loss, outputs) pair, got a tuple of "
                f"{len(result)} elements"
            )
        return result[0], result[1]
    return result, _NO_OUTPUTS


def _example_count(batch: Sequence[Any], where: str) -> int:
    """The first dim of the batch's last element (the target): the batch's example count."""
    if len(batch) == 0:
        raise ArgumentError(f"{where} is empty; it needs a target as its last element")
    target = batch[-1]
    impl = _native_backend(target)
    if impl is not None:
        shape: tuple[int | None, ...] = tuple(impl.static_shape(target))
    else:
        try:
            shape = tuple(np.shape(target))
        except ValueError:  # a ragged list
            raise ArgumentTypeError(
                f"{where}: its target (last element) must be an array-like with a batch dim, "
                f"got a ragged {type(target).__name__}"
            ) from None
    if len(shape) == 0 or shape[0] is None:
        raise ShapeError(
            f"{where}: its target (last element) must have a batch dim (examples first) to "
            f"weight the batch, got shape {describe_shape(shape)}"
        )
    return int(shape[0])


def _weighted_mean(values: Sequence[float], counts: Sequence[int]) -> float:
    """``sum(n_b * v_b) / sum(n_b)`` in float64 (NaN when no example)."""
    total = sum(counts)
    if total == 0:
        return math.nan
    return math.fsum(v * n for v, n in zip(values, counts, strict=True)) / total


def _global_means(values: dict[str, list[float]], counts: Sequence[int]) -> dict[str, float]:
    """Each metric's mean weighted by example counts, over every rank's batches (the local
    sums ``sum(n_b * v_b)`` and ``sum(n_b)`` are gathered; a world of 1 gathers nothing)."""
    if world().world_size == 1:
        return {name: _weighted_mean(v, counts[: len(v)]) for name, v in values.items()}
    local = [math.fsum(v * n for v, n in zip(vs, counts, strict=False)) for vs in values.values()]
    parts = gather_on_host(np.array([*local, float(sum(counts))], np.float64))
    totals = parts.sum(axis=0)
    return {
        name: (float(totals[j] / totals[-1]) if totals[-1] else math.nan)
        for j, name in enumerate(values)
    }


def _epoch_source(
    batches: object, epochs: int, argument: str = "fit(batches)"
) -> Callable[[], Iterable[Any]]:
    """A function giving each epoch's batches; checks what can be checked up front."""
    if isinstance(batches, Iterable):
        if iter(batches) is batches and epochs > 1:
            raise ArgumentError(
                f"{argument} is a one-shot iterator ({type(batches).__name__}) but epochs="
                f"{epochs}; pass a list, a re-iterable dataset, or a function returning a "
                "fresh iterable per epoch"
            )
        return lambda: batches  # type: ignore[return-value]
    if callable(batches):

        def fresh() -> Iterable[Any]:
            result = batches()
            if not isinstance(result, Iterable):
                raise ArgumentTypeError(
                    f"{argument} was called to get an epoch's batches and must return an "
                    f"iterable, got {type(result).__name__}"
                )
            return result

        return fresh
    raise ArgumentTypeError(
        f"{argument} must be an iterable of argument tuples or a function returning one, "
        f"got {type(batches).__name__}"
    )


def _check_callbacks(callbacks: object) -> list[Callback]:
    if callbacks is None:
        return []
    items = [callbacks] if callable(callbacks) else callbacks
    if not isinstance(items, Iterable) or not all(callable(c) for c in items):
        raise ArgumentTypeError(
            "fit(callbacks) must be a callable or a list of callables "
            f"(epoch, step_index, loss) -> None, got {callbacks!r}"
        )
    return list(items)


def _check_metrics(metrics: object) -> dict[str, Metric]:
    """``{name: metric}`` from a dict or a list of named callables."""
    if metrics is None:
        return {}
    expected = (
        "a dict {name: metric} or a list of functions metric(outputs, target) -> scalar "
        "(named by __name__)"
    )
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
        for name, metric in items:
            if not isinstance(name, str) or not name:
                raise ArgumentTypeError(
                    f"fit(metrics): names must be non-empty strings, got {name!r}"
                )
            if not callable(metric):
                raise ArgumentTypeError(
                    f"fit(metrics): metric {name!r} must be callable, got "
                    f"{type(metric).__name__} {metric!r}"
                )
    elif isinstance(metrics, (list, tuple)):
        items = []
        for metric in metrics:
            if not callable(metric):
                raise ArgumentTypeError(
                    f"fit(metrics) must be {expected}; got a {type(metric).__name__} "
                    f"{metric!r} in the list"
                )
            name = getattr(metric, "__name__", None)
            if not isinstance(name, str) or not name.isidentifier():
                raise ArgumentError(
                    f"fit(metrics): {metric!r} has no usable __name__ ({name!r}); name it "
                    "with a dict: metrics={'name': metric}"
                )
            if any(name == seen for seen, _ in items):
                raise ArgumentError(
                    f"fit(metrics): two metrics are named {name!r}; name them with a dict"
                )
            items.append((name, metric))
    else:
        raise ArgumentTypeError(f"fit(metrics) must be {expected}, got {type(metrics).__name__}")
    for name, _ in items:
        if name == "loss" or name.startswith("val_"):
            raise ArgumentError(
                f"fit(metrics): the name {name!r} is taken (the history uses 'loss' and the "
                "'val_' prefix); choose another"
            )
    return dict(items)


def _check_validation(
    validation: object, epochs: int
) -> tuple[Callable[..., Any], Callable[[], Iterable[Any]]] | None:
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        got = (
            f"a {type(validation).__name__} of {len(validation)} elements"
            if isinstance(validation, (tuple, list))
            else f"{type(validation).__name__}"
        )
        raise ArgumentTypeError(
            f"fit(validation) must be a pair (val_step, val_batches), e.g. "
            f"(twinnn.eval_step(model, loss_fn), val_batches), got {got}"
        )
    val_step, val_batches = validation
    if not callable(val_step):
        raise ArgumentTypeError(
            f"fit(validation): val_step (its first element) must be callable, got "
            f"{type(val_step).__name__}"
        )
    return val_step, _epoch_source(val_batches, epochs, "fit(validation) val_batches")


def _check_finite_losses(values: Sequence[float], describe: Callable[[int, float], str]) -> None:
    """Raise ``NonFiniteLossError(describe(index, value))`` for the first NaN or inf."""
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise NonFiniteLossError(describe(index, value))


@dataclass
class _Epoch:
    """What one epoch's training pass gave, on the host."""

    losses: list[float] = field(default_factory=list)
    #: per metric, its per-step values (training metrics only)
    values: dict[str, list[float]] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)  # examples per step (with metrics)

    def metric_means(self) -> dict[str, float]:
        """This process's running means (the bar's; rank 0's own slices under data
        parallelism)."""
        return {
            name: _weighted_mean(values, self.counts[: len(values)])
            for name, values in self.values.items()
        }

    def global_metric_means(self) -> dict[str, float]:
        """The means over every rank's slices (every rank calls it: a collective)."""
        return _global_means(self.values, self.counts)

    def postfix(self) -> dict[str, str]:
        shown = {"loss": f"{math.fsum(self.losses) / len(self.losses):.6g}"}
        shown.update({name: f"{value:.6g}" for name, value in self.metric_means().items()})
        return shown


class _Trainer:
    """The state of one ``fit`` call that lasts over epochs."""

    def __init__(
        self,
        step: Callable[..., Any],
        metrics: dict[str, Metric],
        hooks: list[Callback],
        check_finite: bool,
        metrics_need_outputs: bool,
    ) -> None:
        self.step = step
        self.metrics = metrics
        self.hooks = hooks
        self.check_finite = check_finite
        self.metrics_need_outputs = metrics_need_outputs  # no validation to compute them on
        self.buffer = _LossBuffer()
        self.train_metrics: bool | None = None  # fixed by the first step's result

    def _train_extras(
        self, outputs: Any, batch: Sequence[Any], where: str, counts: list[int]
    ) -> list[tuple[str, Any]]:
        """The metric values of one training step (empty when not computed); appends the
        batch's example count to ``counts`` when they are."""
        if not self.metrics:
            return []
        has_outputs = outputs is not _NO_OUTPUTS
        if self.train_metrics is None:
            if not has_outputs and self.metrics_need_outputs:
                raise ArgumentError(
                    "fit(metrics) needs the model's outputs, but step returned its loss alone "
                    "and there is no validation= to compute them on; make the step return "
                    "(loss, outputs): twinnn.train_step(model, loss_fn, optimizer, "
                    "outputs=True)"
                )
            self.train_metrics = has_outputs
        elif self.train_metrics != has_outputs:
            kinds = ["(loss, outputs)", "a loss alone"]
            first, now = kinds if self.train_metrics else kinds[::-1]
            raise ArgumentTypeError(
                f"fit(step) returned {first} at first, then {now} ({where}); it must return "
                "the same every step"
            )
        if not self.train_metrics:
            return []
        counts.append(_example_count(batch, f"fit(batches): {where}"))
        return [(name, metric(outputs, batch[-1])) for name, metric in self.metrics.items()]

    def run_epoch(self, batches: Iterable[Any], epoch: int, bar: Any) -> _Epoch:
        """One pass over ``batches``. ``bar`` is None when hidden."""
        result = _Epoch()
        buffer = self.buffer

        def drain() -> None:
            rows = buffer.flush()
            losses = [row[0] for row in rows]
            if self.check_finite:
                done = len(result.losses)
                _check_finite_losses(
                    losses,
                    lambda i, value: (
                        f"fit: the loss is {value} at epoch {epoch} step {done + i} (both "
                        f"from 0); training stopped. The weights are as after step "
                        f"{done + len(losses) - 1} of that epoch (losses are checked when "
                        "copied to the host). Lower the learning rate, clip the inputs, or pass "
                        "check_finite=False to keep going"
                    ),
                )
            result.losses.extend(losses)
            for row in rows:
                for name, value in zip(self.metrics, row[1:], strict=False):
                    result.values.setdefault(name, []).append(value)

        last_refresh = time.monotonic()
        for index, batch in enumerate(batches):
            where = f"epoch {epoch} batch {index}"
            _check_batch(batch, "fit(batches)", where, "step")
            batch = shard(batch)  # this rank's slice of the global batch (a world of 1: all)
            loss, outputs = _split(self.step(*batch), "fit(step)")
            extras = self._train_extras(outputs, batch, where, result.counts)
            buffer.add(loss, extras)
            if self.hooks:
                drain()
                for hook in self.hooks:
                    hook(epoch, index, result.losses[-1])
            elif len(buffer.pending) >= _MAX_PENDING:
                drain()
            if bar is not None:
                if time.monotonic() - last_refresh >= _REFRESH_S:
                    drain()
                    bar.set_postfix(result.postfix(), refresh=False)
                    last_refresh = time.monotonic()
                bar.update(1)
        drain()
        if not result.losses:
            raise ArgumentError(
                f"fit(batches) gave no batches in epoch {epoch}; an exhausted iterator or a "
                "function returning an empty iterable?"
            )
        return result


def _check_batch(batch: object, argument: str, where: str, step: str) -> None:
    """A batch must be the tuple (or list) of ``step``'s arguments."""
    if not isinstance(batch, (tuple, list)):
        raise ArgumentTypeError(
            f"{argument}: {where} must be a tuple of {step} arguments such as (x, y), "
            f"got {type(batch).__name__}"
        )


def _validate(
    val_step: Callable[..., Any],
    batches: Iterable[Any],
    epoch: int,
    metrics: dict[str, Metric],
    check_finite: bool,
) -> tuple[float, dict[str, float]]:
    """One validation pass: the loss and each metric, weighted by the batches' example counts."""
    buffer = _LossBuffer("fit(validation) val_step")
    rows: list[list[float]] = []
    counts: list[int] = []  # examples of each global batch (the loss is the global one)
    local_counts: list[int] = []  # examples of this rank's slices (the metrics are local)
    for index, batch in enumerate(batches):
        where = f"epoch {epoch} validation batch {index}"
        _check_batch(batch, "fit(validation)", where, "val_step")
        count = _example_count(batch, f"fit(validation): {where}")  # global: the loss is
        batch = shard(batch)
        loss, outputs = _split(val_step(*batch), "fit(validation) val_step")
        if metrics and outputs is _NO_OUTPUTS:
            raise ArgumentError(
                "fit(metrics) needs the model's outputs, but val_step returned its loss alone; "
                "make it return (loss, outputs): twinnn.eval_step(model, loss_fn, outputs=True)"
            )
        counts.append(count)
        local_counts.append(_example_count(batch, f"fit(validation): {where}"))
        buffer.add(loss, [(name, m(outputs, batch[-1])) for name, m in metrics.items()])
        if len(buffer.pending) >= _MAX_PENDING:
            rows.extend(buffer.flush())
    rows.extend(buffer.flush())
    if not rows:
        raise ArgumentError(
            f"fit(validation) val_batches gave no batches in epoch {epoch}; an exhausted "
            "iterator or a function returning an empty iterable?"
        )
    losses = [row[0] for row in rows]
    if check_finite:
        _check_finite_losses(
            losses,
            lambda i, value: (
                f"fit: the validation loss is {value} at epoch {epoch} validation batch {i} "
                "(both from 0); training stopped after that epoch's training steps. Lower the "
                "learning rate, clip the inputs, or pass check_finite=False to keep going"
            ),
        )
    values = _global_means(
        {name: [row[1 + j] for row in rows] for j, name in enumerate(metrics)}, local_counts
    )
    return _weighted_mean(losses, counts), values


def _stdout_is_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def fit(
    step: Callable[..., Any],
    batches: Batches,
    epochs: int = 1,
    *,
    validation: tuple[Callable[..., Any], Batches] | None = None,
    metrics: Mapping[str, Metric] | Sequence[Metric] | None = None,
    progress: bool = True,
    callbacks: Callback | Sequence[Callback] | None = None,
    check_finite: bool = True,
) -> History:
    """Call ``step(*batch)`` for every batch, ``epochs`` times; return the ``History``.

    Args:
        step: usually ``twinnn.train_step(model, loss_fn, optimizer)``; any callable returning
            the loss as a native scalar tensor or a number, or a pair ``(loss, outputs)``
            (``train_step(..., outputs=True)``), whose outputs feed the training ``metrics``.
        batches: an iterable of batches, each a tuple (or list) of ``step``'s arguments, e.g.
            ``[(x0, y0), (x1, y1)]``; iterated once per epoch, so it must be re-iterable (a
            list, a dataset) when ``epochs > 1``. Or a function with no arguments returning a
            fresh iterable per epoch (a generator function, for shuffling).
        epochs: number of passes over ``batches`` (>= 1).
        validation: ``(val_step, val_batches)``, like Keras' ``validation_data``: at the end
            of each epoch, ``val_step(*batch)`` runs over ``val_batches`` (a re-iterable or a
            function returning one, like ``batches``; the last element of each batch is the
            target). ``val_step`` is usually ``twinnn.eval_step(model, loss_fn)``, or
            ``eval_step(model, loss_fn, outputs=True)`` when ``metrics`` are given; it returns
            a loss or ``(loss, outputs)``. The epoch's validation loss is
            ``sum_b n_b * loss_b / sum_b n_b`` over the validation batches ``b``, ``n_b`` the
            first dim of the batch's target (its example count), computed in float64 on the
            host: for a loss that is a mean over its batch, the mean over all validation
            examples, whatever the batch sizes.
        metrics: ``{"accuracy": twinnn.accuracy, ...}``, or a list of functions named by their
            ``__name__``; each is called ``metric(outputs, target)`` (the model's outputs for a
            batch, native tensors, and the batch's last element) and returns a scalar. An
            epoch's value is weighted by example counts like the validation loss. Computed on
            the validation batches (needs ``val_step`` to return ``(loss, outputs)``), stored as
            ``"val_<name>"``; and on the training batches when ``step`` returns
            ``(loss, outputs)``, stored as ``"<name>"`` (the outputs of the forward pass
            before the step's update, as in Keras). Given without ``validation``, ``step`` must
            return ``(loss, outputs)``. The names ``"loss"`` and ``"val_..."`` are taken.
        progress: show a tqdm bar per epoch with the running mean loss of the epoch (and the
            training metrics); at the epoch's end it shows the epoch's loss, metrics,
            ``val_loss`` and ``val_<metric>``. It is written to stdout and only when stdout is
            a terminal (never into logs or pipes).
        callbacks: a callable or a list of callables ``callback(epoch, step_index, loss)``
            called after every step (``epoch`` and ``step_index`` from 0, ``loss`` a float).
            Giving callbacks copies each loss to the host right after its step.
        check_finite: stop with a :class:`~twinnn.errors.NonFiniteLossError` naming the epoch
            and step of the first NaN or infinite loss, or the epoch and validation batch of
            the first non-finite validation loss. Losses are checked as they are copied to
            the host (see the module doc), so up to that many more steps may have run after
            the bad one; with ``callbacks`` it is checked after every step. A single ``step``
            call never checks (as in the frameworks).

    Returns:
        A ``History``: ``losses`` (every step), ``epoch_losses`` (each epoch's mean over its
            steps), ``steps_per_epoch``, ``val_losses`` (each epoch's validation loss) and
            ``metrics`` (``{"accuracy": [per epoch], "val_accuracy": [...]}``).
    """
    if not callable(step):
        raise ArgumentTypeError(f"fit(step) must be callable, got {type(step).__name__}")
    epochs = check_positive_int(epochs, "fit(epochs)")
    show = check_bool(progress, "fit(progress)") and _stdout_is_terminal() and world().is_main
    hooks = _check_callbacks(callbacks)
    finite_only = check_bool(check_finite, "fit(check_finite)")
    source = _epoch_source(batches, epochs)
    checked_validation = _check_validation(validation, epochs)
    metric_fns = _check_metrics(metrics)
    from tqdm import tqdm  # type: ignore[import-untyped]  # here: keeps `import twinnn` light

    history = History()
    trainer = _Trainer(step, metric_fns, hooks, finite_only, checked_validation is None)
    for epoch in range(epochs):
        epoch_batches = source()
        bar = tqdm(
            total=len(epoch_batches) if isinstance(epoch_batches, Sized) else None,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=sys.stdout,
            disable=not show,
            dynamic_ncols=True,
        )
        try:
            result = trainer.run_epoch(epoch_batches, epoch, bar if show else None)
            shown = result.postfix()
            bar.set_postfix(shown, refresh=checked_validation is None)
            train_metrics = result.global_metric_means()
            if checked_validation is not None:
                val_step, val_source = checked_validation
                val_loss, val_metrics = _validate(
                    val_step, val_source(), epoch, metric_fns, finite_only
                )
                shown["val_loss"] = f"{val_loss:.6g}"
                shown.update({f"val_{k}": f"{v:.6g}" for k, v in val_metrics.items()})
                bar.set_postfix(shown)
        finally:
            bar.close()
        history.losses.extend(result.losses)
        history.epoch_losses.append(math.fsum(result.losses) / len(result.losses))
        history.steps_per_epoch.append(len(result.losses))
        for name, value in train_metrics.items():
            history.metrics.setdefault(name, []).append(value)
        if checked_validation is not None:
            history.val_losses.append(val_loss)
            for name, value in val_metrics.items():
                history.metrics.setdefault(f"val_{name}", []).append(value)
    return history
