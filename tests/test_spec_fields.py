"""Every number a spec stores (layers, losses, optimizers, schedules, callbacks)
goes through the same converter and validator: NumPy scalars are kept as Python
numbers (so specs stay JSON-able and savable), and bools, NaN, inf, negative
sizes and strings are refused with a message naming ``Class.field``, what was
expected and what came."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

import purenn as pn
from purenn import callbacks as C
from purenn import optim
from purenn import schedules as S
from purenn._checks import MAX_SAMPLE_SIZE
from purenn.base import layer_classes, layer_from_dict, layer_to_dict
from purenn.losses import Huber

CONV = {"filters": 2, "kernel_size": 3}
SGD_NESTEROV = {"lr": 0.1, "momentum": 0.9}
EXP = {"init_value": 0.1, "decay_rate": 0.5, "decay_steps": 5}

# (class, the other arguments it needs, field, kind, a valid value)
# kind: "int" (>= 1), "count" (int >= 0), "float" (finite, >= 0 or > 0),
# "signed" (any finite float), "pair" (an int or a pair of ints), "shape", "bool"
CASES = [
    (pn.Dense, {"units": 3}, "units", "int", 4),
    (pn.Dense, {"units": 3}, "bias_init", "signed", 0.5),
    (pn.Dropout, {"rate": 0.5}, "rate", "float", 0.25),
    (pn.Conv2D, CONV, "filters", "int", 4),
    (pn.Conv2D, CONV, "kernel_size", "pair", 2),
    (pn.Conv2D, CONV, "stride", "pair", 2),
    (pn.Conv2D, CONV, "padding", "pair", 1),
    (pn.Conv2D, CONV, "bias_init", "signed", 0.1),
    (pn.MaxPool2D, {"pool_size": 2}, "pool_size", "pair", 3),
    (pn.MaxPool2D, {"pool_size": 2}, "stride", "pair", 1),
    (pn.AvgPool2D, {"pool_size": 2}, "pool_size", "pair", 3),
    (pn.AvgPool2D, {"pool_size": 2}, "stride", "pair", 1),
    (pn.Reshape, {"shape": (4,)}, "shape", "shape", 4),
    (pn.BatchNorm, {}, "momentum", "float", 0.5),
    (pn.BatchNorm, {}, "eps", "float", 1e-3),
    (pn.LayerNorm, {}, "eps", "float", 1e-3),
    (Huber, {}, "delta", "float", 2.0),
    (optim.SGD, {"lr": 0.1}, "lr", "float", 0.2),
    (optim.SGD, {"lr": 0.1}, "momentum", "float", 0.5),
    (optim.SGD, SGD_NESTEROV, "nesterov", "bool", True),
    (optim.SGD, {"lr": 0.1}, "weight_decay", "float", 0.1),
    (optim.SGD, {"lr": 0.1}, "clip_norm", "float", 1.0),
    (optim.RMSprop, {"lr": 0.1}, "lr", "float", 0.2),
    (optim.RMSprop, {"lr": 0.1}, "rho", "float", 0.5),
    (optim.RMSprop, {"lr": 0.1}, "eps", "float", 1e-6),
    (optim.RMSprop, {"lr": 0.1}, "momentum", "float", 0.5),
    (optim.RMSprop, {"lr": 0.1}, "weight_decay", "float", 0.1),
    (optim.RMSprop, {"lr": 0.1}, "clip_norm", "float", 1.0),
    (optim.Adam, {"lr": 0.1}, "lr", "float", 0.2),
    (optim.Adam, {"lr": 0.1}, "b1", "float", 0.5),
    (optim.Adam, {"lr": 0.1}, "b2", "float", 0.5),
    (optim.Adam, {"lr": 0.1}, "eps", "float", 1e-6),
    (optim.Adam, {"lr": 0.1}, "weight_decay", "float", 0.1),
    (optim.Adam, {"lr": 0.1}, "clip_norm", "float", 1.0),
    (optim.Adam, {"lr": 0.1}, "decoupled_weight_decay", "bool", True),
    (S.Constant, {"value": 0.1}, "value", "float", 0.2),
    (S.StepDecay, {"init_value": 0.1, "step_size": 5}, "init_value", "float", 0.2),
    (S.StepDecay, {"init_value": 0.1, "step_size": 5}, "step_size", "int", 3),
    (S.StepDecay, {"init_value": 0.1, "step_size": 5}, "factor", "float", 0.5),
    (S.ExponentialDecay, EXP, "init_value", "float", 0.2),
    (S.ExponentialDecay, EXP, "decay_rate", "float", 0.9),
    (S.ExponentialDecay, EXP, "decay_steps", "int", 3),
    (S.ExponentialDecay, EXP, "staircase", "bool", True),
    (S.CosineDecay, {"init_value": 0.1, "decay_steps": 5}, "init_value", "float", 0.2),
    (S.CosineDecay, {"init_value": 0.1, "decay_steps": 5}, "decay_steps", "int", 3),
    (S.CosineDecay, {"init_value": 0.1, "decay_steps": 5}, "final_value", "float", 0.01),
    (S.LinearWarmup, {"after": 0.1, "warmup_steps": 5}, "warmup_steps", "int", 3),
    (S.LinearWarmup, {"after": 0.1, "warmup_steps": 5}, "start_value", "float", 0.01),
    (S.Scaled, {"after": 0.1, "scale": 0.5}, "scale", "float", 0.25),
    (C.Feedback, {}, "lr_factor", "float", 0.5),
    (C.ReduceLROnPlateau, {}, "factor", "float", 0.5),
    (C.ReduceLROnPlateau, {}, "patience", "int", 3),
    (C.ReduceLROnPlateau, {}, "min_delta", "float", 0.01),
    (C.ReduceLROnPlateau, {}, "cooldown", "count", 2),
    (C.ReduceLROnPlateau, {}, "min_lr", "float", 1e-4),
    (C.EarlyStopping, {}, "patience", "int", 3),
    (C.EarlyStopping, {}, "min_delta", "float", 0.01),
    (C.Snapshots, {"folder": "snapshots"}, "every", "int", 3),
]


def cases(*kinds):
    """``CASES`` of the given kinds (all without arguments), with their ids."""
    chosen = [c for c in CASES if not kinds or c[3] in kinds]
    return pytest.mark.parametrize(
        ("cls", "base", "field", "kind", "valid"),
        chosen,
        ids=[f"{cls.__name__}.{field}" for cls, _, field, _, _ in chosen],
    )


def make(cls, base, field, value):
    return cls(**{**base, field: value})


def numpy_of(kind, value):
    if kind == "bool":
        return np.bool_(value)
    if kind in ("int", "count", "pair", "shape"):
        return np.int64(value)
    return np.float32(value)


@cases()
def test_numpy_scalars_are_stored_as_python_numbers(cls, base, field, kind, valid):
    spec = make(cls, base, field, numpy_of(kind, valid))
    stored = getattr(spec, field)
    parts = stored if isinstance(stored, tuple) else (stored,)
    python_type = {"bool": bool, "float": float, "signed": float}.get(kind, int)
    assert all(type(v) is python_type for v in parts), (stored, [type(v) for v in parts])
    assert parts[0] == python_type(np.float32(valid) if python_type is float else valid)
    json.dumps(stored)  # a NumPy scalar would not serialise
    if cls is not C.Feedback:  # the one record holding a dict
        hash(spec)
    assert spec == make(cls, base, field, stored)


@cases("int", "count", "float", "signed", "pair", "shape")
def test_bools_are_not_numbers(cls, base, field, kind, valid):
    for flag in (True, np.True_):
        value = (flag, flag) if kind == "pair" and flag is True else flag
        with pytest.raises((TypeError, ValueError), match=rf"{cls.__name__}\.{field}"):
            make(cls, base, field, value)


@cases("bool")
def test_flags_take_only_bools(cls, base, field, kind, valid):
    for bad in (1, "no", "False", None, 1.0):
        with pytest.raises(TypeError, match=rf"{cls.__name__}\.{field} must be True or False"):
            make(cls, base, field, bad)


@cases("float", "signed")
def test_nan_and_inf_are_refused(cls, base, field, kind, valid):
    for bad in (float("nan"), float("inf"), -float("inf"), np.float32("nan"), 10**400):
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} must be .*; got "):
            make(cls, base, field, bad)


@cases("int", "count", "float", "pair", "shape")
def test_negative_values_are_refused(cls, base, field, kind, valid):
    bad = {"float": -0.5, "shape": -2}.get(kind, -1)  # Reshape's -1 means "work it out"
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}.*-"):
        make(cls, base, field, bad)


@cases()
def test_other_kinds_are_refused_with_the_field_name(cls, base, field, kind, valid):
    bad = [str(valid), [valid, "x"] if kind == "shape" else [valid, valid, valid]]
    if kind in ("int", "count"):
        bad.append(float(valid))  # 3.0 filters is not an int
    for value in bad:
        with pytest.raises((TypeError, ValueError), match=rf"{cls.__name__}\.{field}"):
            make(cls, base, field, value)


def test_every_numeric_field_of_a_builtin_is_covered():
    covered = {(cls, field) for cls, _, field, _, _ in CASES}
    classes = [c for c in layer_classes() if c.__module__.startswith("purenn.")]
    classes += [Huber, optim.SGD, optim.RMSprop, optim.Adam, *S.SCHEDULES.values()]
    classes += [C.Feedback, C.ReduceLROnPlateau, C.EarlyStopping, C.Snapshots]
    missing = []
    for cls in classes:
        for f in attrs.fields(cls):
            kind = str(f.type)
            if f.init and any(w in kind for w in ("int", "float", "bool")):
                if (cls, f.name) not in covered:
                    missing.append(f"{cls.__name__}.{f.name}: {kind}")
    assert not missing, missing


def test_huge_ints_are_named_not_printed():
    with pytest.raises(ValueError, match=r"Dense.units must be at most 2,147,483,647; got <an int"):
        pn.Dense(10**5000)
    with pytest.raises(ValueError, match=r"Dense.bias_init must be a finite float; got inf"):
        pn.Dense(3, bias_init=10**5000)  # past float range


def test_numpy_fields_survive_to_json_save_and_load(tmp_path):
    """Issue 14, item 3: Conv2D(filters=np.int64(2)) used to keep the NumPy int,
    so to_json and save failed."""
    spec = pn.Network(
        (1, 6, 6),
        [
            pn.Conv2D(np.int64(2), np.int64(3), stride=np.int32(1), bias_init=np.float32(0.1)),
            pn.BatchNorm(momentum=np.float64(0.2), eps=np.float32(1e-3)),
            pn.Flatten(),
            pn.Dropout(np.float32(0.25)),
            pn.Dense(np.uint8(3), "softmax"),
        ],
        loss=Huber(np.float32(0.5)),
    )
    assert pn.Network.from_json(spec.to_json()) == spec
    for layer in spec.layers:
        assert layer_from_dict(json.loads(json.dumps(layer_to_dict(layer)))) == layer
    params = pn.init(spec, 0)
    pn.save(tmp_path / "c.npz", params)
    assert pn.tree_equal(pn.load(tmp_path / "c.npz").params, params)


@pytest.mark.parametrize(
    "make_spec",
    [
        lambda big: pn.Dense(big),
        lambda big: pn.Conv2D(big, 3),
        lambda big: pn.Conv2D(2, big),
        lambda big: pn.Conv2D(2, 3, stride=(1, big)),
        lambda big: pn.Conv2D(2, 3, padding=big),
        lambda big: pn.MaxPool2D(big),
        lambda big: pn.AvgPool2D(2, stride=big),
        lambda big: pn.Reshape((big, -1)),
        lambda big: pn.Network(big, [pn.Dense(2, "softmax")]),
        lambda big: pn.Network((1, big, 2), [pn.Flatten(), pn.Dense(2, "softmax")]),
    ],
)
def test_sizes_beyond_max_sample_size_are_refused_when_the_spec_is_made(make_spec):
    """Before, Dense(2**80) was made, and summary() or init failed inside NumPy
    ("Maximum allowed dimension exceeded")."""
    make_spec(7)
    for big in (MAX_SAMPLE_SIZE + 1, 2**63, 2**80):
        with pytest.raises(ValueError, match=r"2,147,483,647"):
            make_spec(big)


def test_a_layer_output_beyond_max_sample_size_is_refused():
    conv = pn.Conv2D(2, 3, padding=2**20)  # each side padded by a million pixels
    head = [pn.Flatten(), pn.Dense(2, "softmax")]
    with pytest.raises(ValueError, match=r"conv2d_0 \(Conv2D\): the output shape .* per sample"):
        pn.Network((1, 8, 8), [conv, *head])
    wide = pn.Conv2D(4, 3, padding="same")  # 4 channels of 2**30 pixels
    with pytest.raises(ValueError, match=r"conv2d_0 \(Conv2D\): the output shape \(4, 32768"):
        pn.Network((1, 2**15, 2**15), [wide, *head])
    assert pn.Network((1, 8, 8), [pn.Conv2D(2, 3, padding=2), *head])
