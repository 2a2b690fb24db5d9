"""``fit``: mini-batch training with history, early stopping, checkpoints and resume.

::

    opt = purenn.optim.adam(1e-3)
    params, history = purenn.fit(params, (x, y), optimizer=opt, epochs=20,
                                 batch_size=64, rng=0, val=(xv, yv), patience=3)

``fit`` is a short loop over public functions: each step is
:func:`purenn.train_pass` on a batch followed by ``optimizer.update``, so any
object with ``init(params)`` and ``update(grads, state, params)`` trains.
Inputs are validated once, before the first step (shapes, dtypes, labels,
finiteness; whether a checkpoint can store the optimizer state); every step
then tests that the loss is a finite float.

History (plain JSON-able data; one list entry per epoch)::

    {"epoch": [1, 2, ...],                 # 1-based
     "train_loss": [...], "train_accuracy": [...],
     "val_loss": [...], "val_accuracy": [...],
     "lr": [...], "seconds": [...],
     "best_epoch": int | None, "stopped_early": bool, "stop_reason": str | None}

``train_loss`` and ``train_accuracy`` are running means over the epoch's
batches, weighted by batch size, measured in training mode while the params
change (as Keras reports them): cheap, since they come from the very forward
pass that the gradients need. ``val_*`` are exact evaluation-mode values at the
end of the epoch (None without ``val``; accuracies are None for an MSE network).
``lr`` is the learning rate of the epoch's last update; ``seconds`` its wall time.

``callbacks`` (see :mod:`purenn.callbacks`) add their own per-epoch lists to
the history (``None`` where a callback gave no value), and ``"lr_scale"`` once
one of them changes the learning rate; a resumed run keeps them.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purenn._checks import as_generator, as_path, check_callable, positive_int, show
from purenn.callbacks import Hooks
from purenn.checkpoint import save, storable
from purenn.core import TrainPass, check_inputs, train_pass
from purenn.losses import describe
from purenn.metrics import evaluate, first_nonfinite
from purenn.preprocessing import batches
from purenn.tree import SPEC_KEY, tree_check_like, tree_leaves, tree_with_state
from purenn.workspace import Workspace

__all__ = [
    "HISTORY_KEYS",
    "MAX_EPOCHS",
    "CheckpointWriteError",
    "NonFiniteLossError",
    "ProcessGroup",
    "TrainingInterrupted",
    "fit",
    "new_history",
]

HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
)
"""The list-valued history keys, one entry per epoch."""

_LIVE_AFTER = 2.0  # seconds into an epoch before the live bar appears
_LIVE_EVERY = 0.25  # seconds between bar redraws


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss.

    Attributes:
        epoch: the 1-based epoch in which it happened.
        step: the 1-based batch within that epoch (None when it was the
            validation loss at the end of the epoch).
        params: the last parameters whose loss was finite (the params before
            the update that led to the failure).
        opt_state: the optimizer state that goes with ``params``.
        history: the history of the completed epochs.
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int,
        step: int | None,
        params: dict,
        opt_state: Any,
        history: dict,
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.params = params
        self.opt_state = opt_state
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` was interrupted (Ctrl-C, or a callback or step hook raising
    ``KeyboardInterrupt``); the training done so far rides on the exception.

    It is a ``KeyboardInterrupt``, so code that does not know it still stops
    as it would on Ctrl-C.

    Attributes:
        epoch: the 1-based epoch in progress when it happened.
        step: the updates done in that epoch (0: none yet).
        params: the params after the last complete update.
        opt_state: the optimizer state that goes with ``params``.
        history: the history of the completed epochs (the epoch in progress
            is in it only if the interrupt came after its end-of-epoch values).
        best_params: with ``val``, the params of ``history["best_epoch"]``
            (None otherwise, or before the first validation).
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int,
        step: int,
        params: dict,
        opt_state: Any,
        history: dict,
        best_params: dict | None,
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.params = params
        self.opt_state = opt_state
        self.history = history
        self.best_params = best_params


class CheckpointWriteError(OSError):
    """``fit`` could not write a checkpoint (disk full, no permission, ...).

    It is an ``OSError`` with the failed write's ``errno``, ``strerror`` and
    ``filename``; the cause is chained as ``__cause__``. The checkpoint files
    written before are intact (every write is atomic), and the training of the
    epoch just finished rides on the exception.

    Attributes:
        epoch: the 1-based epoch whose checkpoint failed (its values are in
            ``history``).
        params: the params at the end of that epoch.
        opt_state: the optimizer state that goes with ``params``.
        history: the history up to and including that epoch.
        best_params: with ``val``, the params of ``history["best_epoch"]``.
    """

    def __init__(
        self,
        errno: int | None,
        message: str,
        filename: str,
        *,
        epoch: int,
        params: dict,
        opt_state: Any,
        history: dict,
        best_params: dict | None,
    ) -> None:
        super().__init__(errno, message, filename)
        self.epoch = epoch
        self.params = params
        self.opt_state = opt_state
        self.history = history
        self.best_params = best_params


class ProcessGroup:
    """The processes that train one model together: here, one process alone.

    :func:`fit` calls these hooks at fixed points of every run; this class's
    own versions change nothing, so plain ``fit`` is one process doing all the
    work. :class:`purenn.parallel.MPIGroup` overrides them to split every batch
    across MPI processes (data parallelism, ``docs/parallel.md``); a subclass
    is what ``fit(..., group=...)`` takes.

    Attributes:
        rank: this process's number, ``0 .. size - 1``.
        size: the number of processes.
    """

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        """Whether this process prints, writes checkpoints and returns the run's files."""
        return self.rank == 0

    def epoch_rng(self, rng: np.random.Generator) -> np.random.Generator:
        """The generator of an epoch's augmentation and dropout (called once per
        epoch, before the shuffle is drawn from ``rng``)."""
        return rng

    def part(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This process's share of a batch (possibly empty when batches are tiny)."""
        return xb, yb

    def train_pass(
        self, params: dict, xb: np.ndarray, yb: np.ndarray, *, rng: Any, workspace: Workspace
    ) -> TrainPass:
        """The training pass of this process's share, with the gradients of the
        whole batch's mean loss; its loss must be non-finite on every process
        when it is on one."""
        return train_pass(params, xb, yb, rng=rng, workspace=workspace)

    def end_epoch(self, params: dict, sums: tuple[float, ...]) -> tuple[float, ...]:
        """The epoch's ``(loss_sum, seen, correct, scored)`` over all processes."""
        return sums

    def evaluate(self, params: dict, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
        """Evaluation-mode ``{"loss", "accuracy"}`` on the whole of ``(x, y)``."""
        return evaluate(params, x, y, batch_size=batch_size, confusion=False, check_finite=False)


def new_history() -> dict[str, Any]:
    """An empty history in the format :func:`fit` returns."""
    history: dict[str, Any] = {key: [] for key in HISTORY_KEYS}
    history.update(best_epoch=None, stopped_early=False, stop_reason=None)
    return history


# --------------------------------------------------------------------------- checks


def _augmented(augment: Callable, xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if not xb.flags.owndata or not xb.flags.writeable:
        # an unshuffled batch is a view of the caller's x: an augment that writes
        # in place must not change the training data (or fail on a read-only x)
        xb = xb.copy()
    out = augment(xb, rng)
    if not isinstance(out, np.ndarray) or out.shape != xb.shape or out.dtype != xb.dtype:
        raise ValueError(
            f"augment must return an array of the batch's shape {xb.shape} and dtype "
            f"{xb.dtype}; got {getattr(out, 'shape', type(out).__name__)} "
            f"{getattr(out, 'dtype', '')}"
        )
    return out


def _check_data(params: dict, data: Any, name: str) -> tuple:
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(
            f"{name} must be a pair (x, y) of arrays; got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
        )
    x, y = check_inputs(params, data[0], data[1])
    for what, a in ((f"{name} x", x), (f"{name} y", y)):
        bad = first_nonfinite(a)
        if bad is not None:
            raise ValueError(
                f"{what} holds NaN or inf (first at sample {bad}); training would diverge. "
                "Clean or drop those samples (np.isfinite(x).all(axis=1) finds them)"
            )
    return x, y


def _check_optimizer(optimizer: Any) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            "optimizer must have init(params) and update(grads, state, params), e.g. "
            f"purenn.optim.adam(1e-3); got {show(optimizer)}"
        )


def _check_storable(state: Any) -> None:
    """Refuse, before the first step, an optimizer state a checkpoint cannot hold."""
    if not storable(state):
        raise TypeError(
            f"checkpoint_dir is set, but the optimizer state ({type(state).__name__}) cannot "
            "be stored in a checkpoint: it must be made of arrays, numbers, strings, lists, "
            "dicts with string keys, None and purenn's records (or @attrs.frozen classes "
            "registered with purenn.checkpoint.register_record). Make it so, or train without "
            "checkpoint_dir"
        )


def _check_stopping(
    monitor: Any,
    patience: Any,
    min_delta: Any,
    has_val: bool,
    has_accuracy: bool,
    loss_name: str,
) -> tuple[int | None, float]:
    """``(patience, min_delta)`` checked against ``monitor`` and the validation data."""
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy'; got {show(monitor)}")
    if patience is not None:
        patience = positive_int(patience, "patience")
        if not has_val:
            raise ValueError("early stopping (patience=...) needs validation data: pass val=(x, y)")
    if has_val and monitor == "val_accuracy" and not has_accuracy:
        raise ValueError(
            f"monitor='val_accuracy' needs a classifier; this network's loss {loss_name} "
            "has no accuracy: use monitor='val_loss'"
        )
    if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real):
        raise TypeError(f"min_delta must be a float >= 0; got {show(min_delta)}")
    if not math.isfinite(min_delta) or min_delta < 0:
        raise ValueError(f"min_delta must be a finite float >= 0; got {show(min_delta)}")
    return patience, float(min_delta)


MAX_EPOCHS = 1_000_000
"""The largest ``epochs`` (and ``initial_epoch``) ``fit`` takes: far beyond any
real run, and small enough that a mistyped huge number is refused at once
instead of training (and growing the history) without end."""


def _check_int(value: Any, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {show(value)} ({type(value).__name__})")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}; got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be at most {hi:,}; got {value:,}")
    return int(value)


def _check_history(history: Any, initial_epoch: int) -> dict:
    if not isinstance(history, dict) or any(
        not isinstance(history.get(k), list) for k in HISTORY_KEYS
    ):
        raise TypeError(
            "history must be a dict from fit (keys "
            f"{', '.join(HISTORY_KEYS)} holding lists); got {type(history).__name__}"
        )
    lengths = {len(history[k]) for k in HISTORY_KEYS}
    if lengths != {initial_epoch}:
        raise ValueError(
            f"history holds {sorted(lengths)} epochs but initial_epoch is {initial_epoch}; "
            "pass the history saved with the checkpoint you resume from"
        )
    out = new_history()
    for k in HISTORY_KEYS:
        out[k] = list(history[k])  # a copy: the caller's history is not changed
    for k, column in history.items():  # values callbacks added, kept for the rest of the run
        if k not in out and isinstance(column, list):
            if len(column) != initial_epoch:
                raise ValueError(
                    f"history[{k!r}] holds {len(column)} values but initial_epoch is "
                    f"{initial_epoch}; pass the history saved with the checkpoint you resume from"
                )
            out[k] = list(column)
    out["best_epoch"] = history.get("best_epoch")
    return out


class _Monitor:
    """Tracks the best monitored value, its epoch and params, and the patience."""

    def __init__(self, key: str, min_delta: float) -> None:
        self.key = key
        self.minimize = key.endswith("loss")
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0

    def see(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it improves on the best."""
        if self.best is None:
            better = True
        elif self.minimize:
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return better


# --------------------------------------------------------------------------- progress


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _epoch_line(history: dict, epochs: int, eta: float | None, improved: bool) -> str:
    width = len(str(epochs))
    parts = [
        f"epoch {history['epoch'][-1]:>{width}}/{epochs}",
        f"loss {_fmt(history['train_loss'][-1])} acc {_fmt(history['train_accuracy'][-1])}",
    ]
    if history["val_loss"][-1] is not None:
        star = " *" if improved else ""
        parts.append(
            f"val loss {_fmt(history['val_loss'][-1])} "
            f"acc {_fmt(history['val_accuracy'][-1])}{star}"
        )
    lr = history["lr"][-1]
    if lr is not None:
        parts.append(f"lr {lr:.3g}")
    parts.append(_duration(history["seconds"][-1]))
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return " | ".join(parts)


def _bar(epoch: int, epochs: int, step: int, steps: int, loss: float, elapsed: float) -> str:
    filled = int(30 * step / steps)
    eta = elapsed / step * (steps - step)
    return (
        f"\repoch {epoch}/{epochs} [{'=' * filled}{'.' * (30 - filled)}] {step}/{steps} "
        f"loss {loss:.4f} {_duration(elapsed)} ETA {_duration(eta)} "
    )


# --------------------------------------------------------------------------- fit


def fit(
    params: dict,
    train: tuple[np.ndarray, np.ndarray],
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator | int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    monitor: str = "val_loss",
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    shuffle: bool = True,
    drop_last: bool = False,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    opt_state: Any = None,
    initial_epoch: int = 0,
    history: dict | None = None,
    best_params: dict | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    callbacks: Sequence[Callable] | None = None,
    verbose: int = 1,
    group: ProcessGroup | None = None,
) -> tuple[dict, dict]:
    """Train ``params`` with mini-batches of ``train`` for ``epochs`` epochs.

    Each epoch draws one permutation from ``rng`` (when ``shuffle``), then for
    every batch computes the training-mode loss and gradients (dropout masks
    drawn from ``rng`` too) and applies ``optimizer.update``. Same inputs and
    seed give identical history (timings aside) and bit-identical params.

    Args:
        params: a tree from :func:`purenn.init`; not modified.
        train: ``(x, y)``: inputs ``(n, *input_shape)`` in the params' dtype and
            targets as the loss takes them (int labels ``(n,)`` for cross-entropy).
        optimizer: an optimizer from :mod:`purenn.optim` (or any value with
            ``init(params)`` and ``update(grads, state, params)``).
        epochs: the number of the last epoch to run (Keras' convention): with
            ``initial_epoch=3, epochs=6`` epochs 4, 5 and 6 run.
        batch_size: samples per step; the last batch may be smaller unless
            ``drop_last``.
        rng: a Generator (advanced in place, so a caller can continue with it)
            or an int seed.
        val: optional ``(x, y)`` validation data, evaluated after every epoch.
        monitor: ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher).
        patience: stop after this many epochs without improvement of ``monitor``
            (None: never stop early). Needs ``val``.
        min_delta: the smallest change that counts as an improvement.
        restore_best: with ``val``, return the params of the best epoch
            (``history["best_epoch"]``) instead of the last ones.
        shuffle: reshuffle every epoch (False: batches in data order).
        drop_last: skip the last, smaller batch of each epoch.
        checkpoint_dir: if set, every ``checkpoint_every`` epochs and after the
            last one, write ``epoch_NNNN.npz`` and ``last.npz`` there, each holding
            everything needed to resume (see :meth:`purenn.checkpoint.Checkpoint.resume_kwargs`).
            The folder is created if needed.
        checkpoint_every: epochs between checkpoints.
        opt_state: the optimizer state to start from (None: ``optimizer.init(params)``).
        initial_epoch: the number of epochs already done (when resuming).
        history: the history of those epochs (when resuming); it is copied, not changed.
        best_params: the best params so far (when resuming with ``val``, if the
            best epoch came before ``initial_epoch``); checked against ``params``
            even without ``val``, where they are not used.
        augment: optional ``augment(xb, rng) -> xb`` applied to every training
            batch before its step (e.g. :func:`purenn.augment.augment_images`
            wrapped to the network's input shape); it gets ``rng``, so runs stay
            reproducible, and must return an array of ``xb``'s shape and dtype.
            The batch it gets is its own (a copy where it would share memory
            with ``train``), so an ``augment`` that writes in place is safe.
        callbacks: functions ``cb(epoch, params, history)`` called after every
            epoch (after the checks above, before the checkpoint), in order; they
            may add history values, ask to stop, or lower the learning rate, and
            those with an ``on_step`` method are called after every update too.
            See :mod:`purenn.callbacks` (snapshots, ReduceLROnPlateau,
            EarlyStopping, LayerDiagnostics). None or ``[]``: no hooks, no cost.
        verbose: 0 prints nothing; 1 prints one line per epoch to stderr and a
            live bar within epochs that take more than a couple of seconds.
        group: the processes that train together (None: this one alone); see
            :class:`ProcessGroup` and :func:`purenn.parallel.fit`. Only its
            root prints and writes checkpoints.

    Returns:
        ``(params, history)``: the trained (or best) params, and the history
        described in the module docstring, now covering epochs
        ``1 .. last run``.

    Raises:
        TypeError, ValueError: for malformed arguments, data that does not fit
            the network, or NaN/inf in the data (all before the first step).
        NonFiniteLossError: if the loss becomes NaN or inf; it names the epoch
            and step and keeps the last params with a finite loss.
        TrainingInterrupted: on Ctrl-C (a ``KeyboardInterrupt`` anywhere in the
            run); it keeps the params and state of the last complete update.
        CheckpointWriteError: if a checkpoint cannot be written (an ``OSError``);
            it keeps the epoch's params, and the earlier files are intact.
    """
    x, y = _check_data(params, train, "train")
    if val is not None:
        val = _check_data(params, val, "val")
    loss_fn = params[SPEC_KEY].loss
    if augment is not None:
        check_callable(augment, "augment", "a function augment(xb, rng) -> xb")
    _check_optimizer(optimizer)
    rng = as_generator(rng)
    epochs = _check_int(epochs, "epochs", 0, MAX_EPOCHS)
    initial_epoch = _check_int(initial_epoch, "initial_epoch", 0, MAX_EPOCHS)
    if epochs < initial_epoch:
        raise ValueError(
            f"epochs is the number of the last epoch ({epochs}) and must be >= initial_epoch "
            f"({initial_epoch}); to train 3 more epochs after 3, pass initial_epoch=3, epochs=6"
        )
    batch_size = positive_int(batch_size, "batch_size")
    n = x.shape[0]
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {n} training samples and drop_last=True "
            "leaves no batch; lower batch_size or set drop_last=False"
        )
    patience, min_delta = _check_stopping(
        monitor, patience, min_delta, val is not None, loss_fn.has_accuracy, describe(loss_fn)
    )
    for flag, value in (
        ("restore_best", restore_best),
        ("shuffle", shuffle),
        ("drop_last", drop_last),
    ):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(
                f"{flag} must be True or False; got {show(value)} ({type(value).__name__})"
            )
    checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    verbose = _check_int(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", 0)
    group = ProcessGroup() if group is None else group
    if not isinstance(group, ProcessGroup):
        raise TypeError(
            "group must be a purenn.training.ProcessGroup (e.g. purenn.parallel.MPIGroup()) "
            f"or None; got {type(group).__name__}"
        )
    if not group.is_root:
        verbose = 0

    history = new_history() if history is None else _check_history(history, initial_epoch)
    history["stopped_early"], history["stop_reason"] = False, None
    tracker = _Monitor(monitor, min_delta)
    best_params = _resume_best(
        tracker, history, params, best_params, val is not None, restore_best, initial_epoch
    )
    hooks = (
        Hooks(callbacks, optimizer, history, root=group.is_root) if callbacks is not None else None
    )
    state = optimizer.init(params) if opt_state is None else opt_state
    if checkpoint_dir is not None:
        _check_storable(state)
        checkpoint_dir = as_path(checkpoint_dir, "checkpoint_dir")
        if group.is_root:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
    store_optimizer = checkpoint_dir is not None and storable(optimizer)

    steps = (n // batch_size) if drop_last else -(-n // batch_size)
    epoch_loop = _EpochLoop(
        loss_fn,
        optimizer if hooks is None else hooks.optimizer,
        batch_size,
        rng,
        shuffle,
        drop_last,
        augment,
        verbose,
        epochs,
        steps,
        hooks.step if hooks is not None and hooks.stepping else None,
        group=group,
    )
    run_seconds = 0.0
    epoch_loop.position = (initial_epoch + 1, 0, params, state)
    try:
        for epoch in range(initial_epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            params, state, train_loss, train_acc = epoch_loop.run(
                epoch, params, state, x, y, history
            )
            val_loss = val_acc = None
            if val is not None:
                val_loss, val_acc = _validate(params, val, batch_size, epoch, epoch_loop, history)
            seconds = time.perf_counter() - t0
            run_seconds += seconds
            epoch_values = (
                epoch,
                train_loss,
                train_acc,
                val_loss,
                val_acc,
                _lr(epoch_loop.optimizer, state),
            )
            for key, value in zip(HISTORY_KEYS, (*epoch_values, seconds), strict=True):
                history[key].append(value)

            improved = False
            if val is not None:
                improved = tracker.see(history[monitor][-1], epoch)
                if improved:
                    best_params = params
                history["best_epoch"] = tracker.best_epoch
                if patience is not None and tracker.wait >= patience:
                    history["stopped_early"] = True
                    history["stop_reason"] = (
                        f"{monitor} did not improve for {patience} epoch"
                        f"{'s' if patience > 1 else ''}: best {tracker.best:.6g} "
                        f"at epoch {tracker.best_epoch}"
                    )
            if hooks is not None:
                reason = hooks.epoch_end(epoch, params, history)
                epoch_loop.optimizer = hooks.optimizer  # with any new learning-rate scale
                if reason is not None and not history["stopped_early"]:
                    history["stopped_early"], history["stop_reason"] = True, reason
            last = epoch == epochs or history["stopped_early"]

            if (
                checkpoint_dir is not None
                and group.is_root
                and (epoch % checkpoint_every == 0 or last)
            ):
                _write_checkpoint(
                    checkpoint_dir,
                    epoch,
                    params,
                    state,
                    rng,
                    history,
                    best_params,
                    optimizer if store_optimizer else None,
                )
            if verbose:
                eta = None if last else run_seconds / (epoch - initial_epoch) * (epochs - epoch)
                epoch_loop.report(history, eta, improved)
            if history["stopped_early"]:
                break
    except KeyboardInterrupt as err:
        # Ctrl-C can land anywhere, even inside an update; epoch_loop.position
        # is the last (params, state) pair that a complete step produced
        epoch_loop.end_bar()
        at_epoch, step, params, state = epoch_loop.position
        raise TrainingInterrupted(
            f"training interrupted at epoch {at_epoch}, step {step}/{steps}; the params after "
            "the last complete update are on this exception as .params (with .opt_state, "
            ".history and .best_params): purenn.save them to keep them",
            epoch=at_epoch,
            step=step,
            params=params,
            opt_state=state,
            history=history,
            best_params=best_params,
        ) from err

    if val is not None and restore_best and best_params is not None:
        params = best_params
    return params, history


def _resume_best(
    tracker: _Monitor,
    history: dict,
    params: dict,
    best_params: dict | None,
    has_val: bool,
    restore_best: bool,
    initial_epoch: int,
) -> dict | None:
    """Replay the history's monitored values; the best params so far (checked,
    with or without ``val``: without, they are not used)."""
    if best_params is not None:
        tree_check_like(best_params, params, "best_params")
    if not has_val:
        history["best_epoch"] = None
        return None
    for epoch, value in zip(history["epoch"], history[tracker.key], strict=True):
        if value is not None:
            tracker.see(value, epoch)
    recorded = history["best_epoch"]
    if best_params is not None:
        if recorded is not None and recorded != tracker.best_epoch:
            raise ValueError(
                f"best_params come from epoch {recorded} but {tracker.key!r} in the history "
                f"is best at epoch {tracker.best_epoch}; resume with the same monitor"
            )
    elif restore_best and tracker.best_epoch is not None and tracker.best_epoch != initial_epoch:
        raise ValueError(
            f"the history's best epoch is {tracker.best_epoch}, before "
            f"initial_epoch {initial_epoch}, but best_params were not given; pass the "
            "checkpoint's best_params (Checkpoint.resume_kwargs() does) or restore_best=False"
        )
    history["best_epoch"] = tracker.best_epoch
    if best_params is None and tracker.best_epoch is not None:
        best_params = params
    return best_params


class _EpochLoop:
    """One epoch of steps, with the live progress bar; the arguments of one fit run.

    Owns the run's :class:`purenn.Workspace` (work arrays reused from step to step)
    and the last params known to give a finite loss.
    """

    def __init__(
        self,
        loss_fn: Any,
        optimizer: Any,
        batch_size: int,
        rng: np.random.Generator,
        shuffle: bool,
        drop_last: bool,
        augment: Callable | None,
        verbose: int,
        epochs: int,
        steps: int,
        on_step: Callable | None = None,
        group: ProcessGroup | None = None,
    ) -> None:
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.on_step = on_step
        self.batch_size, self.rng, self.shuffle, self.drop_last = (
            batch_size,
            rng,
            shuffle,
            drop_last,
        )
        self.augment, self.verbose, self.epochs, self.steps = augment, verbose, epochs, steps
        self.workspace = Workspace()
        self.live = False
        self.out = sys.stderr
        self.good: tuple[dict, Any] | None = None  # (params, state) before the last update
        # (epoch, step, params, state) after the last complete step, replaced in
        # one assignment so that an interrupt never sees half of it
        self.position: tuple[int, int, dict, Any] | None = None
        self.group = ProcessGroup() if group is None else group

    def run(
        self, epoch: int, params: dict, state: Any, x: np.ndarray, y: np.ndarray, history: dict
    ) -> tuple[dict, Any, float, float | None]:
        """Train one epoch; ``(params, state, mean loss, accuracy or None)``."""
        t0 = last_draw = time.perf_counter()
        self.live = False
        loss_sum, seen, correct, scored = 0.0, 0, 0, 0
        self.position = (epoch, 0, params, state)
        step_rng = self.group.epoch_rng(self.rng)
        order_rng = self.rng if self.shuffle else None
        for step, (xb, yb) in enumerate(
            batches(x, y, self.batch_size, order_rng, self.drop_last), 1
        ):
            xb, yb = self.group.part(xb, yb)
            if self.augment is not None and len(xb):
                xb = _augmented(self.augment, xb, step_rng)
            result = self.group.train_pass(params, xb, yb, rng=step_rng, workspace=self.workspace)
            if not math.isfinite(result.loss):
                self.end_bar()
                good_params, good_state = self.good if self.good else (params, state)
                raise NonFiniteLossError(
                    f"the training loss became {result.loss} at epoch {epoch}, step "
                    f"{step}/{self.steps} (update {getattr(state, 'count', '?')}); the learning "
                    "rate is probably too high: lower it (e.g. by 10x), add clip_norm=, or "
                    "check the data scaling. The last params with a finite loss are on this "
                    "exception as .params",
                    epoch=epoch,
                    step=step,
                    params=good_params,
                    opt_state=good_state,
                    history=history,
                )
            nb = xb.shape[0]
            loss_sum += result.loss * nb
            seen += nb
            if self.loss_fn.has_accuracy:
                hits = self.loss_fn.predict(result.output) == self.loss_fn.labels(yb)
                correct += int(np.count_nonzero(hits))
                scored += hits.size
            self.good = (params, state)
            try:
                params, state = self.optimizer.update(result.grads, state, params)
            except ValueError as err:
                if _all_finite(result.grads):
                    raise
                # an optimizer that refuses NaN gradients (Adam's second moment
                # would be NaN): the same stop, with the same good params, as a NaN loss
                self.end_bar()
                raise NonFiniteLossError(
                    f"the gradients became NaN or infinite at epoch {epoch}, step "
                    f"{step}/{self.steps} (update {getattr(state, 'count', '?')}), though the "
                    f"loss was {result.loss:.6g}, and the optimizer refused them (the cause "
                    "above names the leaf). The learning rate is probably too high: lower it "
                    "(e.g. by 10x), add "
                    "clip_norm=, or check the data scaling. The last good params are on this "
                    "exception as .params",
                    epoch=epoch,
                    step=step,
                    params=params,
                    opt_state=state,
                    history=history,
                ) from err
            # the pass's state (BatchNorm statistics), whatever the optimizer does with it
            params = tree_with_state(params, result.grads)
            self.position = (epoch, step, params, state)
            if self.on_step is not None and self.on_step(
                epoch, step, result.loss, self.good[0], result.grads, params
            ):
                break  # a step hook asked to stop: the epoch ends here
            if self.verbose:
                now = time.perf_counter()
                self.live = self.live or now - t0 > _LIVE_AFTER
                if self.live and (now - last_draw > _LIVE_EVERY or step == self.steps):
                    last_draw = now
                    bar = _bar(epoch, self.epochs, step, self.steps, loss_sum / seen, now - t0)
                    self.out.write(bar)
                    self.out.flush()
        loss_sum, seen, correct, scored = self.group.end_epoch(
            params, (loss_sum, seen, correct, scored)
        )
        accuracy = correct / scored if self.loss_fn.has_accuracy else None
        return params, state, loss_sum / seen, accuracy

    def end_bar(self) -> None:
        if self.verbose and self.live:
            self.out.write("\n")

    def report(self, history: dict, eta: float | None, improved: bool) -> None:
        if self.live:
            self.out.write("\r" + " " * 100 + "\r")
        self.out.write(_epoch_line(history, self.epochs, eta, improved) + "\n")
        if history["stopped_early"]:
            self.out.write(f"stopped early: {history['stop_reason']}\n")
        self.out.flush()


def _validate(
    params: dict, val: tuple, batch_size: int, epoch: int, loop: _EpochLoop, history: dict
) -> tuple[float, float | None]:
    """Evaluation-mode loss and accuracy on ``val`` (checked once, up front)."""
    result = loop.group.evaluate(params, *val, max(batch_size, 1024))
    if not math.isfinite(result["loss"]):
        good_params, good_state = loop.good if loop.good is not None else (params, None)
        raise NonFiniteLossError(
            f"the validation loss became {result['loss']} after epoch {epoch}; the learning "
            "rate is probably too high: lower it (e.g. by 10x) or add clip_norm=",
            epoch=epoch,
            step=None,
            params=good_params,
            opt_state=good_state,
            history=history,
        )
    return result["loss"], result["accuracy"]


def _lr(optimizer: Any, state: Any) -> float | None:
    """The learning rate of the last update, for optimizers that say (purenn's do)."""
    lr_at, count = getattr(optimizer, "learning_rate", None), getattr(state, "count", None)
    if callable(lr_at) and isinstance(count, int) and count > 0:
        return float(lr_at(count - 1))
    return None


def _all_finite(tree: dict) -> bool:
    """Whether every float leaf of ``tree`` (a gradient tree) is finite."""
    return all(
        bool(np.isfinite(leaf).all()) for leaf in tree_leaves(tree) if leaf.dtype.kind == "f"
    )


def _write_checkpoint(
    folder: Path,
    epoch: int,
    params: dict,
    state: Any,
    rng: np.random.Generator,
    history: dict,
    best_params: dict | None,
    optimizer: Any,
) -> None:
    extra: dict[str, Any] = {
        "opt_state": state,
        "rng": rng,
        "epoch": epoch,
        "history": history,
        "best_params": None if best_params is params else best_params,  # stored once
    }
    if optimizer is not None:
        extra["optimizer"] = optimizer
    # both files are tried even when the first fails (last.npz may still fit on
    # the disk); each write is atomic, so a failed one leaves its previous file
    failed: list[tuple[Path, OSError]] = []
    for path in (folder / f"epoch_{epoch:04d}.npz", folder / "last.npz"):
        try:
            save(path, params, **extra)
        except OSError as err:
            failed.append((path, err))
    if failed:
        path, err = failed[0]
        names = " and ".join(str(p) for p, _ in failed)
        raise CheckpointWriteError(
            err.errno,
            f"could not write the checkpoint of epoch {epoch} to {names}: "
            f"{err.strerror or err}. The files written before are intact. Free disk space "
            "or fix the folder's permissions, then resume from the last good last.npz; this "
            "epoch's params, optimizer state and history are on this exception as .params, "
            ".opt_state and .history (purenn.save them elsewhere to keep them)",
            str(path),
            epoch=epoch,
            params=params,
            opt_state=state,
            history=history,
            best_params=best_params,
        ) from err
