"""Residual and Parallel: shapes checked when the Network is built, nested params
(init, tree helpers, optimizers, checkpoints, JSON specs), gradient checks of
the containers and of whole networks, the workspace, and a PyTorch float64
cross-check of a residual block."""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
import purenn.gradcheck as gc
from purenn.base import Context


def block(width: int, stride: int = 1, project: bool = False, act: str = "relu") -> pn.Residual:
    """A ResNet basic block (conv-BN-ReLU-conv-BN, plus a shortcut, then ReLU)."""
    shortcut = None
    if project:
        shortcut = [pn.Conv2D(width, 1, stride=stride, activation="linear"), pn.BatchNorm()]
    return pn.Residual(
        [
            pn.Conv2D(width, 3, stride=stride, padding="same", activation="linear"),
            pn.BatchNorm(activation=act),
            pn.Conv2D(width, 3, padding="same", activation="linear"),
            pn.BatchNorm(),
        ],
        shortcut,
        activation=act,
    )


def resnet(dropout: float = 0.0, act: str = "relu") -> pn.Network:
    layers = [
        pn.Conv2D(3, 3, padding="same", activation="linear"),
        pn.BatchNorm(activation=act),
        block(3, act=act),
        block(4, stride=2, project=True, act=act),
        pn.GlobalAvgPool2D(),
    ]
    if dropout:
        layers.append(pn.Dropout(dropout))
    return pn.Network((1, 6, 6), [*layers, pn.Dense(3, "softmax")])


def test_params_and_state_nest_under_the_container():
    spec = resnet()
    params = pn.init(spec, 0)
    assert spec.layer_names() == (
        "conv2d_0",
        "batchnorm_0",
        "residual_0",
        "residual_1",
        "globalavgpool2d_0",
        "dense_0",
    )
    assert list(params["residual_0"]) == ["conv2d_0", "batchnorm_0", "conv2d_1", "batchnorm_1"]
    assert list(params["residual_1"]) == [*params["residual_0"], "shortcut"]
    assert params["residual_1"]["conv2d_0"]["w"].shape == (4, 3, 3, 3)
    assert params["residual_1"]["shortcut"]["conv2d_0"]["w"].shape == (4, 3, 1, 1)
    state = params[pn.STATE_KEY]
    assert list(state["residual_1"]) == ["batchnorm_0", "batchnorm_1", "shortcut"]
    assert list(state["residual_1"]["shortcut"]) == ["batchnorm_0"]
    paths = [path for path, _ in pn.tree_items(params)]
    assert "residual_1/shortcut/conv2d_0/w" in paths
    assert not any(path.startswith("state") for path in paths)
    assert spec.shapes()[4:] == ((4, 3, 3), (4,), (3,))


