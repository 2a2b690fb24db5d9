"""Cross-check against PyTorch in float64: same params in, same outputs, loss and
gradients out (skipped where torch is not installed).

Torch runs the same network with functional ops on the very same ``w`` and ``b``
(and, for Dropout, the very masks purenn draws); failures print ours beside theirs.
"""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
from purenn.activations import activation_names, get_activation
from purenn.base import Context
from purenn.losses import MAE, MSE, BinaryCrossEntropy, CrossEntropy, Huber

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-10, 1e-12

TORCH_ACTIVATIONS = {
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda z: torch.softmax(z, dim=1),
    "linear": lambda z: z,
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "elu": F.elu,  # alpha = 1
    # beta = 1; torch returns z itself above threshold (20 by default: off by 2e-9 there),
    # purenn the exact value, so the comparison raises the threshold
    "softplus": lambda z: F.softplus(z, threshold=50.0),
}
ACTS = tuple(  # the built-ins (a user's own, registered by another test module, is not ours)
    name
    for name in activation_names()
    if get_activation(name).forward.__module__ == "purenn.activations"
)


def torch_loss(loss: pn.Loss, out, logits, ty):
    """The torch loss matching a purenn loss: fused ones on the logits, the others on
    the network's output."""
    if isinstance(loss, CrossEntropy):
        return F.cross_entropy(logits, ty)  # int labels or probability (one-hot) targets
    if isinstance(loss, BinaryCrossEntropy):
        return F.binary_cross_entropy_with_logits(logits, ty)
    if isinstance(loss, MSE):
        return F.mse_loss(out, ty)
    if isinstance(loss, MAE):
        return F.l1_loss(out, ty)
    if isinstance(loss, Huber):
        return F.huber_loss(out, ty, delta=loss.delta)
    raise AssertionError(f"no torch reference for {loss!r}")


