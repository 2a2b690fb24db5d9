"""Argument checks shared by the public functions (validate once, at the boundary)."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np


def show(value: object, limit: int | None = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (None: not cut),
    and never an error (an int of 10,000 digits has no repr at all: Python refuses
    to convert it; a dict nested thousands deep exhausts the recursion limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<an int of {value.bit_length()} bits>" if isinstance(value, int) else "<?>"
    except RecursionError:
        return f"<a {type(value).__name__} nested too deep to print>"
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


class TooDeepError(ValueError):
    """A tree nested deeper than ``purenn.tree.MAX_TREE_DEPTH`` (a ValueError:
    a bad value, not a wrong kind of object)."""


def too_deep(name: str, path: str, limit: int) -> TooDeepError:
    """The error for an argument ``name`` (a tree, a stored schedule, a checkpoint
    extra) whose dicts (or lists, or records) nest deeper than ``limit`` levels;
    ``path`` is where the walk stopped.

    Walkers count levels as they recurse and raise this when the count passes
    the limit (a compare per node, no second walk), long before Python's own
    recursion limit turns into a RecursionError. Use it as
    ``if depth > limit: raise too_deep(name, path, limit)``.
    """
    return TooDeepError(
        f"{name} is nested more than {limit} levels deep (purenn.tree.MAX_TREE_DEPTH) at "
        f"{show(path, 60)}; params, gradient and state trees, stored schedules and "
        "checkpoint extras nest only a few levels: pass one that does not nest without end"
    )


def check_callable(value: object, name: str, what: str) -> Any:
    """``value`` if it is callable; else a TypeError ``"{name} must be {what}; got ..."``
    (``what`` says how it is called: ``"a function augment(xb, rng) -> xb"``)."""
    if not callable(value):
        raise TypeError(f"{name} must be {what}; got {type(value).__name__} {show(value, 40)}")
    return value


def as_path(value: object, name: str = "path") -> Path:
    """``value`` as a ``Path``; a clear TypeError naming ``name`` for anything
    that is not a ``str`` or ``os.PathLike`` (pathlib's own message names no
    argument), and a ValueError for an empty one (which pathlib reads as ".",
    the current folder)."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(
            f"{name} must be a str or os.PathLike (a file path); got {type(value).__name__} "
            f"{show(value, 40)}"
        )
    if not os.fspath(value):
        raise ValueError(f"{name} is empty; pass a file or folder path")
    return Path(value)


def to_float(value: numbers.Real) -> float:
    """A real number as a Python float; an int beyond float range becomes +-inf
    (``float(10**400)`` raises OverflowError), for the caller's finiteness check."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def is_finite_real(value: object) -> bool:
    """Whether ``value`` is a real number (not a bool) with a finite float value."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(to_float(value))


