"""scikit-learn estimators around purenn: :class:`MLPClassifier` and :class:`MLPRegressor`.

::

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from purenn.sklearn import MLPClassifier

    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3).fit(x, y)

They follow scikit-learn's conventions (``get_params``/``set_params``, ``fit``,
``partial_fit``, ``predict``, ``predict_proba``, ``score``, ``classes_``,
``n_features_in_``, ``random_state``; parameter names as in
``sklearn.neural_network``) and pass ``sklearn.utils.estimator_checks.check_estimator``.
This module imports without scikit-learn: then the estimators implement the
same methods themselves (without scikit-learn's input validation helpers,
tags or ``clone``), so a script that only needs ``fit``/``predict`` runs anywhere.

Training is :func:`purenn.fit` with Adam (``learning_rate_init``, ``alpha`` as
L2 weight decay), one epoch per ``max_iter`` step. As in scikit-learn, training
stops once the training loss has not improved by ``tol`` for
``n_iter_no_change`` epochs (a :class:`purenn.callbacks.EarlyStopping` on
``train_loss``); with ``early_stopping=True`` a stratified
``validation_fraction`` is held out instead and its loss is watched, and the
best epoch's params are kept. The fitted network is in ``params_`` (a purenn
params tree: ``purenn.save(path, est.params_)`` works), the history in
``history_``.

Inputs are cast to ``dtype`` (float64 by default, as scikit-learn computes;
float32 on request). Inputs are not scaled: put a ``StandardScaler`` first.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

try:  # scikit-learn is optional: its base classes and validators when installed
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    HAVE_SKLEARN = False

from purenn._checks import is_finite_real, show
from purenn.callbacks import EarlyStopping
from purenn.core import forward, init, predict, train_pass
from purenn.layers import Dense
from purenn.network import Network
from purenn.optim import adam
from purenn.preprocessing import batches, train_val_split
from purenn.training import fit

__all__ = ["HAVE_SKLEARN", "MLPClassifier", "MLPRegressor"]


if not HAVE_SKLEARN:

    class NotFittedError(ValueError, AttributeError):
        """Raised when predicting with an estimator that has not been fitted."""

    class BaseEstimator:
        """The parts of scikit-learn's ``BaseEstimator`` the estimators need."""

        @classmethod
        def _param_names(cls) -> list[str]:
            import inspect

            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._param_names()}

        def set_params(self, **params: Any) -> BaseEstimator:
            valid = self._param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {type(self).__name__}; "
                        f"valid parameters are {valid}"
                    )
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
            """Mean accuracy of ``predict(X)`` against ``y``."""
            hits = np.asarray(self.predict(X)) == np.asarray(y)
            return float(np.average(hits, weights=sample_weight))

    class RegressorMixin:
        _estimator_type = "regressor"

        def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
            """The coefficient of determination R^2 of ``predict(X)``."""
            y = np.asarray(y, dtype=np.float64)
            pred = np.asarray(self.predict(X), dtype=np.float64).reshape(y.shape)
            w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
            resid = np.average((y - pred) ** 2, axis=0, weights=w)
            total = np.average((y - np.average(y, axis=0, weights=w)) ** 2, axis=0, weights=w)
            r2 = np.where(total > 0, 1 - resid / np.where(total > 0, total, 1), 0.0)
            return float(np.mean(r2))

    def check_is_fitted(estimator: Any) -> None:
        if not hasattr(estimator, "params_"):
            raise NotFittedError(
                f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )

    def check_classification_targets(y: np.ndarray) -> None:
        if y.dtype.kind == "f" and np.any(y != np.round(y)):
            raise ValueError("Unknown label type: continuous targets; a classifier needs labels")

    def validate_data(estimator: Any, X: Any, y: Any = "no_validation", reset: bool = True,
                      **kwargs: Any) -> Any:  # fmt: skip
        """numpy-only stand-in for scikit-learn's input checks."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D array for X; got {X.ndim}D with shape {X.shape}")
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric; got dtype {X.dtype}")
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"X has shape {X.shape}; at least one sample and feature needed")
        if not np.isfinite(X).all():
            raise ValueError("Input X contains NaN or infinity")
        if reset:
            estimator.n_features_in_ = X.shape[1]
        elif X.shape[1] != estimator.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                f"{estimator.n_features_in_} features as input"
            )
        if isinstance(y, str) and y == "no_validation":
            return X
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if y.ndim == 2 and y.shape[1] == 1 and not kwargs.get("multi_output"):
            y = y.ravel()
        if y.dtype.kind in "fc" and not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity")
        return X, y


def _seed(random_state: Any) -> np.random.Generator:
    """A Generator from ``random_state`` (None: fresh entropy, as scikit-learn does)."""
    if random_state is None or isinstance(random_state, numbers.Integral | np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):  # scikit-learn's own kind
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or a RandomState; got "
        f"{show(random_state)}"
    )


class _MLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, checks, training."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        alpha: float = 1e-4,
        batch_size: Any = "auto",
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        dtype: str = "float64",
        verbose: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.verbose = verbose

    # ---------------------------------------------------------------- pieces

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive ints, e.g. (100,) or (64, 32); got "
                f"{self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        problems = []
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                problems.append(f"{name} must be a positive int; got {show(value)}")
        for name in ("alpha", "tol"):
            value = getattr(self, name)
            if not is_finite_real(value) or value < 0:
                problems.append(f"{name} must be a float >= 0; got {show(value)}")
        lr = self.learning_rate_init
        if not is_finite_real(lr) or lr <= 0:
            problems.append(f"learning_rate_init must be a positive float; got {show(lr)}")
        if not (isinstance(self.validation_fraction, numbers.Real)
                and 0 < self.validation_fraction < 1):  # fmt: skip
            problems.append(
                f"validation_fraction must be in (0, 1); got {show(self.validation_fraction)}"
            )
        for name in ("shuffle", "early_stopping"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                problems.append(f"{name} must be True or False; got {show(value)}")
        verbose = self.verbose
        if not isinstance(verbose, numbers.Integral) or verbose < 0:
            problems.append(f"verbose must be an int >= 0 (or a bool); got {show(verbose)}")
        bs = self.batch_size
        if bs != "auto" and not (isinstance(bs, numbers.Integral) and bs >= 1):
            problems.append(f"batch_size must be 'auto' or a positive int; got {show(bs)}")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype must be 'float32' or 'float64'; got {show(self.dtype)}")
        if problems:
            raise ValueError("; ".join(problems))
        self._hidden()

    def _network(self, n_features: int, n_out: int, out_activation: str, loss: str) -> Network:
        layers = [Dense(units, self.activation) for units in self._hidden()]
        return Network(n_features, [*layers, Dense(n_out, out_activation)], loss=loss)

    def _optimizer(self) -> Any:
        return adam(float(self.learning_rate_init), weight_decay=float(self.alpha))

    def _batch(self, n: int) -> int:
        return min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)

    def _train(self, x: np.ndarray, y: np.ndarray, spec: Network, stratify: bool) -> None:
        """Fit a fresh network (``params_``, ``history_``, ``n_iter_``, ``loss_``...)."""
        rng = _seed(self.random_state)
        params = init(spec, rng, dtype=self.dtype)
        val, monitor = None, "train_loss"
        if self.early_stopping:
            labels = y if stratify else np.zeros(x.shape[0], dtype=np.int64)
            (ix, _), (iv, _) = train_val_split(
                np.arange(x.shape[0])[:, None], labels, self.validation_fraction, rng
            )
            ix, iv = ix[:, 0], iv[:, 0]
            if iv.size == 0 or ix.size == 0:
                raise ValueError(
                    f"early_stopping holds out validation_fraction={self.validation_fraction} "
                    f"of {x.shape[0]} samples, which leaves no validation or training data"
                )
            x, y, val, monitor = x[ix], y[ix], (x[iv], y[iv]), "val_loss"
        stopper = EarlyStopping(monitor, patience=self.n_iter_no_change, min_delta=self.tol)
        self.params_, self.history_ = fit(
            params, (x, y), optimizer=self._optimizer(), epochs=int(self.max_iter),
            batch_size=self._batch(x.shape[0]), rng=rng, val=val, shuffle=bool(self.shuffle),
            restore_best=bool(self.early_stopping), callbacks=[stopper],
            min_delta=float(self.tol), verbose=int(self.verbose),
        )  # fmt: skip
        self._rng = rng
        self._opt_state = None  # a partial_fit after fit starts its own Adam moments
        self._record()

    def _partial(self, x: np.ndarray, y: np.ndarray) -> None:
        """One more epoch over ``(x, y)`` from the current params and Adam state
        (kept between calls; a network from ``fit`` starts fresh moments)."""
        optimizer = self._optimizer()
        state = optimizer.init(self.params_) if self._opt_state is None else self._opt_state
        params, rng = self.params_, self._rng
        total, seen = 0.0, 0
        order = rng if self.shuffle else None
        for xb, yb in batches(x, y, self._batch(x.shape[0]), order):
            result = train_pass(params, xb, yb, rng=rng)
            if not math.isfinite(result.loss):
                raise FloatingPointError(
                    f"the training loss became {result.loss} in partial_fit; lower "
                    "learning_rate_init or scale the inputs (StandardScaler)"
                )
            params, state = optimizer.update(result.grads, state, params)
            total += result.loss * xb.shape[0]
            seen += xb.shape[0]
        self.params_, self._opt_state = params, state
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), total / seen]
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1
        self.loss_ = self.loss_curve_[-1]
        self.network_ = params["spec"]

    def _record(self) -> None:
        h = self.history_
        self.n_iter_ = len(h["epoch"])
        self.loss_ = float(h["train_loss"][-1])
        self.loss_curve_ = list(h["train_loss"])
        self.network_ = self.params_["spec"]

    def _inputs(self, X: Any, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32))
        return np.ascontiguousarray(X, dtype=self.dtype if reset else self._dtype_)

    def _output(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return forward(self.params_, self._inputs(X, reset=False))


class MLPClassifier(ClassifierMixin, _MLP):
    """A multi-layer perceptron classifier (softmax output, cross-entropy).

    Args:
        hidden_layer_sizes: units of each hidden Dense layer.
        activation: the hidden layers' activation (any purenn activation name).
        alpha: L2 weight decay, added to the gradient as ``alpha * w``.
        batch_size: samples per step; ``"auto"`` is ``min(200, n_samples)``.
        learning_rate_init: Adam's learning rate.
        max_iter: the most epochs to train.
        shuffle: reshuffle every epoch.
        random_state: None (fresh entropy), an int seed, or a numpy Generator.
        tol: the smallest improvement of the watched loss that counts.
        early_stopping: hold out ``validation_fraction`` (stratified) and stop on
            its loss, keeping the best epoch's params.
        validation_fraction: the held-out share with ``early_stopping``.
        n_iter_no_change: epochs without improvement before stopping.
        dtype: ``"float64"`` (default) or ``"float32"``, the computation's precision.
        verbose: 1 prints purenn's per-epoch lines.

    Attributes:
        classes_: the class labels, sorted.
        n_features_in_: the number of input features seen in ``fit``.
        params_: the purenn params tree; ``network_`` its :class:`purenn.Network`.
        history_: ``purenn.fit``'s history; ``n_iter_`` epochs run, ``loss_`` the
            last training loss, ``loss_curve_`` all of them.
    """

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a fresh network on ``X`` ``(n, d)`` and labels ``y`` ``(n,)``."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._fit_checked(X, codes.reshape(-1))
        return self

    def _fit_checked(self, X: np.ndarray, codes: np.ndarray) -> None:
        if self.classes_.size < 2:
            raise ValueError(
                f"MLPClassifier needs samples of at least 2 classes; y holds only one class "
                f"({self.classes_[0]!r})"
            )
        self._dtype_ = np.dtype(self.dtype)
        X = np.ascontiguousarray(X, dtype=self._dtype_)
        spec = self._network(X.shape[1], self.classes_.size, "softmax", "cross_entropy")
        self._train(X, codes.astype(np.int64), spec, stratify=True)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, continuing from the current network.

        The first call must name every class (``classes=``), as in scikit-learn;
        it builds the network, and later calls keep training it.
        """
        first = not hasattr(self, "params_")
        if first:
            self._check_params()
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit (every label "
                    "the data will hold, e.g. classes=np.unique(y_all))"
                )
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            if self.classes_.size < 2:
                raise ValueError("partial_fit needs classes= with at least 2 classes")
            self._dtype_ = np.dtype(self.dtype)
            spec = self._network(X.shape[1], self.classes_.size, "softmax", "cross_entropy")
            self._rng = _seed(self.random_state)
            self.params_ = init(spec, self._rng, dtype=self._dtype_)
            self._opt_state = None
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} not in classes {self.classes_}")
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        self._partial(np.ascontiguousarray(X, dtype=self._dtype_), codes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``, columns in the order of ``classes_``."""
        return self._output(X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row of ``X``, as labels from ``classes_``."""
        check_is_fitted(self)
        return self.classes_[predict(self.params_, self._inputs(X, reset=False))]


class MLPRegressor(RegressorMixin, _MLP):
    """A multi-layer perceptron regressor (linear output, mean squared error).

    Takes the same arguments as :class:`MLPClassifier`. ``y`` may be ``(n,)``
    (``predict`` then returns ``(n,)``) or ``(n, k)`` for ``k`` outputs.
    """

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train a fresh network on ``X`` ``(n, d)`` and targets ``y``."""
        self._check_params()
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32)
        )
        self._dtype_ = np.dtype(self.dtype)
        X = np.ascontiguousarray(X, dtype=self._dtype_)
        self._y_1d = y.ndim == 1
        y = np.asarray(y, dtype=self._dtype_).reshape(y.shape[0], -1)
        spec = self._network(X.shape[1], y.shape[1], "linear", "mse")
        self._train(X, y, spec, stratify=False)
        return self

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current network (the first
        call builds it)."""
        first = not hasattr(self, "params_")
        if first:
            self._check_params()
        X, y = validate_data(
            self, X, y, reset=first, multi_output=True, y_numeric=True,
            dtype=(np.float64, np.float32),
        )  # fmt: skip
        if first:
            self._dtype_ = np.dtype(self.dtype)
            self._y_1d = y.ndim == 1
        y = np.asarray(y, dtype=self._dtype_).reshape(y.shape[0], -1)
        if first:
            spec = self._network(X.shape[1], y.shape[1], "linear", "mse")
            self._rng = _seed(self.random_state)
            self.params_ = init(spec, self._rng, dtype=self._dtype_)
            self._opt_state = None
        elif y.shape[1] != self.params_["spec"].output_shape[0]:
            raise ValueError(
                f"y has {y.shape[1]} outputs but the network was built for "
                f"{self.params_['spec'].output_shape[0]}"
            )
        self._partial(np.ascontiguousarray(X, dtype=self._dtype_), y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets: ``(n,)`` when fitted on 1-D ``y``, else ``(n, k)``."""
        out = self._output(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
