"""Toy problems for the first hour: 2-D classification and 1-D regression, seeded.

Each generator is a pure function ``(n, *, noise, rng, ...) -> (x, y)``: the
same ``n``, options and seed give the same bits, and nothing global is drawn
from. ``x`` is float32 by default (``dtype=np.float64`` on request); labels are
int64 class indices ``(n,)``; the regression target of :func:`make_sine` is
``(n, 1)`` in ``x``'s dtype, as the regression losses take it. Samples come in
random order (drawn from ``rng``), so plain in-order batches are mixed too.

::

    x, y = make_spiral(600, noise=0.2, rng=0)      # (600, 2) float32, (600,) int64 in 0..2
    x, y = make_sine(200, noise=0.1, rng=0)        # (200, 1) float32, (200, 1) float32
"""

from __future__ import annotations

import numpy as np

from purenn._checks import (
    as_generator,
    float_dtype,
    nonnegative_float,
    positive_float,
    positive_int,
)

__all__ = ["MAX_TOY_SAMPLES", "make_circles", "make_moons", "make_sine", "make_spiral", "make_xor"]

Pair = tuple[np.ndarray, np.ndarray]

MAX_TOY_SAMPLES = 10_000_000
"""The largest ``n`` a toy generator takes (160 MB of float64 inputs): toy
problems are small, and a mistyped huge ``n`` is refused with a message
instead of failing inside NumPy's allocator."""


def _check_n(n: object) -> int:
    return positive_int(n, "n", MAX_TOY_SAMPLES, " (purenn.datasets.MAX_TOY_SAMPLES)")


