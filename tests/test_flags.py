"""Boolean flags take a bool (or a NumPy bool) and nothing else: a truthy string
such as ``train="no"`` is refused with a TypeError naming the flag, never read as
True (issue 14: ``forward(train="no")`` used to run dropout)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import purenn as pn
from purenn import metrics, plots, preprocessing
from purenn.experiment import prepare_images

SPEC = pn.Network(4, [pn.Dense(8), pn.Dropout(0.5), pn.Dense(3, "softmax")])
PARAMS = pn.init(SPEC, 0)
X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
Y = np.arange(12) % 3
HISTORY = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
IMAGES = np.zeros((4, 6, 6), np.uint8)
LABELS = np.zeros(4, np.int64)
ARGS = argparse.Namespace(model="mlp", dtype="float32", augment=True)


def fit(**flag):
    return pn.fit(
        PARAMS, (X, Y), optimizer=pn.optim.sgd(0.1), epochs=1, batch_size=4, rng=0,
        verbose=0, **flag,
    )  # fmt: skip


def prepare(**flag):
    return prepare_images((IMAGES, LABELS), None, (IMAGES, LABELS), ARGS, ("a", "b", "c"), **flag)


# (call with one flag, the flag's name, whether None means "decide for me")
FLAGS = [
    (lambda v: pn.forward(PARAMS, X, train=v, rng=0), "train", False),
    (lambda v: pn.loss(PARAMS, X, Y, train=v, rng=0), "train", False),
    (lambda v: metrics.evaluate(PARAMS, X, Y, confusion=v), "confusion", False),
    (lambda v: metrics.evaluate(PARAMS, X, Y, check_finite=v), "check_finite", False),
    (lambda v: preprocessing.train_val_split(X, Y, 0.5, rng=0, stratify=v), "stratify", False),
    (lambda v: list(preprocessing.batches(X, Y, 5, drop_last=v)), "drop_last", False),
    (lambda v: fit(shuffle=v), "shuffle", False),
    (lambda v: fit(restore_best=v), "restore_best", False),
    (lambda v: fit(drop_last=v), "drop_last", False),
    (lambda v: plots.loss_curves(HISTORY, log_scale=v), "log_scale", True),
    (lambda v: plots.confusion_matrix(np.eye(3, dtype=int), normalize=v), "normalize", False),
    (lambda v: plots.confusion_matrix(np.eye(3, dtype=int), annotate=v), "annotate", True),
    (lambda v: prepare(flip=v), "flip", False),
    (lambda v: prepare(distort=v), "distort", False),
]
IDS = [f"{i}-{name}" for i, (_, name, _) in enumerate(FLAGS)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(("call", "name", "optional"), FLAGS, ids=IDS)
def test_truthy_non_bools_are_refused(call, name, optional):
    bad = ["no", "False", 1, 0, 1.0, np.array([True]), [True]]
    if not optional:
        bad.append(None)
    for value in bad:
        with pytest.raises(TypeError, match=rf"{name} must be True or False; got "):
            call(value)


@pytest.mark.parametrize(("call", "name", "optional"), FLAGS, ids=IDS)
def test_python_and_numpy_bools_are_accepted(call, name, optional):
    for value in (True, False, np.True_, np.False_, *([None] if optional else [])):
        call(value)


def test_forward_train_no_does_not_run_dropout():
    """The issue's own case: before, "no" was truthy and dropout ran."""
    with pytest.raises(TypeError, match=r"train must be True or False; got 'no' \(str\)"):
        pn.forward(PARAMS, X, train="no", rng=0)
    # np.bool_ False is evaluation mode: the same as train=False, no randomness drawn
    np.testing.assert_array_equal(
        pn.forward(PARAMS, X, train=np.False_), pn.forward(PARAMS, X, train=False)
    )


def test_sklearn_flags_are_strict():
    sk = pytest.importorskip("purenn.sklearn")
    xs, ys = X.astype(np.float64), Y
    for name in ("shuffle", "early_stopping"):
        est = sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, **{name: "no"})
        with pytest.raises(ValueError, match=rf"{name} must be True or False; got 'no'"):
            est.fit(xs, ys)
    for bad in ("1", -1, None):
        est = sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, verbose=bad)
        with pytest.raises(ValueError, match=r"verbose must be an int >= 0"):
            est.fit(xs, ys)
    for name, bad in (("max_iter", True), ("alpha", 10**400), ("learning_rate_init", True)):
        est = sk.MLPClassifier(hidden_layer_sizes=(4,), **{name: bad})
        with pytest.raises(ValueError, match=rf"{name} must be"):
            est.fit(xs, ys)
