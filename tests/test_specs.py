"""Specs: frozen, validated at construction and on every evolve, hashable, JSON round
trip; the registries of layers, activations and losses that let users add their own."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

import purenn as pn
from purenn.activations import activation_names
from purenn.base import layer_class, layer_classes
from purenn.initializers import INITIALIZERS
from purenn.losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber

BUILTIN_LOSSES = {
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mse": MSE,
    "mae": MAE,
    "huber": Huber,
}

# ---------------------------------------------------------------- a user's own layer, loss and
# activation, written against the public protocols only (names prefixed "Spec"/"spec_" to stay
# unique among the classes the whole test suite registers)


@pn.register_layer
@attrs.frozen
class SpecScale(pn.Layer):
    """``y = x * s``, one learned scale per feature, starting at ``start``."""

    start: float = 1.0

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, rng, in_shape, dtype):
        return {"s": np.full(in_shape, self.start, dtype)}

    def forward(self, params, x, ctx):
        return x * params["s"], x

    def backward(self, params, cache, dy, ctx):
        dx = dy * params["s"] if ctx.need_dx else None  # dL/dx = dy * s
        return dx, {"s": (dy * cache).sum(axis=0)}  # dL/ds = sum_n dy * x


@pn.register_layer
@attrs.frozen
class SpecBroken(pn.Layer):
    """Promises its input's shape and dtype, and breaks the promise (``mode``)."""

    mode: str = "shape"

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        if self.mode == "shape":
            return x[:, :-1], None  # one feature short
        if self.mode == "dtype":
            return x.astype(np.float64 if x.dtype == np.float32 else np.float32), None
        return x.tolist(), None  # not an array at all

    def backward(self, params, cache, dy, ctx):
        raise AssertionError("never reached: the forward pass is refused")


@attrs.frozen
class SpecUnregistered(pn.Layer):
    """A correct layer whose class nobody registered."""

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        return x, None

    def backward(self, params, cache, dy, ctx):
        return dy, None


@attrs.frozen
class SpecDenseChild(pn.Dense):
    """A subclass of a registered layer is a class of its own: it needs registering too."""


@pn.register_loss
@attrs.frozen
class SpecLogCosh(pn.Loss):
    """``scale * mean(log(cosh(out - y)))``."""

    scale: float = 1.0

    def value_and_grad(self, out, y):
        d = out - y
        # dL/dout = scale * tanh(d) / size
        return float(self.scale * np.mean(np.log(np.cosh(d)))), self.scale * np.tanh(d) / d.size


@attrs.frozen
class SpecUnregisteredLoss(pn.Loss):
    def value_and_grad(self, out, y):
        return 0.0, np.zeros_like(out)


def spec_softsign(z):
    return z / (1.0 + np.abs(z))


def spec_softsign_backward(z, a, da):
    return da / ((1.0 + np.abs(z)) * (1.0 + np.abs(z)))  # da/dz = 1 / (1 + |z|)^2


pn.register_activation("spec_softsign", spec_softsign, spec_softsign_backward)


def numeric_grads(params, x, y, eps=1e-6):
    """Central differences of ``purenn.loss`` for every leaf, ``{(layer, key): array}``."""
    out = {}
    for name, leaves in params.items():
        if name == pn.SPEC_KEY:
            continue
        for key, leaf in leaves.items():
            g = np.empty_like(leaf)
            for idx in np.ndindex(leaf.shape):
                values = []
                for step in (eps, -eps):
                    moved = leaf.copy()
                    moved[idx] += step
                    values.append(pn.loss({**params, name: {**leaves, key: moved}}, x, y))
                g[idx] = (values[0] - values[1]) / (2 * eps)
            out[name, key] = g
    return out