def test_shapes_are_checked_when_the_network_is_built():
    with pytest.raises(
        ValueError,
        match=r"^residual_0 \(Residual\): the layers give \(4, 3, 3\) but the shortcut "
        r"\(identity\) gives \(2, 6, 6\).*shortcut=Conv2D\(4, 1, stride=\.\.\.\)",
    ):
        pn.Network((2, 6, 6), [block(4, stride=2), pn.GlobalAvgPool2D(), pn.Dense(2, "softmax")])
    with pytest.raises(
        ValueError, match=r"^residual_0 \(Residual\): shortcut/conv2d_0 \(Conv2D\): expects"
    ):
        pn.Network(4, [pn.Residual([pn.Dense(4)], pn.Conv2D(4, 1)), pn.Dense(2, "softmax")])
    with pytest.raises(
        ValueError, match=r"^residual_0 \(Residual\): maxpool2d_0 \(MaxPool2D\): expects"
    ):
        pn.Network(4, [pn.Residual([pn.Dense(4), pn.MaxPool2D(2)]), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"branch_0 gives \(3,\), branch_1 gives \(4,\)"):
        pn.Network(4, [pn.Parallel([pn.Dense(3), []]), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"concatenated along the first axis"):
        pn.Network((1, 4, 4), [pn.Parallel([[], pn.MaxPool2D(2)], join="concat")])
    with pytest.raises(ValueError, match=r"Residual.layers is empty"):
        pn.Residual([])
    with pytest.raises(TypeError, match=r"Residual.layers\[1\] must be a layer spec"):
        pn.Residual([pn.Dense(3), "relu"])
    with pytest.raises(TypeError, match=r"Residual.shortcut must be a layer or a sequence"):
        pn.Residual([pn.Dense(3)], shortcut=3)
    with pytest.raises(ValueError, match="Parallel needs at least two branches"):
        pn.Parallel([[pn.Dense(3)]])
    with pytest.raises(ValueError, match=r"Parallel.join must be one of 'sum', 'concat'"):
        pn.Parallel([[], []], join="max")
    with pytest.raises(ValueError, match=r"Residual.activation"):
        pn.Residual([pn.Dense(3)], activation="nope")


def test_specs_are_hashable_and_round_trip_through_json():
    spec = pn.Network(
        8,
        [
            pn.Residual([pn.Dense(8, "tanh"), pn.Dropout(0.1), pn.Dense(8, "linear")]),
            pn.Parallel([[pn.Dense(3)], [], pn.Residual(pn.Dense(8))], join="concat"),
            pn.Dense(2, "softmax"),
        ],
    )
    again = pn.Network.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)
    assert again.layers[1].branches[1] == ()
    assert pn.Residual(pn.Dense(3)) == pn.Residual([pn.Dense(3)], None)
    assert spec.layout.random == ("residual_0",)
    d = spec.to_dict()
    assert d["layers"][0]["layers"][1] == {"type": "Dropout", "rate": 0.1}
    d["layers"][0]["layers"][1]["type"] = "NoSuchLayer"
    with pytest.raises(ValueError, match="NoSuchLayer"):
        pn.Network.from_dict(d)
    resnet_spec = resnet()
    assert pn.Network.from_json(resnet_spec.to_json()) == resnet_spec


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (pn.Residual([pn.Dense(5, "tanh"), pn.Dense(5, "linear")]), (5,)),
        (pn.Residual([pn.Dense(3, "tanh")], pn.Dense(3, "linear"), activation="tanh"), (5,)),
        (block(3, stride=2, project=True), (2, 6, 6)),
        (
            pn.Parallel(
                [[pn.Dense(3, "tanh")], [], [pn.Dense(6, "sigmoid"), pn.Dropout(0.3)]],
                join="concat",
            ),
            (6,),
        ),
        (pn.Parallel([pn.Dense(4, "tanh"), pn.LayerNorm()], activation="tanh"), (4,)),
        (pn.Parallel([[pn.MaxPool2D(2)], [pn.AvgPool2D(2)]], join="concat"), (2, 4, 4)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v),
)
def test_check_layer_passes_for_containers(layer, shape):
    worst = gc.check_layer(layer, shape, max_entries=64)
    assert max(worst.values()) < gc.DEFAULT_RTOL
    if layer.has_params:
        assert any("/" in key.partition("/")[2] for key in worst)  # nested leaves checked


def test_check_grads_of_a_whole_residual_network_with_dropout():
    # tanh: a network-level check cannot redraw its inputs away from ReLU kinks, and
    # the BatchNorms put every pre-activation of the batch around 0 (check_layer
    # checks the ReLU blocks, redrawing where needed)
    spec = resnet(dropout=0.2, act="tanh")
    params = pn.init(spec, 1, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1, 6, 6))
    y = np.array([0, 1, 2, 1])
    worst = gc.check_grads(params, x, y, rng=5, max_entries=16)
    assert "residual_1/shortcut/batchnorm_0/gamma" in worst
    with pytest.raises(ValueError, match="dropout_0 needs randomness"):
        pn.grads(params, x, y)


def test_children_share_the_pass_rng_in_order():
    """Dropout inside a container draws from the pass's Generator: two passes with
    the same seed agree, and differ from another seed's."""
    spec = pn.Network(
        6, [pn.Residual([pn.Dense(6, "tanh"), pn.Dropout(0.5)]), pn.Dense(2, "softmax")]
    )
    params = pn.init(spec, 0, dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(8, 6))
    y = np.arange(8) % 2
    a, b, c = (pn.grads(params, x, y, rng=s) for s in (3, 3, 4))
    assert pn.tree_equal(a, b) and not pn.tree_equal(a, c)
    with pytest.raises(ValueError, match="training-mode pass through residual_0 needs randomness"):
        pn.grads(params, x, y)


