"""Metrics: accuracy, confusion matrix, precision/recall/F1, evaluate."""

from __future__ import annotations

import numpy as np
import pytest

import purenn
from purenn import metrics


def test_accuracy_from_labels_scores_and_one_hot():
    y = np.array([0, 1, 2, 2, 1])
    pred = np.array([0, 2, 2, 2, 1])
    assert metrics.accuracy(y, pred) == 0.8
    scores = np.eye(3)[pred] * 0.7 + 0.1
    assert metrics.accuracy(np.eye(3)[y], scores) == 0.8
    assert type(metrics.accuracy(y, pred)) is float


def test_confusion_matrix_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    want = np.zeros((4, 4), dtype=np.int64)
    for t, p in zip(y, pred, strict=True):
        want[t, p] += 1
    cm = metrics.confusion_matrix(y, pred)
    np.testing.assert_array_equal(cm, want)
    assert cm.dtype == np.int64 and cm.sum() == 200
    wide = metrics.confusion_matrix(y, pred, num_classes=6)
    assert wide.shape == (6, 6) and wide[4:].sum() == 0


def test_precision_recall_f1_by_hand():
    # rows are true classes: class 0 has 3 samples (2 right, 1 taken for class 1),
    # class 1 has 3 (2 right, 1 taken for class 2), class 2 none but is predicted once
    cm = np.array([[2, 1, 0], [0, 2, 1], [0, 0, 0]])
    scores = metrics.precision_recall_f1(cm)
    np.testing.assert_allclose(scores["precision"], [1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(scores["recall"], [2 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(scores["f1"], [0.8, 2 / 3, 0.0])
    np.testing.assert_array_equal(scores["support"], [3, 3, 0])
    assert scores["precision"].dtype == np.float64


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: metrics.accuracy([0, 1], np.array([0, 1])), TypeError, "NumPy array"),
        (lambda: metrics.accuracy(np.array([0.0, 1.0]), np.array([0, 1])), TypeError, "int"),
        (lambda: metrics.accuracy(np.array([0, 1]), np.array([0])), ValueError, "2 samples"),
        (lambda: metrics.accuracy(np.array([], int), np.array([], int)), ValueError, "empty"),
        (
            lambda: metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3),
            ValueError,
            r"in \[0, 2\]",
        ),
        (
            lambda: metrics.confusion_matrix(np.array([0, -1]), np.array([0, 1])),
            ValueError,
            "from -1",
        ),
        (lambda: metrics.precision_recall_f1(np.ones((2, 3))), ValueError, "square"),
        (lambda: metrics.precision_recall_f1(-np.ones((2, 2))), ValueError, "non-negative"),
    ],
)
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def classifier(dtype=np.float32):
    spec = purenn.Network(
        6, [purenn.Dense(8, "tanh"), purenn.Dropout(0.3), purenn.Dense(4, "softmax")]
    )
    params = purenn.init(spec, rng=0, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(57, 6)).astype(dtype)
    y = rng.integers(0, 4, size=57)
    return params, x, y


def test_evaluate_agrees_with_loss_and_predict():
    params, x, y = classifier(np.float64)
    result = metrics.evaluate(params, x, y, batch_size=10)
    assert set(result) == {"loss", "accuracy", "confusion", "n"}
    assert result["n"] == 57
    assert result["loss"] == pytest.approx(purenn.loss(params, x, y), rel=1e-12)
    pred = purenn.predict(params, x)
    assert result["accuracy"] == metrics.accuracy(y, pred)
    np.testing.assert_array_equal(result["confusion"], metrics.confusion_matrix(y, pred, 4))
    one_hot = metrics.evaluate(params, x, np.eye(4)[y])
    assert one_hot["accuracy"] == result["accuracy"]
    assert one_hot["loss"] == pytest.approx(result["loss"], rel=1e-12)


