"""Layer specs: immutable hyperparameters plus how to initialise and apply them.

Each layer is a frozen ``attrs`` class. It knows (as pure methods) how to
work out its output shape, make its parameters, run forward, and run backward.
Backward steps sit right beside the forward they differentiate.

A layer's forward returns ``(y, cache)``; its backward takes that cache and
``dy = dL/dy`` and returns ``(dx, grads)``. Caches are per call, never stored.
Both also take ``scratch``, the allocator of their work arrays: fresh arrays by
default, reused buffers in a training step (:mod:`purenn.scratch`). Dense and
Dropout always allocate fresh arrays: the network's output comes from a Dense
layer and must never live in scratch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np

from purenn._checks import positive_int
from purenn.activations import ACTIVATIONS
from purenn.initializers import INITIALIZERS, default_initializer
from purenn.scratch import FRESH, Allocator

Shape = tuple[int, ...]


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


@attrs.frozen
class Dense:
    """Fully connected layer: ``y = activation(x @ w + b)``.

    Args:
        units: output width ``d_out``.
        activation: one of ``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"``,
            ``"softmax"``, ``"linear"``.
        weight_init: one of ``"he_normal"``, ``"he_uniform"``, ``"glorot_normal"``,
            ``"glorot_uniform"``, ``"lecun_normal"``, ``"zeros"``; None picks He
            for the ReLU family and Glorot otherwise.
        bias_init: constant every bias starts at.

    Params: ``w`` of shape ``(d_in, d_out)`` and ``b`` of shape ``(d_out,)``.
    """

    param_prefix: ClassVar[str | None] = "dense"

    units: int = attrs.field(converter=_int_if_integer, validator=_positive_int)
    activation: str = attrs.field(default="relu", validator=_one_of(ACTIVATIONS))
    weight_init: str | None = attrs.field(
        default=None, validator=_one_of(INITIALIZERS, allow_none=True)
    )
    bias_init: float = attrs.field(default=0.0, converter=_finite_float_named("Dense.bias_init"))

    def output_shape(self, in_shape: Shape, name: str) -> Shape:
        if len(in_shape) != 1:
            raise ValueError(
                f"{name} (Dense) expects a flat input of shape (d,); got {in_shape}. "
                "Flatten the input first"
            )
        return (self.units,)

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        d_in, d_out = in_shape[0], self.units
        scheme = self.weight_init or default_initializer(self.activation)
        w = INITIALIZERS[scheme](rng, (d_in, d_out), d_in, d_out).astype(dtype)
        b = np.full(d_out, self.bias_init, dtype=dtype)
        return {"w": w, "b": b}

    def forward(
        self,
        p: dict,
        x: np.ndarray,
        *,
        train: bool,
        rng: Any,
        activate: bool = True,
        scratch: Allocator = FRESH,
    ) -> tuple[np.ndarray, Any]:
        """``x`` (n, d_in) -> ``a`` (n, d_out); with ``activate=False`` the logits ``z``."""
        z = x @ p["w"]
        z += p["b"]
        if not activate:
            return z, x
        if self.activation == "relu":
            a = np.maximum(z, 0, out=z)  # z is this call's own array: reuse it
        else:
            a = ACTIVATIONS[self.activation][0](z)
        return a, (x, a)

    def backward(
        self,
        p: dict,
        cache: Any,
        dy: np.ndarray,
        *,
        need_dx: bool = True,
        activated: bool = True,
        scratch: Allocator = FRESH,
    ) -> tuple[np.ndarray | None, dict]:
        """``dy`` = dL/da (or dL/dz when ``activated`` is False) -> (dL/dx, {w, b})."""
        if activated:
            x, a = cache
            if self.activation == "relu" and scratch.owns_dy:
                dz = np.multiply(dy, a > 0, out=dy)  # dL/dz = dL/da where a > 0, else 0
            else:
                dz = ACTIVATIONS[self.activation][1](a, dy)  # dL/dz = dL/da * da/dz
        else:
            x, dz = cache, dy
        dw = x.T @ dz  # dL/dw = x.T @ dz
        db = np.add.reduce(dz, axis=0)  # dL/db = sum over the batch of dz (dz.sum, unwrapped)
        dx = dz @ p["w"].T if need_dx else None  # dL/dx = dz @ w.T
        return dx, {"w": dw, "b": db}


@attrs.frozen
class Dropout:
    """Inverted dropout: in training, zero each unit with probability ``rate``
    and scale the survivors by ``1 / (1 - rate)``; at evaluation, the identity.

    Args:
        rate: probability of *dropping* a unit, ``0 <= rate < 1``.
    """

    param_prefix: ClassVar[str | None] = None

    rate: float = attrs.field(converter=_finite_float_named("Dropout.rate"))

    @rate.validator
    def _check_rate(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"Dropout.rate is the probability of dropping a unit and must be in [0, 1); "
                f"got {value}"
            )

    def output_shape(self, in_shape: Shape, name: str) -> Shape:
        return in_shape

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> None:
        return None

    def forward(
        self,
        p: None,
        x: np.ndarray,
        *,
        train: bool,
        rng: np.random.Generator | None,
        scratch: Allocator = FRESH,
    ) -> tuple[np.ndarray, Any]:
        if not train or self.rate == 0.0:
            return x, None
        # keep with probability 1 - rate; survivors scaled so E[y] = x
        scale = np.asarray(1.0 / (1.0 - self.rate), dtype=x.dtype)
        mask = (rng.random(x.shape, dtype=x.dtype) >= self.rate) * scale
        return x * mask, mask

    def backward(
        self,
        p: None,
        cache: Any,
        dy: np.ndarray,
        *,
        need_dx: bool = True,
        scratch: Allocator = FRESH,
    ) -> tuple[np.ndarray | None, None]:
        if cache is None:
            return dy, None
        return dy * cache, None  # dL/dx = dL/dy * mask / (1 - rate)
