"""Tests for purenn.conv: Conv2D, MaxPool2D, AvgPool2D, Flatten.

Gradients are checked with float64 central differences (every layer, with
strides, paddings and odd sizes), whole small CNNs through loss_and_grads, and
forward values and gradients against PyTorch in float64 when it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn
from purenn import conv
from purenn.tree import tree_items

RTOL = 1e-6  # worst |analytic - numeric| relative to the largest gradient entry

TRAIN = pn.Context(train=True)
"""A training pass with no randomness (none of these layers draws any), fresh work
arrays, and dL/dx wanted."""
EVAL = pn.Context(train=False)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def numeric_grad(fn, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``fn()`` w.r.t. every entry of ``a``
    (perturbed in place, then restored)."""
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = fn()
        flat[i] = old - eps
        down = fn()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def assert_grad_close(name: str, analytic: np.ndarray, numeric: np.ndarray, rtol=RTOL) -> None:
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} != {numeric.shape}"
    err = np.abs(analytic - numeric)
    scale = max(np.abs(numeric).max(), 1e-12)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() <= rtol * scale, (
        f"{name}: worst error {err.max():.3g} (relative {err.max() / scale:.3g}) at {worst}: "
        f"analytic {analytic[worst]!r}, numeric {numeric[worst]!r}"
    )


def check_layer_grads(layer, in_shape, n: int = 2, seed: int = 0) -> None:
    """Gradcheck dx and every param of ``layer`` on a random projection loss."""
    rng = np.random.default_rng(seed)
    out_shape = layer.output_shape(in_shape)
    p = layer.init_params(rng, in_shape, np.float64)
    if p is not None:  # non-trivial biases
        p = {k: v + rng.normal(0, 0.1, v.shape) for k, v in p.items()}
    x = rng.normal(size=(n, *in_shape))
    r = rng.normal(size=(n, *out_shape))

    def loss() -> float:
        y, _ = layer.forward(p, x, TRAIN)
        return float((y * r).sum())

    y, cache = layer.forward(p, x, TRAIN)
    assert y.shape == (n, *out_shape)
    dx, grads = layer.backward(p, cache, r, TRAIN)
    assert_grad_close("dx", dx, numeric_grad(loss, x))
    for key in p or {}:
        assert_grad_close(key, grads[key], numeric_grad(loss, p[key]))


# ---------------------------------------------------------------------------
# finite-difference gradient checks, layer by layer
# ---------------------------------------------------------------------------

CONV_CASES = [
    # (filters, kernel, stride, padding, activation, in_shape)
    (3, 3, 1, "valid", "tanh", (2, 7, 9)),
    (4, 3, 2, "valid", "linear", (3, 9, 7)),
    (2, (2, 3), (2, 1), "valid", "relu", (2, 8, 9)),
    (3, 3, 1, "same", "tanh", (2, 7, 9)),
    (3, 4, 1, "same", "linear", (2, 6, 7)),  # even kernel: extra zero row bottom/right
    (2, 3, 2, "same", "sigmoid", (2, 7, 8)),  # TensorFlow "same" with stride 2
    (2, (3, 2), (3, 2), "same", "linear", (1, 10, 7)),
    (3, 3, 1, 1, "tanh", (2, 5, 5)),
    (2, 5, 2, 2, "leaky_relu", (3, 9, 11)),
    (2, (1, 3), 1, (0, 2), "linear", (2, 4, 5)),
    (1, 1, 1, "valid", "linear", (3, 3, 3)),
    (2, 5, 3, "valid", "linear", (1, 5, 13)),  # kernel as tall as the input
]


@pytest.mark.parametrize(("filters", "kernel", "stride", "padding", "act", "in_shape"), CONV_CASES)
def test_conv2d_gradients(filters, kernel, stride, padding, act, in_shape):
    layer = pn.Conv2D(filters, kernel, stride=stride, padding=padding, activation=act)
    check_layer_grads(layer, in_shape)


POOL_CASES = [
    # (pool, stride, in_shape)
    (2, None, (2, 6, 8)),
    (2, None, (2, 7, 9)),  # odd sizes: the last row and column are dropped
    (3, 2, (2, 9, 7)),  # overlapping windows
    ((2, 3), (1, 2), (1, 5, 8)),
    (3, 1, (2, 5, 6)),
    (1, None, (2, 3, 3)),
    ((4, 2), None, (1, 5, 5)),
]


