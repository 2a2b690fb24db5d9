"""Finite-difference proof of the hand-written backprop (float64, central differences).

Every activation, loss, initialiser and Dropout is checked through the public
``purenn.loss`` / ``purenn.grads`` pair with :func:`purenn.gradcheck.check_grads`,
layers' input gradients through their own backward, and random architectures
are drawn with hypothesis. Tolerances are tight (``rtol = 1e-6``, see
:mod:`purenn.gradcheck`); tests of the kinked activations (ReLU, leaky ReLU,
and ELU, whose second derivative jumps at 0) keep every pre-activation well
away from 0 so central differences are valid.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import purenn as pn
from purenn.activations import activation_names, get_activation
from purenn.base import Context
from purenn.gradcheck import (
    GradientCheckError,
    check_function_grads,
    check_grads,
    check_input_grad,
)
from purenn.initializers import INITIALIZERS
from purenn.losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber

ACTS = tuple(  # the built-ins (a user's own, registered by another test module, is not ours)
    name
    for name in activation_names()
    if get_activation(name).forward.__module__ == "purenn.activations"
)
KINKED = ("relu", "leaky_relu", "elu")
KINK_MARGIN = 5e-3  # well above 2 * eps * |x| (eps = 1e-4): no step crosses a kink


def targets(spec: pn.Network, n: int, rng: np.random.Generator, one_hot: bool = False):
    """Valid float64 targets for ``spec``'s loss."""
    (k,) = spec.output_shape
    if isinstance(spec.loss, CrossEntropy):
        labels = rng.integers(0, k, size=n)
        return np.eye(k)[labels] if one_hot else labels
    if isinstance(spec.loss, BinaryCrossEntropy):
        return rng.integers(0, 2, size=(n, k)).astype(np.float64)
    return rng.normal(size=(n, k))


def preactivations(params: dict, x: np.ndarray, rng: np.random.Generator | None) -> list:
    """Each Dense layer's ``z = x @ w + b`` with its activation name, replaying the
    pass's dropout masks: the layers a pass runs, each given the same rng in turn."""
    spec = params[pn.SPEC_KEY]
    out, a = [], x
    for layer, name in zip(spec.layout.run_layers, spec.layer_names(), strict=True):
        p = params.get(name)
        if isinstance(layer, pn.Dense):
            out.append((layer.activation, a @ p["w"] + p["b"]))
        a, _ = layer.forward(p, a, Context(rng is not None, rng))
    return out


def kink_free(params: dict, x: np.ndarray, seed: int | None = None) -> bool:
    """True when no ReLU-family pre-activation lies within KINK_MARGIN of 0."""
    rng = None if seed is None else np.random.default_rng(seed)
    return all(
        np.abs(z).min() > KINK_MARGIN for act, z in preactivations(params, x, rng) if act in KINKED
    )


def sample_away_from_kinks(params: dict, n: int, rng: np.random.Generator, seed=None):
    """Draw inputs until no ReLU pre-activation is near its kink."""
    (d,) = params[pn.SPEC_KEY].input_shape
    for _ in range(50):
        x = rng.normal(size=(n, d))
        if kink_free(params, x, seed):
            return x
    raise RuntimeError("could not draw inputs away from the ReLU kink; shrink the network")


def check_network(params: dict, x: np.ndarray, y: np.ndarray, seed: int | None = None) -> float:
    """Grad-check ``purenn.loss_and_grads`` against ``purenn.loss`` (training mode,
    fixed masks), every entry of every leaf; the worst error."""

    def rng():
        return None if seed is None else np.random.default_rng(seed)

    analytic = pn.grads(params, x, y, rng=rng())
    value, analytic2 = pn.loss_and_grads(params, x, y, rng=rng())
    assert pn.tree_equal(analytic, analytic2)
    assert value == pn.loss(params, x, y, train=True, rng=rng())
    worst = check_grads(params, x, y, rng=seed, max_entries=None)
    assert sorted(worst) == [path for path, _ in pn.tree_items(params)]
    return max(worst.values())


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("act", ACTS)
def test_hidden_activation(act):
    """Each activation as a hidden layer (softmax included), under a softmax + CE head."""
    spec = pn.Network(4, [pn.Dense(6, act), pn.Dense(5, act), pn.Dense(3, "softmax")])
    params = pn.init(spec, 1, np.float64)
    rng = np.random.default_rng(2)
    x = sample_away_from_kinks(params, 7, rng)
    check_network(params, x, targets(spec, 7, rng))