def assert_grads_match_finite_differences(params, x, y):
    value, g = pn.loss_and_grads(params, x, y)
    assert value == pytest.approx(pn.loss(params, x, y, train=True), rel=1e-12)
    numeric = numeric_grads(params, x, y)
    assert sorted(numeric) == sorted((n, k) for n in g if n != pn.SPEC_KEY for k in g[n])
    for (name, key), want in numeric.items():
        np.testing.assert_allclose(
            g[name][key], want, rtol=1e-6, atol=1e-7 * np.abs(want).max(), err_msg=f"{name}/{key}"
        )


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
    """The per-pass facts a Network precomputes follow its layers, survive pickling
    and evolve, and play no part in repr, equality or hashing."""
    import pickle

    layout = SPEC.layout
    assert layout._fields == (
        "names",
        "shapes",
        "with_params",
        "random",
        "run_layers",
        "param_shapes",
        "with_state",
    )
    assert layout.names == SPEC.layer_names()
    assert layout.shapes == SPEC.shapes()
    assert layout.with_params == ("dense_0", "dense_1", "dense_2")
    assert layout.random == ("dropout_0",)
    # the fused loss takes the logits: the last layer runs without its softmax
    assert layout.run_layers == (*SPEC.layers[:-1], pn.Dense(10, "linear"))
    assert SPEC.layers[-1].activation == "softmax"  # the spec itself is unchanged
    assert "layout" not in repr(SPEC)
    twin = pickle.loads(pickle.dumps(SPEC))
    assert twin == SPEC and hash(twin) == hash(SPEC) and twin.layout == layout
    no_dropout = attrs.evolve(SPEC, layers=SPEC.layers[:1] + SPEC.layers[2:])
    assert no_dropout.layout.random == () and no_dropout.layer_names()[1] == "dense_1"
    cnn = pn.Network((1, 6, 6), [pn.Conv2D(2, 3), pn.Flatten(), pn.Dense(3, "softmax")])
    assert cnn.layout.with_params == ("conv2d_0", "dense_0")
    assert cnn.layout.shapes == ((1, 6, 6), (2, 4, 4), (32,), (3,))
    assert pn.Network(4, [pn.Dropout(0.0), pn.Dense(2, "softmax")]).layout.random == ()
    regression = pn.Network(4, [pn.Dense(3), pn.Dense(2, "tanh")], "mse")
    assert regression.layout.run_layers == regression.layers  # nothing fused
    with pytest.raises(AttributeError):
        SPEC.layout = layout


# ---------------------------------------------------------------- evolve re-validates


@pytest.mark.parametrize(
    ("obj", "changes", "error", "match"),
    [
        (pn.Dense(3), {"units": 0}, ValueError, r"Dense.units must be a positive int; got 0"),
        (
            pn.Dense(3),
            {"activation": "not_an_activation"},
            ValueError,
            r"Dense.activation: unknown activation",
        ),
        (pn.Dense(3), {"weight_init": "orthogonal"}, ValueError, r"Dense.weight_init must be"),
        (pn.Dense(3), {"bias_init": float("nan")}, ValueError, r"Dense.bias_init"),
        (pn.Dropout(0.1), {"rate": 1.0}, ValueError, r"Dropout.rate .* \[0, 1\); got 1.0"),
        (SPEC, {"loss": Huber(0.5)}, None, None),
        (SPEC, {"loss": "binary_cross_entropy"}, ValueError, r"needs a 'sigmoid' output layer"),
        (SPEC, {"loss": Huber(1.0)}, None, None),
        (SPEC, {"loss": "huber"}, None, None),
        (SPEC, {"loss": "hinge"}, ValueError, r"Network.loss must be one of"),
        (SPEC, {"layers": ()}, ValueError, r"Network.layers is empty"),
        (SPEC, {"input_shape": 0}, ValueError, r"Network.input_shape must hold positive sizes"),
    ],
)
def test_evolve_runs_the_validators_again(obj, changes, error, match):
    if error is None:
        evolved = attrs.evolve(obj, **changes)
        want = {k: pn.losses.as_loss(v) if k == "loss" else v for k, v in changes.items()}
        assert evolved != obj and all(getattr(evolved, k) == v for k, v in want.items())
        return
    with pytest.raises(error, match=match):
        attrs.evolve(obj, **changes)


# ---------------------------------------------------------------- validation messages


