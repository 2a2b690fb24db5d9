"""Activation functions, each forward beside its derivative, and their registry.

An activation is a pair of functions::

    forward(z) -> a                 # a = f(z), same shape and dtype as z
    backward(z, a, da) -> dz        # dz = da * f'(z), given z, a = f(z) and dL/da

registered with ``in_place=True`` when ``forward`` is elementwise and may
write ``a`` over its own input (``forward(z, out=z)``), and ``backward`` reads
only ``a`` and ``da`` (so ``z`` may be ``a`` itself) and takes ``out=`` too.
A layer that owns its ``z`` (convolution, whose ``z`` is a work array reused
from pass to pass) then applies the activation in place and puts ``dz`` in a
work array, instead of allocating and touching tens of megabytes more every
step; the result is the same either way.

``backward`` gets both the pre-activation ``z`` and the output ``a``, so it can
use whichever is cheaper (ReLU needs ``z > 0``, tanh ``1 - a**2``; GELU and SiLU
need ``z``). Names are looked up in a registry: every built-in is registered
below exactly as a user's own would be, with :func:`register_activation`, and a
registered name works wherever an activation name does (``Dense``, ``Conv2D``,
checkpoints, the scripts' ``--activation``).

All functions keep the input dtype (Python-float constants are weak scalars)
and never write into their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from purenn._checks import show
from purenn.initializers import INITIALIZERS

__all__ = [
    "LEAKY_SLOPE",
    "Activation",
    "activation_names",
    "activation_validator",
    "get_activation",
    "register_activation",
]

LEAKY_SLOPE = 0.01
"""Slope of ``leaky_relu`` for negative inputs."""


class Activation(NamedTuple):
    """A registered activation: its name, its two functions, whether they can run
    in place, and the weight initialiser layers default to in front of it."""

    name: str
    forward: Callable[..., np.ndarray]
    backward: Callable[..., np.ndarray]
    in_place: bool = False
    weight_init: str = "glorot_uniform"


_REGISTRY: dict[str, Activation] = {}


def register_activation(
    name: str,
    forward: Callable[..., np.ndarray],
    backward: Callable[..., np.ndarray],
    *,
    in_place: bool = False,
    weight_init: str = "glorot_uniform",
) -> None:
    """Make ``name`` usable wherever an activation name is (``Dense(8, name)``).

    Args:
        name: the name layers and checkpoints store, e.g. ``"mish"``.
        forward: ``forward(z) -> a``, elementwise or along the last axis, keeping
            ``z``'s shape and dtype.
        backward: ``backward(z, a, da) -> dz``, the gradient with respect to ``z``
            given ``dL/da``; it must not write into its arguments.
        in_place: both functions also take ``out=`` (an array of the result's
            shape and dtype) and write the result there and return it;
            ``forward`` is elementwise, so ``out`` may be ``z`` itself; and
            ``backward`` reads only ``a`` and ``da``, so it may be given ``a``
            as ``z``. Layers may then run the activation in place.
        weight_init: the initialiser ``Dense`` and ``Conv2D`` use in front of
            this activation when their ``weight_init`` is None: ``"he_normal"``
            for activations that pass about half of a zero-mean input (the ReLU
            family), ``"glorot_uniform"`` (the default) for symmetric ones.

    Raises:
        TypeError: for a name that is not a string or functions that are not callable.
        ValueError: for an empty name, or a name already registered with other
            functions (a module registering the same pair again is fine).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"an activation name must be a non-empty string; got {show(name)}")
    for what, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise TypeError(
                f"register_activation({name!r}): {what} must be a function; got {show(fn)}"
            )
    if not isinstance(in_place, bool):
        raise TypeError(f"register_activation({name!r}): in_place must be True or False")
    if weight_init not in INITIALIZERS:
        raise ValueError(
            f"register_activation({name!r}): weight_init must be one of "
            f"{', '.join(map(repr, INITIALIZERS))}; got {show(weight_init)}"
        )
    entry = Activation(name, forward, backward, in_place, weight_init)
    known = _REGISTRY.get(name)
    if known is not None and not _same_functions(known, entry):
        raise ValueError(
            f"activation {name!r} is already registered with other functions "
            f"({known.forward.__module__}.{known.forward.__qualname__}); pick another name"
        )
    _REGISTRY[name] = entry


def _same_functions(a: Activation, b: Activation) -> bool:
    """The same pair, or the same pair defined again (a module or notebook cell re-run)."""

    def ident(fn: Callable) -> tuple:
        return getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(fn))

    return (a.forward, a.backward) == (b.forward, b.backward) or (
        ident(a.forward),
        ident(a.backward),
    ) == (ident(b.forward), ident(b.backward))


