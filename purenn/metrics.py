"""Classification metrics and whole-data-set evaluation.

Conventions: labels are int class indices of shape ``(n,)``; predictions may be
labels ``(n,)`` or scores ``(n, k)`` (probabilities or logits, reduced by
argmax). A confusion matrix has the *true* class along rows and the
*predicted* class along columns, ``cm[i, j]`` = samples of class ``i``
predicted as ``j`` (scikit-learn's layout).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from purenn._checks import MAX_CLASSES, as_array, check_flag, positive_int
from purenn._checks import num_classes as check_num_classes
from purenn.core import check_inputs, logits
from purenn.tree import SPEC_KEY

__all__ = [
    "MAX_CLASSES",
    "accuracy",
    "confusion_matrix",
    "evaluate",
    "first_nonfinite",
    "precision_recall_f1",
]


def _as_labels(a: Any, name: str) -> np.ndarray:
    """Labels ``(n,)`` from int labels, or from scores/one-hot ``(n, k)`` by argmax."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(a).__name__}")
    if a.ndim == 2:
        if a.dtype.kind not in "iufb":
            raise TypeError(
                f"{name} of shape (n, k) must hold real scores or one-hot labels; got dtype "
                f"{a.dtype}"
            )
        if a.shape[1] == 0:
            raise ValueError(f"{name} has shape {a.shape}: no classes")
        return a.argmax(axis=1)
    if a.ndim != 1:
        raise ValueError(
            f"{name} must be labels of shape (n,) or scores of shape (n, k); got {a.shape}"
        )
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"{name} of shape (n,) must hold int class labels; got dtype {a.dtype}. "
            "Use .astype(np.int64), or pass scores of shape (n, k)"
        )
    return a


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} samples but y_pred has {p.shape[0]}")
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; pass at least one sample")
    return t, p


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The fraction of samples whose predicted class is the true one.

    Args:
        y_true: int labels ``(n,)`` or one-hot ``(n, k)``.
        y_pred: int labels ``(n,)`` or scores ``(n, k)`` (argmax taken).

    Returns:
        A Python float in ``[0, 1]``.

    Raises:
        TypeError, ValueError: for non-arrays, float 1-D labels, mismatched
            lengths or empty inputs.
    """
    t, p = _pair(y_true, y_pred)
    return float(np.count_nonzero(t == p)) / t.shape[0]


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """Count samples by (true class, predicted class).

    Args:
        y_true: int labels ``(n,)`` or one-hot ``(n, k)``.
        y_pred: int labels ``(n,)`` or scores ``(n, k)``.
        num_classes: ``k``; by default the largest label seen plus one (or the
            score width when scores are given). At most :data:`MAX_CLASSES`.

    Returns:
        int64 array of shape ``(k, k)``: ``cm[i, j]`` counts class ``i`` predicted
        as ``j``; rows sum to the class supports.

    Raises:
        TypeError: if ``num_classes`` is not an int.
        ValueError: for labels outside ``[0, k)``, mismatched lengths, empty input,
            or a ``k`` below 1 or above :data:`MAX_CLASSES`.
    """
    t, p = _pair(y_true, y_pred)
    if num_classes is None:
        widths = [a.shape[1] for a in (y_true, y_pred) if a.ndim == 2]
        k = max([int(t.max()) + 1, int(p.max()) + 1, *widths])
        if k > MAX_CLASSES:
            raise ValueError(
                f"the labels reach {k - 1:,}, more than the {MAX_CLASSES:,} classes a "
                "confusion matrix may have: labels must be class indices 0..k-1"
            )
    else:
        k = check_num_classes(num_classes, "num_classes")
    for name, a in (("y_true", t), ("y_pred", p)):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"{name} labels must be in [0, {k - 1}] for {k} classes; got values from "
                f"{lo} to {hi}. Pass num_classes= to widen the matrix"
            )
    flat = t.astype(np.int64) * k + p.astype(np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def precision_recall_f1(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix.

    ``precision[j] = cm[j, j] / sum_i cm[i, j]`` (of those predicted ``j``, how
    many are ``j``); ``recall[i] = cm[i, i] / sum_j cm[i, j]``;
    ``f1 = 2 p r / (p + r)``. A class never predicted (or never present) gets
    0.0 where the ratio is 0/0, as scikit-learn's ``zero_division=0``.

    Args:
        confusion: a ``(k, k)`` matrix from :func:`confusion_matrix` (or nested lists).

    Returns:
        ``{"precision", "recall", "f1"}``: float64 arrays ``(k,)``, and
        ``"support"``: int64 ``(k,)``, the true count of each class.

    Raises:
        ValueError: for a non-square matrix or negative counts.
    """
    cm = as_array(confusion, "confusion")
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion must be a square (k, k) matrix; got shape {cm.shape}")
    if cm.dtype.kind not in "iuf" or (cm < 0).any():
        raise ValueError("confusion must hold non-negative counts")
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": actual.astype(np.int64),
    }


