"""Weight initialisers: functions of (rng, shape, fan_in, fan_out) -> float64 array.

Samples are drawn in float64 and cast by the caller, so a float32 network and a
float64 network made from the same seed hold the same numbers up to rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    # Var(w) = 2 / fan_in keeps the variance of ReLU activations constant (He et al., 2015)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    # Var(w) = 2 / (fan_in + fan_out) balances forward and backward variance (Glorot, 2010)
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def lecun_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def zeros(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int):
    return np.zeros(shape)


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}
