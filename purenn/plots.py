"""Figures for training runs, drawn from plain data (lists, dicts, NumPy arrays).

Every function returns a ``matplotlib.figure.Figure`` built directly on the Agg
canvas: no pyplot, no global figure registry, no display needed, and nothing to
close (a figure is freed when the last reference goes). ``import purenn`` does
not import this module or matplotlib; ask for it explicitly::

    from purenn import plots
    fig = plots.loss_curves(history)
    plots.save_figure(fig, "runs/x/loss.png")

Plots read JSON back instead of retraining: a training script writes the run
folder below, and :func:`plot_run` (or ``scripts/plot_run.py RUN_DIR``) redraws
every figure from it.

Run-folder contract
-------------------
``history.json``
    The dict returned by ``purenn.training.fit``: equal-length lists
    ``"epoch"`` (1-based ints), ``"train_loss"``, ``"train_accuracy"``,
    ``"val_loss"``, ``"val_accuracy"`` (floats; ``null`` entries when there is
    no validation set), ``"lr"``, ``"seconds"``, and the scalars
    ``"best_epoch"`` (int or ``null``), ``"stopped_early"`` (bool) and
    ``"stop_reason"`` (str or ``null``). Accuracies are fractions in [0, 1].
``metrics.json``
    Besides the scalar results, ``"confusion_matrix"``: a ``k x k`` list of
    lists of int counts, rows = true class, columns = predicted class (as
    ``purenn.metrics.confusion_matrix`` returns it, converted with
    ``.tolist()``). Optional ``"class_names"``: a list of ``k`` strings
    (default ``"0" .. "k-1"``).
``misclassified.npz``
    Written by :func:`save_misclassified`, read with ``allow_pickle=False`` by
    :func:`load_misclassified`. Arrays:

    - ``x``: ``(m, ...)`` the *raw* samples, before any standardisation
      (MNIST pixels 0..255 as uint8 or 0..1 as floats; pendigits ints 0..100);
    - ``y_true``, ``y_pred``: ``(m,)`` int class indices, ``y_true != y_pred``;
    - ``kind``: 0-d str array, ``"image"`` or ``"pendigits"``;
    - ``image_shape``: ``(2,)`` int array ``(height, width)``, only for
      ``kind="image"``.

    ``m`` may be 0 (a perfect model); the grid then says so.

What a network learned, drawn from params (a checkpoint's, or snapshots
recorded during ``fit``), never by retraining: :func:`decision_boundary`,
:func:`boundary_animation`, :func:`first_layer_weights`, and
:func:`layer_diagnostics` from the history values of
:class:`purenn.callbacks.LayerDiagnostics`.

Figures written by :func:`plot_run`: ``loss.png``, ``accuracy.png``,
``confusion.png``, ``confusion_normalized.png``, ``misclassified.png`` and
``loss.gif``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from purenn._checks import (
    as_array,
    as_path,
    as_shape,
    check_flag,
    check_optional_flag,
    positive_int,
    show,
    to_float,
)
from purenn.fileio import atomic_write

__all__ = [
    "CLASS_COLORS",
    "DIAGNOSTICS",
    "FIGURE_NAMES",
    "MAX_DPI",
    "MAX_FPS",
    "MAX_HOLD_SECONDS",
    "MAX_RESOLUTION",
    "SAMPLE_KINDS",
    "accuracy_curves",
    "boundary_animation",
    "check_samples",
    "confusion_matrix",
    "decision_boundary",
    "first_layer_weights",
    "layer_diagnostics",
    "load_misclassified",
    "loss_curves",
    "loss_curves_animation",
    "misclassified_grid",
    "plot_run",
    "save_figure",
    "save_misclassified",
]

#: File names :func:`plot_run` writes, in the order it returns them.
FIGURE_NAMES = (
    "loss.png",
    "accuracy.png",
    "confusion.png",
    "confusion_normalized.png",
    "misclassified.png",
    "loss.gif",
)

SAMPLE_KINDS = ("image", "pendigits")
"""The ``kind`` values of :func:`check_samples` and the misclassified grid."""
_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_BEST_COLOR = "tab:green"


# --------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, untouched by pyplot's global state."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_figure(fig: object) -> None:
    if not isinstance(fig, Figure):
        raise TypeError(
            f"expected a matplotlib.figure.Figure; got {type(fig).__name__}. "
            "Pass the figure a purenn.plots function returned"
        )


def _check_path(path: object, suffix: str, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} path must be a str or os.PathLike; got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise ValueError(
            f"{what} writes {suffix} files; got path {str(p)!r}. Give a path ending in {suffix}"
        )
    return p


def _series(history: Mapping, key: str, n: int, *, optional: bool, unit: bool) -> np.ndarray:
    """``history[key]`` as a float array of length ``n``; None and non-finite -> NaN.

    A diverged run (NaN loss) is still worth a picture, so non-finite values are
    drawn as gaps rather than refused.
    """
    if key not in history:
        raise ValueError(
            f"history has no {key!r} list; got keys {sorted(history)}. "
            "Pass the dict purenn.training.fit returns"
        )
    values = history[key]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"history[{key!r}] must be a list; got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(
            f"history[{key!r}] must have one entry per epoch ({n}); got {len(values)}. "
            "All history lists must have the same length"
        )
    out = np.full(n, np.nan)
    for i, v in enumerate(values):
        if v is None:
            if not optional:
                raise ValueError(f"history[{key!r}][{i}] is None; every epoch needs a {key} value")
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(
                f"history[{key!r}][{i}] must be a number or None; got {show(v)} "
                f"({type(v).__name__})"
            )
        out[i] = float(v)
    if unit and np.any((out < 0) | (out > 1)):
        bad = out[(out < 0) | (out > 1)][0]
        raise ValueError(
            f"history[{key!r}] must hold fractions in [0, 1]; got {bad}. "
            "Store accuracy as a fraction, not a percentage"
        )
    return out


def _epochs(history: object) -> np.ndarray:
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history must be a dict (as purenn.training.fit returns); got {type(history).__name__}"
        )
    if "epoch" not in history:
        raise ValueError(
            f"history has no 'epoch' list; got keys {sorted(history)}. "
            "Pass the dict purenn.training.fit returns"
        )
    epochs = history["epoch"]
    if isinstance(epochs, (str, bytes)) or not isinstance(epochs, Sequence):
        raise TypeError(f"history['epoch'] must be a list; got {type(epochs).__name__}")
    if len(epochs) == 0:
        raise ValueError("history['epoch'] is empty; there is nothing to plot before epoch 1")
    for i, e in enumerate(epochs):
        if isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 1:
            raise ValueError(f"history['epoch'] must hold 1-based ints; got {show(e)} at index {i}")
    out = np.asarray(epochs, dtype=np.int64)
    if np.any(np.diff(out) <= 0):
        raise ValueError(f"history['epoch'] must be increasing; got {list(epochs)}")
    return out


def _best_epoch(history: Mapping, epochs: np.ndarray) -> int | None:
    best = history.get("best_epoch")
    if best is None:
        return None
    if isinstance(best, bool) or not isinstance(best, numbers.Integral):
        raise TypeError(f"history['best_epoch'] must be an int or None; got {show(best)}")
    if int(best) not in epochs:
        raise ValueError(
            f"history['best_epoch'] = {best} is not one of the recorded epochs "
            f"{int(epochs[0])}..{int(epochs[-1])}"
        )
    return int(best)


def _stop_note(history: Mapping) -> str | None:
    if history.get("stopped_early"):
        reason = history.get("stop_reason")
        return f"stopped early: {reason}" if reason else "stopped early"
    return None


def _padded_limits(values: np.ndarray, *, log: bool = False) -> tuple[float, float]:
    """Axis limits enclosing every finite value with a 5% margin."""
    finite = values[np.isfinite(values)]
    if log:
        finite = finite[finite > 0]
    if finite.size == 0:
        return (0.1, 1.0) if log else (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if log:
        ratio = (hi / lo) ** 0.05 if hi > lo else 2.0
        return lo / ratio, hi * ratio
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 0.05)
    return lo - pad, hi + pad


def _class_names(class_names: object, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a list of {k} strings; got {type(class_names).__name__}"
        )
    if len(class_names) != k:
        raise ValueError(
            f"class_names must name all {k} classes; got {len(class_names)} names. "
            "Pass one name per class, in class-index order"
        )
    return [str(c) for c in class_names]


# --------------------------------------------------------------------------- curves


def _curve_data(history: object, train_key: str, val_key: str, *, unit: bool):
    epochs = _epochs(history)
    n = len(epochs)
    train = _series(history, train_key, n, optional=False, unit=unit)
    val = _series(history, val_key, n, optional=True, unit=unit)
    return epochs, train, val, _best_epoch(history, epochs)


def _draw_curves(
    ax,
    epochs: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    best: int | None,
    *,
    what: str,
    higher_is_better: bool,
):
    """Draw train/validation curves and the best-epoch marker; return the artists."""
    marker = "o" if len(epochs) <= 30 else None
    (train_line,) = ax.plot(
        epochs, train, color=_TRAIN_COLOR, marker=marker, markersize=3, label=f"train {what}"
    )
    artists = {"train": train_line, "val": None, "best_line": None, "best_point": None}
    if np.any(np.isfinite(val)):
        (artists["val"],) = ax.plot(
            epochs, val, color=_VAL_COLOR, marker=marker, markersize=3, label=f"validation {what}"
        )
    if best is not None:
        i = int(np.flatnonzero(epochs == best)[0])
        y = val[i] if np.isfinite(val[i]) else train[i]
        artists["best_line"] = ax.axvline(best, color=_BEST_COLOR, linestyle="--", linewidth=1)
        (artists["best_point"],) = ax.plot(
            [best],
            [y],
            linestyle="none",
            marker="*",
            markersize=12,
            color=_BEST_COLOR,
            label=f"best epoch {best} ({_fmt(y, higher_is_better)})",
        )
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
    else:  # epochs are whole numbers: no 2.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return artists


def _fmt(value: float, as_percent: bool) -> str:
    return f"{100 * value:.2f}%" if as_percent else f"{value:.4f}"


MAX_DPI = 1000
"""Highest ``dpi`` a figure or animation is drawn at (a 6.4 x 4.8 inch figure at
1000 dpi is already 31 million pixels); more is refused before matplotlib tries."""
MAX_FPS = 100
"""Highest frame rate of an animation."""
MAX_HOLD_SECONDS = 600.0
"""Longest an animation may hold its last frame (each held second is ``fps`` frames)."""
MAX_RESOLUTION = 1000
"""Most grid points per axis of a decision boundary (a million forward passes)."""


def _dpi(value: object) -> int:
    dpi = positive_int(value, "dpi")
    if dpi > MAX_DPI:
        raise ValueError(f"dpi must be at most {MAX_DPI} (MAX_DPI); got {dpi}")
    return dpi


def _fps(value: object) -> int:
    fps = positive_int(value, "fps")
    if fps > MAX_FPS:
        raise ValueError(f"fps must be at most {MAX_FPS} (MAX_FPS); got {fps}")
    return fps


def _hold_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"hold_seconds must be a number; got {type(value).__name__}")
    seconds = to_float(value)  # an int past float range: inf, refused below
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_HOLD_SECONDS):
        raise ValueError(
            f"hold_seconds must be a number in [0, {MAX_HOLD_SECONDS:g}] (MAX_HOLD_SECONDS); "
            f"got {seconds}"
        )
    return seconds


LOG_SCALE_SPAN = 10.0
"""Loss curves go on a log axis by default when the largest loss drawn is more
than this many times the smallest (a first epoch far above the rest would
otherwise flatten every later epoch onto the floor of the plot)."""


def _wants_log(values: np.ndarray, log_scale: bool | None) -> bool:
    """``log_scale`` if given; else whether the finite positive values span more
    than :data:`LOG_SCALE_SPAN`."""
    if check_optional_flag(log_scale, "log_scale") is not None:
        return bool(log_scale)
    drawn = values[np.isfinite(values) & (values > 0)]
    return drawn.size > 0 and float(drawn.max()) > LOG_SCALE_SPAN * float(drawn.min())


def loss_curves(history: Mapping, *, log_scale: bool | None = None) -> Figure:
    """Training and validation loss per epoch, with the best epoch marked.

    Args:
        history: the dict ``purenn.training.fit`` returns; uses ``"epoch"``,
            ``"train_loss"``, ``"val_loss"`` (entries may be None: no validation
            set), and optionally ``"best_epoch"``, ``"stopped_early"``,
            ``"stop_reason"``. NaN/inf losses (a diverged run) are drawn as gaps.
        log_scale: draw the loss on a log axis (True) or a linear one (False);
            None (default) picks log when the losses span more than
            :data:`LOG_SCALE_SPAN`.

    Returns:
        A one-axes Figure: line "train loss", line "validation loss" if any
        validation values exist, and a star + dashed line at ``best_epoch``.

    Raises:
        TypeError: if ``history`` is not a dict or holds non-numbers.
        ValueError: if keys are missing, lists differ in length, epochs are not
            increasing 1-based ints, or ``best_epoch`` is not a recorded epoch.
    """
    epochs, train, val, best = _curve_data(history, "train_loss", "val_loss", unit=False)
    log_scale = _wants_log(np.concatenate([train, val]), log_scale)
    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    _draw_curves(ax, epochs, train, val, best, what="loss", higher_is_better=False)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("cross-entropy loss" if not log_scale else "cross-entropy loss (log scale)")
    ax.set_title(_title("Loss per epoch", history))
    ax.legend(loc="upper right")
    return fig


def accuracy_curves(history: Mapping) -> Figure:
    """Training and validation accuracy per epoch, with the best epoch marked.

    Args:
        history: the dict ``purenn.training.fit`` returns; uses ``"epoch"``,
            ``"train_accuracy"``, ``"val_accuracy"`` (fractions in [0, 1]; the
            validation entries may be None) and optionally ``"best_epoch"``.

    Returns:
        A one-axes Figure with a percent y axis: line "train accuracy", line
        "validation accuracy" if any, and a star + dashed line at ``best_epoch``.

    Raises:
        TypeError: if ``history`` is not a dict or holds non-numbers.
        ValueError: as :func:`loss_curves`, and for accuracies outside [0, 1].
    """
    from matplotlib.ticker import PercentFormatter

    epochs, train, val, best = _curve_data(history, "train_accuracy", "val_accuracy", unit=True)
    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    _draw_curves(ax, epochs, train, val, best, what="accuracy", higher_is_better=True)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_ylabel("accuracy")
    ax.set_title(_title("Accuracy per epoch", history))
    ax.legend(loc="lower right")
    return fig


def _title(base: str, history: Mapping) -> str:
    note = _stop_note(history)
    return f"{base}\n({note})" if note else base


def loss_curves_animation(
    history: Mapping,
    path: str | os.PathLike,
    *,
    fps: int = 8,
    max_frames: int = 40,
    hold_seconds: float = 1.0,
    dpi: int = 80,
    log_scale: bool | None = None,
) -> Path:
    """Write an animated GIF of the loss curves growing one epoch per frame.

    The axes are fixed from the full history, so only the lines move. Long runs
    are thinned to at most ``max_frames`` frames (always ending on the last
    epoch); the final frame, with the best epoch marked, is held for
    ``hold_seconds``. Written with matplotlib's ``PillowWriter`` to a temporary
    file in the same folder, then renamed, so the GIF is never half-written.

    Args:
        history: as for :func:`loss_curves`.
        path: where to write; must end in ``.gif``. Parent folders are created.
        fps: frames per second, 1 to :data:`MAX_FPS`.
        max_frames: most growth frames drawn, >= 1.
        hold_seconds: how long the last frame stays up, 0 to :data:`MAX_HOLD_SECONDS`.
        dpi: resolution of each frame (a 6.4 x 4.2 inch figure), at most :data:`MAX_DPI`.
        log_scale: as for :func:`loss_curves` (None: log when the losses span
            more than :data:`LOG_SCALE_SPAN`).

    Returns:
        The path written.

    Raises:
        TypeError, ValueError: as :func:`loss_curves`, for a path not ending in
            ``.gif``, or for non-positive ``fps``/``max_frames``/``dpi``.
    """
    from matplotlib.animation import PillowWriter

    out = _check_path(path, ".gif", "loss_curves_animation")
    fps = _fps(fps)
    max_frames = positive_int(max_frames, "max_frames")
    dpi = _dpi(dpi)
    hold_seconds = _hold_seconds(hold_seconds)

    epochs, train, val, best = _curve_data(history, "train_loss", "val_loss", unit=False)
    n = len(epochs)
    ends = np.unique(np.linspace(1, n, num=min(n, max_frames)).round().astype(int))
    hold = round(hold_seconds * fps)

    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    artists = _draw_curves(ax, epochs, train, val, best, what="loss", higher_is_better=False)
    ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    losses = np.concatenate([train, val])
    log_scale = _wants_log(losses, log_scale)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylim(*_padded_limits(losses, log=log_scale))
    ax.set_ylabel("cross-entropy loss" if not log_scale else "cross-entropy loss (log scale)")
    best_artists = [a for a in (artists["best_line"], artists["best_point"]) if a is not None]
    curves = [a for a in (artists["train"], artists["val"]) if a is not None]

    def show(end: int) -> None:
        artists["train"].set_data(epochs[:end], train[:end])
        if artists["val"] is not None:
            artists["val"].set_data(epochs[:end], val[:end])
        done = end == n
        for a in best_artists:
            a.set_visible(done)
        # The best epoch is only known at the end: keep it out of the legend until then.
        handles = curves + ([artists["best_point"]] if done and best is not None else [])
        ax.legend(handles=handles, loc="upper right")
        title = f"Loss, epoch {int(epochs[end - 1])} of {int(epochs[-1])}"
        ax.set_title(_title(title, history) if done else title)

    # Lay the figure out once, for the fullest (last) frame, then freeze it so
    # the axes do not shift between frames as titles and legends change.
    show(n)
    fig.canvas.draw()
    fig.set_layout_engine("none")

    def write(tmp: Path) -> None:
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(tmp), dpi):
            for end in ends:
                show(int(end))
                writer.grab_frame()
            for _ in range(hold):
                writer.grab_frame()

    return atomic_write(out, write)


# --------------------------------------------------------------------------- confusion


def confusion_matrix(
    cm: object,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = False,
    annotate: bool | None = None,
) -> Figure:
    """A confusion matrix as a heat map with the value written in each cell.

    Args:
        cm: ``(k, k)`` non-negative int counts (a nested list or an int array),
            rows = true class, columns = predicted class, as
            ``purenn.metrics.confusion_matrix`` returns it.
        class_names: ``k`` labels for the axes; default ``"0" .. "k-1"``.
        normalize: divide each row by its total, so a cell reads "fraction of
            true class i predicted as j" and the diagonal is per-class recall.
            Rows with no samples stay 0.
        annotate: write the values in the cells; default: when ``k <= 20``.

    Returns:
        A Figure with the matrix axes (x "predicted", y "true") and a colour
        bar; the title gives the overall accuracy.

    Raises:
        TypeError: if ``cm`` is not integer-valued or ``class_names`` is not a list.
        ValueError: if ``cm`` is not square, is empty, has negative counts, or
            ``class_names`` has the wrong length.
    """
    normalize = check_flag(normalize, "normalize")
    annotate = check_optional_flag(annotate, "annotate")
    counts = _check_confusion(cm)
    k = counts.shape[0]
    names = _class_names(class_names, k)
    if annotate is None:
        annotate = k <= 20

    totals = counts.sum(axis=1, keepdims=True)
    if normalize:
        values = np.divide(
            counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0
        )
        vmax = 1.0
    else:
        values = counts.astype(np.float64)
        vmax = max(float(values.max()), 1.0)

    size = min(max(4.0, 0.55 * k + 2.0), 14.0)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("fraction of true class" if normalize else "count")

    ax.set_xticks(np.arange(k), labels=names)
    ax.set_yticks(np.arange(k), labels=names)
    if max(len(n) for n in names) > 3:
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")

    total = int(counts.sum())
    accuracy = np.trace(counts) / total if total else float("nan")
    kind = "row-normalised" if normalize else "counts"
    ax.set_title(f"Confusion matrix ({kind}), accuracy {100 * accuracy:.2f}% of {total}")

    if annotate:
        fontsize = 9 if k <= 10 else 7
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if normalize:
                    text = "0" if v == 0 else ("<.01" if v < 0.005 else f"{v:.2f}")
                else:
                    text = str(int(counts[i, j]))
                dark = v > 0.5 * vmax
                color = "white" if dark else ("0.6" if v == 0 else "black")
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    return fig


def _check_confusion(cm: object) -> np.ndarray:
    arr = as_array(cm, "cm")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(
            f"cm must be a square (k, k) matrix with k >= 1 (rows = true, cols = predicted); "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(
                "cm must hold whole-number counts; got non-integer or non-finite values. "
                "Pass counts and use normalize=True for fractions"
            )
        out = arr.astype(np.int64)
    else:
        raise TypeError(f"cm must hold int counts; got dtype {arr.dtype}")
    if np.any(out < 0):
        raise ValueError(f"cm counts must be >= 0; got minimum {int(out.min())}")
    return out


# --------------------------------------------------------------------------- samples


def check_samples(
    x: object, y_true: object, y_pred: object, kind: object, image_shape: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Check samples as :func:`save_misclassified` and :func:`misclassified_grid`
    take them, so a caller can refuse bad ones before a long run rather than after.

    Args:
        x: the samples in raw units, ``(m, h, w)`` or ``(m, h*w)`` images for
            ``kind="image"``, ``(m, 16)`` pen coordinates in 0..100 for ``"pendigits"``.
        y_true, y_pred: int class indices ``(m,)``.
        kind: ``"image"`` or ``"pendigits"``.
        image_shape: ``(h, w)`` for flat images (None: square, or read off ``x``).

    Returns:
        ``(x, y_true, y_pred, image_shape)``: ``x`` as ``(m, h, w)`` images or
        ``(m, 16)``, the labels as int64, ``image_shape`` (None for pendigits).

    Raises:
        TypeError, ValueError: naming what is wrong.
    """
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"kind must be one of {SAMPLE_KINDS}; got {show(kind)}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array of samples; got {type(x).__name__}")
    if x.dtype.kind not in "iuf":
        raise TypeError(f"x must hold numbers; got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x must be (m, ...) with one sample per row; got shape {x.shape}")
    m = x.shape[0]
    labels = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        y = as_array(y, name)
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold int class indices; got dtype {y.dtype}")
        if y.shape != (m,):
            raise ValueError(
                f"{name} must have shape ({m},) to match x of shape {x.shape}; got {y.shape}"
            )
        if np.any(y < 0):
            raise ValueError(f"{name} must hold class indices >= 0; got {int(y.min())}")
        labels.append(y.astype(np.int64))
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf; pass the raw samples")

    shape = None
    if kind == "pendigits":
        if x.shape[1:] != (16,):
            raise ValueError(
                f"pendigits samples must have shape (m, 16): x0, y0, ..., x7, y7; got {x.shape}"
            )
        if m and (x.min() < 0 or x.max() > 100):
            raise ValueError(
                f"pendigits coordinates must lie in 0..100; got {x.min()}..{x.max()}. "
                "Pass the raw samples, not standardised ones"
            )
        return x, labels[0], labels[1], None

    if image_shape is None:
        if x.ndim == 3:
            image_shape = x.shape[1:]
        else:
            side = math.isqrt(int(np.prod(x.shape[1:])))
            if x.ndim != 2 or side * side != x.shape[1]:
                raise ValueError(
                    f"cannot infer image_shape from x of shape {x.shape}; pass image_shape=(h, w)"
                )
            image_shape = (side, side)
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 2
        or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
            for s in image_shape
        )
    ):
        raise ValueError(
            f"image_shape must be (height, width) positive ints; got {show(image_shape)}"
        )
    shape = (int(image_shape[0]), int(image_shape[1]))
    if int(np.prod(x.shape[1:])) != shape[0] * shape[1]:
        raise ValueError(
            f"x samples of shape {x.shape[1:]} do not hold {shape[0]}x{shape[1]} images; "
            "pass the matching image_shape"
        )
    return x.reshape(m, *shape), labels[0], labels[1], shape


