"""Hooks into :func:`purenn.fit`: custom metrics, custom stops, learning-rate drops.

A callback is called after every epoch with the epoch number (1-based), the
current params (read-only) and a copy of the history so far::

    def weight_norm(epoch, params, history):
        return {"w_norm": float(np.linalg.norm(params["dense_0"]["w"]))}

    params, history = purenn.fit(..., callbacks=[weight_norm])
    history["w_norm"]            # one value per epoch

It returns None, a dict of values to add to the history (one list entry per
epoch; numbers, strings, bools or None), or a :class:`Feedback`, which can also
ask training to stop (``stop="why"``) or multiply the learning rate from the
next step on (``lr_factor=0.5``). A callback with an ``on_step(info)`` method is
also called after every update with a :class:`StepInfo` (the loss, the
gradients, the params before and after); values it returns are averaged over
the epoch's steps into the history, and a stop it asks for ends training after
that step (the epoch is then recorded as far as it went).

Callbacks are pure functions of what they are given. The built-ins keep no
state of their own: :class:`ReduceLROnPlateau` and :class:`EarlyStopping`
replay the history's monitored values on every call to know how long the value
has not improved. The history is stored in every checkpoint ``fit`` writes
(and so is the learning-rate scale they set, as ``history["lr_scale"]``), so a
run resumed from a checkpoint takes exactly the decisions the uninterrupted
run would have taken, bit for bit.

Built in:

* :class:`Snapshots`: save the params every few epochs (``snapshot_0005.npz``),
  for :func:`purenn.plots.boundary_animation`; :func:`load_snapshots` reads them back.
* :class:`ReduceLROnPlateau`: lower the learning rate when a monitored value
  stops improving.
* :class:`EarlyStopping`: stop when a monitored value stops improving
  (``fit(patience=...)`` does the same for ``val_loss``/``val_accuracy``).
* :class:`LayerDiagnostics`: per-layer gradient norm, update-to-weight ratio and
  fraction of dead units, for :func:`purenn.plots.layer_diagnostics`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import attrs
import numpy as np

from purenn._checks import float_field, int_field, positive_float, show
from purenn.checkpoint import load, save
from purenn.tree import SPEC_KEY, tree_items, tree_map

__all__ = [
    "LR_SCALE_KEY",
    "RESERVED_KEYS",
    "EarlyStopping",
    "Feedback",
    "Hooks",
    "LayerDiagnostics",
    "ReduceLROnPlateau",
    "Snapshots",
    "StepInfo",
    "dead_fractions",
    "load_snapshots",
    "read_only",
    "scaled_optimizer",
]

LR_SCALE_KEY = "lr_scale"
RESERVED_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "best_epoch",
    "stopped_early",
    "stop_reason",
    LR_SCALE_KEY,
)
"""History keys ``fit`` writes itself; a callback may read them but not add them."""

_SNAPSHOT = re.compile(r"^snapshot_(\d+)\.npz$")


def _stop(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"Feedback.stop must be a reason (a str) or None; got {show(value)}")


def _values(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"Feedback.values must be a dict of history values; got {show(value)}")
    return dict(value)


@attrs.frozen
class Feedback:
    """What a callback may return to :func:`purenn.fit`.

    Attributes:
        values: history values for this epoch (or step), by key.
        stop: a reason to stop training (shown in ``history["stop_reason"]``), or None.
        lr_factor: multiply the learning rate by this from the next update on
            (needs an optimizer with an ``lr`` field, as purenn's have), or None.
    """

    values: dict = attrs.field(factory=dict, converter=_values)
    stop: str | None = attrs.field(default=None, converter=_stop)
    lr_factor: float | None = float_field(default=None, low=0.0, low_open=True, allow_none=True)


class StepInfo(NamedTuple):
    """What an ``on_step`` hook sees after each update (every array read-only).

    Attributes:
        epoch: the 1-based epoch.
        step: the 1-based batch within the epoch.
        loss: the batch's training loss (before the update).
        params_before: the params the gradients were taken at.
        grads: the gradients of the batch loss.
        params: the params after the update.
    """

    epoch: int
    step: int
    loss: float
    params_before: dict
    grads: dict
    params: dict


def read_only(tree: dict) -> dict:
    """A copy of a params tree whose leaves are read-only views of the same memory
    (no data copied): a callback can look, and an attempt to write raises."""

    def view(a: np.ndarray) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"read_only takes a tree of NumPy arrays; got a leaf {show(a, 40)} "
                f"({type(a).__name__})"
            )
        v = a.view()
        v.flags.writeable = False
        return v

    return tree_map(view, tree)


# --------------------------------------------------------------------------- fit's side


def _history_value(key: Any, value: Any, who: str) -> Any:
    if not isinstance(key, str) or not key or "/" in key or key.startswith("$"):
        raise ValueError(
            f"{who} returned history key {key!r}; keys must be non-empty strings without "
            "'/' and not starting with '$' (checkpoints store them), e.g. 'w_norm' or "
            "'dense_0.grad_norm'"
        )
    if key in RESERVED_KEYS:
        raise ValueError(
            f"{who} returned history key {key!r}, which fit writes itself; choose another name"
        )
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str | int | float):
        return value
    raise TypeError(
        f"{who} returned {type(value).__name__} for history key {key!r}; history values "
        "are numbers, strings, bools or None (reduce an array to a number, or save arrays "
        "with purenn.save)"
    )


def _feedback(result: Any, who: str) -> Feedback:
    if result is None:
        return Feedback()
    if isinstance(result, Feedback):
        return result
    if isinstance(result, Mapping):
        return Feedback(values=result)
    raise TypeError(
        f"{who} returned {type(result).__name__}; a callback returns None, a dict of "
        "history values or a purenn.callbacks.Feedback"
    )


def _name(callback: Any) -> str:
    return getattr(callback, "__name__", None) or type(callback).__name__


def _scalable(optimizer: Any) -> bool:
    return attrs.has(type(optimizer)) and "lr" in attrs.fields_dict(type(optimizer))


def scaled_optimizer(optimizer: Any, scale: float) -> Any:
    """``optimizer`` with its learning rate (a float or a schedule) times ``scale``.

    Raises:
        TypeError: for an optimizer without an ``lr`` attrs field, or a ``scale``
            that is not a number.
        ValueError: for a ``scale`` that is not finite and > 0.
    """
    scale = positive_float(scale, "scale")
    if scale == 1.0:
        return optimizer
    if not _scalable(optimizer):
        raise TypeError(
            f"a callback asked to change the learning rate, but the optimizer "
            f"{type(optimizer).__name__} has no lr field to scale; use one of "
            "purenn.optim's optimizers (or an attrs optimizer with an lr field)"
        )
    from purenn.schedules import Scaled

    lr = optimizer.lr
    if isinstance(lr, float):
        new_lr = lr * scale
    elif isinstance(lr, Scaled):  # one factor, however many cuts: the nesting stays flat
        new_lr = Scaled(lr.after, lr.scale * scale)
    else:
        new_lr = Scaled(lr, scale)
    return attrs.evolve(optimizer, lr=new_lr)


class Hooks:
    """The callbacks of one :func:`purenn.fit` run, and what they have asked for.

    ``fit`` makes one per run and calls :meth:`step` after every update (only
    when a callback has ``on_step``) and :meth:`epoch_end` after each epoch is
    recorded; :attr:`optimizer` is the run's optimizer with the learning-rate
    scale applied. Nothing here is visible outside the run.

    Args:
        callbacks: the callbacks (callables; see the module docstring).
        optimizer: the run's optimizer, as given to ``fit``.
        history: the history the run starts from (its ``lr_scale`` is resumed).
        root: whether this is the root process of a data-parallel run (or alone);
            elsewhere, callbacks with a true ``root_only`` class attribute
            (:class:`Snapshots`: it writes files) are not called. They must
            return None: their results would exist on the root only.

    Raises:
        TypeError: for a callback that is not callable, or one that changes the
            learning rate (``scales_lr = True``) with an optimizer that has no ``lr``.
    """

    def __init__(
        self, callbacks: Sequence[Any], optimizer: Any, history: Mapping, root: bool = True
    ) -> None:
        if callable(callbacks) or not isinstance(callbacks, Sequence | tuple | list):
            raise TypeError(
                f"callbacks must be a list of callables; got {type(callbacks).__name__} "
                "(wrap a single callback in a list: callbacks=[cb])"
            )
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(
                    f"each callback must be callable as cb(epoch, params, history); got {show(cb)}"
                )
            if getattr(cb, "scales_lr", False) and not _scalable(optimizer):
                raise TypeError(
                    f"{_name(cb)} changes the learning rate, but the optimizer "
                    f"{type(optimizer).__name__} has no lr field to scale; use one of "
                    "purenn.optim's optimizers"
                )
        if not isinstance(history, Mapping):
            raise TypeError(
                f"history must be a dict of lists (purenn.training.new_history()); "
                f"got {type(history).__name__}"
            )
        self.callbacks = tuple(callbacks)
        self.root = root
        self.stepping = tuple(cb for cb in self.callbacks if callable(getattr(cb, "on_step", None)))
        self.base = optimizer
        scales = [s for s in history.get(LR_SCALE_KEY, []) if s is not None]
        self.scale = float(scales[-1]) if scales else 1.0
        self.optimizer = scaled_optimizer(optimizer, self.scale)
        self.step_sums: dict[str, tuple[float, int]] = {}
        self.step_stop: str | None = None

    def step(
        self,
        epoch: int,
        step: int,
        loss: float,
        params_before: dict,
        grads: dict,
        params: dict,
    ) -> bool:
        """Run the ``on_step`` hooks after one update; True when one asks to stop."""
        info = StepInfo(
            epoch, step, loss, read_only(params_before), read_only(grads), read_only(params)
        )
        for cb in self.stepping:
            who = f"{_name(cb)}.on_step"
            fb = _feedback(cb.on_step(info), who)
            if fb.lr_factor is not None:
                raise ValueError(
                    f"{who} asked for lr_factor; the learning rate changes between epochs: "
                    "return it from the epoch call instead"
                )
            for key, value in fb.values.items():
                value = _history_value(key, value, who)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise TypeError(
                        f"{who} returned {value!r} for {key!r}; step values are averaged "
                        "over the epoch, so they must be numbers"
                    )
                total, count = self.step_sums.get(key, (0.0, 0))
                self.step_sums[key] = (total + value, count + 1)
            if fb.stop is not None and self.step_stop is None:
                self.step_stop = f"{fb.stop} (epoch {epoch}, step {step})"
        return self.step_stop is not None

    def epoch_end(self, epoch: int, params: dict, history: dict) -> str | None:
        """Add the epoch's callback values to ``history`` (fit's own, changed in
        place); the reason to stop, if a callback asked for one."""
        n = len(history["epoch"])
        added: set[str] = set()

        def add(key: str, value: Any, who: str) -> None:
            if key in added:
                raise ValueError(f"history key {key!r} was given twice at epoch {epoch} ({who})")
            if not isinstance(history.get(key, []), list) or len(history.get(key, [])) >= n:
                raise ValueError(  # a key fit itself fills (this list may grow with fit)
                    f"{who} returned history key {key!r}, which fit writes itself; choose "
                    "another name"
                )
            column = history.setdefault(key, [])
            column.extend([None] * (n - 1 - len(column)))  # a key that starts late
            column.append(value)
            added.add(key)

        for key, (total, count) in sorted(self.step_sums.items()):
            add(key, total / count, "the on_step hooks")
        self.step_sums = {}
        stop, self.step_stop = self.step_stop, None
        view = read_only(params)
        factor = 1.0
        for cb in self.callbacks:
            if getattr(cb, "root_only", False) and not self.root:
                continue  # it writes files or prints: the root process alone runs it
            who = _name(cb)
            seen = {k: (list(v) if isinstance(v, list) else v) for k, v in history.items()}
            fb = _feedback(cb(epoch, view, seen), who)
            for key, value in fb.values.items():
                add(key, _history_value(key, value, who), who)
            if fb.stop is not None and stop is None:
                stop = fb.stop
            if fb.lr_factor is not None:
                factor *= fb.lr_factor
        if factor != 1.0 or LR_SCALE_KEY in history:
            self.scale *= factor
            column = history.setdefault(LR_SCALE_KEY, [])
            column.extend([1.0] * (n - 1 - len(column)))
            column.append(self.scale)
            self.optimizer = scaled_optimizer(self.base, self.scale)
        for key, column in history.items():  # keys a callback gave before but not now
            if isinstance(column, list) and key not in RESERVED_KEYS and len(column) < n:
                column.extend([None] * (n - len(column)))
        return stop


# --------------------------------------------------------------------------- plateau logic


def _mode(monitor: str, mode: str) -> bool:
    """True when lower is better."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {show(mode)}")
    if mode == "auto":
        return not monitor.endswith(("accuracy", "acc", "f1", "score"))
    return mode == "min"