@pytest.mark.parametrize("act", ACTS)
def test_output_activation_under_mse(act):
    """Each activation as the output layer with MSE: the unfused backward of softmax too."""
    spec = pn.Network(3, [pn.Dense(4, "tanh"), pn.Dense(3, act)], loss="mse")
    params = pn.init(spec, 3, np.float64)
    rng = np.random.default_rng(4)
    x = sample_away_from_kinks(params, 5, rng)
    check_network(params, x, targets(spec, 5, rng))


@pytest.mark.parametrize("act", ACTS)
def test_dense_input_gradient(act):
    """Dense.backward's dx (dL/dx = dz @ w.T) for every activation."""
    rng = np.random.default_rng(5)
    layer = pn.Dense(4, act, bias_init=0.1)
    p = layer.init_params(rng, (3,), np.dtype(np.float64))
    x = rng.normal(size=(6, 3))
    while act in KINKED and np.abs(x @ p["w"] + p["b"]).min() <= KINK_MARGIN:
        x = rng.normal(size=(6, 3))
    weights = rng.normal(size=(6, 4))  # L = sum(weights * a): dL/da = weights
    ctx = Context(train=False)

    def fn(v):
        return float((layer.forward(p, v, ctx)[0] * weights).sum())

    _, cache = layer.forward(p, x, ctx)
    dx, g = layer.backward(p, cache, weights, ctx)
    check_input_grad(fn, x, dx)
    for key in ("w", "b"):
        check_input_grad(
            lambda v, key=key: float((layer.forward({**p, key: v}, x, ctx)[0] * weights).sum()),
            p[key],
            g[key],
            name=key,
        )


def test_dropout_input_gradient():
    """Dropout.backward's dx is dy * mask / (1 - rate) for the very mask forward drew."""
    layer = pn.Dropout(0.4)
    x = np.random.default_rng(6).normal(size=(5, 8))
    weights = np.random.default_rng(7).normal(size=(5, 8))

    def ctx():
        return Context(train=True, rng=np.random.default_rng(8))

    def fn(v):
        return float((layer.forward(None, v, ctx())[0] * weights).sum())

    _, mask = layer.forward(None, x, ctx())
    assert 0 < (mask == 0).sum() < mask.size, "the test needs some dropped and some kept units"
    dx, g = layer.backward(None, mask, weights, ctx())
    assert g is None
    check_input_grad(fn, x, dx)


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize(
    ("loss", "out_act", "one_hot"),
    [
        ("cross_entropy", "softmax", False),
        ("cross_entropy", "softmax", True),
        ("mse", "linear", False),
        ("binary_cross_entropy", "sigmoid", False),
        ("mae", "linear", False),
        ("mae", "tanh", False),
        ("huber", "linear", False),
        (Huber(delta=0.3), "linear", False),
    ],
    ids=["ce-int-labels", "ce-one-hot", "mse", "bce", "mae", "mae-tanh", "huber", "huber-0.3"],
)
def test_losses(loss, out_act, one_hot):
    spec = pn.Network(5, [pn.Dense(6, "tanh"), pn.Dense(4, out_act)], loss=loss)
    params = pn.init(spec, 9, np.float64)
    rng = np.random.default_rng(10)
    x = rng.normal(size=(8, 5))
    y = targets(spec, 8, rng, one_hot=one_hot)
    if isinstance(
        spec.loss, MAE | Huber
    ):  # |out - y| away from MAE's kink at 0 and Huber's at delta
        gap = np.abs(pn.forward(params, x) - y)
        assert gap.min() > KINK_MARGIN
        if isinstance(spec.loss, Huber):
            assert np.abs(gap - spec.loss.delta).min() > KINK_MARGIN
            assert (gap < spec.loss.delta).any() and (gap > spec.loss.delta).any()
    check_network(params, x, y)


@pytest.mark.parametrize(
    "loss",
    [CrossEntropy(), BinaryCrossEntropy(), MSE(), MAE(), Huber(), Huber(delta=0.5)],
    ids=repr,
)
def test_loss_gradient_at_the_output(loss):
    """value_and_grad's dL/dout against central differences of value, loss alone."""
    rng = np.random.default_rng(27)
    out = rng.normal(size=(5, 3)) * 2.0
    if isinstance(loss, CrossEntropy):
        y = rng.integers(0, 3, size=5)
    elif isinstance(loss, BinaryCrossEntropy):
        y = rng.uniform(size=(5, 3))
    else:
        y = out + rng.choice([-1.0, 1.0], size=out.shape) * rng.uniform(0.1, 1.9, size=out.shape)
        y[np.abs(np.abs(out - y) - 1.0) < KINK_MARGIN] += 0.1  # away from Huber's delta = 1
    value, dout = loss.value_and_grad(out, y)
    assert value == pytest.approx(loss.value(out, y), rel=1e-15)
    check_input_grad(lambda v: loss.value(v, y), out, dout, name="out")


