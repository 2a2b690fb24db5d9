"""Cross-check against PyTorch in float64: same params in, same outputs, loss and
gradients out (skipped where torch is not installed).

Torch runs the same network with functional ops on the very same ``w`` and ``b``
(and, for Dropout, the very masks purenn draws); failures print ours beside theirs.
"""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
from purenn.activations import ACTIVATIONS

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
}


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
            _, mask = layer.forward(None, a.detach().numpy(), train=True, rng=rng)
            a = a if mask is None else a * torch.tensor(mask)
    ty = torch.tensor(y)
    if spec.loss == "cross_entropy":
        loss = F.cross_entropy(logits, ty)  # int labels or probability (one-hot) targets
    elif spec.loss == "binary_cross_entropy":
        loss = F.binary_cross_entropy_with_logits(logits, ty)
    else:
        loss = F.mse_loss(a, ty)
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
    if spec.loss == "cross_entropy":
        labels = rng.integers(0, k, size=n)
        return x, (np.eye(k)[labels] if one_hot else labels)
    if spec.loss == "binary_cross_entropy":
        return x, rng.integers(0, 2, size=(n, k)).astype(np.float64)
    return x, rng.normal(size=(n, k))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_hidden_and_output_under_mse(act):
    spec = pn.Network(5, [pn.Dense(6, act, bias_init=0.1), pn.Dense(4, act)], "mse")
    params = pn.init(spec, 1, np.float64)
    compare(params, *data(spec))


@pytest.mark.parametrize("act", list(ACTIVATIONS))
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
    ],
    ids=["ce-int", "ce-one-hot", "mse-linear", "mse-sigmoid", "bce"],
)
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


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_dense_layer_dx_dw_db(act):
    """One Dense layer's backward against autograd: dX, dW and db."""
    rng = np.random.default_rng(11)
    layer = pn.Dense(4, act, bias_init=0.2)
    p = layer.init_params(rng, (5,), np.dtype(np.float64))
    x = rng.normal(size=(6, 5))
    dy = rng.normal(size=(6, 4))
    a, cache = layer.forward(p, x, train=False, rng=None)
    dx, g = layer.backward(p, cache, dy)
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
