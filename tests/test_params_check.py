"""Params checked against their spec: the layers' ``param_shapes`` and
``state_shapes``, ``Network.param_shapes``, ``purenn.check_params`` and the
public functions that run it."""

from __future__ import annotations

import tracemalloc

import attrs
import numpy as np
import pytest

import purenn as pn

X4 = np.ones((2, 4), np.float32)
Y4 = np.array([0, 1])

NETWORKS = {
    "mlp": pn.Network(4, [pn.Dense(6), pn.Dropout(0.5), pn.Dense(3, "softmax")]),
    "norms": pn.Network(4, [pn.Dense(5), pn.BatchNorm(), pn.LayerNorm(), pn.Dense(2, "softmax")]),
    "cnn": pn.Network(
        (2, 9, 8),
        [
            pn.Conv2D(3, (3, 2), padding="same"),
            pn.BatchNorm(activation="relu"),
            pn.MaxPool2D(2),
            pn.Conv2D(4, 2, stride=(2, 1), padding=1),
            pn.AvgPool2D(2),
            pn.Flatten(),
            pn.Dense(3, "softmax"),
        ],
    ),
    "containers": pn.Network(
        (2, 6, 6),
        [
            pn.Residual(
                [pn.Conv2D(4, 3, padding="same"), pn.BatchNorm()],
                shortcut=[pn.Conv2D(4, 1), pn.BatchNorm()],
                activation="relu",
            ),
            pn.Parallel(
                [[pn.Conv2D(2, 1)], [], [pn.MaxPool2D(1), pn.Conv2D(3, 3, padding=1)]],
                join="concat",
            ),
            pn.GlobalAvgPool2D(),
            pn.Reshape((9,)),
            pn.Residual(pn.Dense(9, "tanh")),
            pn.Dense(2, "sigmoid"),
        ],
        "binary_cross_entropy",
    ),
}


def _shapes(tree):
    """A params tree (spec dropped) as shapes, state leaves as ArraySpec like
    ``Network.param_shapes`` gives them."""

    def walk(t, state):
        out = {}
        for k, v in t.items():
            if k == pn.SPEC_KEY:
                continue
            if isinstance(v, dict):
                out[k] = walk(v, state or k == pn.STATE_KEY)
            elif state:
                out[k] = pn.ArraySpec(v.shape, None if v.dtype.kind == "f" else v.dtype)
            else:
                out[k] = v.shape
        return out

    return walk(tree, False)


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_param_shapes_are_what_init_makes(name, dtype):
    spec = NETWORKS[name]
    params = pn.init(spec, 0, dtype)
    assert spec.param_shapes() == _shapes(params)
    assert pn.check_params(params) == np.dtype(dtype)
    assert spec.param_counts() == {
        n: sum(a.size for _, a in pn.tree_items({"x": params[n]})) if n in params else 0
        for n in spec.layer_names()
    }


def test_param_shapes_is_a_copy():
    spec = NETWORKS["norms"]
    shapes = spec.param_shapes()
    shapes["dense_0"]["w"] = (1, 1)
    del shapes[pn.STATE_KEY]
    assert spec.param_shapes()["dense_0"]["w"] == (4, 5)
    pn.check_params(pn.init(spec, 0))


def test_a_huge_network_is_described_without_making_an_array():
    tracemalloc.start()
    try:
        spec = pn.Network(8000, [pn.Dense(2**20), pn.Dense(8000, "softmax")])
        counts = spec.param_counts()
        shapes = spec.param_shapes()
        summary = spec.summary()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts["dense_0"] == 8000 * 2**20 + 2**20
    assert shapes["dense_1"]["w"] == (2**20, 8000)
    assert "dense_1" in summary
    assert peak < 5 * 2**20, peak


@pn.register_layer
@attrs.frozen
class _Scale(pn.Layer):
    """A layer of the tests' own without param_shapes: the slow path."""

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, rng, in_shape, dtype):
        return {"s": np.ones(in_shape, dtype)}

    def forward(self, params, x, ctx):
        return x * params["s"], x

    def backward(self, params, cache, dy, ctx):
        return (dy * params["s"] if ctx.need_dx else None), {"s": (dy * cache).sum(axis=0)}


@pn.register_layer
@attrs.frozen
class _Liar(_Scale):
    """States shapes its init_params does not make."""

    def param_shapes(self, in_shape):
        return {"s": (in_shape[0] + 1,)}


