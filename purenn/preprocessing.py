"""Preprocessing and batching: pure functions, fitted state as plain data.

A scaler is fitted on training data only and applied to any split::

    scaler = standardize_fit(x_train)            # a frozen record of arrays
    x_train_s = scaler.apply(x_train)            # == standardize_apply(scaler, x_train)
    x_test_s = scaler.apply(x_test)

Nothing here touches the global NumPy random state: every random function takes
a ``numpy.random.Generator`` or an int seed. No function writes into its inputs.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator

import attrs
import numpy as np
import numpy.typing as npt

from purenn._checks import (
    as_array,
    as_generator,
    check_flag,
    num_classes,
    positive_float,
    positive_int,
    show,
    to_float,
)

__all__ = [
    "MinMaxScaler",
    "Standardizer",
    "batches",
    "flatten_images",
    "minmax_apply",
    "minmax_fit",
    "one_hot",
    "scale_images",
    "standardize_apply",
    "standardize_fit",
    "train_val_split",
]


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _frozen(a: npt.ArrayLike, name: str) -> np.ndarray:
    """A read-only float64 copy, so fitted state cannot change behind its owner's
    back; anything but finite real numbers is refused, naming the field."""
    arr = as_array(a, name)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers; got dtype {arr.dtype} ({show(a, 40)})"
        )
    out = np.array(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        bad = np.count_nonzero(~np.isfinite(out))
        raise ValueError(f"{name} must be finite; got {bad} NaN/inf")
    out.flags.writeable = False
    return out


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (the features'); got "
            f"{a.shape} and {b.shape}"
        )


def _positive(instance: object, attribute: attrs.Attribute, value: np.ndarray) -> None:
    if (value <= 0).any():
        raise ValueError(
            f"{attribute.name} must be > 0 everywhere (it divides); got "
            f"{np.count_nonzero(value <= 0)} entries <= 0"
        )


def _features(x: object, name: str, fn: str) -> np.ndarray:
    """``x`` as a numeric, non-empty, finite array of shape ``(n, ...)``."""
    arr = as_array(x, f"{fn}: {name}")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{fn} expects {name} as a numeric array (int or float); got dtype {arr.dtype}. "
            f"Convert with np.asarray({name}, dtype=np.float32)."
        )
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{fn} expects {name} of shape (n, features...) with n >= 1; got {arr.shape}. "
            f"A single sample is {name}[None, :]."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(
            f"{fn} expects finite {name}; got {np.count_nonzero(~np.isfinite(arr))} NaN/inf "
            "values. Clean or impute them first."
        )
    return arr


def _out_dtype(arr: np.ndarray, dtype: npt.DTypeLike | None, fn: str) -> np.dtype:
    """The output float dtype: ``dtype`` if given, else x's float dtype, else float32."""
    if dtype is None:
        return arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"{fn}: dtype must be a float dtype such as np.float32; got {dt}.")
    return dt


def _check_feature_shape(arr: np.ndarray, expected: tuple[int, ...], fn: str) -> None:
    if arr.shape[1:] != expected:
        raise ValueError(
            f"{fn} was fitted on features of shape (n, {', '.join(map(str, expected))}); "
            f"got x of shape {arr.shape}. Apply it to data shaped like the training data."
        )