def _monitored(history: Mapping, monitor: str, who: str) -> list[float]:
    values = history.get(monitor)
    if not isinstance(values, list):
        known = ", ".join(k for k, v in history.items() if isinstance(v, list))
        raise ValueError(
            f"{who} monitors {monitor!r}, which the history does not hold (it has {known}); "
            "pass val=(x, y) to fit for val_loss/val_accuracy, or monitor a key a callback "
            "before it adds"
        )
    if values and values[-1] is None:
        raise ValueError(
            f"{who} monitors {monitor!r}, but its value at epoch {len(values)} is None; "
            "pass val=(x, y) to fit (val_* values need validation data)"
        )
    return values


def _check_monitor(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"{type(instance).__name__}.monitor must be a history key; got {show(value)}"
        )


def _better(value: float, best: float | None, minimize: bool, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if minimize else value > best + min_delta


@attrs.frozen
class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved
    for ``patience`` epochs (Keras' rule, with its cooldown and floor).

    After a drop, ``cooldown`` epochs pass before waiting starts again. A drop
    never takes the learning rate below ``min_lr``. The current scale is kept in
    ``history["lr_scale"]``; the learning rate actually used is ``history["lr"]``.

    Args:
        monitor: a history key (``"val_loss"``, ``"train_loss"``, or one a callback
            before this one adds).
        factor: the multiplier of a drop, in (0, 1).
        patience: epochs without improvement before a drop.
        min_delta: the smallest change that counts as an improvement.
        cooldown: epochs after a drop during which no waiting is counted.
        min_lr: the lowest learning rate a drop may reach.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for keys ending in accuracy).
    """

    scales_lr: ClassVar[bool] = True

    monitor: str = attrs.field(default="val_loss", validator=_check_monitor)
    # factor < 1: it lowers the learning rate
    factor: float = float_field(default=0.1, low=0.0, high=1.0, low_open=True, high_open=True)
    patience: int = int_field(default=10)
    min_delta: float = float_field(default=0.0, low=0.0)
    cooldown: int = int_field(default=0, minimum=0)
    min_lr: float = float_field(default=0.0, low=0.0)
    mode: str = "auto"

    def __attrs_post_init__(self) -> None:
        _mode(self.monitor, self.mode)

    def __call__(self, epoch: int, params: dict, history: Mapping) -> Feedback:
        values = _monitored(history, self.monitor, "ReduceLROnPlateau")
        lrs = history.get("lr", [])
        minimize = _mode(self.monitor, self.mode)
        best, wait, cooldown, factor = None, 0, 0, None
        for i, value in enumerate(values):
            factor = None
            if value is None:
                continue
            if cooldown > 0:
                cooldown -= 1
                wait = 0
            if _better(value, best, minimize, self.min_delta):
                best, wait = value, 0
            elif cooldown == 0:
                wait += 1
                if wait >= self.patience:
                    lr = lrs[i] if i < len(lrs) else None
                    if lr is None:
                        raise ValueError(
                            "ReduceLROnPlateau needs the learning rate in history['lr']; "
                            "use one of purenn.optim's optimizers"
                        )
                    if lr > self.min_lr:
                        factor = max(self.factor, self.min_lr / lr)
                    cooldown, wait = self.cooldown, 0
        return Feedback(lr_factor=factor)


@attrs.frozen
class EarlyStopping:
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    ``fit(val=..., patience=p, monitor=m, min_delta=d)`` stops at the same epoch
    with the same reason as ``callbacks=[EarlyStopping(m, p, d)]``; the callback
    can also watch any other history value (``"train_loss"``, or one a callback
    before it adds). Which params ``fit`` returns is still decided by fit's own
    ``restore_best``, ``monitor`` and ``min_delta``.

    Args:
        monitor: the history key to watch.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for keys ending in accuracy).
    """

    monitor: str = attrs.field(default="val_loss", validator=_check_monitor)
    patience: int = int_field(default=10)
    min_delta: float = float_field(default=0.0, low=0.0)
    mode: str = "auto"

    def __attrs_post_init__(self) -> None:
        _mode(self.monitor, self.mode)

    def __call__(self, epoch: int, params: dict, history: Mapping) -> Feedback:
        values = _monitored(history, self.monitor, "EarlyStopping")
        minimize = _mode(self.monitor, self.mode)
        best, best_epoch, wait = None, None, 0
        for e, value in zip(history["epoch"], values, strict=True):
            if value is None:
                continue
            if _better(value, best, minimize, self.min_delta):
                best, best_epoch, wait = value, e, 0
            else:
                wait += 1
        if wait < self.patience:
            return Feedback()
        plural = "s" if self.patience > 1 else ""
        return Feedback(
            stop=f"{self.monitor} did not improve for {self.patience} epoch{plural}: "
            f"best {best:.6g} at epoch {best_epoch}"
        )


# --------------------------------------------------------------------------- snapshots


def _folder(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"folder must be a path; got {type(value).__name__}")
    return Path(value)


@attrs.frozen
class Snapshots:
    """Save the params every ``every`` epochs as ``folder/snapshot_NNNN.npz``.

    Each file is a :func:`purenn.save` checkpoint (written atomically) with
    ``epoch`` as an extra; :func:`load_snapshots` reads the folder back as
    ``[(epoch, params), ...]`` for :func:`purenn.plots.boundary_animation`. Call
    :meth:`record` with epoch 0 before ``fit`` to have the untrained network too.

    Args:
        folder: where the files go (created if needed).
        every: epochs between snapshots (the last epoch of a run is always saved
            when it is a multiple of ``every``).
    """

    root_only: ClassVar[bool] = True  # under purenn.parallel, rank 0 alone writes

    folder: Path = attrs.field(converter=_folder)
    every: int = int_field(default=1)

    def record(self, epoch: int, params: dict) -> Path:
        """Save ``params`` as the snapshot of ``epoch``; returns the path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return save(self.folder / f"snapshot_{epoch:04d}.npz", params, epoch=epoch)

    def __call__(self, epoch: int, params: dict, history: Mapping) -> None:
        if epoch % self.every == 0:
            self.record(epoch, params)


def load_snapshots(folder: str | os.PathLike) -> list[tuple[int, dict]]:
    """The snapshots :class:`Snapshots` wrote to ``folder``, in epoch order.

    Returns:
        ``[(epoch, params), ...]``.

    Raises:
        FileNotFoundError: if the folder holds no ``snapshot_NNNN.npz``.
        ValueError: if a file is not a readable checkpoint.
    """
    folder = _folder(folder)
    found = sorted(
        (int(m.group(1)), p)
        for p in (folder.iterdir() if folder.is_dir() else ())
        if (m := _SNAPSHOT.match(p.name))
    )
    if not found:
        raise FileNotFoundError(
            f"no snapshot_NNNN.npz files in {folder}; record them with "
            "fit(..., callbacks=[purenn.callbacks.Snapshots(folder)])"
        )
    return [(epoch, load(path).params) for epoch, path in found]


# --------------------------------------------------------------------------- diagnostics


def _layer_norms(tree: dict) -> dict[str, float]:
    """The L2 norm of each top-level entry (a layer's params), by layer name."""
    sums: dict[str, float] = {}
    for path, leaf in tree_items(tree):
        layer = path.split("/", 1)[0]
        flat = leaf.ravel()
        sums[layer] = sums.get(layer, 0.0) + float(np.dot(flat, flat))
    return {k: math.sqrt(v) for k, v in sums.items()}


def _difference_norms(after: dict, before: dict) -> dict[str, float]:
    return _layer_norms(tree_map(lambda a, b: a - b, after, before))


@attrs.frozen(eq=False)
class LayerDiagnostics:
    """Per-layer health over training, recorded into the history.

    Every step (averaged over the epoch): ``<layer>.grad_norm`` (L2 norm of the
    layer's gradients) and ``<layer>.update_ratio`` (``|p_after - p_before| /
    |p_before|``, about 1e-3 in a healthy run). Every epoch, when ``probe`` is
    given: ``<layer>.dead_fraction``, the fraction of the layer's output units
    that are exactly 0 on every probe sample in evaluation mode (dead ReLUs; a
    tanh or sigmoid unit is never exactly 0; for a Conv2D every position of
    every filter's output counts as a unit). The last layer is left out of the
    dead count: its output is the network's.

    It costs one pass over the params per step and one forward pass over the
    probe per epoch; without this callback ``fit`` computes none of it.

    Args:
        probe: inputs ``(m, *input_shape)`` in the params' dtype (a few hundred
            training samples), or None to skip the dead-unit count.
    """

    probe: np.ndarray | None = attrs.field(default=None, repr=False)

    def on_step(self, info: StepInfo) -> dict:
        out = {}
        for layer, norm in _layer_norms(info.grads).items():
            out[f"{layer}.grad_norm"] = norm
        before = _layer_norms(info.params_before)
        for layer, moved in _difference_norms(info.params, info.params_before).items():
            out[f"{layer}.update_ratio"] = moved / before[layer] if before[layer] > 0 else 0.0
        return out

    def __call__(self, epoch: int, params: dict, history: Mapping) -> dict:
        if self.probe is None:
            return {}
        return {f"{name}.dead_fraction": frac for name, frac in dead_fractions(params, self.probe)}


def dead_fractions(params: dict, x: np.ndarray) -> list[tuple[str, float]]:
    """For every layer with params but the last: the fraction of its output units
    that are exactly 0 for every sample of ``x`` (evaluation mode).

    Args:
        params: a params tree.
        x: inputs ``(m, *input_shape)`` in the params' dtype, ``m >= 1``.

    Returns:
        ``[(layer name, fraction in [0, 1]), ...]`` in layer order.
    """
    from purenn.core import layer_outputs

    if isinstance(x, np.ndarray) and x.ndim and x.shape[0] == 0:
        raise ValueError("the probe needs at least one sample")
    outputs = layer_outputs(params, x)
    with_params = params[SPEC_KEY].layout.with_params
    out = []
    for name, y in outputs[:-1]:
        if name in with_params:
            alive = np.any(y != 0, axis=0)
            out.append((name, float(1.0 - np.count_nonzero(alive) / alive.size)))
    return out
