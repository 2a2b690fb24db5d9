"""The activation registry, and the out= forms of the built-ins that offer them.

Derivatives are checked in test_gradcheck.py and against PyTorch in
test_torch_reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
from purenn.activations import activation_names, get_activation, register_activation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [n for n in activation_names() if get_activation(n).in_place])
def test_out_forms_give_the_same_bits_and_write_only_out(name, dtype):
    act = get_activation(name)
    rng = np.random.default_rng(0)
    z, da = (rng.normal(size=(9, 4, 3)).astype(dtype) for _ in range(2))
    z[0, 0, 0] = 0.0  # the kink
    for arr in (z, da):
        arr.flags.writeable = False
    a = act.forward(z)
    out = np.full_like(z, np.nan)
    assert act.forward(z, out=out) is out
    assert np.array_equal(out, a) and out.dtype == dtype
    a.flags.writeable = False
    dz = act.backward(z, a, da)
    out = np.full_like(z, np.nan)
    assert act.backward(z, a, da, out=out) is out
    assert np.array_equal(out, dz) and out.dtype == dtype


def test_builtins_with_out_are_the_conv_friendly_ones():
    assert {n for n in activation_names() if get_activation(n).in_place} == {
        "relu",
        "sigmoid",
        "tanh",
    }


def test_register_activation_refuses_bad_arguments():
    with pytest.raises(TypeError, match="non-empty string"):
        register_activation("", np.tanh, lambda z, a, da: da)
    with pytest.raises(TypeError, match="backward must be a function"):
        register_activation("act_test_bad", np.tanh, "not a function")
    with pytest.raises(TypeError, match="in_place must be True or False"):
        register_activation("act_test_bad", np.tanh, lambda z, a, da: da, in_place=1)
    with pytest.raises(ValueError, match="'relu' is already registered with other functions"):
        register_activation("relu", np.tanh, lambda z, a, da: da)
    assert "act_test_bad" not in activation_names()


def test_registering_the_same_functions_again_is_allowed():
    def fwd(z):
        return z * 2.0

    def bwd(z, a, da):
        return da * 2.0  # d(2z)/dz = 2

    register_activation("act_test_double", fwd, bwd)
    register_activation("act_test_double", fwd, bwd)  # a module imported twice
    layer = pn.Dense(3, "act_test_double")
    assert layer.activation == "act_test_double"
    pn.gradcheck.check_layer(layer, (4,))


def test_unknown_activation_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"Dense.activation: unknown activation 'swish'.*'gelu'"):
        pn.Dense(3, "swish")


def test_an_activation_names_its_default_initializer():
    def fwd(z):
        return np.maximum(z, 0) * 1.5

    def bwd(z, a, da):
        return da * 1.5 * (z > 0)

    register_activation("act_test_relu15", fwd, bwd, weight_init="he_uniform")
    got = pn.init(pn.Network(30, [pn.Dense(7, "act_test_relu15")], "mse"), 4)["dense_0"]["w"]
    explicit = pn.Network(30, [pn.Dense(7, "act_test_relu15", weight_init="he_uniform")], "mse")
    assert np.array_equal(got, pn.init(explicit, 4)["dense_0"]["w"])
    with pytest.raises(ValueError, match="weight_init must be one of"):
        register_activation("act_test_bad_init", fwd, bwd, weight_init="orthogonal")
