"""The core's contracts: purity, determinism, dtypes, initialisers, bad input, goldens.

Gradients are proved in ``test_gradients.py`` and against PyTorch in
``test_torch_reference.py``; this module checks everything around them.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import purenn as pn
from purenn.activations import activation_names
from purenn.initializers import INITIALIZERS

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "core.json"

# one network per loss, each with dropout so the rng path is exercised
SPECS = {
    "cross_entropy": pn.Network(
        4, [pn.Dense(8, "relu"), pn.Dropout(0.5), pn.Dense(6, "tanh"), pn.Dense(3, "softmax")]
    ),
    "mse": pn.Network(
        4, [pn.Dense(8, "leaky_relu"), pn.Dropout(0.3), pn.Dense(2, "linear")], "mse"
    ),
    "binary_cross_entropy": pn.Network(
        4, [pn.Dense(8, "sigmoid"), pn.Dropout(0.2), pn.Dense(3, "sigmoid")], "binary_cross_entropy"
    ),
}
N = 6


def data(spec: pn.Network, dtype=np.float64, seed: int = 0, one_hot: bool = False):
    rng = np.random.default_rng(seed)
    (k,) = spec.output_shape
    x = rng.normal(size=(N, *spec.input_shape)).astype(dtype)
    if isinstance(spec.loss, pn.losses.CrossEntropy):
        labels = rng.integers(0, k, size=N)
        return x, (np.eye(k, dtype=dtype)[labels] if one_hot else labels)
    if isinstance(spec.loss, pn.losses.BinaryCrossEntropy):
        return x, rng.integers(0, 2, size=(N, k)).astype(dtype)
    return x, rng.normal(size=(N, k)).astype(dtype)


def read_only(tree_or_array):
    """A deep copy whose every array is marked read-only."""
    if isinstance(tree_or_array, np.ndarray):
        out = tree_or_array.copy()
        out.flags.writeable = False
        return out
    return pn.tree_map(read_only, tree_or_array)


def snapshot(tree_or_array):
    if isinstance(tree_or_array, np.ndarray):
        return tree_or_array.copy()
    return pn.tree_map(np.copy, tree_or_array)


def same(a, b) -> bool:
    """Bit-identical arrays, trees, floats or tuples of them."""
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, dict):
        return pn.tree_equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- purity


def public_calls(loss: pn.Loss):
    """(name, fn(params, x, y)) for every public function that takes params."""

    def fresh():
        return np.random.default_rng(1)

    calls = [
        ("forward", lambda p, x, y: pn.forward(p, x)),
        ("forward-train", lambda p, x, y: pn.forward(p, x, train=True, rng=fresh())),
        ("loss", lambda p, x, y: pn.loss(p, x, y)),
        ("loss-train", lambda p, x, y: pn.loss(p, x, y, train=True, rng=fresh())),
        ("grads", lambda p, x, y: pn.grads(p, x, y, rng=fresh())),
        ("loss_and_grads", lambda p, x, y: pn.loss_and_grads(p, x, y, rng=fresh())),
        ("sgd_step", lambda p, x, y: pn.sgd_step(p, pn.grads(p, x, y, rng=1), 0.1)),
    ]
    if loss.has_accuracy:
        calls.append(("predict", lambda p, x, y: pn.predict(p, x)))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("loss_name", "one_hot"), [*((k, False) for k in SPECS), ("cross_entropy", True)]
)
def test_read_only_inputs_unchanged_and_repeatable(loss_name, one_hot, dtype):
    """Read-only params, x and y work; nothing is written; identical calls agree bitwise."""
    spec = SPECS[loss_name]
    params = read_only(pn.init(spec, 0, dtype))
    x, y = data(spec, dtype, one_hot=one_hot)
    x, y = read_only(x), read_only(y)
    before = snapshot(params), snapshot(x), snapshot(y)
    for name, call in public_calls(spec.loss):
        first = call(params, x, y)
        second = call(params, x, y)
        assert same(first, second), f"{name}: two identical calls differ"
        assert same((params, x, y), before), f"{name} changed its inputs"
        assert params[pn.SPEC_KEY] is spec


@st.composite
def random_setups(draw):
    """A random network (any activations, dropout, loss), dtype, seed and one-hot flag."""
    acts = list(activation_names())
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        layers.append(pn.Dense(draw(st.integers(1, 5)), draw(st.sampled_from(acts))))
        if draw(st.booleans()):
            layers.append(pn.Dropout(draw(st.sampled_from([0.0, 0.5]))))
    loss = draw(st.sampled_from(list(SPECS)))
    out = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(loss)
    layers.append(pn.Dense(draw(st.integers(1, 4)), out or draw(st.sampled_from(acts))))
    spec = pn.Network(draw(st.integers(1, 4)), layers, loss)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return spec, dtype, draw(st.integers(0, 1000)), draw(st.booleans())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(random_setups())
def test_random_networks_are_pure_and_keep_their_dtype(setup):
    spec, dtype, seed, one_hot = setup
    params = read_only(pn.init(spec, seed, dtype))
    x, y = data(spec, dtype, seed=seed, one_hot=one_hot)
    x, y = read_only(x), read_only(y)
    before = snapshot(params), snapshot(x), snapshot(y)
    for name, call in public_calls(spec.loss):
        first = call(params, x, y)
        assert same(first, call(params, x, y)), name
        results = first if isinstance(first, tuple) else (first,)
        for result in results:
            leaves = pn.tree_leaves(result) if isinstance(result, dict) else [result]
            for leaf in leaves:
                if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f":
                    assert leaf.dtype == dtype, name
    assert same((params, x, y), before)


def test_sgd_step_writes_nothing_and_shares_nothing():
    spec = SPECS["cross_entropy"]
    params = read_only(pn.init(spec, 0, np.float64))
    g = read_only(pn.grads(params, *data(spec), rng=0))
    before = snapshot(params), snapshot(g)
    new = pn.sgd_step(params, g, 0.0)
    assert same((params, g), before)
    assert pn.tree_equal(new, params)  # lr = 0: same values...
    for (_, a), (_, b) in zip(pn.tree_items(new), pn.tree_items(params), strict=True):
        assert not np.shares_memory(a, b)  # ...in new arrays
    assert new[pn.SPEC_KEY] is spec


def test_sgd_step_is_p_minus_lr_g():
    spec = SPECS["mse"]
    params = pn.init(spec, 3, np.float64)
    g = pn.grads(params, *data(spec), rng=4)
    new = pn.sgd_step(params, g, 0.25)
    for (path, p), (_, gl), (_, q) in zip(
        pn.tree_items(params), pn.tree_items(g), pn.tree_items(new), strict=True
    ):
        assert np.array_equal(q, p - 0.25 * gl), path


def test_init_does_not_touch_the_callers_generator_state_twice():
    """init draws from the Generator it is given (so a run shares one stream) and
    an int seed gives the same params as a fresh Generator with that seed."""
    spec = SPECS["cross_entropy"]
    rng = np.random.default_rng(5)
    a = pn.init(spec, rng)
    b = pn.init(spec, rng)
    assert not pn.tree_equal(a, b)  # the stream moved on
    assert pn.tree_equal(pn.init(spec, 5), a)
    assert pn.tree_equal(pn.init(spec, np.random.default_rng(5)), a)
    assert pn.tree_equal(pn.init(spec, np.int64(5)), a)


# ---------------------------------------------------------------- determinism


def train(spec: pn.Network, seed: int, dropout_seed: int, steps: int = 10, dtype=np.float32):
    params = pn.init(spec, seed, dtype)
    rng = np.random.default_rng(dropout_seed)
    x, y = data(spec, dtype, seed=seed)
    for _ in range(steps):
        params = pn.sgd_step(params, pn.grads(params, x, y, rng=rng), 0.1)
    return params


@pytest.mark.parametrize("loss_name", list(SPECS))
def test_same_seed_same_bits_other_seed_differs(loss_name):
    spec = SPECS[loss_name]
    a = train(spec, 0, 1)
    assert pn.tree_equal(a, train(spec, 0, 1))
    assert not pn.tree_allclose(a, train(spec, 7, 1), rtol=1e-3)  # another init seed
    assert not pn.tree_equal(a, train(spec, 0, 2))  # another dropout stream


def test_dropout_masks_follow_the_rng():
    spec = SPECS["cross_entropy"]
    params = pn.init(spec, 0, np.float64)
    x, _ = data(spec)
    a = pn.forward(params, x, train=True, rng=np.random.default_rng(3))
    assert np.array_equal(a, pn.forward(params, x, train=True, rng=3))  # int seed == Generator
    assert not np.array_equal(a, pn.forward(params, x, train=True, rng=4))
    assert not np.array_equal(a, pn.forward(params, x))  # eval: no dropout


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("loss_name", "one_hot"), [*((k, False) for k in SPECS), ("cross_entropy", True)]
)
def test_dtype_preserved_end_to_end(loss_name, one_hot, dtype):
    spec = SPECS[loss_name]
    params = pn.init(spec, 0, dtype)
    assert all(leaf.dtype == dtype for leaf in pn.tree_leaves(params))
    x, y = data(spec, dtype, one_hot=one_hot)
    assert pn.forward(params, x).dtype == dtype
    assert pn.forward(params, x, train=True, rng=0).dtype == dtype
    value, g = pn.loss_and_grads(params, x, y, rng=0)
    assert type(value) is float and math.isfinite(value)
    assert type(pn.loss(params, x, y)) is float
    pn.tree_check_like(g, params, "grads")  # shapes and dtypes
    for lr in (0.1, np.float64(0.1), np.float32(0.1), 1):
        new = pn.sgd_step(params, g, lr)
        assert all(leaf.dtype == dtype for leaf in pn.tree_leaves(new)), lr


@pytest.mark.parametrize("loss_name", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_integer_targets_are_accepted_as_dense_targets(loss_name):
    """0/1 (or one-hot) targets given as ints or bools are exact, so they convert."""
    spec = SPECS[loss_name]
    params = pn.init(spec, 0, np.float32)
    x, y = data(spec, np.float32, one_hot=True)
    y_int = np.rint(y).astype(np.int64)
    got = pn.grads(params, x, y_int, rng=0)
    want = pn.grads(params, x, y_int.astype(np.float32), rng=0)
    assert pn.tree_equal(got, want)


def test_float32_and_float64_init_agree_up_to_rounding():
    spec = SPECS["cross_entropy"]
    a, b = pn.init(spec, 9, np.float32), pn.init(spec, 9, np.float64)
    for (_, u), (_, v) in zip(pn.tree_items(a), pn.tree_items(b), strict=True):
        assert np.array_equal(u, v.astype(np.float32))


# ---------------------------------------------------------------- forward semantics


def test_eval_mode_dropout_is_identity_and_renames_nothing():
    plain = pn.Network(4, [pn.Dense(5, "tanh"), pn.Dense(3, "softmax")])
    dropped = pn.Network(
        4, [pn.Dropout(0.4), pn.Dense(5, "tanh"), pn.Dropout(0.5), pn.Dense(3, "softmax")]
    )
    a, b = pn.init(plain, 0), pn.init(dropped, 0)
    assert a.keys() == b.keys() == {pn.SPEC_KEY, "dense_0", "dense_1"}
    x, _ = data(plain, np.float32)
    b_as_a = {**b, pn.SPEC_KEY: plain}
    assert pn.tree_equal(a, b_as_a)
    assert np.array_equal(pn.forward(a, x), pn.forward(b, x))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_inverted_dropout_statistics(rate):
    """Each unit dropped with probability ``rate``; survivors scaled by 1 / (1 - rate)."""
    layer = pn.Dropout(rate)
    x = np.ones((400, 500))
    y, _ = layer.forward(None, x, pn.Context(train=True, rng=np.random.default_rng(0)))
    assert set(np.unique(y)) <= {0.0, 1.0 / (1.0 - rate)}
    dropped = (y == 0).mean()
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / x.size)
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(rate / (1 - rate) / x.size)  # E[y] = x
    assert layer.forward(None, x, pn.Context(train=False))[0] is x  # eval: identity


def test_forward_outputs_are_distributions_and_predict_is_argmax():
    spec = SPECS["cross_entropy"]
    params = pn.init(spec, 0, np.float64)
    x, _ = data(spec)
    p = pn.forward(params, x)
    assert p.shape == (N, 3) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    labels = pn.predict(params, x)
    assert labels.shape == (N,) and labels.dtype.kind == "i"
    assert np.array_equal(labels, p.argmax(axis=1))


def test_predict_binary():
    multi = SPECS["binary_cross_entropy"]
    params = pn.init(multi, 0, np.float64)
    x, _ = data(multi)
    assert np.array_equal(pn.predict(params, x), (pn.forward(params, x) > 0.5).astype(int))
    single = pn.Network(4, [pn.Dense(1, "sigmoid")], "binary_cross_entropy")
    params = pn.init(single, 0, np.float64)
    got = pn.predict(params, x)
    assert got.shape == (N,)
    assert np.array_equal(got, (pn.forward(params, x)[:, 0] > 0.5).astype(int))


def test_grads_have_exactly_the_structure_of_params():
    spec = SPECS["cross_entropy"]
    params = pn.init(spec, 0, np.float64)
    g = pn.grads(params, *data(spec), rng=0)
    assert list(g) == list(params)
    assert g[pn.SPEC_KEY] is spec
    assert [p for p, _ in pn.tree_items(g)] == [p for p, _ in pn.tree_items(params)]
    pn.tree_check_like(g, params, "grads")


def test_loss_is_the_loss_the_gradients_are_of():
    spec = SPECS["cross_entropy"]
    params = pn.init(spec, 0, np.float64)
    x, y = data(spec)
    value, _ = pn.loss_and_grads(params, x, y, rng=np.random.default_rng(5))
    assert value == pn.loss(params, x, y, train=True, rng=np.random.default_rng(5))


# ---------------------------------------------------------------- initialisers

FAN_IN, FAN_OUT = 800, 400
THEORY_STD = {
    "he_normal": math.sqrt(2 / FAN_IN),
    "he_uniform": math.sqrt(2 / FAN_IN),  # limit sqrt(6 / fan_in), std = limit / sqrt(3)
    "glorot_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "glorot_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "lecun_normal": math.sqrt(1 / FAN_IN),
}


@pytest.mark.parametrize("scheme", list(THEORY_STD))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initializer_statistics(scheme, dtype):
    spec = pn.Network(
        FAN_IN, [pn.Dense(FAN_OUT, "linear", weight_init=scheme, bias_init=0.25)], "mse"
    )
    params = pn.init(spec, 0, dtype)
    w, b = params["dense_0"]["w"], params["dense_0"]["b"]
    assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == dtype
    assert b.shape == (FAN_OUT,) and b.dtype == dtype and (b == dtype(0.25)).all()
    std = THEORY_STD[scheme]
    w64 = w.astype(np.float64)
    assert w64.std() == pytest.approx(std, rel=0.01)  # std of std: ~0.1 % here
    assert abs(w64.mean()) < 5 * std / math.sqrt(w.size)
    kurtosis = ((w64 - w64.mean()) ** 4).mean() / w64.var() ** 2
    if scheme.endswith("uniform"):
        limit = math.sqrt(3) * std
        assert np.abs(w64).max() <= limit * (1 + 1e-6)
        assert np.abs(w64).max() > 0.99 * limit
        assert kurtosis == pytest.approx(1.8, abs=0.05)
    else:
        assert kurtosis == pytest.approx(3.0, abs=0.1)


def test_zeros_initializer():
    spec = pn.Network(5, [pn.Dense(3, "linear", weight_init="zeros", bias_init=-1.5)], "mse")
    p = pn.init(spec, 0)["dense_0"]
    assert p["w"].shape == (5, 3) and not p["w"].any()
    assert (p["b"] == -1.5).all()


@pytest.mark.parametrize("act", list(activation_names()))
def test_default_initializer_follows_the_activation(act):
    relu_family = ("relu", "leaky_relu", "elu", "gelu", "silu")
    expected = "he_normal" if act in relu_family else "glorot_uniform"
    layers = [pn.Dense(7, act)]
    explicit = [pn.Dense(7, act, weight_init=expected)]
    got = pn.init(pn.Network(30, layers, "mse"), 4)["dense_0"]["w"]
    want = pn.init(pn.Network(30, explicit, "mse"), 4)["dense_0"]["w"]
    assert np.array_equal(got, want)


def test_every_initializer_is_tested():
    assert set(THEORY_STD) | {"zeros"} == set(INITIALIZERS)


# ---------------------------------------------------------------- bad input

CE = pn.Network(4, [pn.Dense(5, "relu"), pn.Dropout(0.5), pn.Dense(3, "softmax")])


@pytest.fixture
def ce():
    params = pn.init(CE, 0, np.float64)
    x, y = data(CE)
    return params, x, y


def every_batch_call(params, x, y):
    """Each public function that takes x (and y), with a valid rng."""
    return [
        lambda: pn.forward(params, x),
        lambda: pn.forward(params, x, train=True, rng=0),
        lambda: pn.loss(params, x, y),
        lambda: pn.grads(params, x, y, rng=0),
        lambda: pn.loss_and_grads(params, x, y, rng=0),
        lambda: pn.predict(params, x),
    ]


@pytest.mark.parametrize(
    ("bad_x", "match"),
    [
        (np.zeros((6, 3)), r"dense_0 expects x of shape \(batch, 4\); got \(6, 3\)"),
        (np.zeros((6, 5)), r"dense_0 expects x of shape \(batch, 4\); got \(6, 5\)"),
        (np.zeros(4), r"dense_0 expects x of shape \(batch, 4\); got \(4,\)"),
        (np.zeros((6, 4, 1)), r"dense_0 expects x of shape \(batch, 4\); got \(6, 4, 1\)"),
        (np.zeros((0, 4)), r"x is an empty batch \(0 samples\)"),
    ],
    ids=["narrow", "wide", "1d", "3d", "empty"],
)
def test_bad_x_shape(ce, bad_x, match):
    params, _, y = ce
    for call in every_batch_call(params, bad_x, y):
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_x_kind_and_dtype(ce):
    params, x, y = ce
    for bad, match in [
        (x.tolist(), r"x must be a NumPy array of shape \(batch, \*\(4,\)\); got list"),
        (x.astype(np.float32), r"x has dtype float32 but the params are float64; convert with"),
        (np.zeros((6, 4), np.uint8), r"x has dtype uint8 but the params are float64; scale"),
    ]:
        for call in every_batch_call(params, bad, y):
            with pytest.raises(TypeError, match=match):
                call()


def test_float64_x_with_float32_params():
    params = pn.init(CE, 0)  # float32 by default
    x, y = data(CE, np.float64)
    with pytest.raises(TypeError, match=r"x has dtype float64 but the params are float32.*astype"):
        pn.grads(params, x, y, rng=0)
    with pytest.raises(TypeError, match=r"dtype float64 but the params are float32"):
        pn.forward(params, x)


@pytest.mark.parametrize(
    ("bad_y", "error", "match"),
    [
        (np.array([0, 1, 2, 0, 1]), ValueError, r"y has 5 labels but x has 6 samples"),
        (np.array([0, 1, 2, 0, 1, 2, 0]), ValueError, r"y has 7 labels but x has 6 samples"),
        (np.array([0, 1, 2, 0, 1, -1]), ValueError, r"\[0, 2\] for a 3-way output; got .* -1 to 2"),
        (np.array([0, 1, 3, 0, 1, 2]), ValueError, r"\[0, 2\] for a 3-way output; got .* 0 to 3"),
        (np.array([0, 1, -2, 0, 1, 2], np.int8), ValueError, r"got values from -2 to 2"),
        (np.array([0, 1, -1, 0, 1, 2], ">i4"), ValueError, r"got values from -1 to 2"),
        (np.array([0, 1, 2, 0, 9, 2], np.uint16), ValueError, r"got values from 0 to 9"),
        (np.array([0.0, 1, 2]), TypeError, r"must be int class indices; got dtype float64"),
        (
            np.zeros((6, 4)),
            ValueError,
            r"int labels of shape \(6,\) or one-hot targets of shape \(6, 3\); "
            r"got y of shape \(6, 4\)",
        ),
        (np.zeros((5, 3)), ValueError, r"targets of shape \(6, 3\); got y of shape \(5, 3\)"),
        (np.zeros((6, 3), np.float32), TypeError, r"targets have dtype float32 but the params are"),
        ([0, 1, 2, 0, 1, 2], TypeError, r"y must be a NumPy array; got list"),
    ],
    ids=[
        "few",
        "many",
        "negative",
        "too-big",
        "negative-int8",
        "negative-big-endian",
        "too-big-uint16",
        "float",
        "wrong-k",
        "wrong-n",
        "dtype",
        "list",
    ],
)
def test_bad_labels(ce, bad_y, error, match):
    params, x, _ = ce
    for call in (
        lambda: pn.loss(params, x, bad_y),
        lambda: pn.grads(params, x, bad_y, rng=0),
        lambda: pn.loss_and_grads(params, x, bad_y, rng=0),
    ):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("loss_name", ["mse", "binary_cross_entropy"])
def test_dense_targets_refuse_broadcastable_shapes(loss_name):
    """(n,) against an (n, 1) output would silently broadcast to (n, n): refused."""
    spec = pn.Network(4, [pn.Dense(1, "sigmoid")], loss_name)
    params = pn.init(spec, 0, np.float64)
    x = np.zeros((6, 4))
    for bad in (np.zeros(6), np.zeros((1, 1)), np.zeros((6, 2))):
        with pytest.raises(
            ValueError,
            match=rf"loss '{loss_name}' expects targets of shape \(6, 1\); got y of shape",
        ):
            pn.grads(params, x, bad)


def test_dropout_in_train_mode_needs_an_rng(ce):
    params, x, y = ce
    match = r"dropout_0 needs randomness: pass rng=np.random.default_rng\(seed\)"
    for call in (
        lambda: pn.grads(params, x, y),
        lambda: pn.loss_and_grads(params, x, y),
        lambda: pn.forward(params, x, train=True),
        lambda: pn.loss(params, x, y, train=True),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    # rate 0 and evaluation mode need no rng
    pn.forward(params, x)
    pn.loss(params, x, y)
    spec0 = pn.Network(4, [pn.Dense(5), pn.Dropout(0.0), pn.Dense(3, "softmax")])
    pn.grads(pn.init(spec0, 0, np.float64), x, y)


@pytest.mark.parametrize(
    "bad_rng",
    [np.random.RandomState(0), 0.5, "0", True, np.random.PCG64(0), object()],
    ids=["RandomState", "float", "str", "bool", "BitGenerator", "object"],
)
def test_non_generator_rng_is_a_type_error(ce, bad_rng):
    params, x, y = ce
    match = (
        r"rng must be a numpy.random.Generator or an int seed; got \w+. "
        r"Pass e.g. rng=np.random.default_rng\(0\)"
    )
    for call in (
        lambda: pn.init(CE, bad_rng),
        lambda: pn.grads(params, x, y, rng=bad_rng),
        lambda: pn.loss_and_grads(params, x, y, rng=bad_rng),
        lambda: pn.forward(params, x, train=True, rng=bad_rng),
        lambda: pn.forward(params, x, rng=bad_rng),  # eval: unused, still refused
        lambda: pn.loss(params, x, y, rng=bad_rng),
        lambda: pn.loss(params, x, y, train=True, rng=bad_rng),
    ):
        with pytest.raises(TypeError, match=match):
            call()
    with pytest.raises(TypeError, match="rng must be"):
        pn.init(CE, None)


def test_sgd_step_refuses_grads_of_another_network(ce):
    params, x, y = ce
    g = pn.grads(params, x, y, rng=0)
    wider = pn.Network(4, [pn.Dense(6, "relu"), pn.Dense(3, "softmax")])
    g_wider = pn.grads(pn.init(wider, 0, np.float64), x, y)
    with pytest.raises(
        ValueError, match=r"grads belong to another network: its spec .*differs from params' spec"
    ):
        pn.sgd_step(params, g_wider, 0.1)
    # same shapes, different activation: still another network
    other = pn.Network(4, [pn.Dense(5, "tanh"), pn.Dropout(0.5), pn.Dense(3, "softmax")])
    g_other = pn.grads(pn.init(other, 0, np.float64), x, y, rng=0)
    with pytest.raises(ValueError, match="belong to another network"):
        pn.sgd_step(params, g_other, 0.1)
    # right spec, wrong dtype / shape / keys
    g32 = pn.tree_map(lambda a: a.astype(np.float32), g)
    with pytest.raises(
        ValueError,
        match=r"grads\['dense_0/w'\] should have shape \(4, 5\) and dtype float64 like params; "
        r"got shape \(4, 5\) and dtype float32",
    ):
        pn.sgd_step(params, g32, 0.1)
    g_t = {**g, "dense_1": {"w": g["dense_1"]["w"].T, "b": g["dense_1"]["b"]}}
    with pytest.raises(ValueError, match=r"grads\['dense_1/w'\] should have shape \(5, 3\)"):
        pn.sgd_step(params, g_t, 0.1)
    g_missing = {k: v for k, v in g.items() if k != "dense_1"}
    with pytest.raises(ValueError, match=r"missing keys \['dense_1'\]"):
        pn.sgd_step(params, g_missing, 0.1)
    with pytest.raises(TypeError, match="grads must be a dict tree like params; got list"):
        pn.sgd_step(params, [g], 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lr", "error", "match"),
    [
        (float("nan"), ValueError, r"lr must be finite and >= 0; got nan"),
        (float("inf"), ValueError, r"lr must be finite and >= 0; got inf"),
        (np.float32("nan"), ValueError, r"lr must be finite and >= 0; got nan"),
        (-0.1, ValueError, r"lr must be finite and >= 0; got -0.1"),
        ("0.1", TypeError, r"lr must be a float; got '0.1' \(str\)"),
        (None, TypeError, r"lr must be a float; got None"),
        (True, TypeError, r"lr must be a float; got True \(bool\)"),
        (np.array([0.1]), TypeError, r"lr must be a float"),
    ],
)
def test_bad_learning_rate(ce, lr, error, match):
    params, x, y = ce
    g = pn.grads(params, x, y, rng=0)
    with pytest.raises(error, match=match):
        pn.sgd_step(params, g, lr)


def test_params_not_made_by_init(ce, tmp_path):
    params, x, y = ce
    no_spec = {k: v for k, v in params.items() if k != pn.SPEC_KEY}
    for call in (
        lambda: pn.forward(no_spec, x),
        lambda: pn.grads(no_spec, x, y),
        lambda: pn.sgd_step(no_spec, no_spec, 0.1),
        lambda: pn.predict(no_spec, x),
    ):
        with pytest.raises(
            TypeError,
            match=r"params must be a dict made by purenn.init.*'spec'.*"
            r"keys \['dense_0', 'dense_1'\]",
        ):
            call()
    with pytest.raises(TypeError, match=r"params must be a dict made by purenn.init.*got list"):
        pn.forward([params], x)  # type: ignore[arg-type]
    missing = {k: v for k, v in params.items() if k != "dense_1"}
    with pytest.raises(ValueError, match=r"params has no dict of arrays for \['dense_1'\]"):
        pn.forward(missing, x)
    extra = {**params, "dense_9": params["dense_1"]}  # was a bare KeyError in grads
    for call in (
        lambda: pn.forward(extra, x),
        lambda: pn.grads(extra, x, y),
        lambda: pn.save(tmp_path / "extra.npz", extra),
    ):
        with pytest.raises(
            ValueError,
            match=r"params has entries \['dense_9'\] that no layer of the network has; "
            r"expected 'spec' and \['dense_0', 'dense_1'\]",
        ):
            call()
    mixed = {**params, "dense_1": pn.tree_map(lambda a: a.astype(np.float32), params["dense_1"])}
    with pytest.raises(
        ValueError, match=r"params mix dtypes: 'dense_1' holds float32, earlier leaves float64"
    ):
        pn.forward(mixed, x)
    listy = {
        **params,
        "dense_1": {"w": params["dense_1"]["w"].tolist(), "b": params["dense_1"]["b"]},
    }
    with pytest.raises(
        TypeError, match=r"params\['dense_1'\]\['w'\] must be a NumPy array; got list"
    ):
        pn.forward(listy, x)


def test_init_refuses_bad_arguments():
    with pytest.raises(TypeError, match=r"init expects a purenn.Network spec; got Dense"):
        pn.init(pn.Dense(3), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got float16"):
        pn.init(CE, 0, np.float16)
    with pytest.raises(ValueError, match="dtype must be float32 or float64; got int64"):
        pn.init(CE, 0, np.int64)
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got"):
        pn.init(CE, 0, object())


def test_predict_refuses_a_regressor():
    params = pn.init(SPECS["mse"], 0, np.float64)
    x, _ = data(SPECS["mse"])
    with pytest.raises(
        ValueError, match=r"loss 'mse' is a regression loss .*use forward\(params, x\)"
    ):
        pn.predict(params, x)


# ---------------------------------------------------------------- goldens


def load_regen_script():
    path = ROOT / "scripts" / "regen_goldens.py"
    module_spec = importlib.util.spec_from_file_location("regen_goldens", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_golden_training_run():
    """A short seeded float64 run matches the stored numbers (tolerances: BLAS builds
    differ); regenerate only with ``python scripts/regen_goldens.py`` on purpose."""
    stored = json.loads(GOLDEN.read_text())
    script = load_regen_script()
    got = script.golden_run(stored["seed"])
    assert got["spec"] == stored["spec"], "the golden run's network changed: regenerate on purpose"
    assert got["steps"] == stored["steps"] and got["lr"] == stored["lr"]
    np.testing.assert_allclose(got["losses"], stored["losses"], rtol=1e-9, atol=1e-12)
    assert got["final_loss"] == pytest.approx(stored["final_loss"], rel=1e-9)
    assert got["losses"][-1] < 0.8 * got["losses"][0], "the run should learn something"
    for path, values in stored["params"].items():
        np.testing.assert_allclose(
            np.asarray(got["params"][path]), np.asarray(values), rtol=1e-8, atol=1e-11, err_msg=path
        )
    assert got["params"].keys() == stored["params"].keys()
    mismatched = np.sum(np.asarray(got["predictions"]) != np.asarray(stored["predictions"]))
    assert mismatched <= 1  # a near-tie may flip under another BLAS, no more