def get_activation(name: str) -> Activation:
    """The registered activation ``name``.

    Raises:
        ValueError: for a name nobody registered, listing the known ones.
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        known = ", ".join(repr(k) for k in _REGISTRY)
        raise ValueError(
            f"unknown activation {show(name)}; known: {known}. A custom activation must be "
            "registered with purenn.register_activation(name, forward, backward) first "
            "(import the module that registers it)"
        )
    return entry


def activation_validator(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator for a layer's activation field: ``value`` names a registered
    activation (the message names the field, e.g. ``Dense.activation``).

    Raises:
        ValueError: for a name nobody registered.
    """
    try:
        get_activation(value)
    except ValueError as err:
        raise ValueError(f"{type(instance).__name__}.{attribute.name}: {err}") from None


def activation_names() -> tuple[str, ...]:
    """The registered names, built-ins first, in registration order."""
    return tuple(_REGISTRY)


# --------------------------------------------------------------------------- built-ins


def relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(z, 0, out=out)


def relu_backward(
    z: np.ndarray, a: np.ndarray, da: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    # da/dz = 1 where z > 0 (equivalently a > 0), else 0
    return np.multiply(da, a > 0, out=out)


def leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z * LEAKY_SLOPE)


def leaky_relu_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = 1 where z > 0, LEAKY_SLOPE elsewhere
    return np.where(z > 0, da, da * LEAKY_SLOPE)


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # 1 / (1 + exp(-z)) written with tanh: no overflow for large |z|
    if out is None:
        return 0.5 * (1.0 + np.tanh(0.5 * z))
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def sigmoid_backward(
    z: np.ndarray, a: np.ndarray, da: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    # da/dz = a * (1 - a)
    if out is None:
        return (1.0 - a) * a * da
    np.subtract(1.0, a, out=out)
    out *= a
    out *= da
    return out


def tanh(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=out)


def tanh_backward(
    z: np.ndarray, a: np.ndarray, da: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    # da/dz = 1 - a**2
    if out is None:
        return da * (1.0 - a * a)
    np.multiply(a, a, out=out)
    np.subtract(1.0, out, out=out)
    out *= da
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    # shift by the row max: exp never overflows, the result is unchanged
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # Jacobian-vector product: dz_i = a_i * (da_i - sum_j da_j a_j)
    return a * (da - (da * a).sum(axis=-1, keepdims=True))


def linear(z: np.ndarray) -> np.ndarray:
    return z


def linear_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return da


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def gelu(z: np.ndarray) -> np.ndarray:
    # the tanh form, PyTorch's approximate="tanh":
    # a = z/2 (1 + tanh(u)),  u = sqrt(2/pi) (z + 0.044715 z^3)
    u = _GELU_C * (z + _GELU_K * z * z * z)
    return 0.5 * z * (1.0 + np.tanh(u))


def gelu_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = (1 + t)/2 + z/2 (1 - t^2) du/dz,  t = tanh(u),
    # du/dz = sqrt(2/pi) (1 + 3 * 0.044715 z^2)
    t = np.tanh(_GELU_C * (z + _GELU_K * z * z * z))
    du = _GELU_C * (1.0 + 3.0 * _GELU_K * z * z)
    return da * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du)


def silu(z: np.ndarray) -> np.ndarray:
    # a = z sigmoid(z)
    return z * sigmoid(z)


def silu_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = s + z s (1 - s) = s (1 + z (1 - s)),  s = sigmoid(z)
    s = sigmoid(z)
    return da * (s * (1.0 + z * (1.0 - s)))


def elu(z: np.ndarray) -> np.ndarray:
    # a = z for z > 0, exp(z) - 1 otherwise (alpha = 1, PyTorch's default);
    # expm1 of min(z, 0): accurate near 0, no overflow for large z
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def elu_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = 1 for z > 0, exp(z) = a + 1 otherwise
    return np.where(z > 0, da, da * (a + 1.0))


def softplus(z: np.ndarray) -> np.ndarray:
    # log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): finite for any z
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def softplus_backward(z: np.ndarray, a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = sigmoid(z)
    return da * sigmoid(z)


for _name, _fns, _out, _init in (
    ("relu", (relu, relu_backward), True, "he_normal"),
    ("leaky_relu", (leaky_relu, leaky_relu_backward), False, "he_normal"),
    ("sigmoid", (sigmoid, sigmoid_backward), True, "glorot_uniform"),
    ("tanh", (tanh, tanh_backward), True, "glorot_uniform"),
    ("softmax", (softmax, softmax_backward), False, "glorot_uniform"),
    ("linear", (linear, linear_backward), False, "glorot_uniform"),
    ("gelu", (gelu, gelu_backward), False, "he_normal"),
    ("silu", (silu, silu_backward), False, "he_normal"),
    ("elu", (elu, elu_backward), False, "he_normal"),
    ("softplus", (softplus, softplus_backward), False, "glorot_uniform"),
):
    register_activation(_name, *_fns, in_place=_out, weight_init=_init)
del _name, _fns, _out, _init
