"""purenn.sklearn: scikit-learn's own estimator checks on both estimators, a
Pipeline with a scaler inside GridSearchCV, partial_fit and early stopping
(the estimators without scikit-learn: tests/test_sklearn_optional.py).

Checks that skip themselves: ``check_array_api_input`` (needs SCIPY_ARRAY_API=1
and array-api-compat; the estimators compute in NumPy only) and the
``*_data_not_an_array`` checks when pandas is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import purenn
from purenn.datasets import make_moons, make_sine
from purenn.sklearn import MLPClassifier, MLPRegressor

sklearn = pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_with_a_scaler_in_grid_search():
    x, y = make_moons(300, noise=0.2, rng=0, dtype=np.float64)
    x = x * [100.0, 0.01] + [5.0, -3.0]  # badly scaled features: the scaler matters
    pipe = make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01, random_state=0
        ),
    )
    grid = {"mlpclassifier__hidden_layer_sizes": [(2,), (32, 32)], "mlpclassifier__alpha": [1e-4]}
    search = GridSearchCV(pipe, grid, cv=3).fit(x, y)
    assert set(search.cv_results_["params"][0]) == set(grid)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] == (32, 32)
    assert search.best_score_ > 0.9
    assert search.score(x, y) > 0.9
    best = search.best_estimator_[-1]
    assert best.network_.layer_names() == ("dense_0", "dense_1", "dense_2")
    assert list(best.classes_) == [0, 1]


def test_classifier_labels_probabilities_and_reproducibility():
    x, y = make_moons(200, rng=1, dtype=np.float64)
    names = np.array(["left", "right"])[y]
    a = MLPClassifier((16,), max_iter=30, random_state=3).fit(x, names)
    b = MLPClassifier((16,), max_iter=30, random_state=3).fit(x, names)
    assert list(a.classes_) == ["left", "right"]
    assert set(a.predict(x)) <= {"left", "right"}
    proba = a.predict_proba(x)
    assert proba.shape == (200, 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(a.classes_[proba.argmax(axis=1)], a.predict(x))
    assert purenn.tree_equal(a.params_, b.params_)  # same random_state, same bits
    assert a.n_iter_ == len(a.loss_curve_) <= 30 and a.loss_ == a.loss_curve_[-1]
    c = MLPClassifier((16,), max_iter=30, random_state=4).fit(x, names)
    assert not purenn.tree_equal(a.params_, c.params_)


def test_partial_fit_continues_training_and_needs_the_classes_first():
    x, y = make_moons(200, rng=2, dtype=np.float64)
    clf = MLPClassifier((16,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(x, y)
    for _ in range(15):
        clf.partial_fit(x, y, classes=[0, 1])
    assert clf.n_iter_ == 15 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(np.zeros((4, 3)), y[:4])
    with pytest.raises(ValueError, match=r"labels \[7\] not in classes"):
        clf.partial_fit(x[:2], [0, 7])
    reg = MLPRegressor((16,), random_state=0, learning_rate_init=0.01)
    xs, ys = make_sine(200, rng=0, dtype=np.float64)
    for _ in range(10):
        reg.partial_fit(xs, ys[:, 0])
    assert reg.predict(xs).shape == (200,) and reg.loss_curve_[-1] < reg.loss_curve_[0]


def test_regressor_single_and_multi_output_and_early_stopping(tmp_path):
    xs, ys = make_sine(300, noise=0.05, rng=0, dtype=np.float64)
    reg = MLPRegressor((32, 32), "tanh", max_iter=200, learning_rate_init=0.01, random_state=0)
    reg.fit(xs, ys[:, 0])
    assert reg.predict(xs).shape == (300,) and reg.score(xs, ys[:, 0]) > 0.9
    two = np.hstack([ys, -ys])
    multi = MLPRegressor((16,), max_iter=20, random_state=0).fit(xs, two)
    assert multi.predict(xs).shape == (300, 2)
    stopper = MLPRegressor((16,), max_iter=500, early_stopping=True, n_iter_no_change=3,
                           learning_rate_init=0.05, random_state=0).fit(xs, ys[:, 0])  # fmt: skip
    h = stopper.history_
    assert h["stopped_early"] and stopper.n_iter_ < 500 and h["val_loss"][0] is not None
    path = purenn.save(tmp_path / "reg.npz", reg.params_)
    np.testing.assert_allclose(purenn.forward(purenn.load(path).params, xs)[:, 0], reg.predict(xs))


def test_bad_hyperparameters_are_refused_at_fit():
    x, y = make_moons(20, rng=0, dtype=np.float64)
    for kwargs, message in (
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes must be positive"),
        ({"max_iter": 0}, "max_iter must be a positive int"),
        ({"learning_rate_init": -1.0}, "learning_rate_init must be a positive"),
        ({"batch_size": 0}, "batch_size must be 'auto' or a positive int"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ):
        with pytest.raises(ValueError, match=message):
            MLPClassifier(**kwargs).fit(x, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(x, np.zeros(20, int))
