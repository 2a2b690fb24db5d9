"""Learning-rate schedules: values, composition, JSON round trip, errors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import purenn
from purenn import schedules as S


def test_constant():
    s = S.Constant(0.1)
    assert [s(t) for t in (0, 1, 10**6)] == [0.1, 0.1, 0.1]
    assert type(s(np.int64(3))) is float


def test_step_decay():
    s = S.StepDecay(1.0, step_size=10, factor=0.5)
    assert [s(t) for t in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_exponential_decay_smooth_and_staircase():
    s = S.ExponentialDecay(0.2, decay_rate=0.1, decay_steps=100)
    assert s(0) == 0.2
    assert s(50) == pytest.approx(0.2 * 0.1**0.5, rel=1e-15)
    assert s(200) == pytest.approx(0.002, rel=1e-15)
    stairs = S.ExponentialDecay(0.2, 0.1, 100, staircase=True)
    assert stairs(99) == 0.2 and stairs(100) == pytest.approx(0.02, rel=1e-15)


def test_cosine_decay():
    s = S.CosineDecay(1.0, decay_steps=100, final_value=0.1)
    assert s(0) == 1.0
    assert s(50) == pytest.approx(0.55, rel=1e-15)
    assert s(100) == pytest.approx(0.1, rel=1e-15) and s(1000) == pytest.approx(0.1, rel=1e-15)
    values = [s(t) for t in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    t = 30
    assert s(t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 100)), rel=1e-15)


def test_linear_warmup_then_the_wrapped_schedule_on_its_own_clock():
    s = S.LinearWarmup(S.CosineDecay(0.1, 900), warmup_steps=100)
    assert s(0) == 0.0
    assert s(50) == pytest.approx(0.05, rel=1e-15)
    assert s(100) == pytest.approx(0.1, rel=1e-15)  # cosine at its own step 0
    assert s(550) == pytest.approx(0.05, rel=1e-12)  # cosine half way
    assert s(1000) == pytest.approx(0.0, abs=1e-15)
    flat = S.LinearWarmup(0.3, 10, start_value=0.1)
    assert flat.after == S.Constant(0.3)
    assert flat(0) == 0.1 and flat(5) == pytest.approx(0.2) and flat(10) == 0.3
    nested = S.LinearWarmup(S.StepDecay(1.0, 5, 0.5), 2)
    assert [nested(t) for t in (0, 1, 2, 6, 7)] == [0.0, 0.5, 1.0, 1.0, 0.5]


ALL = [
    S.Constant(0.01),
    S.StepDecay(0.1, 30, 0.2),
    S.ExponentialDecay(0.1, 0.96, 1000, staircase=True),
    S.CosineDecay(0.1, 500, 1e-4),
    S.LinearWarmup(S.CosineDecay(0.1, 500), 50, 0.001),
    S.LinearWarmup(S.LinearWarmup(0.2, 5), 3),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_json_round_trip_gives_an_equal_schedule(schedule):
    text = json.dumps(S.to_dict(schedule))
    back = S.from_dict(json.loads(text))
    assert back == schedule and hash(back) == hash(schedule)
    assert [back(t) for t in range(0, 2000, 37)] == [schedule(t) for t in range(0, 2000, 37)]


def test_schedules_are_frozen():
    with pytest.raises(AttributeError):
        S.Constant(0.1).value = 0.2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: S.Constant(-1.0), ValueError, ">= 0"),
        (lambda: S.Constant(float("inf")), ValueError, "finite"),
        (lambda: S.Constant("0.1"), TypeError, "float"),
        (lambda: S.StepDecay(0.1, 0), ValueError, "positive int"),
        (lambda: S.StepDecay(0.1, 2.5), TypeError, "positive int"),
        (lambda: S.StepDecay(0.1, 10, factor=0.0), ValueError, "> 0"),
        (lambda: S.ExponentialDecay(0.1, 0.5, 10, staircase="yes"), TypeError, "True or False"),
        (lambda: S.CosineDecay(0.1, -5), ValueError, "positive int"),
        (lambda: S.LinearWarmup("fast", 10), TypeError, "float"),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("step", [-1, 1.5, "3", True])
def test_bad_steps_are_refused(step):
    with pytest.raises(ValueError, match="int >= 0"):
        S.CosineDecay(0.1, 10)(step)


def test_from_dict_refuses_unknown_or_malformed_data():
    with pytest.raises(ValueError, match="not a stored schedule"):
        S.from_dict({"type": "Sneaky", "value": 1})
    with pytest.raises(ValueError, match="malformed Constant"):
        S.from_dict({"type": "Constant", "rate": 1})
    with pytest.raises(TypeError, match=r"only purenn\.schedules"):
        S.to_dict(lambda t: 0.1)


def _chain(levels: int) -> S.Scaled | S.Constant:
    """``levels`` schedules wrapped in each other: ``Scaled(Scaled(... Constant(0.1)))``."""
    schedule = S.Constant(0.1)
    for _ in range(levels - 1):
        schedule = S.Scaled(schedule, 0.5)
    return schedule


def test_schedules_nested_past_the_depth_limit_are_refused_not_a_recursion_error():
    limit = purenn.tree.MAX_TREE_DEPTH
    assert S.from_dict(S.to_dict(_chain(limit))) == _chain(limit)  # at the limit: works
    deep = r"nested more than 64 levels deep \(purenn.tree.MAX_TREE_DEPTH\) at '{}/after/after"
    with pytest.raises(ValueError, match=deep.format("schedule")):
        S.to_dict(_chain(limit + 1))
    stored = S.to_dict(_chain(limit))
    with pytest.raises(ValueError, match=deep.format("data")):
        S.from_dict({"type": "Scaled", "after": stored, "scale": 0.5})
    hostile: dict = {"w": 1.0}
    for _ in range(2000):
        hostile = {"a": hostile}
    with pytest.raises(TypeError, match=r"only purenn\.schedules .* got <a dict nested too deep"):
        S.to_dict(hostile)
    with pytest.raises(ValueError, match="not a stored schedule: <a dict nested too deep"):
        S.from_dict(hostile)
    with pytest.raises(ValueError, match="not a stored schedule"):
        S.from_dict({"type": {}})  # unhashable: no bare "unhashable type" TypeError
