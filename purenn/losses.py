"""Losses: the :class:`Loss` protocol, its registry, and the built-in losses.

A loss owns everything about the network's targets: how they are checked,
the loss value and its gradient with respect to the network's output, the
output activation it fuses with (if any), how labels are predicted, and
whether accuracy means anything. A user's loss need only define
``value_and_grad``; the base class gives regression defaults for the rest::

    @purenn.register_loss
    @attrs.frozen
    class LogCosh(purenn.Loss):
        def value_and_grad(self, out, y):
            d = out - y
            # L = mean log(cosh(d)),  dL/dout = tanh(d) / size
            return float(np.mean(np.log(np.cosh(d)))), np.tanh(d) / d.size

Cross-entropy and binary cross-entropy are *fused* with their output
activation (softmax, sigmoid): the network hands them the last layer's logits
``z`` and they return ``dL/dz``, which is cheaper and numerically stable;
``forward`` applies the activation to give probabilities. The other losses
take the last layer's output itself.

Reductions follow PyTorch's defaults: cross-entropy is the mean over samples;
the others are means over all output elements.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np

from purenn._checks import float_field, show
from purenn._registry import ClassRegistry
from purenn.base import Shape

__all__ = [
    "MAE",
    "MSE",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "Huber",
    "Loss",
    "as_loss",
    "describe",
    "loss_from_dict",
    "loss_to_dict",
    "loss_class",
    "register_loss",
]


class Loss:
    """Base class of losses; subclass it with ``@attrs.frozen`` and register it
    with :func:`register_loss`.

    A subclass must define :meth:`value_and_grad` and may override the rest:

    * ``fused_activation`` (class attribute, default None): the name of the
      output activation the loss is fused with. The last layer must then have
      an ``activation`` field holding that name (as ``Dense`` has); the network
      runs that layer with ``activation="linear"``, hands the logits to the
      loss, and applies the activation itself in ``forward``.
    * ``has_accuracy`` (class attribute, default False): whether predictions
      can be scored (:meth:`predict` and :meth:`labels` are then defined).
    """

    fused_activation: ClassVar[str | None] = None
    has_accuracy: ClassVar[bool] = False

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """The mean loss and its gradient.

        Args:
            out: the last layer's output ``(n, *output_shape)`` (its logits for a
                fused loss), float32 or float64.
            y: targets as :meth:`check_targets` returned them.

        Returns:
            ``(loss, dout)``: the mean loss as a Python float, and ``dL/dout``, an
            array of ``out``'s shape and dtype.
        """
        raise NotImplementedError(f"{type(self).__name__} must define value_and_grad(out, y)")

    def value(self, out: np.ndarray, y: np.ndarray) -> float:
        """The mean loss alone (default: from :meth:`value_and_grad`)."""
        return self.value_and_grad(out, y)[0]

    def check_targets(self, y: Any, n: int, out_shape: Shape, dtype: np.dtype) -> np.ndarray:
        """Check targets for a batch of ``n`` and return them as the loss takes them.

        The default (regression): an array of shape ``(n, *out_shape)``; ints and
        bools are converted to ``dtype``, other floats are refused.

        Raises:
            TypeError, ValueError: saying what was expected and what came.
        """
        return _dense_targets(self, y, n, out_shape, dtype)

    def predict(self, out: np.ndarray) -> np.ndarray:
        """Labels from the last layer's output (its logits for a fused loss).

        Raises:
            ValueError: for a loss without labels (the default: regression).
        """
        raise ValueError(
            f"loss {describe(self)} is a regression loss and gives no class labels: "
            "use forward(params, x) for the network's outputs"
        )

    def labels(self, y: np.ndarray) -> np.ndarray:
        """The labels that :meth:`predict` is scored against, from checked targets."""
        raise ValueError(f"loss {describe(self)} has no labels to score against")

    def num_classes(self, out_shape: Shape) -> int | None:
        """Classes of the confusion matrix (None: no confusion matrix)."""
        return None

    def check_output_layer(self, layer: Any, name: str, out_shape: Shape) -> None:
        """Raise ``ValueError`` if the network's last layer cannot feed this loss.

        The default accepts any layer, or, for a fused loss, any layer whose
        ``activation`` field is ``fused_activation``.
        """
        wanted = self.fused_activation
        if wanted is not None and getattr(layer, "activation", None) != wanted:
            raise ValueError(
                f"loss {describe(self)} needs a {wanted!r} output layer; the last layer {name} "
                f"({type(layer).__name__}) has activation {getattr(layer, 'activation', None)!r}. "
                f"Use Dense(k, activation={wanted!r}) last"
            )


def _dense_targets(loss: Loss, y: Any, n: int, out_shape: Shape, dtype: np.dtype) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a NumPy array; got {type(y).__name__}")
    want = (n, *out_shape)
    if y.shape != want:
        raise ValueError(
            f"loss {describe(loss)} expects targets of shape {want}; got y of shape {y.shape}"
        )
    if y.dtype.kind in "biu":
        return y.astype(dtype)
    if y.dtype != dtype:
        raise TypeError(
            f"targets have dtype {y.dtype} but the params are {dtype}; convert with "
            f"y.astype(np.{dtype}) (no silent casts)"
        )
    return y


def _targets_within(loss: Loss, y: np.ndarray, low: float, high: float | None) -> np.ndarray:
    """``y`` itself if every target lies in ``[low, high]`` (NaN never does)."""
    if y.size:
        lo, hi = float(y.min()), float(y.max())
        # written so that NaN fails: every comparison with NaN is False
        if not (lo >= low and (hi <= high if high is not None else math.isfinite(hi))):
            want = f"[{low:g}, {high:g}]" if high is not None else f"finite and >= {low:g}"
            raise ValueError(
                f"loss {describe(loss)} expects targets {want}; got values from {lo} to "
                f"{hi}" + (" (NaN present)" if math.isnan(lo) or math.isnan(hi) else "")
            )
    return y


# --------------------------------------------------------------------------- registry

_LOSSES = ClassRegistry("loss", "@purenn.register_loss")
_BUILTIN_NAMES: dict[str, type] = {}


def register_loss(cls: type) -> type:
    """Class decorator: make a :class:`Loss` subclass usable as ``Network(loss=...)``.

    Specs and checkpoints store the class name and fields, so a network with
    a registered loss round-trips through JSON and ``save``/``load`` in a
    process that has imported the module defining it.

    Raises:
        TypeError: if ``cls`` is not a frozen attrs subclass of ``Loss``.
        ValueError: if another class of the same name is registered already.
    """
    return _LOSSES.add(cls, Loss)


def loss_class(name: str) -> type:
    """The registered loss class called ``name``.

    Raises:
        ValueError: for a name nobody registered, saying what to import.
    """
    return _LOSSES.get(name)


def as_loss(value: Any) -> Loss:
    """A loss instance from a registered instance or a built-in's name.

    Raises:
        ValueError: for an unknown name or an unregistered loss class.
    """
    if isinstance(value, str) and value in _BUILTIN_NAMES:
        return _BUILTIN_NAMES[value]()
    if isinstance(value, Loss):
        if not _LOSSES.holds(type(value)):
            raise ValueError(
                f"loss {show(value)} is not registered; decorate {type(value).__name__} with "
                "@purenn.register_loss"
            )
        return value
    valid = ", ".join(repr(k) for k in _BUILTIN_NAMES)
    raise ValueError(
        f"Network.loss must be one of {valid} or a registered purenn.Loss instance; "
        f"got {show(value)}"
    )


def _builtin(name: str):
    def decorate(cls: type) -> type:
        register_loss(cls)
        _BUILTIN_NAMES[name] = cls
        return cls

    return decorate


# --------------------------------------------------------------------------- built-ins


@_builtin("cross_entropy")
@attrs.frozen
class CrossEntropy(Loss):
    """Softmax cross-entropy from logits, the mean over samples.

    Targets: int class indices ``(n,)``, or target weights (one-hot, smoothed
    labels, any non-negative rows) of shape ``(n, k)`` in the params' dtype,
    ``L = -(1/n) sum_ij y_ij log p_ij``. Fused with ``"softmax"``.
    """

    fused_activation: ClassVar[str | None] = "softmax"
    has_accuracy: ClassVar[bool] = True

    def check_targets(self, y: Any, n: int, out_shape: Shape, dtype: np.dtype) -> np.ndarray:
        if not isinstance(y, np.ndarray):
            raise TypeError(f"y must be a NumPy array; got {type(y).__name__}")
        if len(out_shape) != 1:
            raise ValueError(
                f"loss {describe(self)} scores a flat output of k classes per sample, shape "
                f"(k,); got the output shape {tuple(out_shape)}: end with Flatten() and Dense(k)"
            )
        (k,) = out_shape
        if y.ndim != 1:
            if y.shape != (n, k):
                raise ValueError(
                    f"loss {describe(self)} expects int labels of shape ({n},) or one-hot "
                    f"targets of shape ({n}, {k}); got y of shape {y.shape}"
                )
            return _targets_within(self, _dense_targets(self, y, n, out_shape, dtype), 0.0, None)
        if y.dtype.kind not in "iu":
            raise TypeError(
                f"cross-entropy labels of shape (n,) must be int class indices; got dtype "
                f"{y.dtype}. Use y.astype(np.int64), or pass one-hot targets of shape (n, {k})"
            )
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels but x has {n} samples")
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= k:
            raise ValueError(
                f"labels must be class indices in [0, {k - 1}] for a {k}-way output; "
                f"got values from {lo} to {hi}"
            )
        return y.astype(np.intp, copy=False)  # any int dtype in range indexes alike

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        # Written for the small (n, k) logits of a classifier, where NumPy's cost
        # per call dominates: the row max is read at the argmax (a row-wise max
        # over 10 columns costs several times more), and the labels' entries are
        # gathered and scattered through flat indices i*k + y_i rather than 2-D
        # fancy indexing. Together about 6% of the benchmark MLP's step
        # (docs/benchmarks.md, issue 13); the math is the plain one in the comments.
        n, k = out.shape
        row_start = np.arange(0, n * k, k)  # flat index of each row's first logit
        # shifted = z - max_j z: finite log-sum-exp for logits of any size
        shifted = out - out.ravel()[row_start + out.argmax(axis=1)][:, None]
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        log_s = np.log(s)  # log p = shifted - log s
        p = np.divide(e, s, out=e)  # softmax; e is not needed again
        if y.ndim == 1:
            at_label = row_start + y
            # L = mean of -log p[y] = mean of (log s - shifted[y])
            loss = (float(log_s.sum()) - float(shifted.ravel()[at_label].sum())) / n
            p.ravel()[at_label] -= 1.0  # p - onehot(y)
            return loss, p * (1.0 / n)  # dL/dz = (p - y) / n
        loss = -float((y * (shifted - log_s)).sum()) / n
        # dL/dz = (p * sum_j y_j - y) / n: (p - y) / n when each row of y sums to 1
        return loss, (p * y.sum(axis=1, keepdims=True) - y) * (1.0 / n)

    def predict(self, out: np.ndarray) -> np.ndarray:
        return out.argmax(axis=1)  # argmax of the logits is argmax of the softmax

    def labels(self, y: np.ndarray) -> np.ndarray:
        return y if y.ndim == 1 else y.argmax(axis=1)

    def num_classes(self, out_shape: Shape) -> int | None:
        return out_shape[0]


@_builtin("binary_cross_entropy")
@attrs.frozen
class BinaryCrossEntropy(Loss):
    """Sigmoid binary cross-entropy from logits, the mean over all elements.

    Targets in [0, 1] of shape ``(n, k)``. Fused with ``"sigmoid"``. Labels:
    ``(n,)`` 0/1 for a single output, ``(n, k)`` for several (multi-label).
    """

    fused_activation: ClassVar[str | None] = "sigmoid"
    has_accuracy: ClassVar[bool] = True

    def check_targets(self, y: Any, n: int, out_shape: Shape, dtype: np.dtype) -> np.ndarray:
        return _targets_within(self, _dense_targets(self, y, n, out_shape, dtype), 0.0, 1.0)

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        z = out
        # -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
        elementwise = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        loss = float(elementwise.mean(dtype=z.dtype))
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid(z)
        return loss, (p - y) * (1.0 / z.size)  # dL/dz = (sigmoid(z) - y) / (n k)

    def predict(self, out: np.ndarray) -> np.ndarray:
        labels = (out > 0).astype(np.int64)  # z > 0 is sigmoid(z) > 0.5
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def labels(self, y: np.ndarray) -> np.ndarray:
        labels = (y > 0.5).astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def num_classes(self, out_shape: Shape) -> int | None:
        return 2 if out_shape == (1,) else None  # several sigmoids: no single confusion


@_builtin("mse")
@attrs.frozen
class MSE(Loss):
    """Mean squared error over all elements (regression)."""

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        diff = out - y
        loss = float((diff * diff).mean(dtype=out.dtype))
        return loss, diff * (2.0 / out.size)  # dL/da = 2 (a - y) / (n k)


@_builtin("mae")
@attrs.frozen
class MAE(Loss):
    """Mean absolute error over all elements (regression); the gradient at 0 is 0."""

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        diff = out - y
        loss = float(np.abs(diff).mean(dtype=out.dtype))
        return loss, np.sign(diff) * (1.0 / out.size)  # dL/da = sign(a - y) / (n k)


@_builtin("huber")
@attrs.frozen
class Huber(Loss):
    """Huber loss, the mean over all elements (PyTorch's ``HuberLoss``)::

        l(d) = d**2 / 2                    where |d| <= delta
        l(d) = delta * (|d| - delta / 2)   elsewhere,         d = out - y

    Args:
        delta: where the quadratic turns linear, > 0.
    """

    delta: float = float_field(default=1.0, low=0.0, low_open=True)

    def value_and_grad(self, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        diff = out - y
        size = np.abs(diff)
        inside = size <= self.delta
        elementwise = np.where(inside, 0.5 * diff * diff, self.delta * (size - 0.5 * self.delta))
        loss = float(elementwise.mean(dtype=out.dtype))
        # dl/dd = d inside, delta * sign(d) outside
        grad = np.where(inside, diff, self.delta * np.sign(diff))
        return loss, grad * (1.0 / out.size)


# --------------------------------------------------------------------------- JSON


def loss_to_dict(loss: Loss) -> str | dict:
    """A loss as plain JSON: a built-in's name when it has its defaults, else
    ``{"type": class name, **fields}``.

    Raises:
        TypeError: if ``loss`` is not a loss object (an attrs class instance).
    """
    if not attrs.has(type(loss)):
        raise TypeError(
            f"loss must be a loss object such as purenn.losses.CrossEntropy() (use as_loss "
            f"for a name); got {type(loss).__name__}"
        )
    for name, cls in _BUILTIN_NAMES.items():
        if type(loss) is cls and loss == cls():
            return name
    return {"type": type(loss).__name__, **attrs.asdict(loss)}


def describe(loss: Loss) -> str:
    """How messages name a loss: ``'mse'`` for a built-in with its defaults, else its repr
    (also for an object that is no attrs class: a message must never fail)."""
    if not attrs.has(type(loss)):
        return show(loss, None)
    name = loss_to_dict(loss)
    return repr(name) if isinstance(name, str) else show(loss, None)


def loss_from_dict(data: Any) -> Loss:
    """Rebuild a loss from :func:`loss_to_dict`'s output.

    Raises:
        ValueError: for an unknown name or type, or malformed fields.
    """
    if isinstance(data, str):
        return as_loss(data)
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"a loss must be a name or a dict with a 'type'; got {show(data)}")
    fields = dict(data)
    cls = loss_class(fields.pop("type"))
    try:
        return cls(**fields)
    except TypeError as err:
        raise ValueError(f"malformed {cls.__name__} loss {show(data)}: {err}") from err