@pytest.mark.parametrize(("pool", "stride", "in_shape"), POOL_CASES)
@pytest.mark.parametrize("kind", [pn.MaxPool2D, pn.AvgPool2D])
def test_pool_gradients(kind, pool, stride, in_shape):
    check_layer_grads(kind(pool, stride), in_shape)


def test_flatten_gradients():
    check_layer_grads(pn.Flatten(), (3, 4, 5))


# ---------------------------------------------------------------------------
# whole networks through the public functions
# ---------------------------------------------------------------------------


def small_cnn(**kw) -> pn.Network:
    return pn.Network(
        (2, 9, 11),
        [
            pn.Conv2D(3, 3, padding="same", activation="tanh"),
            pn.MaxPool2D(2),
            pn.Conv2D(4, (2, 3), stride=(1, 2), padding=1, activation="tanh"),
            pn.AvgPool2D(2, stride=1),
            pn.Flatten(),
            pn.Dense(3, "softmax"),
        ],
        **kw,
    )


def test_cnn_loss_and_grads_match_finite_differences():
    spec = small_cnn()
    assert spec.output_shape == (3,)
    params = pn.init(spec, 1, dtype=np.float64)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 9, 11))
    y = np.array([0, 2, 1])
    value, g = pn.loss_and_grads(params, x, y)
    assert value == pytest.approx(pn.loss(params, x, y), rel=1e-12)
    assert [k for k, _ in tree_items(g)] == [k for k, _ in tree_items(params)]
    for path, leaf in tree_items(params):
        layer, key = path.split("/")
        numeric = numeric_grad(lambda: pn.loss(params, x, y), leaf)
        assert_grad_close(path, g[layer][key], numeric)


def test_cnn_names_shapes_and_init():
    spec = small_cnn()
    assert spec.layer_names() == (
        "conv2d_0",
        "maxpool2d_0",
        "conv2d_1",
        "avgpool2d_0",
        "flatten_0",
        "dense_0",
    )
    assert spec.shapes() == ((2, 9, 11), (3, 9, 11), (3, 4, 5), (4, 5, 3), (4, 4, 2), (32,), (3,))
    params = pn.init(spec, 0)
    assert set(params) == {"spec", "conv2d_0", "conv2d_1", "dense_0"}
    assert params["conv2d_0"]["w"].shape == (3, 2, 3, 3)
    assert params["conv2d_0"]["b"].shape == (3,)
    assert params["conv2d_1"]["w"].shape == (4, 3, 2, 3)
    assert params["conv2d_1"]["w"].dtype == np.float32
    assert np.all(params["conv2d_1"]["b"] == 0)


def test_conv_init_uses_fan_in_of_the_kernel():
    layer = pn.Conv2D(256, 3)  # he_normal: std = sqrt(2 / (c_in * kh * kw))
    w = layer.init_params(np.random.default_rng(0), (16, 8, 8), np.float64)["w"]
    assert w.std() == pytest.approx(np.sqrt(2 / (16 * 9)), rel=0.02)
    w = pn.Conv2D(8, 3, weight_init="zeros").init_params(None, (2, 8, 8), np.float32)["w"]
    assert w.dtype == np.float32 and not w.any()
    b = pn.Conv2D(8, 3, bias_init=0.5).init_params(np.random.default_rng(0), (2, 8, 8), "f8")
    assert np.all(b["b"] == 0.5)


def test_cnn_json_roundtrip():
    spec = small_cnn()
    again = pn.Network.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)
    assert again.layers[2].stride == (1, 2) and again.layers[2].padding == (1, 1)


