"""Argument checks shared by the public functions (validate once, at the boundary)."""

from __future__ import annotations

import math
import numbers

import numpy as np


def as_generator(rng: object, name: str = "rng") -> np.random.Generator:
    """Turn ``rng`` (a ``numpy.random.Generator`` or an int seed) into a Generator.

    Raises:
        TypeError: for anything else, including ``np.random.RandomState`` and bools.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{name} must be a numpy.random.Generator or an int seed; got {type(rng).__name__}. "
        f"Pass e.g. {name}=np.random.default_rng(0)"
    )


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an int, refusing bools, non-integers and values < 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int; got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    return int(value)


def as_shape(value: object, name: str) -> tuple[int, ...]:
    """``16``, ``(16,)`` or ``(1, 28, 28)`` as a tuple of positive Python ints.

    Raises:
        TypeError: for anything but an int or a non-empty tuple or list of ints.
        ValueError: for a size below 1.
    """
    dims = (value,) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(dims, tuple | list)
        or not dims
        or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims)
    ):
        raise TypeError(f"{name} must be an int or a tuple of ints; got {value!r}")
    if min(dims) < 1:
        raise ValueError(f"{name} must hold positive sizes; got {value!r}")
    return tuple(int(d) for d in dims)


def as_bool(value: object) -> bool:
    """attrs converter: ``True``/``False`` (NumPy bools too) as a Python bool; nothing else."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"expected True or False; got {value!r} ({type(value).__name__})")
    return bool(value)


def float_dtype(dtype: object) -> np.dtype:
    """Return ``dtype`` as float32 or float64, refusing any other dtype."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as err:
        raise TypeError(f"dtype must be float32 or float64; got {dtype!r}") from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dt}")
    return dt


def check_lr(lr: object) -> float:
    """A learning rate as a Python float (a weak scalar: float32 stays float32),
    refusing bools, non-numbers, NaN, inf and negative values."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a float; got {lr!r} ({type(lr).__name__})")
    lr = float(lr)
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be finite and >= 0; got {lr}")
    return lr


def positive_float(value: object, name: str) -> float:
    """``value`` as a Python float, refusing bools, non-numbers, NaN, inf and values <= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive float; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite float; got {value}")
    return value


def nonnegative_float(value: object, name: str) -> float:
    """``value`` as a Python float, refusing bools, non-numbers, NaN, inf and values < 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float >= 0; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0; got {value}")
    return value