def test_evaluate_float32_batch_size_only_changes_rounding():
    params, x, y = classifier(np.float32)
    a, b = metrics.evaluate(params, x, y, batch_size=7), metrics.evaluate(params, x, y)
    assert a["accuracy"] == b["accuracy"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    np.testing.assert_array_equal(a["confusion"], b["confusion"])


def test_evaluate_binary_multilabel_and_regression():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3))
    binary = purenn.init(
        purenn.Network(3, [purenn.Dense(1, "sigmoid")], "binary_cross_entropy"), 0, np.float64
    )
    yb = (x[:, :1] > 0).astype(np.float64)
    r = metrics.evaluate(binary, x, yb)
    pred = purenn.predict(binary, x)
    assert r["accuracy"] == metrics.accuracy(yb[:, 0].astype(int), pred)
    assert r["confusion"].shape == (2, 2) and r["confusion"].sum() == 30
    multi = purenn.init(
        purenn.Network(3, [purenn.Dense(2, "sigmoid")], "binary_cross_entropy"), 0, np.float64
    )
    ym = (x[:, :2] > 0).astype(np.float64)
    r = metrics.evaluate(multi, x, ym)
    assert r["confusion"] is None
    assert r["accuracy"] == np.mean(purenn.predict(multi, x) == ym)
    reg = purenn.init(purenn.Network(3, [purenn.Dense(2, "linear")], "mse"), 0, np.float64)
    r = metrics.evaluate(reg, x, x[:, :2])
    assert r["accuracy"] is None and r["confusion"] is None
    assert r["loss"] == pytest.approx(purenn.loss(reg, x, x[:, :2]), rel=1e-12)


def test_evaluate_is_pure_on_read_only_inputs():
    params, x, y = classifier()
    for a in (x, y, *purenn.tree_leaves(params)):
        a.flags.writeable = False
    r1, r2 = metrics.evaluate(params, x, y), metrics.evaluate(params, x, y)
    assert r1["loss"] == r2["loss"] and np.array_equal(r1["confusion"], r2["confusion"])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "images", "strided", "transposed", "flat"])
def test_first_nonfinite_finds_the_first_bad_sample(dtype, layout):
    """The one-pass screen (row sums, or one sum when not contiguous) never hides a
    NaN or inf, and finite values whose sums overflow are still reported finite."""
    rng = np.random.default_rng(0)
    shape = {"images": (40, 1, 3, 4), "flat": (40,)}.get(layout, (40, 6))
    base = rng.random((80, *shape[1:]) if layout == "strided" else shape).astype(dtype)
    a = {"strided": lambda b: b[::2], "transposed": lambda b: b.T.copy().T}.get(layout, lambda b: b)
    assert metrics.first_nonfinite(a(base)) is None
    for bad, at in ((np.nan, 33), (np.inf, 7), (-np.inf, 0)):
        b = base.copy()
        b[(2 * at if layout == "strided" else at, *([0] * (b.ndim - 1)))] = bad
        assert metrics.first_nonfinite(a(b)) == at
    huge = np.full(shape, np.finfo(dtype).max, dtype)  # every sum overflows to inf
    assert metrics.first_nonfinite(huge) is None


def test_evaluate_refuses_bad_data():
    params, x, y = classifier()
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at sample 5"):
        metrics.evaluate(params, bad, y)
    with pytest.raises(ValueError, match="labels must be class indices"):
        metrics.evaluate(params, x, y + 4)
    with pytest.raises(TypeError, match="dtype"):
        metrics.evaluate(params, x.astype(np.float64), y)
    with pytest.raises(ValueError, match="batch_size"):
        metrics.evaluate(params, x, y, batch_size=0)


def test_scores_of_a_non_numeric_dtype_are_refused():
    y = np.array([0, 1])
    objects = np.array([[None, None], [None, None]], dtype=object)
    for scores in (objects, np.array([["a", "b"]] * 2)):
        with pytest.raises(TypeError, match="must hold real scores or one-hot labels; got dtype"):
            metrics.accuracy(y, scores)
    assert metrics.accuracy(y, np.array([[True, False], [False, True]])) == 1.0