def test_workspace_gives_the_same_bits_and_is_scoped_per_child():
    spec = resnet()
    params = pn.init(spec, 0)
    g = pn.grads(params, np.ones((1, 1, 6, 6), np.float32), np.array([0]))
    params = pn.sgd_step(params, g, 0.0)
    x = np.random.default_rng(0).normal(size=(5, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    ws = pn.Workspace()
    plain = pn.train_pass(params, x, y)
    for _ in range(2):  # the second pass gets the first one's buffers back, dirty
        lent = pn.train_pass(params, x, y, workspace=ws)
        assert pn.tree_equal(lent.grads, plain.grads)
        np.testing.assert_array_equal(lent.output, plain.output)
        for _, leaf in [*pn.tree_items(lent.grads), *pn.tree.state_items(lent.grads)]:
            assert not ws.holds(leaf)
    assert ws.nbytes > 0
    assert "residual_1.shortcut.conv2d_0.cols" in ws._buffers


def test_tree_helpers_and_optimizers_handle_nesting():
    spec = resnet()
    params = pn.init(spec, 0)
    x = np.random.default_rng(0).normal(size=(4, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    g = pn.grads(params, x, y)
    pn.tree_check_like(g, params, "grads")
    doubled = pn.tree_map(lambda a: 2 * a, g)
    np.testing.assert_array_equal(
        doubled["residual_1"]["shortcut"]["conv2d_0"]["w"],
        2 * g["residual_1"]["shortcut"]["conv2d_0"]["w"],
    )
    for opt in (
        pn.optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        pn.optim.rmsprop(1e-3, momentum=0.5, clip_norm=0.1),
        pn.optim.adamw(1e-3),
    ):
        state = opt.init(params)
        new, state = opt.update(g, state, params)
        pn.tree_check_like(new, params, "new params")
        assert not pn.tree_allclose(new, params)
        new2, _ = opt.update(pn.grads(new, x, y), state, new)
        pn.tree_check_like(new2, params, "new params")
    bad = pn.tree_map(lambda a: a, g)
    bad["residual_1"] = {**bad["residual_1"], "shortcut": {}}
    with pytest.raises(ValueError, match="residual_1/shortcut"):
        pn.sgd_step(params, bad, 0.1)
    wrong = pn.tree_map(lambda a: a, g)
    wrong["residual_0"]["conv2d_1"] = {"w": np.zeros((1,), np.float32), "b": g["dense_0"]["b"]}
    with pytest.raises(ValueError, match=r"grads\['residual_0/conv2d_1/w'\] should have shape"):
        pn.optim.adam(1e-3).update(wrong, pn.optim.adam(1e-3).init(params), params)


def test_nested_params_are_checked_at_the_boundary():
    spec = resnet()
    params = pn.init(spec, 0)
    x = np.ones((2, 1, 6, 6), np.float32)
    mixed = {
        **params,
        "residual_0": pn.tree_map(lambda a: a.astype(np.float64), params["residual_0"]),
    }
    with pytest.raises(ValueError, match=r"params mix dtypes: 'residual_0/conv2d_0' holds float64"):
        pn.forward(mixed, x, train=True)
    not_array = {**params, "residual_0": {**params["residual_0"], "conv2d_0": {"w": 1, "b": 2}}}
    with pytest.raises(TypeError, match=r"params\['residual_0/conv2d_0'\]\['w'\] must be a NumPy"):
        pn.forward(not_array, x, train=True)


def test_nested_checkpoints_round_trip(tmp_path):
    spec = resnet()
    params = pn.init(spec, 0)
    x = np.random.default_rng(0).normal(size=(4, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    opt = pn.optim.adam(1e-2)
    state = opt.init(params)
    params, state = opt.update(pn.grads(params, x, y), state, params)
    pn.save(tmp_path / "r.npz", params, opt_state=state)
    ck = pn.load(tmp_path / "r.npz")
    assert pn.tree_equal(ck.params, params)
    assert pn.tree_equal(ck.extra["opt_state"].mu, state.mu)
    np.testing.assert_array_equal(pn.predict(ck.params, x), pn.predict(params, x))


def test_a_container_without_params_or_state_gets_no_entry():
    spec = pn.Network(
        (1, 4, 4),
        [pn.Parallel([pn.MaxPool2D(2), pn.AvgPool2D(2)]), pn.Flatten(), pn.Dense(2, "softmax")],
    )
    assert spec.layout.with_params == ("dense_0",) and spec.layout.with_state == ()
    params = pn.init(spec, 0)
    assert set(params) == {"spec", "dense_0"}
    g = pn.grads(params, np.ones((2, 1, 4, 4), np.float32), np.array([0, 1]))
    assert set(g) == {"spec", "dense_0"}


# --------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_residual_block_matches_torch():
    """A projection block (stride 2) in float64: outputs, dx, every gradient and the
    running statistics of its three BatchNorms, against the same ops in torch. The
    TensorFlow-style "same" padding of a stride-2 3x3 on an even image pads one row
    and column at the bottom and right only."""
    layer = block(4, stride=2, project=True)
    rng = np.random.default_rng(0)
    p = layer.init_params(rng, (3, 6, 6), np.float64)
    for name in ("batchnorm_0", "batchnorm_1"):
        p[name] = {"gamma": rng.normal(size=4) + 1, "beta": rng.normal(size=4)}
    state = layer.init_state((3, 6, 6), np.float64)
    x, dy = rng.normal(size=(5, 3, 6, 6)), rng.normal(size=(5, 4, 3, 3))
    ctx = Context(True, state=state)
    y, cache = layer.forward(p, x, ctx)
    dx, g = layer.backward(p, cache, dy, ctx)
    new = layer.next_state(state, cache, ctx)

    def t(a, grad=True):
        return torch.tensor(np.array(a), dtype=torch.float64, requires_grad=grad)

    tp = {
        path: t(v)
        for path, v in [
            ("c0w", p["conv2d_0"]["w"]),
            ("c0b", p["conv2d_0"]["b"]),
            ("g0", p["batchnorm_0"]["gamma"]),
            ("b0", p["batchnorm_0"]["beta"]),
            ("c1w", p["conv2d_1"]["w"]),
            ("c1b", p["conv2d_1"]["b"]),
            ("g1", p["batchnorm_1"]["gamma"]),
            ("b1", p["batchnorm_1"]["beta"]),
            ("sw", p["shortcut"]["conv2d_0"]["w"]),
            ("sb", p["shortcut"]["conv2d_0"]["b"]),
            ("sg", p["shortcut"]["batchnorm_0"]["gamma"]),
            ("sbb", p["shortcut"]["batchnorm_0"]["beta"]),
        ]
    }
    means = [torch.zeros(4, dtype=torch.float64) for _ in range(3)]
    vars_ = [torch.ones(4, dtype=torch.float64) for _ in range(3)]
    tx = t(x)
    h = F.conv2d(F.pad(tx, (0, 1, 0, 1)), tp["c0w"], tp["c0b"], stride=2)
    h = F.relu(F.batch_norm(h, means[0], vars_[0], tp["g0"], tp["b0"], True, 0.1, 1e-5))
    h = F.conv2d(h, tp["c1w"], tp["c1b"], padding=1)
    h = F.batch_norm(h, means[1], vars_[1], tp["g1"], tp["b1"], True, 0.1, 1e-5)
    s = F.conv2d(tx, tp["sw"], tp["sb"], stride=2)
    s = F.batch_norm(s, means[2], vars_[2], tp["sg"], tp["sbb"], True, 0.1, 1e-5)
    ty = F.relu(h + s)
    ty.backward(t(dy, False))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    pairs = {
        "c0w": g["conv2d_0"]["w"],
        "c0b": g["conv2d_0"]["b"],
        "g0": g["batchnorm_0"]["gamma"],
        "b0": g["batchnorm_0"]["beta"],
        "c1w": g["conv2d_1"]["w"],
        "g1": g["batchnorm_1"]["gamma"],
        "b1": g["batchnorm_1"]["beta"],
        "sw": g["shortcut"]["conv2d_0"]["w"],
        "sg": g["shortcut"]["batchnorm_0"]["gamma"],
        "sbb": g["shortcut"]["batchnorm_0"]["beta"],
    }
    for key, ours in pairs.items():
        np.testing.assert_allclose(ours, tp[key].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=key)
    for i, ours in enumerate(
        (new["batchnorm_0"], new["batchnorm_1"], new["shortcut"]["batchnorm_0"])
    ):
        np.testing.assert_allclose(ours["mean"], means[i].numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours["var"], vars_[i].numpy(), rtol=1e-12)
        assert int(ours["count"]) == 1