def assert_close(what: str, ours, theirs, rtol: float = RTOL, atol: float = ATOL) -> None:
    """np.allclose, or an AssertionError printing ours beside theirs."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    if ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=rtol, atol=atol):
        return
    diff = np.abs(ours - theirs).max() if ours.shape == theirs.shape else np.nan
    raise AssertionError(
        f"{what}: purenn and torch differ (max |diff| {diff:.3g}, rtol {rtol:g}, atol {atol:g})\n"
        f"ours   {ours.shape}:\n{np.array2string(ours, precision=12)}\n"
        f"theirs {theirs.shape}:\n{np.array2string(theirs, precision=12)}"
    )


def torch_run(params: dict, x: np.ndarray, y: np.ndarray, mask_seed: int | None = None):
    """Forward and backward in torch; returns (output, loss, {path: grad}, dx)."""
    spec = params[pn.SPEC_KEY]
    rng = None if mask_seed is None else np.random.default_rng(mask_seed)
    tx = torch.tensor(x, requires_grad=True)
    leaves = {}
    a = tx
    last = len(spec.layers) - 1
    logits = None
    for i, (layer, name) in enumerate(zip(spec.layers, spec.layer_names(), strict=True)):
        if isinstance(layer, pn.Dense):
            w = torch.tensor(params[name]["w"], requires_grad=True)
            b = torch.tensor(params[name]["b"], requires_grad=True)
            leaves[f"{name}/w"], leaves[f"{name}/b"] = w, b
            z = a @ w + b
            if i == last:
                logits = z
            a = TORCH_ACTIVATIONS[layer.activation](z)
        elif rng is not None:  # replay purenn's own mask for this layer
            _, mask = layer.forward(None, a.detach().numpy(), Context(train=True, rng=rng))
            a = a if mask is None else a * torch.tensor(mask)
    loss = torch_loss(spec.loss, a, logits, torch.tensor(y))
    loss.backward()
    return a, loss, {path: t.grad for path, t in leaves.items()}, tx.grad


def compare(params: dict, x: np.ndarray, y: np.ndarray, mask_seed: int | None = None) -> None:
    out, loss, grads, _ = torch_run(params, x, y, mask_seed)
    rng = None if mask_seed is None else np.random.default_rng(mask_seed)
    value, g = pn.loss_and_grads(params, x, y, rng=rng)
    train_rng = None if mask_seed is None else np.random.default_rng(mask_seed)
    assert_close("forward output", pn.forward(params, x, train=True, rng=train_rng), out)
    assert_close("loss", value, loss)
    ours = dict(pn.tree_items(g))
    assert ours.keys() == grads.keys()
    for path, theirs in grads.items():
        assert_close(f"d loss / d {path}", ours[path], theirs)


def data(spec: pn.Network, n: int = 7, seed: int = 0, one_hot: bool = False):
    rng = np.random.default_rng(seed)
    (k,) = spec.output_shape
    x = rng.normal(size=(n, *spec.input_shape))
    if isinstance(spec.loss, CrossEntropy):
        labels = rng.integers(0, k, size=n)
        return x, (np.eye(k)[labels] if one_hot else labels)
    if isinstance(spec.loss, BinaryCrossEntropy):
        return x, rng.integers(0, 2, size=(n, k)).astype(np.float64)
    return x, rng.normal(size=(n, k))


@pytest.mark.parametrize("act", ACTS)
def test_activation_hidden_and_output_under_mse(act):
    spec = pn.Network(5, [pn.Dense(6, act, bias_init=0.1), pn.Dense(4, act)], "mse")
    params = pn.init(spec, 1, np.float64)
    compare(params, *data(spec))


@pytest.mark.parametrize("act", ACTS)
def test_activation_under_cross_entropy(act):
    spec = pn.Network(5, [pn.Dense(6, act), pn.Dense(8, act), pn.Dense(3, "softmax")])
    params = pn.init(spec, 2, np.float64)
    compare(params, *data(spec, seed=3))


@pytest.mark.parametrize(
    ("loss", "out_act", "one_hot"),
    [
        ("cross_entropy", "softmax", False),
        ("cross_entropy", "softmax", True),
        ("mse", "linear", False),
        ("mse", "sigmoid", False),
        ("binary_cross_entropy", "sigmoid", False),
        ("mae", "linear", False),
        ("mae", "softplus", False),
        ("huber", "linear", False),
        (Huber(delta=0.4), "linear", False),
        (Huber(delta=2.5), "gelu", False),
    ],
    ids=["ce-int", "ce-one-hot", "mse-linear", "mse-sigmoid", "bce", "mae", "mae-softplus",
         "huber", "huber-0.4", "huber-2.5"],
)  # fmt: skip
def test_losses(loss, out_act, one_hot):
    spec = pn.Network(4, [pn.Dense(5, "tanh"), pn.Dense(3, out_act)], loss)
    params = pn.init(spec, 4, np.float64)
    compare(params, *data(spec, n=9, seed=5, one_hot=one_hot))


def test_large_logits():
    """Logits in the hundreds: both sides stay finite and agree."""
    spec = pn.Network(4, [pn.Dense(3, "softmax")])
    params = pn.init(spec, 6, np.float64)
    params["dense_0"] = {"w": params["dense_0"]["w"] * 300.0, "b": params["dense_0"]["b"]}
    compare(params, *data(spec, seed=7))


def test_dropout_with_replayed_masks():
    spec = pn.Network(
        6,
        [pn.Dense(8, "relu"), pn.Dropout(0.5), pn.Dense(5, "sigmoid"), pn.Dropout(0.2),
         pn.Dense(3, "softmax")],
    )  # fmt: skip
    params = pn.init(spec, 8, np.float64)
    compare(params, *data(spec, n=10, seed=9), mask_seed=10)


@pytest.mark.parametrize("act", ACTS)
def test_dense_layer_dx_dw_db(act):
    """One Dense layer's backward against autograd: dX, dW and db."""
    rng = np.random.default_rng(11)
    layer = pn.Dense(4, act, bias_init=0.2)
    p = layer.init_params(rng, (5,), np.dtype(np.float64))
    x = rng.normal(size=(6, 5))
    dy = rng.normal(size=(6, 4))
    ctx = Context(train=False)
    a, cache = layer.forward(p, x, ctx)
    dx, g = layer.backward(p, cache, dy, ctx)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(p["w"], requires_grad=True)
    tb = torch.tensor(p["b"], requires_grad=True)
    ta = TORCH_ACTIVATIONS[act](tx @ tw + tb)
    ta.backward(torch.tensor(dy))
    assert_close(f"{act} a", a, ta)
    assert_close(f"{act} dx", dx, tx.grad)
    assert_close(f"{act} dw", g["w"], tw.grad)
    assert_close(f"{act} db", g["b"], tb.grad)