def test_unknown_activation_lists_the_known_names():
    with pytest.raises(
        ValueError, match=r"Dense.activation: unknown activation 'not_an_activation'; known: 'relu'"
    ) as err:
        pn.Dense(3, "not_an_activation")
    assert "purenn.register_activation" in str(err.value)
    assert len(activation_names()) >= 10
    for name in activation_names():
        assert repr(name) in str(err.value)
    with pytest.raises(
        ValueError, match=r"Conv2D.activation: unknown activation 'not_an_activation'; known"
    ):
        pn.Conv2D(2, 3, activation="not_an_activation")
    with pytest.raises(ValueError, match=r"unknown activation 'ReLU'"):
        pn.Dense(3, "ReLU")
    with pytest.raises(ValueError, match=r"Dense.activation: unknown activation None"):
        pn.Dense(3, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "softplus"])
def test_new_builtin_activations_are_usable_by_name(name):
    assert name in activation_names()
    assert pn.Dense(3, name).activation == name
    assert pn.Conv2D(2, 3, activation=name).activation == name


def test_unknown_initializer_lists_the_valid_names():
    with pytest.raises(
        ValueError, match=r"Dense.weight_init must be one of .* or None; got 'xavier'"
    ) as err:
        pn.Dense(3, weight_init="xavier")
    for name in INITIALIZERS:
        assert repr(name) in str(err.value)


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(
        ValueError,
        match=r"Network.loss must be one of .* or a registered purenn.Loss instance; got 'nll'",
    ) as err:
        pn.Network(3, [pn.Dense(2, "softmax")], "nll")
    for name in BUILTIN_LOSSES:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match=r"Network.loss must be one of .*; got <class"):
        pn.Network(3, [pn.Dense(2)], MSE)  # the class, not an instance
    with pytest.raises(ValueError, match=r"Network.loss must be one of .*; got 'CrossEntropy'"):
        pn.Network(3, [pn.Dense(2, "softmax")], "CrossEntropy")  # class names are for JSON


@pytest.mark.parametrize(("name", "cls"), list(BUILTIN_LOSSES.items()))
def test_a_loss_name_gives_an_instance_of_its_class(name, cls):
    last = pn.Dense(
        2, {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(name, "tanh")
    )
    spec = pn.Network(3, [last], name)
    assert type(spec.loss) is cls and spec.loss == cls()
    assert spec.loss != name  # stored as an instance, not the string
    assert spec == pn.Network(3, [last], cls()) and hash(spec) == hash(pn.Network(3, [last], cls()))
    assert pn.losses.loss_class(cls.__name__) is cls
    assert cls.fused_activation == {
        "cross_entropy": "softmax",
        "binary_cross_entropy": "sigmoid",
    }.get(name)
    assert cls.has_accuracy == (name in ("cross_entropy", "binary_cross_entropy"))


def test_default_loss_is_cross_entropy():
    assert SPEC.loss == CrossEntropy() and isinstance(SPEC.loss, pn.Loss)
    assert Huber().delta == 1.0 and Huber(0.5) != Huber()
    with pytest.raises(ValueError, match=r"Huber.delta must be a finite float > 0; got -1.0"):
        Huber(-1)


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
        (float("nan"), ValueError, r"Dropout.rate must be a finite float; got nan"),
        (float("inf"), ValueError, r"Dropout.rate must be a finite float; got inf"),
        ("0.5", TypeError, r"Dropout.rate must be a finite float; got '0.5' \(str\)"),
        (None, TypeError, r"Dropout.rate must be a finite float; got None"),
    ],
)
def test_dropout_rate_outside_unit_interval(rate, error, match):
    with pytest.raises(error, match=match):
        pn.Dropout(rate)


def test_dropout_rate_bounds_accepted():
    assert pn.Dropout(0).rate == 0.0
    assert pn.Dropout(0.999).rate == 0.999


def test_bias_init_must_be_a_finite_float():
    with pytest.raises(ValueError, match=r"Dense.bias_init must be a finite float; got inf"):
        pn.Dense(3, bias_init=float("inf"))
    with pytest.raises(TypeError, match=r"Dense.bias_init must be a finite float; got 'small'"):
        pn.Dense(3, bias_init="small")