def test_a_layer_without_param_shapes_takes_the_slow_path():
    spec = pn.Network(4, [_Scale(), pn.Dense(2, "softmax")])
    assert spec.param_shapes()["_scale_0"] == {"s": (4,)}
    params = pn.init(spec, 0)
    bad = {**params, "_scale_0": {"s": np.ones(3, np.float32)}}
    with pytest.raises(
        ValueError,
        match=r"params\['_scale_0'\]\['s'\] has shape \(3,\) but the spec gives \(4,\)",
    ):
        pn.forward(bad, X4)


def test_init_refuses_a_layer_whose_param_shapes_disagree_with_init_params():
    spec = pn.Network(4, [_Liar(), pn.Dense(2, "softmax")])
    with pytest.raises(
        ValueError,
        match=r"_liar_0 \(_Liar\)\.init_params made .*\(4,\).* its param_shapes gives .*\(5,\)",
    ):
        pn.init(spec, 0)


BAD_SHAPES = [None, {}, {"s": [4]}, {"s": (4.0,)}, {"s": (-1,)}, {"s/t": (4,)}, {"state": (4,)}]


@pn.register_layer
@attrs.frozen
class _Odd(_Scale):
    """param_shapes returns BAD_SHAPES[case]."""

    case: int = 0

    def param_shapes(self, in_shape):
        return BAD_SHAPES[self.case]


@pytest.mark.parametrize("case", range(len(BAD_SHAPES)))
def test_network_refuses_malformed_param_shapes(case):
    with pytest.raises(TypeError, match=r"_odd_0 \(_Odd\)\.param_shapes"):
        pn.Network(4, [_Odd(case), pn.Dense(2, "softmax")])


# --------------------------------------------------------------------------- the defects


def _mlp(dtype=np.float32):
    return pn.init(pn.Network(4, [pn.Dense(3, "softmax")]), 0, dtype)


def _with(params, name, **leaves):
    return {**params, name: {**params[name], **leaves}}


def _public_calls(params):
    """Every public function that takes params, called on ``params``."""
    grads = pn.grads(_mlp(), X4, Y4)
    opt = pn.optim.adam()
    return {
        "forward": lambda: pn.forward(params, X4),
        "logits": lambda: pn.logits(params, X4),
        "layer_outputs": lambda: pn.layer_outputs(params, X4),
        "predict": lambda: pn.predict(params, X4),
        "loss": lambda: pn.loss(params, X4, Y4),
        "grads": lambda: pn.grads(params, X4, Y4),
        "loss_and_grads": lambda: pn.loss_and_grads(params, X4, Y4),
        "train_pass": lambda: pn.train_pass(params, X4, Y4),
        "check_inputs": lambda: pn.check_inputs(params, X4, Y4),
        "check_params": lambda: pn.check_params(params),
        "sgd_step": lambda: pn.sgd_step(params, grads, 0.1),
        "optim.init": lambda: opt.init(params),
        "optim.update": lambda: opt.update(grads, opt.init(_mlp()), params),
    }


CALLS = list(_public_calls(_mlp()))


def _refused(params, name, error, match, tmp_path):
    call = {**_public_calls(params), "save": lambda: pn.save(tmp_path / "p.npz", params)}[name]
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("name", [*CALLS, "save"])
def test_a_bias_of_shape_1_is_not_broadcast(name, tmp_path):
    params = _with(_mlp(), "dense_0", b=np.zeros(1, np.float32))
    _refused(
        params,
        name,
        ValueError,
        r"params\['dense_0'\]\['b'\] has shape \(1,\) but the spec gives \(3,\) for dense_0",
        tmp_path,
    )


@pytest.mark.parametrize("name", [*CALLS, "save"])
def test_another_networks_arrays_under_this_spec_are_refused(name, tmp_path):
    spec3 = pn.Network(4, [pn.Dense(3, "softmax")])
    params7 = pn.init(pn.Network(4, [pn.Dense(7, "softmax")]), 0)
    params = {**params7, pn.SPEC_KEY: spec3}  # predicted all zeros before
    match = r"\['w'\] has shape \(4, 7\) but the spec gives \(4, 3\)"
    _refused(params, name, ValueError, match, tmp_path)


@pytest.mark.parametrize("name", [*CALLS, "save"])
def test_a_missing_leaf_is_named(name, tmp_path):
    params = {**_mlp(), "dense_0": {"w": _mlp()["dense_0"]["w"]}}  # a bare KeyError 'b' before
    match = r"params\['dense_0'\] has the keys \['w'\] .*missing \['b'\]"
    _refused(params, name, ValueError, match, tmp_path)
    extra = _with(_mlp(), "dense_0", c=np.zeros(3, np.float32))
    _refused(extra, name, ValueError, r"unexpected \['c'\]", tmp_path)