@attrs.frozen(eq=False)
class Standardizer:
    """Fitted state of :func:`standardize_fit`: per-feature mean and standard deviation.

    Attributes:
        mean: float64, shape ``x.shape[1:]`` of the training data; read-only.
        std: float64, same shape; features that were constant have std 1, so
            they map to 0 instead of dividing by zero; read-only.
    """

    mean: np.ndarray = attrs.field(converter=functools.partial(_frozen, name="mean"))
    std: np.ndarray = attrs.field(
        converter=functools.partial(_frozen, name="std"), validator=_positive
    )

    def __attrs_post_init__(self) -> None:
        _same_shape(self.mean, self.std, "mean", "std")

    def apply(self, x: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """Same as ``standardize_apply(self, x, dtype)``."""
        return standardize_apply(self, x, dtype)


@attrs.frozen(eq=False)
class MinMaxScaler:
    """Fitted state of :func:`minmax_fit`.

    Attributes:
        data_min: float64, shape ``x.shape[1:]``, the training minimum; read-only.
        data_max: float64, same shape, the training maximum; read-only.
        feature_range: ``(low, high)`` that ``data_min`` / ``data_max`` map to.
    """

    data_min: np.ndarray = attrs.field(converter=functools.partial(_frozen, name="data_min"))
    data_max: np.ndarray = attrs.field(converter=functools.partial(_frozen, name="data_max"))
    feature_range: tuple[float, float] = (0.0, 1.0)

    def __attrs_post_init__(self) -> None:
        _same_shape(self.data_min, self.data_max, "data_min", "data_max")

    def apply(self, x: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
        """Same as ``minmax_apply(self, x, dtype)``."""
        return minmax_apply(self, x, dtype)


def standardize_fit(x: npt.ArrayLike, *, eps: float = 1e-8) -> Standardizer:
    """Fit per-feature standardisation ``(x - mean) / std`` on training data.

    Statistics are computed in float64 whatever ``x``'s dtype.

    Args:
        x: Training data of shape ``(n, ...)``, int or float, finite.
        eps: A feature whose std is below ``eps`` counts as constant (std 1);
            a finite float > 0 (0 would let a constant feature divide by zero).

    Returns:
        A :class:`Standardizer` with ``mean`` and ``std`` of shape ``x.shape[1:]``.

    Raises:
        TypeError: If ``x`` is not numeric or ``eps`` not a float.
        ValueError: If ``x`` is empty, 1-D, or holds NaN/inf, or ``eps`` is not
            finite and > 0.
    """
    eps = positive_float(eps, "standardize_fit: eps")
    arr = _features(x, "x", "standardize_fit")
    mean = arr.mean(axis=0, dtype=np.float64)
    std = arr.std(axis=0, dtype=np.float64)
    return Standardizer(mean=mean, std=np.where(std < eps, 1.0, std))


def standardize_apply(
    state: Standardizer, x: npt.ArrayLike, dtype: npt.DTypeLike | None = None
) -> np.ndarray:
    """Standardise ``x`` with statistics fitted by :func:`standardize_fit`.

    Args:
        state: The fitted :class:`Standardizer`.
        x: Data of shape ``(m, *state.mean.shape)``.
        dtype: Output float dtype; default ``x``'s dtype if float, else float32.

    Returns:
        A new array ``(x - mean) / std`` of ``x``'s shape and the output dtype.

    Raises:
        TypeError: If ``state`` is not a Standardizer or ``x`` is not numeric.
        ValueError: If ``x``'s feature shape differs from the fitted one.
    """
    if not isinstance(state, Standardizer):
        raise TypeError(
            f"standardize_apply expects the Standardizer from standardize_fit; "
            f"got {type(state).__name__}."
        )
    arr = _features(x, "x", "standardize_apply")
    _check_feature_shape(arr, state.mean.shape, "standardize_apply")
    dt = _out_dtype(arr, dtype, "standardize_apply")
    return (arr.astype(dt, copy=False) - state.mean.astype(dt)) / state.std.astype(dt)


def minmax_fit(x: npt.ArrayLike, feature_range: tuple[float, float] = (0.0, 1.0)) -> MinMaxScaler:
    """Fit per-feature min-max scaling onto ``feature_range`` on training data.

    Args:
        x: Training data of shape ``(n, ...)``, int or float, finite.
        feature_range: ``(low, high)`` with ``low < high``.

    Returns:
        A :class:`MinMaxScaler` with ``data_min`` / ``data_max`` of shape
        ``x.shape[1:]``. Constant features map to ``low``.

    Raises:
        TypeError: If ``x`` is not numeric.
        ValueError: If ``x`` is empty, 1-D, holds NaN/inf, or the range is bad.
    """
    pair = tuple(feature_range) if isinstance(feature_range, tuple | list) else None
    if pair is None or len(pair) != 2 or not all(_real(v) for v in pair):
        raise TypeError(
            f"minmax_fit expects feature_range as (low, high) numbers; got {show(feature_range)}."
        )
    lo, hi = (to_float(v) for v in pair)  # an int past float range: inf, refused below
    # hi - lo must be finite too: it scales every value
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and math.isfinite(hi - lo)):
        raise ValueError(
            f"minmax_fit expects feature_range (low, high) with finite low < high; "
            f"got {(lo, hi)}. For [0, 1] pass (0.0, 1.0)."
        )
    arr = _features(x, "x", "minmax_fit")
    return MinMaxScaler(
        data_min=arr.min(axis=0).astype(np.float64),
        data_max=arr.max(axis=0).astype(np.float64),
        feature_range=(lo, hi),
    )


def minmax_apply(
    state: MinMaxScaler, x: npt.ArrayLike, dtype: npt.DTypeLike | None = None
) -> np.ndarray:
    """Scale ``x`` with the minimum and maximum fitted by :func:`minmax_fit`.

    Values outside the training range map outside ``feature_range``; they are
    not clipped, so test data is transformed exactly like training data.

    Args:
        state: The fitted :class:`MinMaxScaler`.
        x: Data of shape ``(m, *state.data_min.shape)``.
        dtype: Output float dtype; default ``x``'s dtype if float, else float32.

    Returns:
        A new array ``low + (x - min) / (max - min) * (high - low)``.

    Raises:
        TypeError: If ``state`` is not a MinMaxScaler or ``x`` is not numeric.
        ValueError: If ``x``'s feature shape differs from the fitted one.
    """
    if not isinstance(state, MinMaxScaler):
        raise TypeError(
            f"minmax_apply expects the MinMaxScaler from minmax_fit; got {type(state).__name__}."
        )
    arr = _features(x, "x", "minmax_apply")
    _check_feature_shape(arr, state.data_min.shape, "minmax_apply")
    dt = _out_dtype(arr, dtype, "minmax_apply")
    lo, hi = state.feature_range
    span = state.data_max - state.data_min
    scale = (hi - lo) / np.where(span > 0, span, 1.0)
    return (arr.astype(dt, copy=False) - state.data_min.astype(dt)) * scale.astype(dt) + dt.type(lo)


def one_hot(y: npt.ArrayLike, k: int, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Encode integer class labels as one-hot rows.

    Args:
        y: Labels of shape ``(n,)``, an integer dtype, values in ``0 .. k-1``.
        k: Number of classes, at most :data:`purenn.metrics.MAX_CLASSES` (10,000).
        dtype: Output dtype (float32 by default; any int or float dtype).

    Returns:
        Array of shape ``(n, k)``: row ``i`` is 1 at column ``y[i]``, 0 elsewhere.

    Raises:
        TypeError: If ``y`` is not an integer array or ``k`` not an int.
        ValueError: If ``y`` is not 1-D or holds labels outside ``0 .. k-1``, or
            ``k`` is above :data:`purenn.metrics.MAX_CLASSES`.
    """
    k = num_classes(k, "one_hot: k")
    arr = as_array(y, "one_hot: y")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(
            f"one_hot expects integer labels; got dtype {arr.dtype}. If they are whole "
            "numbers stored as floats, pass y.astype(np.int64)."
        )
    if arr.ndim != 1:
        raise ValueError(
            f"one_hot expects labels of shape (n,); got {arr.shape}. Flatten with y.ravel()."
        )
    if arr.size and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(
            f"one_hot expects labels in 0..{k - 1} (k={k}); got values {arr.min()}..{arr.max()}."
            " Pass the right number of classes k."
        )
    dt = np.dtype(dtype)
    if dt.kind not in "iuf":
        raise TypeError(f"one_hot: dtype must be an int or float dtype; got {dt}.")
    out = np.zeros((arr.shape[0], k), dtype=dt)
    out[np.arange(arr.shape[0]), arr] = 1
    return out


def flatten_images(x: npt.ArrayLike) -> np.ndarray:
    """Flatten each image to a vector: ``(n, h, w)`` or ``(n, c, h, w)`` -> ``(n, features)``.

    Args:
        x: Images of shape ``(n, ...)`` with at least 2 dimensions, any dtype.

    Returns:
        Shape ``(n, prod(x.shape[1:]))``, same dtype; a view of ``x`` when its
        memory layout allows (no copy), never written to.

    Raises:
        ValueError: If ``x`` has fewer than 2 dimensions.
    """
    arr = as_array(x, "flatten_images: x")
    if arr.ndim < 2:
        raise ValueError(
            f"flatten_images expects images of shape (n, h, w) or (n, c, h, w); got {arr.shape}."
        )
    # the explicit width, not -1, which NumPy cannot resolve for an empty batch
    return arr.reshape(arr.shape[0], math.prod(arr.shape[1:]))


def scale_images(x: npt.ArrayLike, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Map ``uint8`` pixel values 0..255 to floats in ``[0, 1]``.

    Args:
        x: Images, ``uint8`` of any shape, e.g. ``(n, 28, 28)``.
        dtype: Output float dtype, float32 by default.

    Returns:
        A new array ``x / 255`` of ``x``'s shape and the given dtype.

    Raises:
        TypeError: If ``x`` is not ``uint8`` or ``dtype`` is not a float dtype.
    """
    arr = as_array(x, "scale_images: x")
    if arr.dtype != np.uint8:
        raise TypeError(
            f"scale_images expects uint8 pixels 0..255; got dtype {arr.dtype}. If the images "
            "are already floats, they are probably scaled; otherwise use minmax_fit."
        )
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"scale_images: dtype must be a float dtype such as np.float32; got {dt}.")
    out = arr.astype(dt)
    out /= dt.type(255)  # our own new array: in-place is safe and saves a copy
    return out


def _labels_and_length(x: object, y: object, fn: str) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = as_array(x, f"{fn}: x"), as_array(y, f"{fn}: y")
    if xa.ndim < 1 or xa.shape[0] == 0:
        raise ValueError(f"{fn} expects x of shape (n, ...) with n >= 1; got {xa.shape}.")
    if ya.ndim not in (1, 2) or ya.shape[0] != xa.shape[0]:
        raise ValueError(
            f"{fn} expects y of shape (n,) or (n, k) with n = len(x) = {xa.shape[0]}; "
            f"got {ya.shape}. x and y must hold the same samples."
        )
    return xa, ya


def train_val_split(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    val_fraction: float,
    rng: np.random.Generator | int,
    stratify: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split samples into a training and a validation set, shuffled with ``rng``.

    With ``stratify=True`` each class keeps its share: per class,
    ``val_fraction`` of its samples go to validation, rounded so that the total
    is exactly ``round(val_fraction * n)`` (largest remainders get the extra).

    Args:
        x: Samples of shape ``(n, ...)``.
        y: Labels of shape ``(n,)`` (integers when stratifying) or one-hot
            ``(n, k)`` (classes taken by argmax).
        val_fraction: Share of samples for validation, in ``(0, 1)``.
        rng: A ``numpy.random.Generator`` or an int seed. Same seed, same split.
        stratify: Keep class proportions in both parts.

    Returns:
        ``(x_train, y_train), (x_val, y_val)``: new arrays, each in shuffled
        order, with the dtypes of ``x`` and ``y``.

    Raises:
        TypeError: On a bad ``rng``, or with ``stratify`` labels that are neither
            integers ``(n,)`` nor numeric one-hot ``(n, k)``.
        ValueError: On mismatched lengths, or a fraction leaving either part empty.
    """
    xa, ya = _labels_and_length(x, y, "train_val_split")
    stratify = check_flag(stratify, "stratify")
    if rng is None:
        raise ValueError(
            "train_val_split needs randomness: pass rng=np.random.default_rng(seed) or an "
            "int seed, e.g. rng=0. (It never uses the global NumPy random state.)"
        )
    gen = as_generator(rng)
    if not (_real(val_fraction) and 0.0 < to_float(val_fraction) < 1.0):
        raise ValueError(
            f"train_val_split expects val_fraction in (0, 1), e.g. 0.1; got {show(val_fraction)}."
        )
    n = xa.shape[0]
    n_val = round(float(val_fraction) * n)
    if not 0 < n_val < n:
        raise ValueError(
            f"train_val_split: val_fraction={val_fraction} of {n} samples gives {n_val} for "
            "validation; both parts need at least one sample. Use more data or another fraction."
        )
    if stratify:
        if ya.ndim == 2 and ya.dtype.kind in "biuf":  # one-hot (or scores): argmax
            if ya.dtype.kind == "f" and not np.isfinite(ya).all():
                raise ValueError(
                    "train_val_split with stratify=True takes the class of (n, k) labels as "
                    "their argmax, which NaN or inf make meaningless; y holds non-finite values"
                )
            classes = ya.argmax(axis=1)
        elif ya.dtype.kind in "iu" and ya.dtype != np.bool_:
            classes = ya
        else:
            raise TypeError(
                f"train_val_split with stratify=True expects integer labels (n,) or one-hot "
                f"(n, k); got dtype {ya.dtype} of shape {ya.shape}. Pass stratify=False for "
                "continuous targets, or y.astype(np.int64)."
            )
        val_idx = _stratified_val(classes, float(val_fraction), n_val, gen)
    else:
        val_idx = gen.permutation(n)[:n_val]
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    train_idx = gen.permutation(np.flatnonzero(~mask))
    val_idx = gen.permutation(val_idx)
    return (xa[train_idx], ya[train_idx]), (xa[val_idx], ya[val_idx])


def _stratified_val(
    classes: np.ndarray, fraction: float, n_val: int, gen: np.random.Generator
) -> np.ndarray:
    """Indices for validation: per class, its quota of a random permutation."""
    values, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    extra = n_val - int(take.sum())
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:extra]] += 1
    chosen = [gen.permutation(np.flatnonzero(inverse == c))[: take[c]] for c in range(len(values))]
    return np.concatenate(chosen)


def batches(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    batch_size: int,
    rng: np.random.Generator | int | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches ``(xb, yb)`` for one epoch.

    Arguments are checked when ``batches`` is called, not at the first batch.

    Without ``rng`` the batches are in order and are views (slices) of ``x`` and
    ``y``: no copying. With ``rng`` one permutation is drawn per call and each
    batch gathers its rows (``x[idx]``), so the full data set is never copied.
    Pass the same Generator every epoch to get a fresh shuffle each time; an
    int seed gives the same order on every call.

    Args:
        x: Samples of shape ``(n, ...)``.
        y: Labels of shape ``(n,)`` or ``(n, k)``.
        batch_size: Samples per batch (the last one may be smaller).
        rng: None for in-order batches, or a Generator / int seed to shuffle.
        drop_last: Skip a final batch smaller than ``batch_size``.

    Returns:
        An iterator of ``(xb, yb)`` with ``xb.shape == (b, *x.shape[1:])``.
        Treat the batches as read-only: unshuffled ones share memory with ``x``.

    Raises:
        TypeError: On a bad ``batch_size`` or ``rng``.
        ValueError: On mismatched lengths or empty ``x``.
    """
    xa, ya = _labels_and_length(x, y, "batches")
    batch_size = positive_int(batch_size, "batch_size")
    gen = None if rng is None else as_generator(rng)
    if not isinstance(drop_last, (bool, np.bool_)):
        raise TypeError(f"batches: drop_last must be True or False; got {show(drop_last)}.")
    n = xa.shape[0]
    stop = n - n % batch_size if drop_last else n
    order = None if gen is None else gen.permutation(n)
    return _batch_iter(xa, ya, batch_size, stop, order)


def _batch_iter(
    x: np.ndarray, y: np.ndarray, batch_size: int, stop: int, order: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        if order is None:
            yield x[start:end], y[start:end]
        else:
            idx = order[start:end]
            yield x[idx], y[idx]
