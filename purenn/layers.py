"""The fully connected and dropout layers, and the field validators layers share.

Each layer follows the protocol of :mod:`purenn.base`: a frozen ``attrs``
class with ``output_shape``, ``init_params``, ``forward`` and ``backward``,
registered with :func:`purenn.register_layer` like a user's own. Backward
steps sit right beside the forward they differentiate. Caches are per call,
never stored.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from purenn._checks import positive_int
from purenn.activations import get_activation
from purenn.base import Context, Layer, Shape, register_layer
from purenn.initializers import INITIALIZERS


def _positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: :func:`purenn._checks.positive_int` naming ``Class.field``."""
    positive_int(value, f"{type(instance).__name__}.{attribute.name}")


def _one_of(options: dict[str, Any], allow_none: bool = False):
    """attrs validator: the value is one of ``options``' keys (message lists them)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, str) or value not in options:
            valid = ", ".join(repr(k) for k in options)
            extra = " or None" if allow_none else ""
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name} must be one of {valid}{extra}; "
                f"got {value!r}"
            )

    return check


def _finite_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"expected a float; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite float; got {value}")
    return value


def _finite_float_named(name: str):
    """attrs converter like :func:`_finite_float` whose messages name the field."""

    def convert(value: Any) -> float:
        try:
            return _finite_float(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name}: {err}") from None

    return convert


def _int_if_integer(value: Any) -> Any:
    """attrs converter: NumPy ints become Python ints (hashable alike, JSON-able)."""
    return int(value) if isinstance(value, np.integer) else value


def _registered_activation(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """attrs validator: ``value`` names a registered activation."""
    try:
        get_activation(value)
    except ValueError as err:
        raise ValueError(f"{type(instance).__name__}.{attribute.name}: {err}") from None


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

    units: int = attrs.field(converter=_int_if_integer, validator=_positive_int)
    activation: str = attrs.field(default="relu", validator=_registered_activation)
    weight_init: str | None = attrs.field(
        default=None, validator=_one_of(INITIALIZERS, allow_none=True)
    )
    bias_init: float = attrs.field(default=0.0, converter=_finite_float_named("Dense.bias_init"))

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

    rate: float = attrs.field(converter=_finite_float_named("Dropout.rate"))

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