# --------------------------------------------------------------------------- evaluate


def first_nonfinite(a: np.ndarray) -> int | None:
    """Index of the first sample holding NaN or inf (None if all finite), chunked.

    Raises:
        TypeError: if ``a`` is not a NumPy array.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"first_nonfinite expects a NumPy array a; got {type(a).__name__}")
    if a.ndim == 0:
        raise ValueError("first_nonfinite expects an array of samples (ndim >= 1); got a 0-d array")
    if a.dtype.kind not in "fc" or a.shape[0] == 0:
        return None
    # One fast pass: a sum is finite exactly when no element is NaN or inf (or
    # when finite values overflow it); only then search sample by sample. The
    # row sums of a contiguous array are one BLAS matrix-vector product, which
    # reads the data on every core (twice as fast as a.sum() on two cores).
    with np.errstate(over="ignore", invalid="ignore"):  # overflow only means: look closer
        if a.flags.c_contiguous and a.ndim > 1:
            sums = a.reshape(a.shape[0], -1) @ np.ones(a[0].size, a.dtype)
        else:
            sums = a.sum()
    if np.isfinite(sums).all():
        return None
    rows = max(1, (1 << 22) // max(1, a[0].size))
    for start in range(0, a.shape[0], rows):
        bad = ~np.isfinite(a[start : start + rows])
        if bad.any():
            return start + int(np.argwhere(bad)[0][0])
    return None


def evaluate(
    params: dict,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 1024,
    confusion: bool = True,
    check_finite: bool = True,
) -> dict[str, Any]:
    """Loss, accuracy and confusion matrix on a whole data set (evaluation mode).

    Args:
        params: a tree from :func:`purenn.init`.
        x: inputs ``(n, *input_shape)`` in the params' dtype.
        y: targets as the loss takes them (int labels ``(n,)`` or one-hot for
            cross-entropy; ``(n, k)`` for the other built-in losses).
        batch_size: samples per forward pass (memory only; results agree up
            to float rounding).
        confusion: also compute the confusion matrix (None for a network of
            more than :data:`MAX_CLASSES` outputs).
        check_finite: refuse NaN or inf in ``x`` and ``y`` (one fast pass;
            ``fit`` checks its validation data once and then skips it).

    Returns:
        Plain data: ``{"loss": float, "accuracy": float | None,
        "confusion": int64 (k, k) array | None, "n": int}``. The loss is the
        mean over all samples. Accuracy and confusion are what the network's
        loss defines: for a single-sigmoid output the confusion is ``(2, 2)`` on
        0/1 labels; several sigmoids get elementwise accuracy and no confusion;
        a regression loss gets neither (None).

    Raises:
        TypeError, ValueError: for malformed params or data, or NaN/inf inputs.
    """
    confusion = check_flag(confusion, "confusion")
    check_finite = check_flag(check_finite, "check_finite")
    x, y = check_inputs(params, x, y)
    loss_fn = params[SPEC_KEY].loss
    batch_size = positive_int(batch_size, "batch_size")
    if check_finite:
        for name, a in (("x", x), ("y", y)):
            bad = first_nonfinite(a)
            if bad is not None:
                raise ValueError(
                    f"{name} holds NaN or inf (first at sample {bad}); clean the data first"
                )
    scored = loss_fn.has_accuracy
    truth = loss_fn.labels(y) if scored else None
    n = x.shape[0]
    loss_sum, correct = 0.0, 0
    preds = []
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        out = logits(params, xb)
        loss_sum += loss_fn.value(out, yb) * xb.shape[0]
        if scored:
            pred = loss_fn.predict(out)
            correct += int(np.count_nonzero(pred == truth[start : start + batch_size]))
            preds.append(pred)
    result: dict[str, Any] = {"loss": loss_sum / n, "accuracy": None, "confusion": None, "n": n}
    if scored:
        result["accuracy"] = correct / truth.size
        k = loss_fn.num_classes(params[SPEC_KEY].output_shape)
        if confusion and k is not None and k <= MAX_CLASSES:  # else too big to count
            result["confusion"] = confusion_matrix(truth, np.concatenate(preds), num_classes=k)
    return result
