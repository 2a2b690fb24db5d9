"""Specs: frozen, validated at construction and on every evolve, hashable, JSON round trip."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

import purenn as pn
from purenn.activations import ACTIVATIONS
from purenn.initializers import INITIALIZERS
from purenn.losses import LOSSES

SPEC = pn.Network(
    16,
    [
        pn.Dense(32, "relu", weight_init="he_uniform", bias_init=0.01),
        pn.Dropout(0.25),
        pn.Dense(16, "tanh"),
        pn.Dense(10, "softmax"),
    ],
)


# ---------------------------------------------------------------- frozen, hashable


@pytest.mark.parametrize(
    ("obj", "field", "value"),
    [
        (SPEC, "loss", "mse"),
        (SPEC, "layers", ()),
        (SPEC, "input_shape", (3,)),
        (pn.Dense(3), "units", 4),
        (pn.Dense(3), "activation", "tanh"),
        (pn.Dropout(0.5), "rate", 0.1),
    ],
)
def test_specs_are_frozen(obj, field, value):
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(obj, field, value)


def test_layers_are_stored_as_a_tuple():
    layers = [pn.Dense(4), pn.Dense(2, "softmax")]
    spec = pn.Network(3, layers)
    assert isinstance(spec.layers, tuple)
    layers.append(pn.Dense(9))  # the caller's list is not aliased
    assert len(spec.layers) == 2
    assert pn.Network(3, (d for d in spec.layers)) == spec  # any iterable


def test_hashable_and_equal_by_value():
    twin = pn.Network(
        (16,),
        (
            pn.Dense(32, "relu", weight_init="he_uniform", bias_init=0.01),
            pn.Dropout(0.25),
            pn.Dense(16, "tanh"),
            pn.Dense(10, "softmax"),
        ),
        "cross_entropy",
    )
    assert twin == SPEC and hash(twin) == hash(SPEC)
    assert len({SPEC, twin, attrs.evolve(SPEC, layers=SPEC.layers[:1] + SPEC.layers[2:])}) == 2
    assert pn.Dense(3) == pn.Dense(3, "relu", None, 0.0)
    assert pn.Dense(3) != pn.Dense(3, "tanh")
    assert pn.Dropout(0.5) == pn.Dropout(np.float32(0.5))
    assert {pn.Dense(np.int64(3)): 1}[pn.Dense(3)] == 1


def test_fields_are_converted_to_plain_python_values():
    d = pn.Dense(np.int64(3), bias_init=np.float32(0.5))
    assert type(d.units) is int and type(d.bias_init) is float
    assert type(pn.Dropout(np.float64(0.5)).rate) is float
    spec = pn.Network(np.int32(4), [d], "mse")
    assert spec.input_shape == (4,) and type(spec.input_shape[0]) is int
    json.dumps(spec.to_dict())  # JSON-able


@pytest.mark.parametrize("shape", [16, (16,), [16], np.int64(16)])
def test_input_shape_int_or_tuple(shape):
    spec = pn.Network(shape, [pn.Dense(10, "softmax")])
    assert spec.input_shape == (16,)
    assert spec == pn.Network(16, [pn.Dense(10, "softmax")])
    assert spec.shapes() == ((16,), (10,))
    assert spec.output_shape == (10,)


def test_shapes_are_chained_and_names_are_predictable():
    assert SPEC.shapes() == ((16,), (32,), (32,), (16,), (10,))
    assert SPEC.layer_names() == ("dense_0", "dropout_0", "dense_1", "dense_2")
    params = pn.init(SPEC, 0)
    assert set(params) == {pn.SPEC_KEY, "dense_0", "dense_1", "dense_2"}
    assert params["dense_1"]["w"].shape == (32, 16)


def test_layout_is_derived_once_and_invisible_to_equality():
    """The per-step facts a Network precomputes follow its layers, survive pickling
    and evolve, and play no part in repr, equality or hashing."""
    import pickle

    layout = SPEC._layout
    assert layout.names == SPEC.layer_names()
    assert [name for name, _ in layout.with_params] == ["dense_0", "dense_1", "dense_2"]
    assert layout.random == ("dropout_0",) and layout.dense_only
    assert "_layout" not in repr(SPEC) and "layout" not in repr(SPEC)
    twin = pickle.loads(pickle.dumps(SPEC))
    assert twin == SPEC and hash(twin) == hash(SPEC) and twin._layout == layout
    no_dropout = attrs.evolve(SPEC, layers=SPEC.layers[:1] + SPEC.layers[2:])
    assert no_dropout._layout.random == () and no_dropout.layer_names()[1] == "dense_1"
    cnn = pn.Network((1, 6, 6), [pn.Conv2D(2, 3), pn.Flatten(), pn.Dense(3, "softmax")])
    assert not cnn._layout.dense_only
    assert pn.Network(4, [pn.Dropout(0.0), pn.Dense(2, "softmax")])._layout.random == ()


# ---------------------------------------------------------------- evolve re-validates


@pytest.mark.parametrize(
    ("obj", "changes", "error", "match"),
    [
        (pn.Dense(3), {"units": 0}, ValueError, r"Dense.units must be a positive int; got 0"),
        (pn.Dense(3), {"activation": "gelu"}, ValueError, r"Dense.activation must be one of"),
        (pn.Dense(3), {"weight_init": "orthogonal"}, ValueError, r"Dense.weight_init must be"),
        (pn.Dense(3), {"bias_init": float("nan")}, ValueError, r"Dense.bias_init"),
        (pn.Dropout(0.1), {"rate": 1.0}, ValueError, r"Dropout.rate .* \[0, 1\); got 1.0"),
        (SPEC, {"loss": "mse"}, None, None),
        (SPEC, {"loss": "binary_cross_entropy"}, ValueError, r"needs a 'sigmoid' output layer"),
        (SPEC, {"loss": "hinge"}, ValueError, r"Network.loss must be one of"),
        (SPEC, {"layers": ()}, ValueError, r"Network.layers is empty"),
        (SPEC, {"input_shape": 0}, ValueError, r"Network.input_shape must hold positive sizes"),
    ],
)
def test_evolve_runs_the_validators_again(obj, changes, error, match):
    if error is None:
        evolved = attrs.evolve(obj, **changes)
        assert evolved != obj and all(getattr(evolved, k) == v for k, v in changes.items())
        return
    with pytest.raises(error, match=match):
        attrs.evolve(obj, **changes)


# ---------------------------------------------------------------- validation messages


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Dense.activation must be one of .*; got 'gelu'") as err:
        pn.Dense(3, "gelu")
    for name in ACTIVATIONS:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match=r"got 'ReLU'"):
        pn.Dense(3, "ReLU")
    with pytest.raises(ValueError, match=r"Dense.activation must be one of"):
        pn.Dense(3, None)  # type: ignore[arg-type]


def test_unknown_initializer_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"Dense.weight_init must be one of .* or None; got 'xavier'"
    ) as err:
        pn.Dense(3, weight_init="xavier")
    for name in INITIALIZERS:
        assert repr(name) in str(err.value)


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Network.loss must be one of .*; got 'nll'") as err:
        pn.Network(3, [pn.Dense(2, "softmax")], "nll")
    for name in LOSSES:
        assert repr(name) in str(err.value)


@pytest.mark.parametrize(
    ("units", "error", "match"),
    [
        (0, ValueError, r"Dense.units must be a positive int; got 0"),
        (-3, ValueError, r"Dense.units must be a positive int; got -3"),
        (2.5, TypeError, r"Dense.units must be a positive int; got 2.5 \(float\)"),
        (3.0, TypeError, r"Dense.units must be a positive int; got 3.0 \(float\)"),
        (True, TypeError, r"Dense.units must be a positive int; got True \(bool\)"),
        ("3", TypeError, r"Dense.units must be a positive int; got '3' \(str\)"),
    ],
)
def test_non_positive_units(units, error, match):
    with pytest.raises(error, match=match):
        pn.Dense(units)


@pytest.mark.parametrize(
    ("rate", "error", "match"),
    [
        (
            -0.1,
            ValueError,
            r"Dropout.rate is the probability of dropping a unit .* \[0, 1\); got -0.1",
        ),
        (1.0, ValueError, r"Dropout.rate .* must be in \[0, 1\); got 1.0"),
        (1.5, ValueError, r"Dropout.rate .* must be in \[0, 1\); got 1.5"),
        (float("nan"), ValueError, r"Dropout.rate: expected a finite float; got nan"),
        (float("inf"), ValueError, r"Dropout.rate: expected a finite float; got inf"),
        ("0.5", TypeError, r"Dropout.rate: expected a float; got '0.5' \(str\)"),
        (None, TypeError, r"Dropout.rate: expected a float; got None"),
    ],
)
def test_dropout_rate_outside_unit_interval(rate, error, match):
    with pytest.raises(error, match=match):
        pn.Dropout(rate)


def test_dropout_rate_bounds_accepted():
    assert pn.Dropout(0).rate == 0.0
    assert pn.Dropout(0.999).rate == 0.999


def test_bias_init_must_be_a_finite_float():
    with pytest.raises(ValueError, match=r"Dense.bias_init: expected a finite float; got inf"):
        pn.Dense(3, bias_init=float("inf"))
    with pytest.raises(TypeError, match=r"Dense.bias_init: expected a float; got 'small'"):
        pn.Dense(3, bias_init="small")


@pytest.mark.parametrize(
    ("loss", "last", "match"),
    [
        (
            "cross_entropy",
            pn.Dense(3, "relu"),
            r"loss 'cross_entropy' needs a 'softmax' output layer; "
            r"the last layer dense_1 has activation 'relu'",
        ),
        (
            "cross_entropy",
            pn.Dense(3, "sigmoid"),
            r"'softmax' output layer.*Use Dense\(k, activation='softmax'\) last",
        ),
        (
            "binary_cross_entropy",
            pn.Dense(3, "softmax"),
            r"loss 'binary_cross_entropy' needs a 'sigmoid' output layer; "
            r"the last layer dense_1 has activation 'softmax'",
        ),
        ("binary_cross_entropy", pn.Dense(3, "linear"), r"needs a 'sigmoid' output layer"),
    ],
)
def test_incompatible_loss_and_output_refused_at_construction(loss, last, match):
    with pytest.raises(ValueError, match=match):
        pn.Network(4, [pn.Dense(5), last], loss)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_mse_takes_any_output_activation(act):
    assert pn.Network(4, [pn.Dense(2, act)], "mse").loss == "mse"


def test_dropout_as_last_layer_refused():
    with pytest.raises(
        ValueError, match=r"the last layer must be a Dense layer .*got Dropout as dropout_0"
    ):
        pn.Network(4, [pn.Dense(3, "softmax"), pn.Dropout(0.1)])
    with pytest.raises(ValueError, match=r"got Dropout as dropout_1"):
        pn.Network(4, [pn.Dropout(0.1), pn.Dense(3, "softmax"), pn.Dropout(0.1)], "mse")


@pytest.mark.parametrize(
    ("input_shape", "layers", "error", "match"),
    [
        (4, [], ValueError, r"Network.layers is empty; give at least one layer"),
        (4, "dense", TypeError, r"Network.layers must be a sequence of layer specs; got 'dense'"),
        (
            4,
            [pn.Dense(3, "softmax"), "relu"],
            TypeError,
            r"Network.layers\[1\] must be a layer spec \(.*Dense.*\); got 'relu' \(str\)",
        ),
        (4, pn.Dense(3, "softmax"), TypeError, r"Network.layers must be a sequence of layer"),
        (0, [pn.Dense(3, "softmax")], ValueError, r"Network.input_shape must hold positive"),
        ((4, -1), [pn.Dense(3, "softmax")], ValueError, r"positive sizes; got \(4, -1\)"),
        (4.0, [pn.Dense(3, "softmax")], TypeError, r"input_shape must be an int or a tuple .* 4.0"),
        ((), [pn.Dense(3, "softmax")], TypeError, r"Network.input_shape must be an int or a"),
        ((True,), [pn.Dense(3, "softmax")], TypeError, r"Network.input_shape must be an int or"),
        (
            (2, 2),
            [pn.Dense(3, "softmax")],
            ValueError,
            r"dense_0 \(Dense\) expects a flat input of shape \(d,\); got \(2, 2\)",
        ),
    ],
)
def test_bad_network_fields(input_shape, layers, error, match):
    with pytest.raises(error, match=match):
        pn.Network(input_shape, layers)


# ---------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        pn.Network(3, [pn.Dense(1, "sigmoid", "zeros", -2.0)], "binary_cross_entropy"),
        pn.Network((5,), [pn.Dropout(0.0), pn.Dense(2, "linear", "lecun_normal")], "mse"),
    ],
)
def test_dict_and_json_round_trip(spec):
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON types only
    assert pn.Network.from_dict(d) == spec
    text = spec.to_json()
    assert pn.Network.from_json(text) == spec
    assert hash(pn.Network.from_json(text)) == hash(spec)
    assert pn.Network.from_json(text).to_json() == text  # stable text


def test_to_dict_layout():
    d = pn.Network(4, [pn.Dense(3, "softmax")]).to_dict()
    assert d == {
        "input_shape": [4],
        "layers": [
            {
                "type": "Dense",
                "units": 3,
                "activation": "softmax",
                "weight_init": None,
                "bias_init": 0.0,
            }
        ],
        "loss": "cross_entropy",
    }


def test_from_dict_validates_again():
    d = SPEC.to_dict()
    d["layers"][0]["units"] = 0
    with pytest.raises(ValueError, match=r"Dense.units must be a positive int; got 0"):
        pn.Network.from_dict(d)
    d = SPEC.to_dict()
    d["layers"][0]["type"] = "Conv9D"
    with pytest.raises(ValueError, match=r"unknown layer type 'Conv9D'; known: .*Dense.*Dropout"):
        pn.Network.from_dict(d)
    d = SPEC.to_dict()
    del d["layers"][1]["type"]
    with pytest.raises(ValueError, match="malformed network spec"):
        pn.Network.from_dict(d)
    with pytest.raises(ValueError, match="malformed network spec"):
        pn.Network.from_dict({"layers": []})
    d = SPEC.to_dict()
    d["layers"][0]["colour"] = "red"
    with pytest.raises(ValueError, match=r"malformed network spec.*colour"):
        pn.Network.from_dict(d)