def _per_class(n: int, classes: int, what: str) -> np.ndarray:
    """Sample counts per class: ``n`` split as evenly as possible, the first classes
    taking the remainder."""
    if n < classes:
        raise ValueError(f"{what} needs n >= {classes} (one sample per class); got n={n}")
    counts = np.full(classes, n // classes)
    counts[: n % classes] += 1
    return counts


def _shuffled(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, dtype: np.dtype) -> Pair:
    order = rng.permutation(x.shape[0])
    return np.ascontiguousarray(x[order], dtype=dtype), np.ascontiguousarray(y[order])


def make_spiral(
    n: int,
    *,
    noise: float = 0.2,
    rng: np.random.Generator | int,
    classes: int = 3,
    turns: float = 1.0,
    dtype: object = np.float32,
) -> Pair:
    """Interleaved spiral arms, one per class (the CS231n spiral).

    Arm ``j`` runs from the origin out to radius 1, at angle
    ``theta = 2 pi (turns * r + j / classes) + noise * N(0, 1)``: the angle, not
    the position, is jittered, so the arms blur into each other as ``noise`` grows.

    Args:
        n: total number of samples (split evenly over the classes).
        noise: standard deviation of the angle jitter, in radians.
        rng: a Generator or an int seed.
        classes: number of arms, >= 2.
        turns: how many full turns each arm makes.
        dtype: float32 or float64, the dtype of ``x``.

    Returns:
        ``(x, y)``: ``x`` of shape ``(n, 2)`` inside the unit disc (plus noise),
        ``y`` int64 ``(n,)`` in ``0..classes-1``.

    Raises:
        TypeError, ValueError: for a bad ``n``, ``noise``, ``classes``, ``turns``,
            ``dtype`` or ``rng``.
    """
    n = _check_n(n)
    noise = nonnegative_float(noise, "noise")
    classes = positive_int(classes, "classes")
    if classes < 2:
        raise ValueError(f"classes must be >= 2; got {classes}")
    turns = positive_float(turns, "turns")
    dtype = float_dtype(dtype)
    rng = as_generator(rng)
    xs, ys = [], []
    for j, count in enumerate(_per_class(n, classes, "make_spiral")):
        r = np.linspace(0.05, 1.0, count)
        theta = 2 * np.pi * (turns * r + j / classes) + noise * rng.standard_normal(count)
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        ys.append(np.full(count, j, dtype=np.int64))
    return _shuffled(np.concatenate(xs), np.concatenate(ys), rng, dtype)


def make_moons(
    n: int, *, noise: float = 0.1, rng: np.random.Generator | int, dtype: object = np.float32
) -> Pair:
    """Two interleaving half circles (as scikit-learn's ``make_moons`` draws them).

    Class 0 is the upper half circle of radius 1 around (0, 0); class 1 the lower
    one around (1, 0.5). Points are evenly spaced along each arc, then moved by
    ``noise * N(0, I)``.

    Args:
        n: total number of samples (class 0 gets the odd one).
        noise: standard deviation of the Gaussian added to both coordinates.
        rng: a Generator or an int seed.
        dtype: float32 or float64, the dtype of ``x``.

    Returns:
        ``(x, y)``: ``x`` ``(n, 2)`` in about [-1, 2] x [-0.5, 1], ``y`` int64 ``(n,)`` in {0, 1}.
    """
    n = _check_n(n)
    noise = nonnegative_float(noise, "noise")
    dtype = float_dtype(dtype)
    rng = as_generator(rng)
    n0, n1 = _per_class(n, 2, "make_moons")
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    return _shuffled(x, y, rng, dtype)


def make_circles(
    n: int,
    *,
    noise: float = 0.05,
    rng: np.random.Generator | int,
    factor: float = 0.5,
    dtype: object = np.float32,
) -> Pair:
    """A small circle (class 1) inside a large one (class 0): not linearly separable.

    Args:
        n: total number of samples (the outer circle gets the odd one).
        noise: standard deviation of the Gaussian added to both coordinates.
        rng: a Generator or an int seed.
        factor: radius of the inner circle relative to the outer one (radius 1),
            in (0, 1).
        dtype: float32 or float64, the dtype of ``x``.

    Returns:
        ``(x, y)``: ``x`` ``(n, 2)``, ``y`` int64 ``(n,)`` in {0, 1} (1 = inner circle).
    """
    n = _check_n(n)
    noise = nonnegative_float(noise, "noise")
    factor = positive_float(factor, "factor")
    if factor >= 1:
        raise ValueError(f"factor is the inner radius over the outer one, in (0, 1); got {factor}")
    dtype = float_dtype(dtype)
    rng = as_generator(rng)
    n0, n1 = _per_class(n, 2, "make_circles")
    # endpoint=False: 0 and 2 pi are the same point, which would be drawn twice
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    outer = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    inner = factor * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    x = np.concatenate([outer, inner]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    return _shuffled(x, y, rng, dtype)


def make_xor(
    n: int, *, noise: float = 0.25, rng: np.random.Generator | int, dtype: object = np.float32
) -> Pair:
    """Four clusters at the corners (+-1, +-1); the label is 1 where the signs differ.

    With ``n=4, noise=0`` this is exactly the XOR truth table (on -1/+1 inputs),
    in random order. No straight line separates the classes, so a network
    without a hidden layer cannot learn it.

    Args:
        n: total number of samples (spread over the four corners in turn).
        noise: standard deviation of the Gaussian added around each corner.
        rng: a Generator or an int seed.
        dtype: float32 or float64, the dtype of ``x``.

    Returns:
        ``(x, y)``: ``x`` ``(n, 2)``, ``y`` int64 ``(n,)`` in {0, 1}.
    """
    n = _check_n(n)
    noise = nonnegative_float(noise, "noise")
    dtype = float_dtype(dtype)
    rng = as_generator(rng)
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    which = np.arange(n) % 4
    x = corners[which] + noise * rng.standard_normal((n, 2))
    y = (corners[which, 0] != corners[which, 1]).astype(np.int64)
    return _shuffled(x, y, rng, dtype)


def make_sine(
    n: int,
    *,
    noise: float = 0.1,
    rng: np.random.Generator | int,
    periods: float = 1.0,
    dtype: object = np.float32,
) -> Pair:
    """1-D regression: ``y = sin(x) + noise * N(0, 1)`` for ``x`` uniform in
    ``[-pi * periods, pi * periods]``.

    Args:
        n: number of samples.
        noise: standard deviation of the Gaussian added to the targets.
        rng: a Generator or an int seed.
        periods: how many periods of the sine the inputs span.
        dtype: float32 or float64, the dtype of both ``x`` and ``y``.

    Returns:
        ``(x, y)``: ``x`` ``(n, 1)`` and ``y`` ``(n, 1)`` (the shape the MSE loss
        takes), both in ``dtype``.
    """
    n = _check_n(n)
    noise = nonnegative_float(noise, "noise")
    periods = positive_float(periods, "periods")
    dtype = float_dtype(dtype)
    rng = as_generator(rng)
    half = np.pi * periods
    x = rng.uniform(-half, half, size=(n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)
