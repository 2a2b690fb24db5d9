"""The fully connected and dropout layers.

Each layer follows the protocol of :mod:`purenn.base`: a frozen ``attrs``
class with ``output_shape``, ``init_params``, ``forward`` and ``backward``,
registered with :func:`purenn.register_layer` like a user's own. Backward
steps sit right beside the forward they differentiate. Caches are per call,
never stored.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from purenn._checks import MAX_SAMPLE_SIZE, float_field, int_field, one_of
from purenn.activations import activation_validator, get_activation
from purenn.base import Context, Layer, Shape, register_layer
from purenn.initializers import INITIALIZERS


@register_layer
@attrs.frozen
class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ w + b)``.

    Args:
        units: output width ``d_out``.
        activation: a registered activation name: ``"relu"``, ``"leaky_relu"``,
            ``"sigmoid"``, ``"tanh"``, ``"softmax"``, ``"linear"``, ``"gelu"``,
            ``"silu"``, ``"elu"``, ``"softplus"``, or one of your own
            (:func:`purenn.register_activation`).
        weight_init: one of ``"he_normal"``, ``"he_uniform"``, ``"glorot_normal"``,
            ``"glorot_uniform"``, ``"lecun_normal"``, ``"zeros"``; None takes the
            activation's own default (He for the ReLU family, Glorot otherwise;
            see :func:`purenn.register_activation`).
        bias_init: constant every bias starts at.

    Params: ``w`` of shape ``(d_in, d_out)`` and ``b`` of shape ``(d_out,)``.
    """

    units: int = int_field(maximum=MAX_SAMPLE_SIZE)
    activation: str = attrs.field(default="relu", validator=activation_validator)
    weight_init: str | None = attrs.field(
        default=None, validator=one_of(INITIALIZERS, allow_none=True)
    )
    bias_init: float = float_field(default=0.0)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1:
            raise ValueError(
                f"expects a flat input of shape (d,); got {in_shape}. Flatten the input first"
            )
        return (self.units,)

    def param_shapes(self, in_shape: Shape) -> dict:
        return {"w": (in_shape[0], self.units), "b": (self.units,)}

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        d_in, d_out = in_shape[0], self.units
        scheme = self.weight_init or get_activation(self.activation).weight_init
        w = INITIALIZERS[scheme](rng, (d_in, d_out), d_in, d_out).astype(dtype)
        b = np.full(d_out, self.bias_init, dtype=dtype)
        return {"w": w, "b": b}

    def forward(self, params: dict, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, d_in) -> ``a`` (n, d_out)."""
        z = x @ params["w"] + params["b"]
        act = get_activation(self.activation)
        # z is this call's own array and backward needs only a: a can take its place
        a = act.forward(z, out=z) if act.in_place else act.forward(z)
        return a, (x, z, a)

    def backward(
        self, params: dict, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, dict]:
        """``dy`` = dL/da (n, d_out) -> (dL/dx, {w, b})."""
        x, z, a = cache
        dz = get_activation(self.activation).backward(z, a, dy)  # dL/dz = dL/da * da/dz
        dw = x.T @ dz  # dL/dw = x.T @ dz
        db = dz.sum(axis=0)  # dL/db = sum over the batch of dz
        dx = dz @ params["w"].T if ctx.need_dx else None  # dL/dx = dz @ w.T
        return dx, {"w": dw, "b": db}


@register_layer
@attrs.frozen
class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate``
    and scale the survivors by ``1 / (1 - rate)``; at evaluation, the identity.

    Args:
        rate: probability of *dropping* a unit, ``0 <= rate < 1``.
    """

    rate: float = float_field()

    @rate.validator
    def _check_rate(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"Dropout.rate is the probability of dropping a unit and must be in [0, 1); "
                f"got {value}"
            )

    @property
    def draws_randomness(self) -> bool:  # type: ignore[override]
        return self.rate > 0.0

    def output_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        if not ctx.train or self.rate == 0.0:
            return x, None
        # keep with probability 1 - rate; survivors scaled so E[y] = x
        scale = np.asarray(1.0 / (1.0 - self.rate), dtype=x.dtype)
        mask = (ctx.rng.random(x.shape, dtype=x.dtype) >= self.rate) * scale
        return x * mask, mask

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        if cache is None:
            return dy, None
        return dy * cache, None  # dL/dx = dL/dy * mask / (1 - rate)