def test_report_prints_both_values():
    with pytest.raises(
        AssertionError, match=r"(?s)loss: purenn and torch differ.*ours.*1\.5.*theirs.*2\.5"
    ):
        assert_close("loss", np.array([1.5]), torch.tensor([2.5], dtype=torch.float64))


def test_every_builtin_activation_has_a_torch_reference():
    assert set(ACTS) <= set(TORCH_ACTIVATIONS)


@pytest.mark.parametrize("act", ACTS)
def test_activation_forward_and_backward(act):
    """forward(z) and backward(z, a, da) against torch and autograd, over a wide range
    of z (saturated sigmoid and softplus, large negative ELU), float64."""
    rng = np.random.default_rng(12)
    z = np.concatenate([rng.normal(size=(4, 6)), rng.uniform(-30, 30, size=(3, 6))])
    z[np.abs(z) < 1e-3] = 0.5  # away from ReLU's 0, where the two conventions may differ
    da = rng.normal(size=z.shape)
    fns = get_activation(act)
    a = fns.forward(z)
    dz = fns.backward(z, a, da)
    tz = torch.tensor(z, requires_grad=True)
    ta = TORCH_ACTIVATIONS[act](tz)
    ta.backward(torch.tensor(da))
    assert_close(f"{act}(z)", a, ta)
    assert_close(f"{act} backward", dz, tz.grad)


LOSS_CASES = [
    (CrossEntropy(), False),
    (CrossEntropy(), True),  # one-hot targets
    (BinaryCrossEntropy(), False),
    (MSE(), False),
    (MAE(), False),
    (Huber(), False),
    (Huber(delta=0.3), False),
]


@pytest.mark.parametrize(
    ("loss", "one_hot"), LOSS_CASES, ids=[f"{loss!r}{'-one-hot' * h}" for loss, h in LOSS_CASES]
)
def test_loss_value_and_grad(loss, one_hot):
    """value_and_grad(out, y) against the torch loss and its autograd gradient, float64."""
    rng = np.random.default_rng(13)
    out = rng.normal(size=(6, 4)) * 2.0
    if isinstance(loss, CrossEntropy):
        labels = rng.integers(0, 4, size=6)
        y = np.eye(4)[labels] if one_hot else labels
    elif isinstance(loss, BinaryCrossEntropy):
        y = rng.uniform(size=out.shape)
    else:
        y = rng.normal(size=out.shape)
        if isinstance(loss, Huber):  # both of its pieces are compared
            gap = np.abs(out - y)
            assert (gap < loss.delta).any() and (gap > loss.delta).any()
    value, dout = loss.value_and_grad(out, y)
    tout = torch.tensor(out, requires_grad=True)
    tloss = torch_loss(loss, tout, tout, torch.tensor(y))
    tloss.backward()
    assert_close(f"{loss!r} value", value, tloss)
    assert_close(f"{loss!r} dL/dout", dout, tout.grad)