def test_cnn_trains_on_a_tiny_problem():
    """A few SGD steps lower the loss on a separable toy problem (float32 throughout)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > x[:, 0, 4:].sum(axis=(1, 2))).astype(np.int64)
    spec = pn.Network(
        (1, 8, 8),
        [pn.Conv2D(4, 3, padding="same"), pn.MaxPool2D(2), pn.Flatten(), pn.Dense(2, "softmax")],
    )
    params = pn.init(spec, 0)
    first = pn.loss(params, x, y)
    for _ in range(30):
        _, g = pn.loss_and_grads(params, x, y)
        assert all(leaf.dtype == np.float32 for leaf in pn.tree_leaves(g))
        params = pn.sgd_step(params, g, 0.1)
    assert pn.loss(params, x, y) < 0.7 * first


# ---------------------------------------------------------------------------
# cross-check against PyTorch in float64
# ---------------------------------------------------------------------------


def _torch_pad_for(layer: pn.Conv2D, in_shape):
    t, b, l, r = layer.pads(in_shape)
    return (l, r, t, b)  # torch.nn.functional.pad order: last axis first


@pytest.mark.parametrize(("filters", "kernel", "stride", "padding", "act", "in_shape"), CONV_CASES)
def test_conv2d_matches_torch(filters, kernel, stride, padding, act, in_shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = pn.Conv2D(filters, kernel, stride=stride, padding=padding, activation="linear")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, *in_shape))
    p = layer.init_params(rng, in_shape, np.float64)
    p["b"] = rng.normal(size=p["b"].shape)
    y, cache = layer.forward(p, x, TRAIN)
    dy = rng.normal(size=y.shape)
    dx, g = layer.backward(p, cache, dy, TRAIN)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(p["w"], requires_grad=True)
    tb = torch.tensor(p["b"], requires_grad=True)
    # padding applied explicitly: torch refuses padding="same" with a stride > 1
    ty = F.conv2d(F.pad(tx, _torch_pad_for(layer, in_shape)), tw, tb, stride=layer.stride)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["w"], tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["b"], tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_matches_torch_same_for_stride_1():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 6, 7))
    for kernel in (3, 4, (2, 5)):
        layer = pn.Conv2D(3, kernel, padding="same", activation="linear")
        p = layer.init_params(rng, (2, 6, 7), np.float64)
        y, _ = layer.forward(p, x, EVAL)
        ty = torch.nn.functional.conv2d(
            torch.tensor(x), torch.tensor(p["w"]), torch.tensor(p["b"]), padding="same"
        )
        assert y.shape == (2, 3, 6, 7)
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("pool", "stride", "in_shape"), POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("ties", [False, True])
def test_pools_match_torch(kind, pool, stride, in_shape, ties):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, *in_shape))
    if ties:  # many equal values: the gradient must go to the first maximum, as torch's
        x = np.floor(x)
    layer = (pn.MaxPool2D if kind == "max" else pn.AvgPool2D)(pool, stride)
    y, cache = layer.forward(None, x, TRAIN)
    dy = rng.normal(size=y.shape)
    dx, _ = layer.backward(None, cache, dy, TRAIN)
    tx = torch.tensor(x, requires_grad=True)
    fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    ty = fn(tx, layer.pool_size, layer.strides)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_benchmark_cnn_matches_torch():
    """conv-pool-conv-pool-flatten-dense-dense, loss and every gradient vs torch."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional
    spec = pn.Network(
        (1, 14, 14),
        [
            pn.Conv2D(4, 3),
            pn.MaxPool2D(2),
            pn.Conv2D(6, 3),
            pn.MaxPool2D(2),
            pn.Flatten(),
            pn.Dense(8),
            pn.Dense(5, "softmax"),
        ],
    )
    params = pn.init(spec, 0, dtype=np.float64)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(7, 1, 14, 14))
    y = rng.integers(0, 5, size=7)
    value, g = pn.loss_and_grads(params, x, y)

    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    ).double()
    pairs = [(0, "conv2d_0", False), (3, "conv2d_1", False), (7, "dense_0", True)]
    pairs.append((9, "dense_1", True))
    with torch.no_grad():
        for i, name, dense in pairs:
            w = params[name]["w"]
            net[i].weight.copy_(torch.tensor(w.T if dense else w))
            net[i].bias.copy_(torch.tensor(params[name]["b"]))
    tloss = F.cross_entropy(net(torch.tensor(x)), torch.tensor(y))
    tloss.backward()
    assert value == pytest.approx(tloss.item(), rel=1e-12)
    for i, name, dense in pairs:
        tw = net[i].weight.grad.numpy()
        np.testing.assert_allclose(g[name]["w"], tw.T if dense else tw, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(g[name]["b"], net[i].bias.grad.numpy(), rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------
# shape checks when the Network is built, and field validation
# ---------------------------------------------------------------------------


def test_kernel_that_does_not_fit_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"^conv2d_0 \(Conv2D\): the 7x7 kernel.*\(1, 5, 5\)"):
        pn.Network((1, 5, 5), [pn.Conv2D(2, 7), pn.Flatten(), pn.Dense(2, "softmax")])
    # padding can make it fit; the message shows the padded size otherwise
    pn.Network((1, 5, 5), [pn.Conv2D(2, 7, padding=1), pn.Flatten(), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"conv2d_0 .*padded to 6x7"):
        pn.Network((1, 4, 5), [pn.Conv2D(2, 7, padding=1), pn.Flatten(), pn.Dense(2, "softmax")])


def test_pool_that_does_not_fit_is_refused_at_construction():
    layers = [
        pn.Conv2D(4, 3),
        pn.MaxPool2D(2),
        pn.Conv2D(4, 3),
        pn.AvgPool2D(3),
        pn.Flatten(),
        pn.Dense(2, "softmax"),
    ]
    with pytest.raises(ValueError, match=r"^avgpool2d_0 \(AvgPool2D\): the 3x3 pool.*\(4, 2, 2\)"):
        pn.Network((1, 10, 10), layers)
    with pytest.raises(ValueError, match=r"^maxpool2d_1 \(MaxPool2D\): the 2x5 pool.*\(1, 3, 3\)"):
        pn.Network(
            (1, 6, 6),
            [pn.MaxPool2D(2), pn.MaxPool2D((2, 5)), pn.Flatten(), pn.Dense(2, "softmax")],
        )


def test_image_layers_need_image_inputs():
    with pytest.raises(ValueError, match=r"^conv2d_0 \(Conv2D\): expects channels-first images"):
        pn.Network(784, [pn.Conv2D(2, 3), pn.Flatten(), pn.Dense(2, "softmax")])
    with pytest.raises(
        ValueError, match=r"^maxpool2d_0 \(MaxPool2D\): expects channels-first.*got \(32,\)"
    ):
        pn.Network((1, 8, 8), [pn.Flatten(), pn.Dense(32), pn.MaxPool2D(2), pn.Dense(2, "softmax")])
    with pytest.raises(ValueError, match=r"^dense_0 \(Dense\): .*Flatten the input first"):
        pn.Network((1, 8, 8), [pn.Conv2D(2, 3), pn.Dense(2, "softmax")])


def test_output_shape_errors_do_not_name_the_layer():
    """A layer does not know its name; the Network adds it (tested above)."""
    with pytest.raises(ValueError, match=r"^the 7x7 kernel does not fit the input of shape") as err:
        pn.Conv2D(2, 7).output_shape((1, 5, 5))
    assert "conv2d" not in str(err.value)
    with pytest.raises(ValueError, match=r"^expects channels-first images"):
        pn.AvgPool2D(2).output_shape((16,))
    assert pn.Flatten().output_shape((3, 4, 5)) == (60,)
    assert pn.MaxPool2D(2, 1).output_shape((3, 4, 5)) == (3, 3, 4)


def test_network_must_end_in_a_flat_output_the_loss_accepts():
    with pytest.raises(
        ValueError, match=r"flat output of shape \(k,\).*conv2d_0 gives \(2, 6, 6\)"
    ):
        pn.Network((1, 8, 8), [pn.Conv2D(2, 3)], loss="mse")
    # cross-entropy needs a softmax layer last: Flatten has no activation
    with pytest.raises(
        ValueError, match=r"needs a 'softmax' output layer; the last layer flatten_0 \(Flatten\)"
    ):
        pn.Network((1, 8, 8), [pn.Conv2D(2, 3), pn.Flatten()])
    with pytest.raises(ValueError, match=r"needs a 'sigmoid' output layer.*flatten_0"):
        pn.Network(
            (1, 8, 8), [pn.Conv2D(2, 3), pn.MaxPool2D(6), pn.Flatten()], "binary_cross_entropy"
        )
    # a regression loss takes any flat output
    spec = pn.Network((1, 8, 8), [pn.Conv2D(2, 3), pn.MaxPool2D(6), pn.Flatten()], loss="mse")
    assert spec.output_shape == (2,)
    params = pn.init(spec, 0, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8))
    out = pn.forward(params, x)
    assert out.shape == (3, 2)
    value, g = pn.loss_and_grads(params, x, np.zeros((3, 2)))
    assert value == pytest.approx(float(np.mean(out**2)), rel=1e-12)
    assert set(g) == {pn.SPEC_KEY, "conv2d_0"}


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: pn.Conv2D(0, 3), ValueError, "filters must be a positive int"),
        (lambda: pn.Conv2D(2.0, 3), TypeError, "filters must be a positive int"),
        (lambda: pn.Conv2D(2, 0), ValueError, "kernel_size must hold positive ints"),
        (lambda: pn.Conv2D(2, (3,)), TypeError, r"kernel_size must be an int or a pair"),
        (lambda: pn.Conv2D(2, True), TypeError, "kernel_size"),
        (lambda: pn.Conv2D(2, 3, stride=(1, 0)), ValueError, "stride must hold positive"),
        (lambda: pn.Conv2D(2, 3, padding="full"), ValueError, "'valid', 'same', an int"),
        (lambda: pn.Conv2D(2, 3, padding=-1), ValueError, "padding must hold ints >= 0"),
        (lambda: pn.Conv2D(2, 3, padding=1.5), TypeError, "padding must be an int or a pair"),
        (
            lambda: pn.Conv2D(2, 3, activation="not_an_activation"),
            ValueError,
            r"Conv2D.activation: unknown activation 'not_an_activation'; known: 'relu'.*'gelu'",
        ),
        (lambda: pn.Conv2D(2, 3, activation=None), ValueError, "unknown activation None"),
        (lambda: pn.Conv2D(2, 3, activation="softmax"), ValueError, "final Dense layer"),
        (lambda: pn.Conv2D(2, 3, weight_init="ones"), ValueError, "weight_init"),
        (lambda: pn.MaxPool2D(0), ValueError, "pool_size must hold positive ints"),
        (lambda: pn.AvgPool2D(2, stride=0), ValueError, "stride must hold positive ints"),
        (lambda: pn.AvgPool2D("2"), TypeError, "pool_size must be an int or a pair"),
    ],
)
def test_bad_fields_are_refused(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_fields_are_normalised_and_frozen():
    layer = pn.Conv2D(2, [3, 2], stride=np.int64(2), padding=[1, 0])
    assert layer.kernel_size == (3, 2) and layer.stride == (2, 2) and layer.padding == (1, 0)
    assert type(layer.stride[0]) is int
    assert pn.MaxPool2D(3).strides == (3, 3) and pn.MaxPool2D(3, 1).strides == (1, 1)
    assert layer.pads((1, 9, 9)) == (1, 1, 0, 0)
    # TensorFlow "same": out = ceil(size / stride), the extra zero goes bottom/right
    same = pn.Conv2D(1, 3, stride=2, padding="same")
    assert same.pads((1, 8, 7)) == (0, 1, 1, 1)
    assert same.output_shape((1, 8, 7)) == (1, 4, 4)
    with pytest.raises(AttributeError):
        layer.stride = (1, 1)


# ---------------------------------------------------------------------------
# chunking, purity, dtypes
# ---------------------------------------------------------------------------


def test_chunked_conv_equals_unchunked(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 3, 9, 8))
    w = rng.normal(size=(4, 3, 3, 2))
    b = rng.normal(size=4)
    stride, pads = (2, 1), (1, 0, 2, 1)
    z, cols = conv.conv2d_forward(x, w, b, stride, pads, keep_cols=True)
    assert cols is not None
    dz = rng.normal(size=z.shape)
    dx, dw, db = conv.conv2d_backward(dz, x, w, stride, pads, cols=cols)
    row_bytes = 3 * 3 * 2 * z.shape[2] * z.shape[3] * 8  # one sample's im2col
    for max_bytes in (1, row_bytes, 2 * row_bytes + 1, 3 * row_bytes):
        zc, colc = conv.conv2d_forward(x, w, b, stride, pads, keep_cols=True, max_bytes=max_bytes)
        assert colc is None  # several chunks: backward rebuilds cols chunk by chunk
        dxc, dwc, dbc = conv.conv2d_backward(dz, x, w, stride, pads, max_bytes=max_bytes)
        np.testing.assert_allclose(zc, z, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(dxc, dx, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(dwc, dw, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(dbc, db)
    # through the public API, with the module bound lowered
    spec = small_cnn()
    params = pn.init(spec, 0, dtype=np.float64)
    xs, ys = rng.normal(size=(5, 2, 9, 11)), np.array([0, 1, 2, 1, 0])
    value, g = pn.loss_and_grads(params, xs, ys)
    monkeypatch.setattr(conv, "MAX_WORK_BYTES", 500)
    value_c, g_c = pn.loss_and_grads(params, xs, ys)
    assert value_c == pytest.approx(value, rel=1e-13)
    assert pn.tree_allclose(g_c, g, rtol=1e-12, atol=1e-14)


def test_chunk_size():
    assert conv._chunk_size(100, 10, 1000) == 100
    assert conv._chunk_size(100, 10, 95) == 9
    assert conv._chunk_size(100, 10, 3) == 1  # at least one sample per chunk


LAYERS = [
    pn.Conv2D(3, 3, stride=2, padding="same", activation="relu"),
    pn.Conv2D(2, (2, 3), padding=1, activation="sigmoid"),
    pn.MaxPool2D(2),
    pn.MaxPool2D(3, 1),
    pn.AvgPool2D(2),
    pn.AvgPool2D((3, 2), (1, 2)),
    pn.Flatten(),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: repr(layer))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_are_pure_and_keep_dtype(layer, dtype):
    rng = np.random.default_rng(7)
    in_shape = (2, 7, 8)
    p = layer.init_params(rng, in_shape, np.dtype(dtype))
    x = rng.normal(size=(3, *in_shape)).astype(dtype)
    keep_x = x.copy()
    x.flags.writeable = False
    for leaf in (p or {}).values():
        leaf.flags.writeable = False
    y, cache = layer.forward(p, x, TRAIN)
    assert y.dtype == dtype and y.shape == (3, *layer.output_shape(in_shape))
    dy = rng.normal(size=y.shape).astype(dtype)
    keep_dy = dy.copy()
    dy.flags.writeable = False
    dx, g = layer.backward(p, cache, dy, TRAIN)
    assert dx.dtype == dtype and dx.shape == x.shape
    for key, leaf in (g or {}).items():
        assert leaf.dtype == dtype and leaf.shape == p[key].shape
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(dy, keep_dy)
    # identical calls, identical results
    y2, cache2 = layer.forward(p, x, TRAIN)
    dx2, g2 = layer.backward(p, cache2, dy, TRAIN)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(dx2, dx)
    for key in g or {}:
        np.testing.assert_array_equal(g2[key], g[key])
    # the output does not alias the input (Flatten's is a read-only view of it)
    assert not np.shares_memory(y, x) or not y.flags.writeable
    # evaluation mode gives the same output
    np.testing.assert_array_equal(layer.forward(p, x, EVAL)[0], y)


def test_public_functions_keep_float32_and_leave_inputs_alone():
    spec = small_cnn()
    params = pn.init(spec, 0)
    for _, leaf in tree_items(params):
        leaf.flags.writeable = False
    x = np.random.default_rng(0).normal(size=(4, 2, 9, 11)).astype(np.float32)
    x.flags.writeable = False
    y = np.array([0, 1, 2, 0])
    out = pn.forward(params, x)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    value, g = pn.loss_and_grads(params, x, y)
    assert np.isfinite(value)
    assert all(leaf.dtype == np.float32 for leaf in pn.tree_leaves(g))
    np.testing.assert_array_equal(pn.predict(params, x), out.argmax(axis=1))


def test_need_dx_false_and_eval_cache():
    rng = np.random.default_rng(0)
    no_dx = pn.Context(train=True, need_dx=False)
    layer = pn.Conv2D(2, 3)
    p = layer.init_params(rng, (1, 5, 5), np.float64)
    x = rng.normal(size=(2, 1, 5, 5))
    y, cache = layer.forward(p, x, no_dx)
    dx, g = layer.backward(p, cache, np.ones_like(y), no_dx)
    assert dx is None and g["w"].shape == (2, 1, 3, 3)
    _, g_full = layer.backward(p, cache, np.ones_like(y), TRAIN)
    np.testing.assert_array_equal(g_full["w"], g["w"])
    # an evaluation-mode cache (no im2col kept) still gives the same gradients
    _, eval_cache = layer.forward(p, x, EVAL)
    _, g_eval = layer.backward(p, eval_cache, np.ones_like(y), no_dx)
    np.testing.assert_allclose(g_eval["w"], g["w"], rtol=1e-14)
    for other in (pn.MaxPool2D(2), pn.AvgPool2D(2), pn.Flatten()):
        out, other_cache = other.forward(None, x, no_dx)
        assert other.backward(None, other_cache, np.ones_like(out), no_dx) == (None, None)
    pool = pn.MaxPool2D(2)
    _, pool_cache = pool.forward(None, x, EVAL)
    with pytest.raises(ValueError, match="train=True"):
        pool.backward(None, pool_cache, np.ones((2, 1, 2, 2)), TRAIN)


# ---------------------------------------------------------------------------
# random configurations against a naive loop implementation (and torch)
# ---------------------------------------------------------------------------


def naive_conv(x, w, b, stride, pads):
    """Direct definition, one output pixel at a time (tests only)."""
    t, bo, l, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    f, _, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride[0] + 1
    ow = (xp.shape[3] - kw) // stride[1] + 1
    z = np.empty((x.shape[0], f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride[0] : i * stride[0] + kh, j * stride[1] : j * stride[1] + kw]
            z[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return z


def naive_pool(x, pool, stride, reduce):
    oh = (x.shape[2] - pool[0]) // stride[0] + 1
    ow = (x.shape[3] - pool[1]) // stride[1] + 1
    y = np.empty((*x.shape[:2], oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride[0] : i * stride[0] + pool[0], j * stride[1] :][
                ..., : pool[1]
            ]
            y[:, :, i, j] = reduce(patch, axis=(2, 3))
    return y


def random_conv_configs(count: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        kh, kw = rng.integers(1, 5, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        padding = ["valid", "same", int(rng.integers(0, 3)), tuple(rng.integers(0, 3, 2))][
            rng.integers(4)
        ]
        h, w = int(kh + rng.integers(0, 7)), int(kw + rng.integers(0, 7))
        c, f, n = (int(v) for v in rng.integers(1, 4, size=3))
        layer = pn.Conv2D(f, (int(kh), int(kw)), (int(sh), int(sw)), padding, "linear")
        yield layer, (c, h, w), n


def test_random_convs_match_the_definition():
    rng = np.random.default_rng(12)
    for layer, in_shape, n in random_conv_configs(40):
        x = rng.normal(size=(n, *in_shape))
        p = layer.init_params(rng, in_shape, np.float64)
        p["b"] = rng.normal(size=p["b"].shape)
        y, _ = layer.forward(p, x, EVAL)
        want = naive_conv(x, p["w"], p["b"], layer.stride, layer.pads(in_shape))
        assert y.shape == (n, *layer.output_shape(in_shape)) == want.shape, layer
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12, err_msg=repr(layer))


def test_random_pools_match_the_definition():
    rng = np.random.default_rng(13)
    for _ in range(30):
        pool = tuple(int(v) for v in rng.integers(1, 4, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        x = np.floor(rng.normal(size=(2, 2, pool[0] + 4, pool[1] + 5)) * 2)  # with ties
        for kind, reduce in ((pn.MaxPool2D, np.max), (pn.AvgPool2D, np.mean)):
            y, _ = kind(pool, stride).forward(None, x, TRAIN)
            np.testing.assert_allclose(y, naive_pool(x, pool, stride, reduce), rtol=1e-12)


def test_random_convs_match_torch_gradients():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(14)
    for layer, in_shape, n in random_conv_configs(40, seed=15):
        x = rng.normal(size=(n, *in_shape))
        p = layer.init_params(rng, in_shape, np.float64)
        y, cache = layer.forward(p, x, TRAIN)
        dy = rng.normal(size=y.shape)
        dx, g = layer.backward(p, cache, dy, TRAIN)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(p["w"], requires_grad=True)
        ty = F.conv2d(F.pad(tx, _torch_pad_for(layer, in_shape)), tw, stride=layer.stride)
        ty.backward(torch.tensor(dy))
        for ours, theirs in ((dx, tx.grad), (g["w"], tw.grad)):
            np.testing.assert_allclose(
                ours, theirs.numpy(), rtol=1e-11, atol=1e-12, err_msg=repr(layer)
            )


class PoisonedArrays:
    """A work-array allocator (what ``ctx.workspace`` holds) whose ``empty`` arrays
    are full of garbage bits: NaN for floats, the largest value for ints."""

    def empty(self, key, shape, dtype):
        dtype = np.dtype(dtype)
        raw = np.full(int(np.prod(shape)) * dtype.itemsize, 0xFF, np.uint8)
        return raw.view(dtype).reshape(shape)

    def zeros(self, key, shape, dtype):
        return np.zeros(shape, dtype)

    def scoped(self, prefix):
        return self


@pytest.mark.parametrize("layer", [pn.MaxPool2D(2), pn.AvgPool2D(2), pn.MaxPool2D(3)])
@pytest.mark.parametrize("size", [6, 7])
def test_pool_backward_writes_every_element_of_an_unfilled_buffer(layer, size):
    """Where windows tile the input, backward skips zero-filling its buffer: prove
    every element is still written by handing it garbage (NaN) memory."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, size, size))
    y, cache = layer.forward(None, x, TRAIN)
    dy = rng.standard_normal(y.shape)
    want, _ = layer.backward(None, cache, dy, TRAIN)
    poisoned = pn.Context(train=True, workspace=PoisonedArrays())
    assert np.isnan(poisoned.workspace.empty("dx", (2,), np.float64)).all()
    got, _ = layer.backward(None, cache, dy, poisoned)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, want)
    # the forward pass too
    got_y, got_cache = layer.forward(None, x, poisoned)
    np.testing.assert_array_equal(got_y, y)
    np.testing.assert_array_equal(layer.backward(None, got_cache, dy, poisoned)[0], want)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: repr(layer))
def test_layers_give_the_same_bits_with_a_workspace(layer):
    """Called directly with a Workspace (scoped as the network scopes it), every
    layer gives the bits of fresh arrays, pass after pass."""
    rng = np.random.default_rng(8)
    in_shape = (2, 7, 8)
    p = layer.init_params(rng, in_shape, np.dtype(np.float32))
    x = rng.normal(size=(3, *in_shape)).astype(np.float32)
    y, cache = layer.forward(p, x, TRAIN)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx, g = layer.backward(p, cache, dy, TRAIN)
    ws = pn.Workspace()
    ctx = pn.Context(train=True, workspace=ws.scoped("layer_0"))
    for _ in range(2):
        ws.begin_pass()
        y_ws, cache_ws = layer.forward(p, x, ctx)
        dx_ws, g_ws = layer.backward(p, cache_ws, dy, ctx)
        np.testing.assert_array_equal(y_ws, y)
        np.testing.assert_array_equal(dx_ws, dx)
        for key in g or {}:
            np.testing.assert_array_equal(g_ws[key], g[key])
        ws.end_pass()
    assert (ws.nbytes > 0) == layer.uses_workspace


def test_conv_and_pool_declare_the_workspace_and_flatten_does_not():
    assert pn.Conv2D.uses_workspace and pn.MaxPool2D.uses_workspace and pn.AvgPool2D.uses_workspace
    assert not pn.Flatten.uses_workspace
    for cls in (pn.Conv2D, pn.MaxPool2D, pn.AvgPool2D, pn.Flatten):
        assert not cls.draws_randomness
    assert pn.Conv2D(2, 3).has_params and not pn.MaxPool2D(2).has_params
    assert [layer.name_prefix for layer in (pn.Conv2D(2, 3), pn.AvgPool2D(2), pn.Flatten())] == [
        "conv2d",
        "avgpool2d",
        "flatten",
    ]


def test_numpy_ints_give_a_spec_that_serialises():
    layer = pn.Conv2D(
        filters=np.int64(2),
        kernel_size=np.int32(3),
        stride=(np.int64(1), np.int64(2)),
        padding=np.int64(1),
        bias_init=np.float32(0.25),
    )
    assert type(layer.filters) is int and type(layer.bias_init) is float
    assert all(type(v) is int for v in (*layer.kernel_size, *layer.stride, *layer.padding))
    assert layer == pn.Conv2D(2, 3, (1, 2), 1, bias_init=0.25)
    assert hash(layer) == hash(pn.Conv2D(2, 3, (1, 2), 1, bias_init=0.25))
    pool = pn.MaxPool2D(np.int64(2), stride=np.int64(1))
    spec = pn.Network((1, 6, 6), [layer, pool, pn.Flatten()], loss="mse")
    text = spec.to_json()
    again = pn.Network.from_json(text)
    assert again == spec and again.to_json() == text
    assert type(again.layers[0].filters) is int