@pytest.mark.parametrize(
    ("loss", "last", "match"),
    [
        (
            "cross_entropy",
            pn.Dense(3, "relu"),
            r"loss ('cross_entropy'|CrossEntropy\(\)) needs a 'softmax' output layer; "
            r"the last layer dense_1 \(Dense\) has activation 'relu'",
        ),
        (
            "cross_entropy",
            pn.Dense(3, "sigmoid"),
            r"'softmax' output layer.*Use Dense\(k, activation='softmax'\) last",
        ),
        (
            "binary_cross_entropy",
            pn.Dense(3, "softmax"),
            r"loss ('binary_cross_entropy'|BinaryCrossEntropy\(\)) needs a 'sigmoid' output "
            r"layer; "
            r"the last layer dense_1 \(Dense\) has activation 'softmax'",
        ),
        ("binary_cross_entropy", pn.Dense(3, "linear"), r"needs a 'sigmoid' output layer"),
    ],
)
def test_incompatible_loss_and_output_refused_at_construction(loss, last, match):
    with pytest.raises(ValueError, match=match):
        pn.Network(4, [pn.Dense(5), last], loss)


@pytest.mark.parametrize("act", activation_names())
@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses_take_any_output_activation(act, loss):
    spec = pn.Network(4, [pn.Dense(2, act)], loss)
    assert isinstance(spec.loss, BUILTIN_LOSSES[loss])
    assert spec.layout.run_layers == spec.layers


def test_a_fused_loss_needs_its_activation_last():
    with pytest.raises(
        ValueError,
        match=r"needs a 'softmax' output layer; the last layer dropout_0 \(Dropout\) "
        r"has activation None",
    ):
        pn.Network(4, [pn.Dense(3, "softmax"), pn.Dropout(0.1)])
    with pytest.raises(ValueError, match=r"the last layer flatten_0 \(Flatten\)"):
        pn.Network(
            (1, 6, 6), [pn.Conv2D(2, 3, activation="sigmoid"), pn.Flatten()], "binary_cross_entropy"
        )


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
            r"^dense_0 \(Dense\): expects a flat input of shape \(d,\); got \(2, 2\)",
        ),
    ],
)
def test_bad_network_fields(input_shape, layers, error, match):
    with pytest.raises(error, match=match):
        pn.Network(input_shape, layers)


# ---------------------------------------------------------------- serialisation


ROUND_TRIP_SPECS = [
    SPEC,
    pn.Network(3, [pn.Dense(1, "sigmoid", "zeros", -2.0)], "binary_cross_entropy"),
    pn.Network((5,), [pn.Dropout(0.0), pn.Dense(2, "linear", "lecun_normal")], "mse"),
    pn.Network(5, [pn.Dense(4, "gelu"), pn.Dense(2, "silu")], "mae"),
    pn.Network(5, [pn.Dense(2, "elu")], "huber"),
    pn.Network(5, [pn.Dense(2, "softplus")], Huber(delta=0.5)),
    pn.Network((1, 6, 6), [pn.Conv2D(2, 3, padding="same"), pn.MaxPool2D(2), pn.Flatten()], "mse"),
]


@pytest.mark.parametrize("spec", ROUND_TRIP_SPECS)
def test_dict_and_json_round_trip(spec):
    d = spec.to_dict()
    decoded = json.loads(json.dumps(d))  # JSON-able (pairs such as kernel_size come back as lists)
    assert pn.Network.from_dict(decoded) == spec
    assert pn.Network.from_dict(d) == spec
    text = spec.to_json()
    assert pn.Network.from_json(text) == spec
    assert hash(pn.Network.from_json(text)) == hash(spec)
    assert pn.Network.from_json(text).to_json() == text  # stable text
    assert type(pn.Network.from_json(text).loss) is type(spec.loss)