def as_generator(rng: object, name: str = "rng") -> np.random.Generator:
    """Turn ``rng`` (a ``numpy.random.Generator`` or an int seed) into a Generator.

    Raises:
        TypeError: for anything else, including ``np.random.RandomState`` and bools.
        ValueError: for a negative int seed (NumPy takes only seeds >= 0).
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{name} as an int seed must be >= 0; got {show(rng)}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{name} must be a numpy.random.Generator or an int seed; got {type(rng).__name__}. "
        f"Pass e.g. {name}=np.random.default_rng(0)"
    )


def as_array(value: object, name: str) -> np.ndarray:
    """``np.asarray(value)``, refusing what NumPy cannot make one array of (a
    ragged nested list, one nested deeper than NumPy's 64 dimensions) with a
    message naming the argument instead of NumPy's.

    Raises:
        TypeError: for such a value.
    """
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RecursionError) as err:
        raise TypeError(
            f"{name} must be an array, or a nested list of numbers of one shape; got "
            f"{show(value)} ({type(value).__name__}), which is not one array"
        ) from err


def as_seed(value: object, name: str = "seed") -> int:
    """``value`` as a Python int >= 0, what NumPy's seeding takes.

    Checked here rather than left to ``np.random.SeedSequence``, which accepts
    sequences too and crashes the interpreter on one nested thousands deep.

    Raises:
        TypeError: for anything but an int (bools included).
        ValueError: for a negative int.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0; got {show(value)} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0; got {show(value)}")
    return int(value)


MAX_SAMPLE_SIZE = 2**31 - 1
"""The most values one sample may have anywhere in a network (its input, any
layer's output), and so the largest size field of a layer spec (units, filters,
kernel, stride, padding, reshape target): 8 GiB of float32 per sample. Larger
sizes are refused when the spec is made, with a message, instead of failing
inside NumPy later."""


def positive_int(value: object, name: str, maximum: int | None = None, why: str = "") -> int:
    """Return ``value`` as an int, refusing bools, non-integers, values < 1 and,
    when ``maximum`` is given, values above it (``why`` ends that message)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be a positive int; got {show(value)} ({type(value).__name__})"
        )
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}; got {value:,}{why}")
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
        raise TypeError(f"{name} must be an int or a tuple of ints; got {show(value)}")
    if min(dims) < 1:
        raise ValueError(f"{name} must hold positive sizes; got {show(value)}")
    dims = tuple(int(d) for d in dims)
    check_sample_size(dims, name)
    return dims


def check_sample_size(shape: tuple[int, ...], name: str) -> None:
    """Raise ValueError if a per-sample ``shape`` holds more than :data:`MAX_SAMPLE_SIZE` values."""
    if math.prod(shape) > MAX_SAMPLE_SIZE:
        raise ValueError(
            f"{name} {show(shape)} has {math.prod(shape):,} values per sample, more than "
            f"the {MAX_SAMPLE_SIZE:,} (purenn MAX_SAMPLE_SIZE) a sample may have"
        )


def as_bool(value: object) -> bool:
    """attrs converter: ``True``/``False`` (NumPy bools too) as a Python bool; nothing else."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"expected True or False; got {show(value)} ({type(value).__name__})")
    return bool(value)


def float_dtype(dtype: object) -> np.dtype:
    """Return ``dtype`` as float32 or float64, refusing any other dtype."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    # NumPy's ValueError: a dict or list it cannot parse; RecursionError: a deep one
    except (TypeError, ValueError, RecursionError) as err:
        raise TypeError(f"dtype must be float32 or float64; got {show(dtype)}") from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dt}")
    return dt


def _bounded_float(value: object, name: str, positive: bool, expected: str, bound: str) -> float:
    """``value`` as a Python float (a weak scalar), refusing bools and non-numbers
    (TypeError: ``name must be <expected>``) and NaN, inf and values below the
    bound, 0 excluded if ``positive`` (ValueError: ``name must be <bound>``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; got {show(value)} ({type(value).__name__})")
    value = to_float(value)
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def check_lr(lr: object) -> float:
    """A learning rate as a Python float (a weak scalar: float32 stays float32),
    refusing bools, non-numbers, NaN, inf and negative values."""
    return _bounded_float(lr, "lr", False, "a float", "finite and >= 0")


def positive_float(value: object, name: str) -> float:
    """``value`` as a Python float, refusing bools, non-numbers, NaN, inf and values <= 0."""
    return _bounded_float(value, name, True, "a positive float", "a positive finite float")


def nonnegative_float(value: object, name: str) -> float:
    """``value`` as a Python float, refusing bools, non-numbers, NaN, inf and values < 0."""
    return _bounded_float(value, name, False, "a float >= 0", "a finite float >= 0")


def check_flag(value: object, name: str) -> bool:
    """A boolean flag argument as a Python bool: ``True``/``False`` or a NumPy bool.

    A truthy string or number is refused rather than read as True:
    ``forward(train="no")`` must not run dropout.

    Raises:
        TypeError: for anything but a bool.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {show(value)} ({type(value).__name__})")
    return bool(value)


def check_optional_flag(value: object, name: str) -> bool | None:
    """:func:`check_flag`, letting None (meaning "decide for me") through."""
    return None if value is None else check_flag(value, name)


# --------------------------------------------------------------------------- spec fields
#
# Every number a spec (a layer, a loss, an optimizer, a schedule, a callback)
# stores goes through the same two steps: a converter that turns NumPy scalars
# into Python ones (so the spec stays hashable alike, JSON-able and savable),
# then a validator that checks kind, finiteness and range and names the field
# as ``Class.field``. Converters cannot name the field (attrs gives them only
# the value), which is why the checks live in the validators.


def field_name(instance: object, attribute: attrs.Attribute) -> str:
    """How messages name a spec field: ``Conv2D.filters``."""
    return f"{type(instance).__name__}.{attribute.name}"


def plain_number(value: object) -> object:
    """attrs converter: a NumPy scalar as the Python number it holds; anything
    else unchanged, for the field's validator to judge."""
    if isinstance(value, np.bool_):
        return bool(value)  # stays a bool, which the number validators refuse
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def plain_float(value: object) -> object:
    """attrs converter: any real number but a bool as a Python float; anything
    else unchanged, for the field's validator to judge."""
    value = plain_number(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool | float):
        return to_float(value)  # an int beyond float range: inf, which the validator refuses
    return value


def int_validator(minimum: int = 1, maximum: int | None = None):
    """attrs validator: a Python int (not a bool) in ``[minimum, maximum]``."""
    want = "a positive int" if minimum == 1 else f"an int >= {minimum}"

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        name = field_name(instance, attribute)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be {want}; got {show(value)} ({type(value).__name__})")
        if value < minimum:
            raise ValueError(f"{name} must be {want}; got {show(value)}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{name} must be at most {maximum:,}; got {show(value)}")

    return check


def float_validator(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
):
    """attrs validator: a finite Python float in the given interval (after
    :func:`plain_float`), or None when ``allow_none``."""
    if low == -math.inf and high == math.inf:
        want = "a finite float"
    elif high == math.inf:
        want = f"a finite float {'>' if low_open else '>='} {low:g}"
    else:
        want = f"a float in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if allow_none:
        want += " or None"

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value is None and allow_none:
            return
        name = field_name(instance, attribute)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be {want}; got {show(value)} ({type(value).__name__})")
        inside = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
        if not isinstance(value, float) or not math.isfinite(value) or not inside:
            raise ValueError(f"{name} must be {want}; got {show(value)}")

    return check


def int_field(*, minimum: int = 1, maximum: int | None = None, **kwargs: Any) -> Any:
    """``attrs.field`` for an int: NumPy ints stored as Python ints, bools refused.
    A layer's size field passes ``maximum=MAX_SAMPLE_SIZE``."""
    return attrs.field(converter=plain_number, validator=int_validator(minimum, maximum), **kwargs)


def float_field(
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
    **kwargs: Any,
) -> Any:
    """``attrs.field`` for a float: any real but a bool stored as a Python float,
    NaN, inf and values outside the interval refused, naming the field."""
    check = float_validator(
        low, high, low_open=low_open, high_open=high_open, allow_none=allow_none
    )
    return attrs.field(converter=plain_float, validator=check, **kwargs)


def one_of(options: Any, allow_none: bool = False):
    """attrs validator: the value is one of ``options`` (the keys of a dict, or the
    items of a tuple); the message lists them and names the field."""

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value is None and allow_none:
            return
        if not isinstance(value, str) or value not in options:
            valid = ", ".join(repr(k) for k in options)
            extra = " or None" if allow_none else ""
            raise ValueError(
                f"{field_name(instance, attribute)} must be one of {valid}{extra}; "
                f"got {show(value)}"
            )

    return check


def bool_validator(instance: object, attribute: attrs.Attribute, value: object) -> None:
    """attrs validator: a Python bool (after :func:`plain_number`), naming the field."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{field_name(instance, attribute)} must be True or False; got {show(value)} "
            f"({type(value).__name__})"
        )


def bool_field(**kwargs: Any) -> Any:
    """``attrs.field`` for a flag: a NumPy bool stored as a Python bool; a truthy
    string or number refused."""
    return attrs.field(converter=plain_number, validator=bool_validator, **kwargs)


MAX_CLASSES = 10_000
"""The most classes :func:`purenn.preprocessing.one_hot` and
:func:`purenn.metrics.confusion_matrix` accept. A ``(k, k)`` int64 confusion
matrix of 10,000 classes is 800 MB; more is almost always a label that is not a
class index (a raw id, a float cast to int), refused before any allocation."""


def num_classes(value: object, name: str) -> int:
    """A number of classes: an int in ``[1, MAX_CLASSES]``.

    Raises:
        TypeError: for a non-int or a bool.
        ValueError: below 1 or above :data:`MAX_CLASSES`.
    """
    k = positive_int(value, name)
    if k > MAX_CLASSES:
        raise ValueError(
            f"{name} must be at most {MAX_CLASSES:,} classes; got {k:,}. Labels must be "
            "class indices 0..k-1: map raw ids to indices first (np.unique(y, "
            "return_inverse=True) does)"
        )
    return k