def test_cross_entropy_soft_targets():
    """Rows of y summing to one (label smoothing) keep dL/dz = (p - y) / n exact."""
    spec = pn.Network(3, [pn.Dense(4, "softmax")])
    params = pn.init(spec, 11, np.float64)
    rng = np.random.default_rng(12)
    y = rng.dirichlet(np.ones(4), size=6)
    check_network(params, rng.normal(size=(6, 3)), y)


def test_binary_cross_entropy_single_output():
    spec = pn.Network(
        3, [pn.Dense(5, "leaky_relu"), pn.Dense(1, "sigmoid")], "binary_cross_entropy"
    )
    params = pn.init(spec, 13, np.float64)
    rng = np.random.default_rng(14)
    x = sample_away_from_kinks(params, 9, rng)
    check_network(params, x, targets(spec, 9, rng))


# ---------------------------------------------------------------- fused softmax + CE


def _softmax_reference(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("one_hot", [False, True])
def test_fused_gradient_is_p_minus_y_over_n(one_hot):
    """At the logits, dL/dz = (p - y) / n; seen through a single softmax layer:
    dL/db = sum_i (p_i - y_i) / n and dL/dw = x.T @ (p - y) / n."""
    spec = pn.Network(4, [pn.Dense(5, "softmax")])
    params = pn.init(spec, 15, np.float64)
    rng = np.random.default_rng(16)
    x = rng.normal(size=(7, 4))
    labels = rng.integers(0, 5, size=7)
    y_onehot = np.eye(5)[labels]
    g = pn.grads(params, x, y_onehot if one_hot else labels)
    p = pn.forward(params, x)
    dz = (p - y_onehot) / 7
    np.testing.assert_allclose(g["dense_0"]["b"], dz.sum(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g["dense_0"]["w"], x.T @ dz, rtol=1e-12, atol=1e-15)
    # and the loss function itself
    z = x @ params["dense_0"]["w"] + params["dense_0"]["b"]
    value, dz_fused = CrossEntropy().value_and_grad(z, y_onehot if one_hot else labels)
    np.testing.assert_allclose(dz_fused, (_softmax_reference(z) - y_onehot) / 7, rtol=1e-12)
    expected = -np.log(_softmax_reference(z)[np.arange(7), labels]).mean()
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("one_hot", [False, True])
def test_cross_entropy_finite_for_huge_logits(dtype, one_hot):
    """Logits of +-1e4 give the exact finite loss and gradient, no inf or nan."""
    spec = pn.Network(3, [pn.Dense(3, "softmax")])
    params = pn.init(spec, 0, dtype)
    params["dense_0"] = {
        "w": np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, -1e4, 1e4]], dtype),
        "b": np.zeros(3, dtype),
    }
    x = np.eye(3, dtype=dtype)  # logits are the rows of w
    labels = np.array([0, 0, 1])  # sample 0 right; samples 1, 2 wrong by 2e4 and 1e4 (a tie)
    y = np.eye(3, dtype=dtype)[labels] if one_hot else labels
    value, g = pn.loss_and_grads(params, x, y)
    # sample 0: log-loss 0; sample 1: 2e4; sample 2: logits (0, -1e4, 1e4) and label 1 -> 2e4
    assert np.isfinite(value)
    assert value == pytest.approx((0.0 + 2e4 + 2e4) / 3, rel=1e-6)
    for leaf in pn.tree_leaves(g):
        assert leaf.dtype == dtype and np.isfinite(leaf).all()
    p = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype)
    np.testing.assert_allclose(g["dense_0"]["w"], x.T @ (p - np.eye(3)[labels]) / 3, atol=1e-6)
    probs = pn.forward(params, x)
    assert np.isfinite(probs).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_finite_for_huge_logits(dtype):
    spec = pn.Network(2, [pn.Dense(2, "sigmoid")], loss="binary_cross_entropy")
    params = pn.init(spec, 0, dtype)
    params["dense_0"] = {"w": np.array([[1e4, -1e4], [-1e4, 1e4]], dtype), "b": np.zeros(2, dtype)}
    x = np.eye(2, dtype=dtype)
    y = np.array([[1, 1], [0, 1]], dtype)  # three right (loss 0), one wrong by 1e4
    value, g = pn.loss_and_grads(params, x, y)
    assert value == pytest.approx(1e4 / 4, rel=1e-6)
    assert all(np.isfinite(leaf).all() for leaf in pn.tree_leaves(g))


# ---------------------------------------------------------------- initialisers