@pytest.mark.parametrize(
    ("loss", "stored"),
    [
        *((name, name) for name in BUILTIN_LOSSES),
        *((cls(), name) for name, cls in BUILTIN_LOSSES.items()),
        (Huber(delta=0.5), {"type": "Huber", "delta": 0.5}),
        (Huber(delta=2), {"type": "Huber", "delta": 2.0}),
    ],
    ids=repr,
)
def test_every_builtin_loss_round_trips_through_json(loss, stored):
    """A built-in with its defaults is stored by name; one with other fields as a
    dict of its class name and fields."""
    name = (
        loss
        if isinstance(loss, str)
        else next(k for k, cls in BUILTIN_LOSSES.items() if type(loss) is cls)
    )
    last = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(name, "linear")
    spec = pn.Network(3, [pn.Dense(2, last)], loss)
    assert spec.to_dict()["loss"] == stored
    again = pn.Network.from_json(spec.to_json())
    assert again == spec and type(again.loss) is type(spec.loss) and again.loss == spec.loss
    assert again.to_json() == spec.to_json()


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
    with pytest.raises(
        ValueError, match=r"unknown layer type 'Conv9D'; registered: .*Dense.*Dropout"
    ):
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
    d = SPEC.to_dict()
    d["loss"] = {"type": "BinaryCrossEntropy"}
    with pytest.raises(ValueError, match=r"needs a 'sigmoid' output layer"):  # validated again
        pn.Network.from_dict(d)
    d = pn.Network(3, [pn.Dense(2)], "huber").to_dict()
    d["loss"] = {"type": "Huber", "delta": -1.0}
    with pytest.raises(ValueError, match=r"Huber.delta must be a finite float > 0"):
        pn.Network.from_dict(d)
    d["loss"] = {"type": "Huber", "width": 1.0}
    with pytest.raises(ValueError, match=r"malformed Huber loss.*width"):
        pn.Network.from_dict(d)
    d["loss"] = ["mse"]
    with pytest.raises(ValueError, match=r"a loss must be a name or a dict with a 'type'"):
        pn.Network.from_dict(d)


# ---------------------------------------------------------------- the layer registry


def test_builtin_layers_are_registered_like_a_users():
    names = [cls.__name__ for cls in layer_classes()]
    for name in ("Dense", "Dropout", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "SpecScale"):
        assert name in names
        assert layer_class(name).__name__ == name
    assert layer_class("Dense") is pn.Dense and layer_class("SpecScale") is SpecScale


def test_a_registered_user_layer_works_in_a_network_and_round_trips():
    spec = pn.Network(4, [SpecScale(0.5), pn.Dense(3, "tanh"), pn.Dense(2, "softmax")])
    assert spec.layer_names() == ("specscale_0", "dense_0", "dense_1")
    assert spec.shapes() == ((4,), (4,), (3,), (2,))
    assert spec.layout.with_params == ("specscale_0", "dense_0", "dense_1")
    assert spec.to_dict()["layers"][0] == {"type": "SpecScale", "start": 0.5}
    text = spec.to_json()
    again = pn.Network.from_json(text)
    assert again == spec and hash(again) == hash(spec) and again.to_json() == text
    assert type(again.layers[0]) is SpecScale
    params = pn.init(spec, 0, dtype=np.float64)
    np.testing.assert_array_equal(params["specscale_0"]["s"], np.full(4, 0.5))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)), rng.integers(0, 2, 5)
    params = {**params, "specscale_0": {"s": rng.normal(size=4)}}
    assert_grads_match_finite_differences(params, x, y)
    trained, history = pn.fit(
        pn.init(spec, 0),
        (x.astype(np.float32), y),
        optimizer=pn.optim.sgd(0.1),
        epochs=2,
        batch_size=2,
        rng=0,
        verbose=0,
    )
    assert history["epoch"] == [1, 2]
    assert trained["specscale_0"]["s"].dtype == np.float32
    assert not np.array_equal(trained["specscale_0"]["s"], np.full(4, 0.5, np.float32))  # trained


@pytest.mark.parametrize("layer", [SpecUnregistered(), SpecDenseChild(3)], ids=repr)
def test_an_unregistered_layer_is_refused(layer):
    name = type(layer).__name__
    with pytest.raises(
        TypeError,
        match=rf"Network.layers\[1\] is a {name}, which is not registered; "
        r"decorate its class with @purenn.register_layer",
    ):
        pn.Network(3, [pn.Dense(3), layer], "mse")