@pytest.mark.parametrize("name", [*CALLS, "save"])
def test_a_wrong_width_is_named_not_a_matmul_error(name, tmp_path):
    params = _with(_mlp(), "dense_0", w=np.zeros((5, 3), np.float32))
    match = r"\['w'\] has shape \(5, 3\) but the spec gives \(4, 3\)"
    _refused(params, name, ValueError, match, tmp_path)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.complex64, np.bool_, np.dtype(">f4")])
@pytest.mark.parametrize("name", [*CALLS, "save"])
def test_only_float32_and_float64_params_run(name, dtype, tmp_path):
    params = {**_mlp(), "dense_0": pn.tree_map(lambda a: a.astype(dtype), _mlp()["dense_0"])}
    match = r"params\['dense_0'\]\['[wb]'\] has dtype .*float32 or float64"
    _refused(params, name, TypeError, match, tmp_path)


def test_leaves_must_be_plain_arrays_of_one_dtype():
    params = _mlp()
    with pytest.raises(TypeError, match=r"\['dense_0'\]\['b'\] must be a NumPy array; got list"):
        pn.forward(_with(params, "dense_0", b=[0.0, 0.0, 0.0]), X4)
    with pytest.warns(PendingDeprecationWarning, match="matrix subclass"):  # NumPy's own
        matrix = np.asmatrix(params["dense_0"]["w"])
    with pytest.raises(TypeError, match="a subclass"):
        pn.forward(_with(params, "dense_0", w=matrix), X4)
    mixed = "params mix dtypes: 'dense_0' holds float64, earlier leaves float32"
    with pytest.raises(ValueError, match=mixed):
        pn.forward(_with(params, "dense_0", b=params["dense_0"]["b"].astype(np.float64)), X4)


def test_the_state_is_checked_against_state_shapes():
    spec = NETWORKS["norms"]
    params = pn.init(spec, 0)
    x = np.ones((3, 4), np.float32)
    y = np.array([0, 1, 0])
    state = params[pn.STATE_KEY]
    bn = state["batchnorm_0"]

    def with_bn(**leaves):
        return {**params, pn.STATE_KEY: {**state, "batchnorm_0": {**bn, **leaves}}}

    with pytest.raises(
        ValueError,
        match=r"params\['state'\]\['batchnorm_0'\]\['mean'\] has shape \(1,\) "
        r"but the spec gives \(5,\)",
    ):
        pn.grads(with_bn(mean=np.zeros(1, np.float32)), x, y)
    counter = r"\['count'\] has dtype float32; it is a counter, .* of int64"
    with pytest.raises(TypeError, match=counter):
        pn.grads(with_bn(count=np.zeros((), np.float32)), x, y)
    floats = r"\['var'\] has dtype int64; state arrays must have the params' dtype float32"
    with pytest.raises(TypeError, match=floats):
        pn.grads(with_bn(var=np.ones(5, np.int64)), x, y)
    with pytest.raises(ValueError, match=r"params\['state'\]\['batchnorm_0'\] has the keys"):
        pn.grads(with_bn(extra=np.ones(5, np.float32)), x, y)
    with pytest.raises(ValueError, match=r"under 'state' \[\] instead of the state of \['batchn"):
        pn.grads({**params, pn.STATE_KEY: {}}, x, y)


def test_nested_container_leaves_are_named_by_path():
    spec = NETWORKS["containers"]
    params = pn.init(spec, 0)
    res = params["residual_0"]
    bad = {
        **params,
        "residual_0": {
            **res,
            "shortcut": {
                **res["shortcut"],
                "conv2d_0": {
                    **res["shortcut"]["conv2d_0"],
                    "w": np.zeros((4, 2, 3, 3), np.float32),
                },
            },
        },
    }
    with pytest.raises(
        ValueError,
        match=r"params\['residual_0/shortcut/conv2d_0'\]\['w'\] has shape \(4, 2, 3, 3\) "
        r"but the spec gives \(4, 2, 1, 1\)",
    ):
        pn.forward(bad, np.ones((1, 2, 6, 6), np.float32))


def test_the_check_leaves_valid_params_alone():
    params = _mlp()
    for leaf in pn.tree_leaves(params):
        leaf.flags.writeable = False
    before = pn.tree_map(np.copy, params)
    assert pn.check_params(params) == np.float32
    pn.sgd_step(params, pn.grads(params, X4, Y4), 0.1)
    assert pn.tree_equal(params, before)
