"""Normalisation layers: BatchNorm (with running statistics, the one built-in
layer with state) and LayerNorm.

Both follow the protocol of :mod:`purenn.base`, registered like a user's own;
BatchNorm also defines ``init_state`` and ``next_state``. The equations, with
their derivatives, are in ``docs/math.md``; how the running statistics flow
through the pure functions is in ``docs/design.md`` ("State").
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from purenn._checks import float_field
from purenn.activations import activation_validator, get_activation
from purenn.base import ArraySpec, Context, Layer, Shape, register_layer
from purenn.workspace import FRESH, empty_like

__all__ = ["BatchNorm", "LayerNorm"]


def _channel_axes(ndim: int) -> tuple[int, ...]:
    """The axes a BatchNorm reduces over: the batch (and, for images, height and width)."""
    return (0,) if ndim == 2 else (0, 2, 3)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A ``(c,)`` vector shaped to broadcast against ``(n, c)`` or ``(n, c, h, w)``."""
    return v.reshape(1, -1) if ndim == 2 else v.reshape(1, -1, 1, 1)


@register_layer
@attrs.frozen
class BatchNorm(Layer):
    """Batch normalisation (Ioffe and Szegedy, 2015), with PyTorch's conventions.

    Over the feature axis for ``(n, d)`` inputs, per channel for ``(n, c, h, w)``
    images (statistics over the batch and the pixels), with ``m`` values per
    feature (``n``, or ``n * h * w``)::

        training:    mu = mean(x),  var = mean((x - mu)**2)      (biased, over m values)
                     y = act(gamma * (x - mu) / sqrt(var + eps) + beta)
        evaluation:  y = act(gamma * (x - mean) / sqrt(running_var + eps) + beta)

    Each training pass's ``next_state`` gives the new running statistics::

        mean <- (1 - momentum) * mean + momentum * mu
        var  <- (1 - momentum) * var  + momentum * var * m / (m - 1)   (unbiased)
        count <- count + 1

    Args:
        momentum: weight of the new batch in the running statistics, in (0, 1]
            (PyTorch's 0.1).
        eps: added to the variance before the square root, > 0 (1e-5).
        activation: applied after the affine step, any registered name
            (``"linear"``: none; ``"relu"`` makes the usual BN-ReLU pair one layer).

    Params: ``gamma`` (ones) and ``beta`` (zeros), shape ``(c,)``.
    State: ``mean`` (zeros) and ``var`` (ones), shape ``(c,)``, and ``count``,
    an int64 scalar array: the number of training passes so far. An evaluation
    pass with ``count == 0`` (statistics never updated) raises a ValueError
    that says how to train them. A training pass needs more than one value per
    feature (``m > 1``).

    Its large arrays (``xhat``, the output, the backward's temporaries) come from
    the pass's workspace (``uses_workspace``), as the convolution's do.
    """

    uses_workspace = True

    momentum: float = float_field(default=0.1)
    eps: float = float_field(default=1e-5, low=0.0, low_open=True)
    activation: str = attrs.field(default="linear", validator=activation_validator)

    @momentum.validator
    def _check_momentum(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 < value <= 1.0:
            raise ValueError(
                "BatchNorm.momentum is the weight of each new batch in the running "
                f"statistics and must be in (0, 1] (PyTorch's default 0.1); got {value}"
            )

    @activation.validator
    def _no_softmax(self, attribute: attrs.Attribute, value: str) -> None:
        if value == "softmax":
            raise ValueError(
                "BatchNorm.activation 'softmax' is for the final Dense layer; pick e.g. 'relu'"
            )

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) not in (1, 3):
            raise ValueError(
                f"normalises features (d,) or channels-first images (c, h, w); got {in_shape}"
            )
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict:
        return {"gamma": in_shape[:1], "beta": in_shape[:1]}

    def state_shapes(self, in_shape: Shape) -> dict:
        return {"mean": in_shape[:1], "var": in_shape[:1], "count": ArraySpec((), np.int64)}

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        c = in_shape[0]
        return {"gamma": np.ones(c, dtype), "beta": np.zeros(c, dtype)}

    def init_state(self, in_shape: Shape, dtype: np.dtype) -> dict:
        c = in_shape[0]
        return {
            "mean": np.zeros(c, dtype),
            "var": np.ones(c, dtype),
            "count": np.zeros((), np.int64),
        }

    def forward(self, params: dict, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, c) or (n, c, h, w) -> ``y`` of the same shape and dtype."""
        nd, axes = x.ndim, _channel_axes(x.ndim)
        scratch = FRESH if ctx.workspace is None else ctx.workspace
        m = x.size // x.shape[1]  # values per feature
        xhat = empty_like(scratch, "xhat", x)  # in x's memory order (batch-last after a conv)
        if ctx.train:
            if m < 2:
                raise ValueError(
                    f"a training pass needs more than one value per feature to estimate "
                    f"a variance; got a batch of shape {x.shape}. Use batches of 2 or more "
                    "(fit(..., drop_last=True) drops a last batch of 1)"
                )
            mu = x.mean(axis=axes, keepdims=True)
            np.subtract(x, mu, out=xhat)  # x - mu
            sq = np.multiply(xhat, xhat, out=empty_like(scratch, "sq", x))
            var = sq.mean(axis=axes, keepdims=True)  # biased, as the batch's own
            inv = 1.0 / np.sqrt(var + self.eps)
            stats = (mu.ravel(), var.ravel(), m)
        else:
            state = ctx.state
            if int(state["count"]) == 0:
                raise ValueError(
                    "its running statistics were never updated (count 0), so an evaluation "
                    "pass would normalise with the initial mean 0 and variance 1. Train "
                    "first: every training pass returns the new statistics in "
                    "grads['state'], which sgd_step(params, grads(params, x, y), lr), the "
                    "optimizers' update and fit put into the params they return (an "
                    "optimizer of your own: end its update with "
                    "purenn.tree_with_state(new_params, grads))"
                )
            np.subtract(x, _per_channel(state["mean"], nd), out=xhat)
            inv = 1.0 / np.sqrt(_per_channel(state["var"], nd) + self.eps)
            stats = None
        xhat *= inv  # (x - mu) / sqrt(var + eps)
        z = np.multiply(xhat, _per_channel(params["gamma"], nd), out=empty_like(scratch, "z", x))
        z += _per_channel(params["beta"], nd)
        act = get_activation(self.activation)
        # z is this pass's own array and backward needs only a: a can take its place
        a = act.forward(z, out=z) if act.in_place else act.forward(z)
        return a, (xhat, inv, z, a, ctx.train, stats)

    def backward(
        self, params: dict, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, dict]:
        """``dy`` = dL/da -> (dL/dx, {gamma, beta})."""
        xhat, inv, z, a, train, _ = cache
        nd, axes = dy.ndim, _channel_axes(dy.ndim)
        scratch = FRESH if ctx.workspace is None else ctx.workspace
        act = get_activation(self.activation)
        if act.in_place:  # dL/dz = dL/da * da/dz, into a work array
            dz = act.backward(z, a, dy, out=empty_like(scratch, "dz", a))
        else:
            dz = act.backward(z, a, dy)
        dbeta = dz.sum(axis=axes)  # dL/dbeta = sum over the batch (and pixels) of dz
        tmp = np.multiply(dz, xhat, out=empty_like(scratch, "tmp", xhat))
        dgamma = tmp.sum(axis=axes)  # dL/dgamma = sum of dz * xhat
        dx = None
        if ctx.need_dx:
            g = _per_channel(params["gamma"], nd) * inv
            dx = empty_like(scratch, "dx", xhat)
            if train:
                # mu and var depend on x too: dL/dx = gamma/sigma * (dz - mean(dz)
                # - xhat * mean(dz * xhat)), the means over the m values per feature
                m = dz.size // dz.shape[1]
                np.subtract(dz, _per_channel(dbeta / m, nd), out=dx)
                dx -= np.multiply(xhat, _per_channel(dgamma / m, nd), out=tmp)
                dx *= g
            else:
                np.multiply(dz, g, out=dx)  # running statistics are constants: gamma/sigma * dz
        return dx, {"gamma": dgamma, "beta": dbeta}

    def next_state(self, state: dict, cache: Any, ctx: Context) -> dict:
        """The running statistics after this training pass (PyTorch's update)."""
        mu, var, m = cache[5]
        k = self.momentum
        return {
            "mean": (1.0 - k) * state["mean"] + k * mu,
            "var": (1.0 - k) * state["var"] + k * (var * (m / (m - 1))),  # unbiased
            "count": np.asarray(state["count"] + 1, dtype=np.int64),  # a 0-d array
        }


@register_layer
@attrs.frozen
class LayerNorm(Layer):
    """Layer normalisation (Ba, Kiros and Hinton, 2016): each sample normalised
    over all its features, then scaled and shifted elementwise::

        mu, var = mean(x_i), mean((x_i - mu)**2)   over one sample's features
        y_i = gamma * (x_i - mu) / sqrt(var + eps) + beta

    The same in training and evaluation (no state); ``torch.nn.LayerNorm(in_shape)``.

    Args:
        eps: added to the variance before the square root, > 0.

    Params: ``gamma`` (ones) and ``beta`` (zeros), of the per-sample input shape.
    """

    eps: float = float_field(default=1e-5, low=0.0, low_open=True)

    def output_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def param_shapes(self, in_shape: Shape) -> dict:
        return {"gamma": in_shape, "beta": in_shape}

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        return {"gamma": np.ones(in_shape, dtype), "beta": np.zeros(in_shape, dtype)}

    def forward(self, params: dict, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, *shape) -> ``y`` of the same shape and dtype."""
        axes = tuple(range(1, x.ndim))
        xc = x - x.mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(np.mean(xc * xc, axis=axes, keepdims=True) + self.eps)
        xhat = xc * inv
        y = xhat * params["gamma"]
        y += params["beta"]
        return y, (xhat, inv)

    def backward(
        self, params: dict, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, dict]:
        """``dy`` = dL/dy -> (dL/dx, {gamma, beta})."""
        xhat, inv = cache
        dgamma = (dy * xhat).sum(axis=0)  # dL/dgamma = sum over the batch of dy * xhat
        dbeta = dy.sum(axis=0)  # dL/dbeta = sum over the batch of dy
        dx = None
        if ctx.need_dx:
            axes = tuple(range(1, dy.ndim))
            dxhat = dy * params["gamma"]  # dL/dxhat
            # dL/dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sigma, per sample
            dx = dxhat - dxhat.mean(axis=axes, keepdims=True)
            dx -= xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)
            dx *= inv
        return dx, {"gamma": dgamma, "beta": dbeta}