def test_a_non_layer_is_refused_naming_the_protocol():
    @attrs.frozen
    class SpecNotALayer:
        def output_shape(self, in_shape):
            return in_shape

    with pytest.raises(
        TypeError,
        match=r"Network.layers\[0\] must be a layer spec \(an instance of a purenn.Layer subclass",
    ):
        pn.Network(3, [SpecNotALayer(), pn.Dense(2)], "mse")


def test_loading_an_unknown_layer_type_says_what_to_import():
    d = pn.Network(3, [SpecScale(), pn.Dense(2, "softmax")]).to_dict()
    d["layers"][0]["type"] = "SpecNeverRegistered"
    with pytest.raises(
        ValueError,
        match=r"unknown layer type 'SpecNeverRegistered'; registered: .*SpecScale.*"
        r"If SpecNeverRegistered is your own layer, import the module that defines it "
        r"\(with @purenn.register_layer\) before loading",
    ):
        pn.Network.from_json(json.dumps(d))


def test_registering_another_class_under_a_taken_name_fails():
    @attrs.frozen
    class SpecScale(pn.Layer):  # same name as the module's, another class
        def output_shape(self, in_shape):
            return in_shape

    with pytest.raises(
        ValueError,
        match=r"a different layer class named 'SpecScale' is registered already "
        r"\(.*test_specs\.SpecScale\); .*rename one of them",
    ):
        pn.register_layer(SpecScale)

    @attrs.frozen
    class Dense(pn.Layer):
        def output_shape(self, in_shape):
            return in_shape

    with pytest.raises(ValueError, match=r"'Dense' is registered already \(purenn.layers.Dense\)"):
        pn.register_layer(Dense)
    # the registry is unchanged, and registering the same class again is harmless
    assert layer_class("SpecScale") is globals()["SpecScale"]
    assert layer_class("Dense") is pn.Dense
    assert pn.register_layer(pn.Dense) is pn.Dense
    user = pn.Network(2, [globals()["SpecScale"]()], "mse")
    assert type(pn.Network.from_json(user.to_json()).layers[0]) is globals()["SpecScale"]


def test_register_layer_refuses_what_is_not_a_frozen_layer_class():
    with pytest.raises(TypeError, match=r"register_layer expects a subclass of purenn.Layer"):
        pn.register_layer(pn.losses.MSE)
    with pytest.raises(TypeError, match=r"register_layer expects a subclass of purenn.Layer"):
        pn.register_layer(SpecScale())

    @attrs.define
    class SpecMutable(pn.Layer):
        def output_shape(self, in_shape):
            return in_shape

    with pytest.raises(
        TypeError, match=r"frozen attrs class; decorate SpecMutable with @attrs.frozen"
    ):
        pn.register_layer(SpecMutable)

    class SpecPlain(pn.Layer):
        pass

    with pytest.raises(TypeError, match=r"frozen attrs class; decorate SpecPlain"):
        pn.register_layer(SpecPlain)
    with pytest.raises(ValueError, match="unknown layer type 'SpecMutable'"):
        layer_class("SpecMutable")


# ---------------------------------------------------------------- the activation registry


def test_a_registered_activation_works_in_dense_and_conv2d():
    assert "spec_softsign" in activation_names()
    spec = pn.Network(
        (1, 5, 5),
        [pn.Conv2D(2, 3, activation="spec_softsign"), pn.Flatten(), pn.Dense(3, "spec_softsign")],
        "mse",
    )
    again = pn.Network.from_json(spec.to_json())
    assert again == spec and again.layers[0].activation == "spec_softsign"
    params = pn.init(spec, 0, dtype=np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 1, 5, 5)), rng.normal(size=(2, 3))
    out = pn.forward(params, x)
    # the last layer, written out: softsign of the Dense layer's pre-activation
    head = {pn.SPEC_KEY: attrs.evolve(spec, layers=spec.layers[:2]), "conv2d_0": params["conv2d_0"]}
    hidden = pn.forward(head, x)
    z = hidden @ params["dense_0"]["w"] + params["dense_0"]["b"]
    np.testing.assert_allclose(out, z / (1 + np.abs(z)), rtol=1e-12)
    assert_grads_match_finite_differences(params, x, y)