def misclassified_grid(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    kind: str = "image",
    image_shape: tuple[int, int] | None = (28, 28),
    class_names: Sequence[str] | None = None,
    max_samples: int = 36,
) -> Figure:
    """A grid of misclassified samples, each titled "true → predicted".

    Images are drawn in grayscale (0 = black). Pendigits samples are drawn as
    the pen stroke they record: the 8 resampled (x, y) points joined in order,
    the first point marked with a filled circle and the last with a small
    cross. Pendigits y grows upward (100 = top), as on a normal axis.

    Args:
        x: ``(m, ...)`` raw samples in the order to show them. For
            ``kind="image"``: ``(m, h, w)`` or ``(m, h * w)``, any numeric
            dtype (the grey scale spans uint8 0..255, else the data's own range).
            For ``kind="pendigits"``: ``(m, 16)`` ints or floats in 0..100
            laid out ``x0, y0, x1, y1, ..., x7, y7``.
        y_true: ``(m,)`` int true classes.
        y_pred: ``(m,)`` int predicted classes.
        kind: ``"image"`` or ``"pendigits"``.
        image_shape: ``(h, w)`` for flat images; None infers it (square, or
            ``x.shape[1:]``). Ignored for pendigits.
        class_names: names indexed by class; default the class numbers.
        max_samples: show at most this many (the first ones), >= 1.

    Returns:
        A Figure with one axes per shown sample (an empty notice if ``m == 0``).

    Raises:
        TypeError, ValueError: for mismatched shapes, non-int labels, NaN, an
            unknown ``kind``, pendigits values outside 0..100, or labels beyond
            ``class_names``.
    """

    max_samples = positive_int(max_samples, "max_samples")
    x, y_true, y_pred, _ = check_samples(x, y_true, y_pred, kind, image_shape)
    m = x.shape[0]
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
            raise TypeError(f"class_names must be a list of strings; got {type(class_names)}")
        top = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)))
        if top >= len(class_names):
            raise ValueError(
                f"labels go up to {top} but class_names has only {len(class_names)} names"
            )
        names = [str(c) for c in class_names]
    else:
        names = None

    def label(c: int) -> str:
        return names[c] if names is not None else str(c)

    if m == 0:
        fig = _new_figure(4.0, 2.0)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No misclassified samples", ha="center", va="center", fontsize=12)
        return fig

    count = min(m, max_samples)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    longest = max(
        len(f"{label(t)} → {label(p)}") for t, p in zip(y_true[:count], y_pred[:count], strict=True)
    )
    cell = max(1.45, 0.11 * longest)
    fig = _new_figure(cell * cols, cell * rows + 0.5)
    shown = f"the first {count} of {m}" if count < m else f"all {m}"
    fig.suptitle(f"Misclassified samples ({shown}): true → predicted")

    if kind == "image":
        if x.dtype == np.uint8:
            vmin, vmax = 0.0, 255.0
        else:
            vmin, vmax = float(x.min()), float(x.max())
            if vmax <= vmin:
                vmax = vmin + 1.0
    axes = fig.subplots(rows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if idx >= count:
            ax.set_axis_off()
            continue
        if kind == "image":
            ax.imshow(x[idx], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        else:
            _draw_pen_stroke(ax, x[idx])
        ax.set_title(f"{label(int(y_true[idx]))} → {label(int(y_pred[idx]))}", fontsize=10)
    return fig


def _draw_pen_stroke(ax, sample: np.ndarray) -> None:
    """Draw one pendigits sample: 8 (x, y) points in writing order, start marked."""
    pts = np.asarray(sample, dtype=np.float64).reshape(8, 2)
    ax.plot(pts[:, 0], pts[:, 1], color="black", linewidth=1.8, solid_capstyle="round")
    ax.plot(pts[:, 0], pts[:, 1], linestyle="none", marker="o", markersize=2.5, color="0.35")
    ax.plot(pts[0, 0], pts[0, 1], linestyle="none", marker="o", markersize=7, color="tab:green")
    ax.plot(pts[-1, 0], pts[-1, 1], linestyle="none", marker="x", markersize=6, color="tab:red")
    ax.set_xlim(-8, 108)
    ax.set_ylim(-8, 108)
    ax.set_aspect("equal")


# --------------------------------------------------------------------------- files


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG, atomically (temporary file beside it, then rename).

    Args:
        fig: a Figure from this module (or any matplotlib Figure).
        path: destination ending in ``.png``; parent folders are created.
        dpi: resolution, 1 to :data:`MAX_DPI`.

    Returns:
        The path written.

    Raises:
        TypeError: if ``fig`` is not a Figure or ``path`` is not a path.
        ValueError: if ``path`` does not end in ``.png``.
    """

    _check_figure(fig)
    out = _check_path(path, ".png", "save_figure")
    dpi = _dpi(dpi)
    return atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def save_misclassified(
    path: str | os.PathLike,
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    kind: str,
    image_shape: tuple[int, int] | None = None,
) -> Path:
    """Write the misclassified samples of a test set to ``misclassified.npz``.

    Keeps only the rows with ``y_true != y_pred`` (so passing the whole test set
    or an already filtered subset gives the same file), in their original order.
    Written atomically; the format is the run-folder contract in the module
    docstring.

    Args:
        path: destination ending in ``.npz``.
        x: ``(n, ...)`` raw samples (see :func:`misclassified_grid`).
        y_true: ``(n,)`` int true classes.
        y_pred: ``(n,)`` int predicted classes.
        kind: ``"image"`` or ``"pendigits"``.
        image_shape: ``(h, w)`` for images; None infers it.

    Returns:
        The path written.

    Raises:
        TypeError, ValueError: as :func:`misclassified_grid`, or for a path not
            ending in ``.npz``.
    """
    out = _check_path(path, ".npz", "save_misclassified")
    _, t, p, shape = check_samples(x, y_true, y_pred, kind, image_shape)
    wrong = t != p
    arrays = {
        "x": np.asarray(x)[wrong],
        "y_true": t[wrong],
        "y_pred": p[wrong],
        "kind": np.array(kind),
    }
    if shape is not None:
        arrays["image_shape"] = np.array(shape, dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(out, write)


def load_misclassified(path: str | os.PathLike) -> dict:
    """Read ``misclassified.npz`` (no pickle) and check it against the contract.

    Returns:
        ``{"x", "y_true", "y_pred", "kind", "image_shape"}`` ready to pass to
        :func:`misclassified_grid` as keywords (``image_shape`` is None for
        pendigits).

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it is not a valid npz, lacks arrays, or they disagree.
    """
    p = as_path(path, "path")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{p} is not a readable .npz file ({err}); rewrite it") from err
    missing = {"x", "y_true", "y_pred", "kind"} - set(arrays)
    if missing:
        raise ValueError(
            f"{p} lacks arrays {sorted(missing)}; got {sorted(arrays)}. "
            "Write it with purenn.plots.save_misclassified"
        )
    kind = arrays["kind"]
    if kind.dtype.kind != "U" or kind.ndim != 0:
        raise ValueError(f"{p}: 'kind' must be a 0-d string array; got {kind.dtype} {kind.shape}")
    shape = arrays.get("image_shape")
    if shape is not None:
        if shape.dtype.kind not in "iu" or shape.shape != (2,):
            raise ValueError(f"{p}: 'image_shape' must be 2 ints; got {show(shape)}")
        shape = (int(shape[0]), int(shape[1]))
    kind = str(kind)
    _, t, pr, shape = check_samples(arrays["x"], arrays["y_true"], arrays["y_pred"], kind, shape)
    return {
        "x": arrays["x"],
        "y_true": t,
        "y_pred": pr,
        "kind": kind,
        "image_shape": shape,
    }


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a run folder needs history.json, metrics.json and "
            "misclassified.npz (see purenn.plots)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rewrite it") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(data).__name__}")
    return data


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Redraw every figure of a run folder from its files, without retraining.

    Reads ``history.json``, ``metrics.json`` (``"confusion_matrix"``, optional
    ``"class_names"``) and ``misclassified.npz`` as laid out in the module
    docstring, and writes :data:`FIGURE_NAMES` into ``out_dir``. Training
    scripts call this after saving their files; ``scripts/plot_run.py`` calls
    it from the command line.

    Args:
        run_dir: the run folder.
        out_dir: where to write the figures; default ``run_dir``.

    Returns:
        The paths written, in the order of :data:`FIGURE_NAMES`.

    Raises:
        FileNotFoundError: if ``run_dir`` or one of its three input files is missing.
        ValueError, TypeError: if a file breaks the contract (the message names it).
    """
    run = as_path(run_dir, "run_dir")
    if not run.is_dir():
        raise FileNotFoundError(
            f"run folder {run} does not exist; pass the --out of a training run"
        )
    out = as_path(out_dir, "out_dir") if out_dir is not None else run
    history = _read_json(run / "history.json")
    metrics = _read_json(run / "metrics.json")
    if "confusion_matrix" not in metrics:
        raise ValueError(
            f"{run / 'metrics.json'} has no 'confusion_matrix' (k x k list of counts, "
            "rows = true class); the training script must store it"
        )
    class_names = metrics.get("class_names")
    samples_path = run / "misclassified.npz"
    if not samples_path.is_file():
        raise FileNotFoundError(
            f"{samples_path} not found; write it with purenn.plots.save_misclassified"
        )
    samples = load_misclassified(samples_path)

    def context(name: str, err: Exception) -> Exception:
        return type(err)(f"{run / name}: {err}")

    try:
        loss = loss_curves(history)
        accuracy = accuracy_curves(history)
    except (TypeError, ValueError) as err:
        raise context("history.json", err) from err
    try:
        counts = confusion_matrix(metrics["confusion_matrix"], class_names)
        normalized = confusion_matrix(metrics["confusion_matrix"], class_names, normalize=True)
    except (TypeError, ValueError) as err:
        raise context("metrics.json", err) from err
    try:
        grid = misclassified_grid(**samples, class_names=class_names)
    except (TypeError, ValueError) as err:
        raise context("misclassified.npz", err) from err

    figures = (loss, accuracy, counts, normalized, grid)
    written = [
        save_figure(fig, out / name) for fig, name in zip(figures, FIGURE_NAMES[:-1], strict=True)
    ]
    written.append(loss_curves_animation(history, out / FIGURE_NAMES[-1]))
    return written


# --------------------------------------------------------------------------- what a network learned


def _network_params(params: object) -> tuple:
    """``(spec, dtype)`` of a params tree, or a clear TypeError."""
    from purenn.core import params_dtype
    from purenn.network import Network
    from purenn.tree import SPEC_KEY

    spec = params.get(SPEC_KEY) if isinstance(params, Mapping) else None
    if not isinstance(spec, Network):
        raise TypeError(
            f"params must be a params tree from purenn.init (or a checkpoint's .params); "
            f"got {type(params).__name__}"
        )
    return spec, params_dtype(params)


def _points(spec, x: object, y: object, dims: int) -> tuple[np.ndarray, np.ndarray]:
    if spec.input_shape != (dims,):
        raise ValueError(
            f"decision_boundary draws networks on {dims}-D inputs; this one takes "
            f"{spec.input_shape}"
        )
    x = as_array(x, "x")
    y = as_array(y, "y")
    if x.ndim != 2 or x.shape[1] != dims or x.shape[0] == 0:
        raise ValueError(f"x must have shape (n, {dims}) with n >= 1; got {x.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one entry per sample of x ({x.shape[0]}); got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x holds NaN or inf; drop those samples before plotting")
    return x, y


def _grid(x: np.ndarray, resolution: int, margin: float = 0.15) -> tuple[np.ndarray, ...]:
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    pad = np.maximum(hi - lo, 1e-6) * margin
    lo, hi = lo - pad, hi + pad
    gx = np.linspace(lo[0], hi[0], resolution)
    gy = np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    return xx, yy, (lo[0], hi[0], lo[1], hi[1])


def _class_surface(params: dict, spec, dtype, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class and its confidence (in [0, 1]) at every grid point."""
    from purenn.core import forward

    out = forward(params, grid.astype(dtype))
    if out.shape[1] == 1:  # one sigmoid output: class 1 where p > 0.5
        p = out[:, 0].astype(np.float64)
        return (p > 0.5).astype(np.int64), np.abs(2 * p - 1)
    if not spec.loss.has_accuracy or spec.loss.num_classes(spec.output_shape) is None:
        raise ValueError(
            "decision_boundary colours the regions of a single-label classifier (a softmax "
            f"or a single sigmoid output); this network's loss is {spec.loss!r}"
        )
    top = out.max(axis=1).astype(np.float64)
    k = out.shape[1]
    return out.argmax(axis=1), (top - 1 / k) / (1 - 1 / k)


CLASS_COLORS = (
    "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
    "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan",
)  # fmt: skip
"""The colour of each class in decision-boundary figures (cycled past ten)."""


def _draw_boundary(ax, params: dict, spec, dtype, x: np.ndarray, y: np.ndarray, res: int) -> None:
    from matplotlib.colors import ListedColormap, to_rgb

    xx, yy, extent = _grid(x, res)
    labels, confidence = _class_surface(params, spec, dtype, np.c_[xx.ravel(), yy.ravel()])
    k = max(2, spec.output_shape[0])  # a single sigmoid output still draws two classes
    colors = np.array([to_rgb(CLASS_COLORS[i % len(CLASS_COLORS)]) for i in range(k)])
    # fade each region towards white where the network is unsure
    strength = (0.25 + 0.45 * confidence)[:, None]
    rgb = 1.0 - strength * (1.0 - colors[labels])
    ax.imshow(
        rgb.reshape(res, res, 3), origin="lower", extent=extent, aspect="auto",
        interpolation="bilinear",
    )  # fmt: skip
    ax.contour(xx, yy, labels.reshape(res, res), levels=np.arange(k) + 0.5, colors="k",
               linewidths=0.6, alpha=0.6)  # fmt: skip
    y_labels = y.astype(np.int64).ravel() if y.ndim == 1 or y.shape[1] == 1 else y.argmax(axis=1)
    ax.scatter(
        x[:, 0], x[:, 1], c=y_labels, cmap=ListedColormap(colors), vmin=-0.5, vmax=k - 0.5,
        s=12, edgecolors="white", linewidths=0.4,
    )  # fmt: skip
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")


def _draw_regression(ax, params: dict, dtype, x: np.ndarray, y: np.ndarray, res: int) -> None:
    from purenn.core import forward

    y = y.reshape(y.shape[0], -1)
    lo, hi = float(x.min()), float(x.max())
    pad = max(hi - lo, 1e-6) * 0.05
    grid = np.linspace(lo - pad, hi + pad, res)[:, None]
    fit_y = forward(params, grid.astype(dtype))
    ax.scatter(x[:, 0], y[:, 0], s=10, color=_TRAIN_COLOR, alpha=0.6, label="data")
    ax.plot(grid[:, 0], fit_y[:, 0], color=_VAL_COLOR, linewidth=2, label="network")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="best")


def _resolution(value: object) -> int:
    value = positive_int(value, "resolution")
    if not 2 <= value <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution must be 2 to {MAX_RESOLUTION} (MAX_RESOLUTION) grid points per axis; "
            f"got {value}"
        )
    return value


def decision_boundary(
    params: dict, x: np.ndarray, y: np.ndarray, *, resolution: int = 200, title: str | None = None
) -> Figure:
    """What a network has learned in input space.

    For a classifier on 2-D inputs: the class the network predicts at every point
    of a grid around the data (each class its colour, paler where the network is
    less sure), the boundaries between classes, and the points coloured by their
    true class. For a network on 1-D inputs (regression): the data and the
    network's curve through it.

    Args:
        params: a params tree (its spec says how to read the output).
        x: inputs ``(n, 2)`` (classifier) or ``(n, 1)`` (regression).
        y: int labels ``(n,)`` (or one-hot / 0-1 ``(n, k)``), or targets ``(n, 1)``.
        resolution: grid points per axis (per the x axis for 1-D), 2 to
            :data:`MAX_RESOLUTION`.
        title: the figure title (default: says what is drawn).

    Returns:
        The figure.

    Raises:
        TypeError: for params that are not a params tree.
        ValueError: for a network that is not on 1-D or 2-D inputs, or data of
            another shape.
    """
    spec, dtype = _network_params(params)
    resolution = _resolution(resolution)
    fig = _new_figure(5.6, 4.8)
    ax = fig.add_subplot()
    if spec.input_shape == (1,):
        x, y = _points(spec, x, y, 1)
        _draw_regression(ax, params, dtype, x, y, resolution)
        ax.set_title(title or "Network fit")
    else:
        x, y = _points(spec, x, y, 2)
        _draw_boundary(ax, params, spec, dtype, x, y, resolution)
        ax.set_title(title or "Decision boundary")
    return fig


def boundary_animation(
    snapshots: Sequence,
    x: np.ndarray,
    y: np.ndarray,
    path: str | os.PathLike,
    *,
    fps: int = 5,
    resolution: int = 120,
    hold_seconds: float = 1.5,
    dpi: int = 80,
) -> Path:
    """Write an animated GIF of the decision boundary (or the regression curve)
    over training, one frame per snapshot.

    Args:
        snapshots: ``[(epoch, params), ...]``, e.g. from
            :func:`purenn.callbacks.load_snapshots` (recorded during ``fit`` by
            :class:`purenn.callbacks.Snapshots`), in order.
        x, y: the points to draw, as for :func:`decision_boundary`.
        path: where to write; must end in ``.gif``. Written atomically.
        fps: frames per second, 1 to :data:`MAX_FPS`.
        resolution: grid points per axis, 2 to :data:`MAX_RESOLUTION`.
        hold_seconds: how long the last frame stays up, 0 to :data:`MAX_HOLD_SECONDS`.
        dpi: resolution of each frame, 1 to :data:`MAX_DPI`.

    Returns:
        The path written.

    Raises:
        TypeError, ValueError: for an empty or malformed snapshot list, or as
            :func:`decision_boundary`.
    """
    from matplotlib.animation import PillowWriter

    out = _check_path(path, ".gif", "boundary_animation")
    fps, dpi = _fps(fps), _dpi(dpi)
    resolution = _resolution(resolution)
    hold_seconds = _hold_seconds(hold_seconds)
    frames = list(snapshots) if isinstance(snapshots, Sequence) else None
    if not frames or not all(isinstance(f, tuple | list) and len(f) == 2 for f in frames):
        raise TypeError(
            "snapshots must be a non-empty list of (epoch, params) pairs, e.g. "
            "purenn.callbacks.load_snapshots(folder)"
        )
    specs = [_network_params(p)[0] for _, p in frames]
    if any(s != specs[0] for s in specs):
        raise ValueError("every snapshot must be of the same network")
    spec, dtype = _network_params(frames[0][1])
    one_d = spec.input_shape == (1,)
    x, y = _points(spec, x, y, 1 if one_d else 2)

    fig = _new_figure(5.6, 4.8)
    ax = fig.add_subplot()
    last = len(frames) - 1

    def show(i: int) -> None:
        ax.clear()
        epoch, params = frames[i]
        if one_d:
            _draw_regression(ax, params, dtype, x, y, resolution)
        else:
            _draw_boundary(ax, params, spec, dtype, x, y, resolution)
        ax.set_title(f"epoch {int(epoch)} of {int(frames[last][0])}")

    show(last)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # fixed layout: the axes do not move between frames

    def write(tmp: Path) -> None:
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(tmp), dpi):
            for i in range(len(frames)):
                show(i)
                writer.grab_frame()
            for _ in range(round(hold_seconds * fps)):
                writer.grab_frame()

    return atomic_write(out, write)


def first_layer_weights(
    params: dict, *, image_shape: Sequence[int] | None = None, max_units: int = 64
) -> Figure:
    """The first layer's weights as images: what each unit or filter looks for.

    For a first ``Dense`` layer on image inputs, each unit's column of ``w`` is
    reshaped to the image (``image_shape``, or the network's input shape when
    that is ``(h, w)`` or ``(c, h, w)``). For a first ``Conv2D``, each filter
    is drawn (its first channel; RGB for 3 channels). Each image has its own
    symmetric colour scale (red positive, blue negative, white 0).

    Args:
        params: a params tree whose first layer with params has a ``w`` of shape
            ``(d_in, units)`` or ``(filters, channels, kh, kw)``.
        image_shape: ``(h, w)`` to reshape a flat input to (e.g. ``(28, 28)``).
        max_units: most units drawn (the first ones).

    Returns:
        The figure.

    Raises:
        ValueError: when the first layer's weights cannot be drawn as images
            (say what ``image_shape`` to give).
    """
    spec, _ = _network_params(params)
    max_units = positive_int(max_units, "max_units")
    names = spec.layout.with_params
    if not names or "w" not in params[names[0]]:
        raise ValueError("the network's first layer with params has no 'w' to draw")
    name = names[0]
    w = np.asarray(params[name]["w"], dtype=np.float64)
    if w.ndim == 4:  # (filters, channels, kh, kw)
        images = w[:, :3].transpose(0, 2, 3, 1) if w.shape[1] == 3 else w[:, 0]
    elif w.ndim == 2:
        shape = spec.input_shape if image_shape is None else as_shape(image_shape, "image_shape")
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2 or shape[0] * shape[1] != w.shape[0]:
            raise ValueError(
                f"{name} takes {w.shape[0]} inputs; pass image_shape=(h, w) with h * w == "
                f"{w.shape[0]} to draw its weights as images (e.g. (28, 28) for MNIST, "
                "(4, 4) to see 16 features as a square)"
            )
        images = w.T.reshape(-1, *shape)
    else:
        raise ValueError(f"{name}'s weights have shape {w.shape}; expected 2-D or 4-D")
    images = images[:max_units]
    n = images.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _new_figure(1.1 * cols + 0.4, 1.1 * rows + 0.6)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i >= n:
            continue
        img = images[i]
        if img.ndim == 3:  # RGB filter: stretch to [0, 1]
            span = np.ptp(img) or 1.0
            ax.imshow((img - img.min()) / span, interpolation="nearest")
        else:
            limit = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"{name} weights ({n} of {w.shape[0] if w.ndim == 4 else w.shape[1]})")
    return fig


DIAGNOSTICS = ("grad_norm", "update_ratio", "dead_fraction")
"""The per-layer history values :class:`purenn.callbacks.LayerDiagnostics` records."""


def layer_diagnostics(history: Mapping) -> Figure:
    """Per-layer health over epochs, from the history values that
    :class:`purenn.callbacks.LayerDiagnostics` recorded (``<layer>.grad_norm``,
    ``<layer>.update_ratio``, ``<layer>.dead_fraction``): one panel per kind,
    one line per layer; gradient norms and update ratios on a log scale.

    Raises:
        ValueError: if the history holds none of those values.
    """
    epochs = _epochs(history)
    panels = []
    for kind in DIAGNOSTICS:
        keys = sorted(k for k in history if isinstance(k, str) and k.endswith("." + kind))
        if keys:
            panels.append((kind, keys))
    if not panels:
        raise ValueError(
            "the history holds no layer diagnostics; record them with fit(..., "
            "callbacks=[purenn.callbacks.LayerDiagnostics(probe=x[:256])])"
        )
    fig = _new_figure(4.2 * len(panels), 3.6)
    labels = {
        "grad_norm": "gradient norm",
        "update_ratio": "|update| / |weights|",
        "dead_fraction": "dead units (fraction)",
    }
    for i, (kind, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key in keys:
            values = _series(history, key, len(epochs), optional=True, unit=kind == "dead_fraction")
            ax.plot(epochs, values, marker="o", markersize=2.5, label=key.rsplit(".", 1)[0])
        if kind != "dead_fraction":
            positive = [v for k in keys for v in history[k] if v is not None and v > 0]
            if positive:
                ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.set_title(labels[kind])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="best")
    return fig