@pytest.mark.parametrize("scheme", list(INITIALIZERS))
def test_every_initializer_shapes_and_gradients(scheme):
    """Non-square layers made by each initialiser have the right shapes and exact grads."""
    spec = pn.Network(
        5,
        [pn.Dense(7, "tanh", weight_init=scheme, bias_init=0.05), pn.Dense(3, "softmax", scheme)],
    )
    params = pn.init(spec, 17, np.float64)
    assert params["dense_0"]["w"].shape == (5, 7) and params["dense_0"]["b"].shape == (7,)
    assert params["dense_1"]["w"].shape == (7, 3) and params["dense_1"]["b"].shape == (3,)
    rng = np.random.default_rng(18)
    check_network(params, rng.normal(size=(6, 5)), targets(spec, 6, rng))


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
def test_dropout_gradients_with_fixed_rng(rate):
    spec = pn.Network(
        4, [pn.Dense(8, "tanh"), pn.Dropout(rate), pn.Dense(6, "sigmoid"), pn.Dropout(rate),
            pn.Dense(3, "softmax")]
    )  # fmt: skip
    params = pn.init(spec, 19, np.float64)
    rng = np.random.default_rng(20)
    x, y = rng.normal(size=(10, 4)), targets(spec, 10, rng)
    check_network(params, x, y, seed=21)
    train = pn.loss(params, x, y, train=True, rng=np.random.default_rng(21))
    evaluation = pn.loss(params, x, y)
    if rate > 0:  # the masks really changed the loss the gradients are of
        assert train != evaluation
    else:
        assert train == evaluation


def test_dropout_first_layer_gradients():
    spec = pn.Network(6, [pn.Dropout(0.5), pn.Dense(4, "relu"), pn.Dense(2, "linear")], "mse")
    params = pn.init(spec, 22, np.float64)
    rng = np.random.default_rng(23)
    x = sample_away_from_kinks(params, 8, rng, seed=24)
    check_network(params, x, targets(spec, 8, rng), seed=24)


# ---------------------------------------------------------------- random architectures


@st.composite
def architectures(draw):
    """A random small network, its float64 params, data and (maybe) a dropout seed."""
    d_in = draw(st.integers(1, 5))
    layers = []
    for _ in range(draw(st.integers(0, 3))):
        # nonzero biases: a dead ReLU then feeds its successor a constant, not a kink at 0
        bias = draw(st.sampled_from([0.0, 0.1, -0.2, 0.3]))
        act = draw(st.sampled_from(ACTS))
        layers.append(
            pn.Dense(draw(st.integers(1, 6)), act, bias_init=0.1 if act in KINKED else bias)
        )
        if draw(st.booleans()):
            layers.append(pn.Dropout(draw(st.sampled_from([0.0, 0.2, 0.5]))))
    loss = draw(st.sampled_from(["cross_entropy", "mse", "binary_cross_entropy"]))
    k = draw(st.integers(1, 4))
    out_act = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(loss)
    out_act = out_act or draw(st.sampled_from(ACTS))
    layers.append(pn.Dense(k, out_act, bias_init=0.1 if out_act in KINKED else 0.0))
    spec = pn.Network(d_in, layers, loss)
    seed = draw(st.integers(0, 2**16))
    n = draw(st.integers(1, 6))
    one_hot = draw(st.booleans())
    return spec, seed, n, one_hot


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(architectures())
def test_random_architectures(arch):
    spec, seed, n, one_hot = arch
    params = pn.init(spec, seed, np.float64)
    rng = np.random.default_rng(seed + 1)
    has_dropout = any(isinstance(layer, pn.Dropout) for layer in spec.layers)
    mask_seed = seed + 2 if has_dropout else None
    x = sample_away_from_kinks(params, n, rng, seed=mask_seed)
    check_network(params, x, targets(spec, n, rng, one_hot=one_hot), seed=mask_seed)


# ---------------------------------------------------------------- the checker itself


def test_checker_catches_a_wrong_gradient():
    """A gradient off by one part in 1e4 must fail, and the message names the leaf."""
    spec = pn.Network(3, [pn.Dense(4, "tanh"), pn.Dense(2, "softmax")])
    params = pn.init(spec, 25, np.float64)
    rng = np.random.default_rng(26)
    x, y = rng.normal(size=(5, 3)), targets(spec, 5, rng)
    good = pn.grads(params, x, y)
    bad = pn.tree_map(lambda g: g.copy(), good)
    bad["dense_1"]["b"][1] *= 1.0 + 1e-4
    with pytest.raises(
        GradientCheckError, match=r"dense_1/b\[1\] in dense_1 \(Dense\): .*analytic .* vs numeric"
    ) as info:
        check_function_grads(lambda p: pn.loss(p, x, y), params, bad)
    assert info.value.path == "dense_1/b" and info.value.index == (1,)
    assert isinstance(info.value, AssertionError)
    with pytest.raises(TypeError, match="float64"):
        check_function_grads(lambda p: 0.0, pn.init(spec, 0), good)
