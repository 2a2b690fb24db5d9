"""Activation functions, each forward beside its derivative.

Every backward is written in terms of the forward *output* ``a`` (not the
pre-activation ``z``), so a layer only has to keep ``a`` for its backward pass.
All functions keep the input dtype (Python-float constants are weak scalars).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEAKY_SLOPE = 0.01
"""Slope of ``leaky_relu`` for negative inputs."""


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def relu_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = 1 where z > 0 (equivalently a > 0), else 0
    return da * (a > 0)


def leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z * LEAKY_SLOPE)


def leaky_relu_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = 1 where z > 0, LEAKY_SLOPE elsewhere (a has the sign of z)
    return np.where(a > 0, da, da * LEAKY_SLOPE)


def sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-z)) written with tanh: no overflow for large |z|
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def sigmoid_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = a * (1 - a)
    return da * a * (1.0 - a)


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def tanh_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # da/dz = 1 - a**2
    return da * (1.0 - a * a)


def softmax(z: np.ndarray) -> np.ndarray:
    # shift by the row max: exp never overflows, the result is unchanged
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    # Jacobian-vector product: dz_i = a_i * (da_i - sum_j da_j a_j)
    return a * (da - (da * a).sum(axis=-1, keepdims=True))


def linear(z: np.ndarray) -> np.ndarray:
    return z


def linear_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return da


ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[..., np.ndarray]]] = {
    "relu": (relu, relu_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "softmax": (softmax, softmax_backward),
    "linear": (linear, linear_backward),
}
"""Name -> (forward(z) -> a, backward(a, da) -> dz)."""