def test_register_activation_refuses_a_taken_name_with_other_functions():
    # the same pair again (a module imported twice) is fine
    pn.register_activation("spec_softsign", spec_softsign, spec_softsign_backward)
    with pytest.raises(
        ValueError, match=r"activation 'spec_softsign' is already registered with other functions"
    ):
        pn.register_activation("spec_softsign", np.tanh, spec_softsign_backward)
    with pytest.raises(ValueError, match=r"activation 'relu' is already registered"):
        pn.register_activation("relu", spec_softsign, spec_softsign_backward)
    with pytest.raises(TypeError, match=r"backward must be a function"):
        pn.register_activation("spec_nothing", spec_softsign, None)
    with pytest.raises(TypeError, match=r"an activation name must be a non-empty string"):
        pn.register_activation("", spec_softsign, spec_softsign_backward)
    assert "spec_nothing" not in activation_names() and "" not in activation_names()
    assert pn.activations.get_activation("spec_softsign").forward is spec_softsign


# ---------------------------------------------------------------- the loss registry


def test_a_registered_user_loss_works_and_round_trips():
    spec = pn.Network(3, [pn.Dense(4, "tanh"), pn.Dense(2, "linear")], loss=SpecLogCosh(2.0))
    assert spec.loss == SpecLogCosh(2.0) and spec.loss != SpecLogCosh()
    assert spec.to_dict()["loss"] == {"type": "SpecLogCosh", "scale": 2.0}
    again = pn.Network.from_json(spec.to_json())
    assert again == spec and type(again.loss) is SpecLogCosh and again.loss.scale == 2.0
    default = pn.Network(3, [pn.Dense(2)], loss=SpecLogCosh())
    assert default.to_dict()["loss"] == {"type": "SpecLogCosh", "scale": 1.0}  # not a built-in
    assert pn.Network.from_json(default.to_json()) == default
    assert pn.losses.loss_class("SpecLogCosh") is SpecLogCosh
    params = pn.init(spec, 0, dtype=np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    want = 2.0 * np.mean(np.log(np.cosh(pn.forward(params, x) - y)))
    assert pn.loss(params, x, y) == pytest.approx(want, rel=1e-12)
    assert_grads_match_finite_differences(params, x, y)
    result = pn.train_pass(pn.init(spec, 0), x.astype(np.float32), y.astype(np.float32))
    assert all(leaf.dtype == np.float32 for leaf in pn.tree_leaves(result.grads))
    # the base class's regression defaults: targets shaped like the output, no labels
    with pytest.raises(
        ValueError, match=r"expects targets of shape \(4, 2\); got y of shape \(4,\)"
    ):
        pn.loss(params, x, y[:, 0])
    with pytest.raises(ValueError, match="regression loss and gives no class labels"):
        pn.predict(params, x)
    assert not SpecLogCosh.has_accuracy and SpecLogCosh.fused_activation is None


def test_an_unregistered_loss_instance_is_refused():
    with pytest.raises(
        ValueError,
        match=r"loss SpecUnregisteredLoss\(\) is not registered; decorate SpecUnregisteredLoss "
        r"with @purenn.register_loss",
    ):
        pn.Network(3, [pn.Dense(2)], loss=SpecUnregisteredLoss())


def test_loading_an_unknown_loss_type_says_what_to_import():
    d = pn.Network(3, [pn.Dense(2)], loss=SpecLogCosh()).to_dict()
    d["loss"]["type"] = "SpecNeverRegisteredLoss"
    with pytest.raises(
        ValueError,
        match=r"unknown loss type 'SpecNeverRegisteredLoss'; registered: .*SpecLogCosh.*"
        r"If SpecNeverRegisteredLoss is your own loss, import the module that defines it "
        r"\(with @purenn.register_loss\) before loading",
    ):
        pn.Network.from_json(json.dumps(d))


def test_registering_another_loss_class_under_a_taken_name_fails():
    @attrs.frozen
    class MSE(pn.Loss):
        def value_and_grad(self, out, y):
            return 0.0, np.zeros_like(out)

    with pytest.raises(
        ValueError,
        match=r"a different loss class named 'MSE' is registered already \(purenn.losses.MSE\)",
    ):
        pn.register_loss(MSE)
    assert pn.losses.loss_class("MSE") is pn.losses.MSE
    assert type(pn.Network(2, [pn.Dense(1)], "mse").loss) is pn.losses.MSE
    assert pn.register_loss(SpecLogCosh) is SpecLogCosh  # the same class again: fine
    with pytest.raises(TypeError, match=r"register_loss expects a subclass of purenn.Loss"):
        pn.register_loss(SpecScale)

    class SpecPlainLoss(pn.Loss):
        pass

    with pytest.raises(TypeError, match=r"frozen attrs class; decorate SpecPlainLoss"):
        pn.register_loss(SpecPlainLoss)


# ---------------------------------------------------------------- which layers may end a network


@pytest.mark.parametrize(
    ("input_shape", "layers", "out_shape"),
    [
        ((1, 6, 6), [pn.Conv2D(2, 3), pn.Flatten()], (32,)),
        ((1, 6, 6), [pn.Conv2D(2, 3), pn.MaxPool2D(2), pn.Flatten()], (8,)),
        (4, [pn.Dense(3), SpecScale()], (3,)),
        (4, [pn.Dense(3), pn.Dropout(0.5)], (3,)),
        (4, [SpecScale()], (4,)),
    ],
    ids=["conv-flatten", "conv-pool-flatten", "user layer", "dropout", "only a user layer"],
)
def test_any_layer_with_a_flat_output_may_end_a_regression_network(input_shape, layers, out_shape):
    spec = pn.Network(input_shape, layers, loss="mse")
    assert spec.output_shape == out_shape
    params = pn.init(spec, 0)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, *spec.input_shape)).astype(np.float32)
    y = rng.normal(size=(3, *out_shape)).astype(np.float32)
    result = pn.train_pass(params, x, y, rng=0)
    assert result.output.shape == (3, *out_shape) and result.output.dtype == np.float32
    assert np.isfinite(result.loss)
    assert pn.forward(params, x).shape == (3, *out_shape)


