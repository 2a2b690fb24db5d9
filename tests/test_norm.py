"""BatchNorm, LayerNorm, GlobalAvgPool2D and Reshape: gradient checks in training
and evaluation passes, field validation, the running statistics, and PyTorch
float64 cross-checks (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
import purenn.gradcheck as gc
from purenn.base import Context


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (pn.BatchNorm(), (5,)),
        (pn.BatchNorm(activation="relu"), (3, 4, 4)),
        (pn.BatchNorm(momentum=0.3, eps=1e-3, activation="tanh"), (6,)),
        (pn.BatchNorm(momentum=1.0), (2, 3, 5)),
        (pn.LayerNorm(), (6,)),
        (pn.LayerNorm(eps=1e-3), (2, 3, 3)),
        (pn.GlobalAvgPool2D(), (3, 4, 5)),
        (pn.Reshape((2, -1)), (12,)),
        (pn.Reshape(-1), (2, 3, 2)),
        (pn.Reshape((1, 3, 4)), (12,)),
    ],
    ids=repr,
)
def test_check_layer_passes_in_training_and_evaluation(layer, shape):
    worst = gc.check_layer(layer, shape)
    assert any(k.startswith("train/") for k in worst)
    assert any(k.startswith("eval/") for k in worst)
    assert max(worst.values()) < gc.DEFAULT_RTOL


def test_fields_are_validated():
    with pytest.raises(ValueError, match=r"momentum .* must be in \(0, 1\]"):
        pn.BatchNorm(momentum=0.0)
    with pytest.raises(ValueError, match=r"BatchNorm.eps must be a finite float > 0"):
        pn.BatchNorm(eps=0.0)
    with pytest.raises(ValueError, match=r"BatchNorm.activation"):
        pn.BatchNorm(activation="nope")
    with pytest.raises(ValueError, match="softmax"):
        pn.BatchNorm(activation="softmax")
    with pytest.raises(TypeError, match=r"BatchNorm.momentum"):
        pn.BatchNorm(momentum="0.1")
    with pytest.raises(ValueError, match=r"LayerNorm.eps must be a finite float > 0"):
        pn.LayerNorm(eps=-1.0)
    with pytest.raises(ValueError, match=r"Reshape.shape"):
        pn.Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"Reshape.shape"):
        pn.Reshape((0, 3))
    with pytest.raises(
        ValueError,
        match=r"^reshape_0 \(Reshape\): cannot reshape \(10,\) \(10 values\) to \(3, 3\)",
    ):
        pn.Network(10, [pn.Reshape((3, 3)), pn.Flatten(), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"not a multiple of 3"):
        pn.Network(10, [pn.Reshape((3, -1)), pn.Flatten(), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"^batchnorm_0 \(BatchNorm\): normalises features"):
        pn.Network((2, 3), [pn.BatchNorm(), pn.Flatten(), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"^globalavgpool2d_0 .*channels-first"):
        pn.Network(4, [pn.GlobalAvgPool2D(), pn.Dense(2, "softmax")])
    assert pn.Reshape(-1).output_shape((2, 3, 2)) == (12,)
    assert pn.Reshape([np.int64(2), 6]).shape == (2, 6)


def _bn_net(dtype=np.float64):
    spec = pn.Network(
        (2, 4, 4),
        [
            pn.Conv2D(3, 3, padding="same", activation="linear"),
            pn.BatchNorm(activation="relu"),
            pn.GlobalAvgPool2D(),
            pn.Dense(4, "linear"),
            pn.BatchNorm(momentum=0.2),
            pn.Dense(3, "softmax"),
        ],
    )
    return spec, pn.init(spec, 0, dtype=dtype)


def test_state_layout_and_initial_values():
    spec, params = _bn_net(np.float32)
    assert spec.layout.with_state == ("batchnorm_0", "batchnorm_1")
    assert list(params[pn.STATE_KEY]) == ["batchnorm_0", "batchnorm_1"]
    state = params[pn.STATE_KEY]["batchnorm_1"]
    assert state["mean"].dtype == state["var"].dtype == np.float32
    np.testing.assert_array_equal(state["mean"], np.zeros(4))
    np.testing.assert_array_equal(state["var"], np.ones(4))
    assert state["count"].shape == () and state["count"].dtype == np.int64
    assert int(state["count"]) == 0
    assert set(params["batchnorm_0"]) == {"gamma", "beta"}
    # the state is no leaf
    assert all(not path.startswith("state") for path, _ in pn.tree_items(params))


def test_a_training_pass_needs_more_than_one_value_per_feature():
    spec = pn.Network(3, [pn.BatchNorm(), pn.Dense(2, "softmax")])
    params = pn.init(spec, 0)
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"batchnorm_0 \(BatchNorm\): a training pass needs more"):
        pn.grads(params, x, np.array([0]))
    # images have h*w values per channel even for one sample
    spec = pn.Network((1, 2, 2), [pn.BatchNorm(), pn.Flatten(), pn.Dense(2, "softmax")])
    pn.grads(pn.init(spec, 0), np.ones((1, 1, 2, 2), np.float32), np.array([1]))


NEVER_UPDATED = (
    r"batchnorm_0 \(BatchNorm\): its running statistics were never updated"
    r".*sgd_step\(params, grads\(params, x, y\), lr\)"
)


def test_evaluating_statistics_never_updated_says_what_to_call():
    _, params = _bn_net()
    x = np.random.default_rng(0).normal(size=(4, 2, 4, 4))
    for call in (
        lambda: pn.forward(params, x),
        lambda: pn.predict(params, x),
        lambda: pn.loss(params, x, np.array([0, 1, 2, 0])),
        lambda: pn.metrics.evaluate(params, x, np.array([0, 1, 2, 0])),
    ):
        with pytest.raises(ValueError, match=NEVER_UPDATED):
            call()
    # training-mode passes use the batch's statistics and need no update
    pn.forward(params, x, train=True)
    pn.loss(params, x, np.array([0, 1, 2, 0]), train=True)


def test_bn_backward_matches_the_two_pass_formula():
    """dL/dx in a training pass equals the textbook chain rule through mu and var."""
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    layer = pn.BatchNorm()
    params = {"gamma": rng.normal(size=4), "beta": rng.normal(size=4)}
    state = layer.init_state((4,), np.float64)
    y, cache = layer.forward(params, x, Context(True, state=state))
    dx, g = layer.backward(params, cache, dy, Context(True, state=state))
    mu, var = x.mean(0), x.var(0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, params["gamma"] * xhat + params["beta"], rtol=1e-12)
    dxhat = dy * params["gamma"]
    dvar = np.sum(dxhat * (x - mu) * -0.5 * (var + 1e-5) ** -1.5, axis=0)
    dmu = np.sum(-dxhat / np.sqrt(var + 1e-5), axis=0) + dvar * np.mean(-2 * (x - mu), axis=0)
    want = dxhat / np.sqrt(var + 1e-5) + dvar * 2 * (x - mu) / 6 + dmu / 6
    np.testing.assert_allclose(dx, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["gamma"], np.sum(dy * xhat, axis=0), rtol=1e-12)
    np.testing.assert_allclose(g["beta"], dy.sum(0), rtol=1e-12)


def test_float32_stays_float32():
    _, params = _bn_net(np.float32)
    x = np.random.default_rng(0).normal(size=(4, 2, 4, 4)).astype(np.float32)
    g = pn.grads(params, x, np.array([0, 1, 2, 0]))
    for path, leaf in pn.tree_items(g):
        assert leaf.dtype == np.float32, path
    st = g[pn.STATE_KEY]["batchnorm_0"]
    assert st["mean"].dtype == st["var"].dtype == np.float32
    assert st["count"].dtype == np.int64
    new = pn.sgd_step(params, g, 0.1)
    assert pn.forward(new, x).dtype == np.float32
    # state of another dtype is refused with a message
    bad = {**new, pn.STATE_KEY: pn.tree_map(lambda a: a, new[pn.STATE_KEY])}
    bad[pn.STATE_KEY] = {
        k: {**v, "mean": v["mean"].astype(np.float64)} for k, v in new[pn.STATE_KEY].items()
    }
    with pytest.raises(TypeError, match=r"state arrays must have the params' dtype float32"):
        pn.forward(bad, x)


# --------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(a):
    return torch.tensor(np.array(a), dtype=torch.float64)


@pytest.mark.parametrize("shape", [(7, 5), (4, 3, 5, 6)], ids=["features", "images"])
def test_batchnorm_matches_torch_over_several_steps(shape):
    """Outputs, gradients, running statistics over several training passes, and the
    evaluation outputs afterwards, against torch.nn.BatchNorm{1,2}d in float64."""
    rng = np.random.default_rng(1)
    c = shape[1]
    if len(shape) == 4:
        spec = pn.Network(
            shape[1:], [pn.BatchNorm(), pn.Flatten(), pn.Dense(3, "linear")], loss="mse"
        )
        module = torch.nn.BatchNorm2d(c, momentum=0.1, eps=1e-5).double()
    else:
        spec = pn.Network(shape[1:], [pn.BatchNorm(), pn.Dense(3, "linear")], loss="mse")
        module = torch.nn.BatchNorm1d(c, momentum=0.1, eps=1e-5).double()
    params = pn.init(spec, 0, dtype=np.float64)
    params["batchnorm_0"] = {"gamma": rng.normal(size=c) + 1.0, "beta": rng.normal(size=c)}
    with torch.no_grad():
        module.weight.copy_(_t(params["batchnorm_0"]["gamma"]))
        module.bias.copy_(_t(params["batchnorm_0"]["beta"]))
    w, b = _t(params["dense_0"]["w"]), _t(params["dense_0"]["b"])
    for step in range(4):
        x = rng.normal(loc=2.0, scale=3.0, size=shape)
        y = rng.normal(size=(shape[0], 3))
        # ours
        loss, g = pn.loss_and_grads(params, x, y)
        out = pn.forward(params, x, train=True)
        # theirs
        module.train()
        tx = _t(x).requires_grad_(True)
        tg, tb = module.weight, module.bias
        tout = module(tx).flatten(1) @ w + b
        tloss = F.mse_loss(tout, _t(y))
        for p in (tg, tb):
            p.grad = None
        tloss.backward()
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12)
        np.testing.assert_allclose(
            g["batchnorm_0"]["gamma"], tg.grad.numpy(), rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(g["batchnorm_0"]["beta"], tb.grad.numpy(), rtol=1e-9, atol=1e-12)
        state = g[pn.STATE_KEY]["batchnorm_0"]
        np.testing.assert_allclose(state["mean"], module.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["var"], module.running_var.numpy(), rtol=1e-12)
        assert int(state["count"]) == int(module.num_batches_tracked) == step + 1
        params = pn.sgd_step(params, g, 0.0)  # lr 0: only the state moves
    module.eval()
    x = rng.normal(loc=2.0, scale=3.0, size=shape)
    with torch.no_grad():
        theirs = (module(_t(x)).flatten(1) @ w + b).numpy()
    np.testing.assert_allclose(pn.forward(params, x), theirs, rtol=1e-10, atol=1e-12)
    # evaluation-mode backward: the statistics are constants
    layer, p = spec.layers[0], params["batchnorm_0"]
    ctx = Context(False, state=params[pn.STATE_KEY]["batchnorm_0"])
    _, cache = layer.forward(p, x, ctx)
    dy = rng.normal(size=x.shape)
    dx, _ = layer.backward(p, cache, dy, ctx)
    tx = _t(x).requires_grad_(True)
    module(tx).backward(_t(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 6), (3, 2, 4, 4)], ids=["features", "images"])
def test_layernorm_matches_torch(shape):
    rng = np.random.default_rng(2)
    layer = pn.LayerNorm()
    params = {"gamma": rng.normal(size=shape[1:]), "beta": rng.normal(size=shape[1:])}
    x, dy = rng.normal(size=shape) * 2 + 1, rng.normal(size=shape)
    for train in (True, False):
        y, cache = layer.forward(params, x, Context(train))
        dx, g = layer.backward(params, cache, dy, Context(train))
        tx = _t(x).requires_grad_(True)
        tg, tb = _t(params["gamma"]).requires_grad_(True), _t(params["beta"]).requires_grad_(True)
        ty = F.layer_norm(tx, shape[1:], tg, tb, eps=1e-5)
        ty.backward(_t(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(g["gamma"], tg.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g["beta"], tb.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_global_avg_pool_matches_torch():
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(3, 4, 5, 6)), rng.normal(size=(3, 4))
    layer = pn.GlobalAvgPool2D()
    y, cache = layer.forward(None, x, Context(True))
    dx, _ = layer.backward(None, cache, dy, Context(True))
    tx = _t(x).requires_grad_(True)
    ty = F.adaptive_avg_pool2d(tx, 1).flatten(1)
    ty.backward(_t(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12)


def test_reshape_refuses_a_non_shape_by_its_type_before_printing_it():
    deep: dict = {"w": 1}
    for _ in range(2000):
        deep = {"a": deep}
    with pytest.raises(
        TypeError, match=r"Reshape.shape must be an int or a tuple of ints.* got dict"
    ):
        pn.Reshape(deep)
    with pytest.raises(ValueError, match=r"Reshape.shape .* got <a tuple nested too deep"):
        pn.Reshape((deep,))
    assert pn.Reshape([2, -1]).shape == (2, -1)
