"""Learning-rate schedules: pure functions of the step, as small frozen values.

A schedule is called with the optimizer's step count (0 for the first update)
and returns the learning rate as a Python float::

    lr = purenn.schedules.LinearWarmup(purenn.schedules.CosineDecay(0.1, 900), 100)
    opt = purenn.optim.sgd(lr, momentum=0.9)
    lr(0), lr(50), lr(100), lr(1000)   # 0.0, 0.05, 0.1, 0.0

Steps count optimizer updates, not epochs: for a decay every epoch, use
``step_size = ceil(n_train / batch_size)``. Schedules are immutable, comparable
and JSON-able (:func:`to_dict` / :func:`from_dict`), so they are saved with a
checkpoint and a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import attrs

from purenn._checks import bool_field, float_field, int_field, show, too_deep
from purenn.checkpoint import register_record
from purenn.tree import MAX_TREE_DEPTH

__all__ = [
    "Constant",
    "CosineDecay",
    "ExponentialDecay",
    "LinearWarmup",
    "Scaled",
    "StepDecay",
    "from_dict",
    "to_dict",
]


def _rate_field(**kwargs: Any) -> Any:
    """A learning rate: a finite float >= 0."""
    return float_field(low=0.0, **kwargs)


def _steps_field() -> Any:
    """A number of steps: an int >= 1."""
    return int_field(minimum=1)


def _factor_field(**kwargs: Any) -> Any:
    """A multiplicative factor, finite and > 0 (below 1 decays)."""
    return float_field(low=0.0, low_open=True, **kwargs)


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"a schedule takes the step count, an int >= 0; got {show(step)}")
    return int(step)


@attrs.frozen
class Constant:
    """``lr(step) = value``.

    Args:
        value: the learning rate, >= 0.
    """

    value: float = _rate_field()

    def __call__(self, step: int) -> float:
        _step(step)
        return self.value


@attrs.frozen
class StepDecay:
    """``lr(step) = init_value * factor ** floor(step / step_size)``.

    Args:
        init_value: the learning rate for the first ``step_size`` steps.
        step_size: steps between drops.
        factor: multiplier applied at each drop (0.1 divides by ten).
    """

    init_value: float = _rate_field()
    step_size: int = _steps_field()
    factor: float = _factor_field(default=0.1)

    def __call__(self, step: int) -> float:
        return self.init_value * self.factor ** (_step(step) // self.step_size)


@attrs.frozen
class ExponentialDecay:
    """``lr(step) = init_value * decay_rate ** (step / decay_steps)``.

    Args:
        init_value: the learning rate at step 0.
        decay_rate: the factor applied over every ``decay_steps`` steps.
        decay_steps: the steps over which the rate is multiplied by ``decay_rate``.
        staircase: use ``floor(step / decay_steps)``: drops in discrete stairs.
    """

    init_value: float = _rate_field()
    decay_rate: float = _factor_field()
    decay_steps: int = _steps_field()
    staircase: bool = bool_field(default=False)

    def __call__(self, step: int) -> float:
        step = _step(step)
        power = step // self.decay_steps if self.staircase else step / self.decay_steps
        try:
            return self.init_value * self.decay_rate**power
        except OverflowError:  # a growing rate past float range: the optimizer refuses inf
            return math.inf


@attrs.frozen
class CosineDecay:
    """Half a cosine from ``init_value`` down to ``final_value`` over ``decay_steps``::

        lr(step) = final + (init - final) * (1 + cos(pi * min(step, T) / T)) / 2

    and ``final_value`` after step ``T = decay_steps``.

    Args:
        init_value: the learning rate at step 0.
        decay_steps: the length ``T`` of the decay.
        final_value: the learning rate from step ``T`` on.
    """

    init_value: float = _rate_field()
    decay_steps: int = _steps_field()
    final_value: float = _rate_field(default=0.0)

    def __call__(self, step: int) -> float:
        frac = min(_step(step), self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * frac))
        return self.final_value + (self.init_value - self.final_value) * cosine


def _schedule_or_rate(value: Any) -> Any:
    if callable(value) and not isinstance(value, numbers.Number):
        return value
    return Constant(value)


@attrs.frozen
class LinearWarmup:
    """Ramp linearly from ``start_value`` up to ``after(0)``, then follow ``after``.

    ::

        lr(step) = start + (after(0) - start) * step / W     for step < W
        lr(step) = after(step - W)                           for step >= W

    The wrapped schedule starts its own clock when the warm-up ends, so
    ``LinearWarmup(CosineDecay(0.1, 900), 100)`` spends 1000 steps in all.

    Args:
        after: the schedule (or a constant float) that follows the warm-up.
        warmup_steps: the length ``W`` of the ramp.
        start_value: the learning rate at step 0.
    """

    after: Any = attrs.field(converter=_schedule_or_rate)
    warmup_steps: int = _steps_field()
    start_value: float = _rate_field(default=0.0)

    def __call__(self, step: int) -> float:
        step = _step(step)
        if step >= self.warmup_steps:
            return float(self.after(step - self.warmup_steps))
        peak = float(self.after(0))
        return self.start_value + (peak - self.start_value) * (step / self.warmup_steps)


@attrs.frozen
class Scaled:
    """``lr(step) = scale * after(step)``: another schedule, multiplied.

    What :class:`purenn.callbacks.ReduceLROnPlateau` turns a schedule into when
    it lowers the learning rate (a float learning rate is simply multiplied).

    Args:
        after: the schedule (or a constant float) to scale.
        scale: the factor, > 0.
    """

    after: Any = attrs.field(converter=_schedule_or_rate)
    scale: float = _factor_field()

    def __call__(self, step: int) -> float:
        return self.scale * float(self.after(step))


SCHEDULES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Constant, StepDecay, ExponentialDecay, CosineDecay, LinearWarmup, Scaled)
}
"""Schedule classes by name (the name is stored in JSON)."""

for _cls in SCHEDULES.values():
    register_record(_cls)
del _cls


def to_dict(schedule: Any) -> dict:
    """A JSON-able dict, ``{"type": "CosineDecay", "init_value": 0.1, ...}``.

    Raises:
        TypeError: for a schedule that is not one of :data:`SCHEDULES` (a plain
            function cannot be stored; wrap its logic in a schedule class).
        ValueError: for schedules wrapped in each other more than
            :data:`purenn.tree.MAX_TREE_DEPTH` deep.
    """
    return _to_dict(schedule, "schedule", 1)


def _to_dict(schedule: Any, path: str, depth: int) -> dict:
    if depth > MAX_TREE_DEPTH:
        raise too_deep("schedule", path, MAX_TREE_DEPTH)
    if type(schedule) not in SCHEDULES.values():
        raise TypeError(
            f"only purenn.schedules values can be stored as JSON; got {show(schedule)}. "
            f"Use one of {', '.join(SCHEDULES)}"
        )
    out: dict[str, Any] = {"type": type(schedule).__name__}
    for field in attrs.fields(type(schedule)):
        value = getattr(schedule, field.name)
        if type(value) in SCHEDULES.values():
            value = _to_dict(value, f"{path}/{field.name}", depth + 1)
        out[field.name] = value
    return out


def from_dict(data: dict) -> Any:
    """Rebuild a schedule from :func:`to_dict`'s output (validators run again).

    Raises:
        ValueError: for an unknown type or malformed fields, or dicts nested more
            than :data:`purenn.tree.MAX_TREE_DEPTH` deep.
    """
    return _from_dict(data, "data", 1)


def _from_dict(data: Any, path: str, depth: int) -> Any:
    if depth > MAX_TREE_DEPTH:
        raise too_deep("data", path, MAX_TREE_DEPTH)
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in SCHEDULES:  # a dict "type" is unhashable
        raise ValueError(
            f"not a stored schedule: {show(data)}; expected a dict with 'type' one of "
            f"{', '.join(SCHEDULES)}"
        )
    fields = {k: v for k, v in data.items() if k != "type"}
    fields = {
        k: _from_dict(v, f"{path}/{k}", depth + 1) if isinstance(v, dict) else v
        for k, v in fields.items()
    }
    try:
        return SCHEDULES[data["type"]](**fields)
    except TypeError as err:
        raise ValueError(f"malformed {data['type']} schedule {show(data)}: {err}") from err