def test_a_network_must_end_in_a_flat_output_and_fit_its_loss():
    with pytest.raises(
        ValueError,
        match=r"must end in a flat output of shape \(k,\); "
        r"the last layer conv2d_0 gives \(2, 4, 4\)",
    ):
        pn.Network((1, 6, 6), [pn.Conv2D(2, 3)], loss="mse")
    with pytest.raises(
        ValueError, match=r"the last layer specscale_0 \(SpecScale\) has activation None"
    ):
        pn.Network(4, [pn.Dense(3), SpecScale()])  # cross-entropy needs a softmax last


# ---------------------------------------------------------------- a layer that breaks its promise


@pytest.mark.parametrize(
    ("mode", "got"),
    [
        ("shape", r"shape \(3, 4\) and dtype float32"),
        ("dtype", r"shape \(3, 5\) and dtype float64"),
        ("list", r"list"),
    ],
)
def test_a_layer_returning_the_wrong_output_is_named_at_the_first_pass(mode, got):
    spec = pn.Network(4, [pn.Dense(5), SpecBroken(mode), pn.Dense(2, "softmax")])
    params = pn.init(spec, 0)
    x, y = np.ones((3, 4), np.float32), np.array([0, 1, 0])
    message = (
        rf"^specbroken_0 \(SpecBroken\)\.forward returned {got} for an input of shape "
        r"\(3, 5\) and dtype float32; its output_shape promises \(3, 5\)"
    )
    for call in (
        lambda: pn.forward(params, x),
        lambda: pn.logits(params, x),
        lambda: pn.loss(params, x, y),
        lambda: pn.train_pass(params, x, y),
        lambda: pn.predict(params, x),
    ):
        with pytest.raises(ValueError, match=message):
            call()
