"""Tests for purenn.scratch: reused work arrays must never be visible to callers.

Training steps take their convolution and pooling work arrays from a per-thread
scratch. These tests check that doing so changes no bit of any result, that
nothing returned lives in scratch, that results of one step survive the next,
and that threads and nested passes never share a buffer.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import purenn as pn
from purenn import conv, scratch
from purenn.tree import tree_items


def conv_chain():
    """Convolutions back to back (the second reads the first's scratch output and
    hands its padded scratch gradient to the first's in-place ReLU derivative)."""
    return pn.Network(
        (2, 9, 8),
        [
            pn.Conv2D(3, 3, padding="same"),
            pn.Conv2D(4, 2, stride=2, padding=1),
            pn.Flatten(),
            pn.Dense(3, "softmax"),
        ],
    )


def small_cnn(padding="valid"):
    return pn.Network(
        (2, 9, 8),
        [
            pn.Conv2D(4, 3, padding=padding),
            pn.MaxPool2D(2),
            pn.Conv2D(5, (2, 3), stride=(1, 2), padding=1),
            pn.AvgPool2D(2, stride=1),
            pn.Flatten(),
            pn.Dense(7),
            pn.Dense(3, "softmax"),
        ],
    )


def batch(n: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, 9, 8)).astype(dtype), rng.integers(0, 3, n)


def fresh_loss_and_grads(params, x, y):
    """loss_and_grads with no scratch: a pass started inside a running pass gets none."""
    with scratch.training_pass() as outer:
        assert isinstance(outer, scratch.Scratch)
        return pn.loss_and_grads(params, x, y)


def assert_trees_equal(a, b):
    for (path, u), (_, v) in zip(tree_items(a), tree_items(b), strict=True):
        np.testing.assert_array_equal(u, v, err_msg=path)


def scratch_buffers():
    s = scratch._thread_scratch()
    return list(s._buffers.values())


@pytest.mark.parametrize("net", ["valid", "same", "chain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scratch_gives_the_same_bits_as_fresh_arrays(net, dtype):
    spec = conv_chain() if net == "chain" else small_cnn(net)
    params = pn.init(spec, 0, dtype=dtype)
    x, y = batch(6, dtype=dtype)
    for _ in range(2):  # the second call reuses the first call's buffers
        value, g = pn.loss_and_grads(params, x, y)
        value_f, g_f = fresh_loss_and_grads(params, x, y)
        assert value == value_f
        assert_trees_equal(g, g_f)
    assert scratch.held_bytes() > 0


def plain_backprop(params, x, y, rng):
    """Loss and gradients with every layer called directly (fresh arrays, dy never
    overwritten): the plain path a training pass must match bit for bit."""
    spec = params[pn.SPEC_KEY]
    names, last = spec.layer_names(), len(spec.layers) - 1
    a, caches = x, []
    for i, (layer, name) in enumerate(zip(spec.layers, names, strict=True)):
        extra = {"activate": False} if i == last else {}
        a, cache = layer.forward(params.get(name), a, train=True, rng=rng, **extra)
        caches.append(cache)
    value, dy = pn.losses.cross_entropy(a, y)
    grads = {}
    for i in range(last, -1, -1):
        extra = {"activated": False} if i == last else {}
        dy, g = spec.layers[i].backward(params.get(names[i]), caches[i], dy, **extra)
        if g is not None:
            grads[names[i]] = g
    return value, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_only_pass_keeps_no_buffers_and_matches_plain_layers(dtype):
    """A network of Dense and Dropout layers trains without scratch buffers, its
    ReLU derivatives still taken in place, with the bits of the plain path."""
    scratch.release()
    spec = pn.Network(
        6, [pn.Dense(8), pn.Dropout(0.3), pn.Dense(5, "leaky_relu"), pn.Dense(3, "softmax")]
    )
    params = pn.init(spec, 0, dtype=dtype)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 6)).astype(dtype), rng.integers(0, 3, 7)
    value, g = pn.loss_and_grads(params, x, y, rng=np.random.default_rng(2))
    value_p, g_p = plain_backprop(params, x, y, np.random.default_rng(2))
    assert value == value_p
    for name, leaves in g_p.items():
        for key, leaf in leaves.items():
            np.testing.assert_array_equal(g[name][key], leaf, err_msg=f"{name}/{key}")
    assert scratch.held_bytes() == 0


def test_nothing_returned_lives_in_scratch():
    params = pn.init(small_cnn(), 0)
    x, y = batch(5)
    _, g = pn.loss_and_grads(params, x, y)
    _, g = pn.loss_and_grads(params, x, y)
    buffers = scratch_buffers()
    assert buffers
    for path, leaf in tree_items(g):
        assert not any(np.shares_memory(leaf, b) for b in buffers), path


def test_results_survive_the_next_step():
    params = pn.init(small_cnn(), 0)
    x1, y1 = batch(6, seed=1)
    x2, y2 = batch(6, seed=2)
    _, g1 = pn.loss_and_grads(params, x1, y1)
    kept = {path: leaf.copy() for path, leaf in tree_items(g1)}
    pn.loss_and_grads(params, x2, y2)
    for path, leaf in tree_items(g1):
        np.testing.assert_array_equal(leaf, kept[path], err_msg=path)


def test_batch_sizes_change_between_steps():
    """A smaller batch is served from the front of the buffers; a bigger one grows them."""
    params = pn.init(small_cnn(), 0)
    for n in (6, 3, 9, 1, 6):
        x, y = batch(n, seed=n)
        value, g = pn.loss_and_grads(params, x, y)
        value_f, g_f = fresh_loss_and_grads(params, x, y)
        assert value == value_f
        assert_trees_equal(g, g_f)


def test_fit_with_scratch_matches_fit_without():
    spec = small_cnn()
    x, y = batch(20, seed=3)

    def train():
        return pn.fit(
            pn.init(spec, 0),
            (x, y),
            optimizer=pn.optim.sgd(0.05),
            epochs=2,
            batch_size=8,
            rng=0,
            verbose=0,
        )

    run = train()
    with scratch.training_pass():  # no scratch anywhere inside
        run_fresh = train()
    assert_trees_equal(run[0], run_fresh[0])  # (params, history)


def test_read_only_inputs_and_params_still_work():
    params = pn.init(small_cnn(), 0)
    for _, leaf in tree_items(params):
        leaf.flags.writeable = False
    x, y = batch(4)
    x.flags.writeable = False
    before = x.copy()
    pn.loss_and_grads(params, x, y)
    pn.loss_and_grads(params, x, y)
    np.testing.assert_array_equal(x, before)


def test_threads_never_share_buffers():
    params = pn.init(small_cnn(), 0)
    data = [batch(6, seed=s) for s in range(4)]
    expected = [fresh_loss_and_grads(params, x, y) for x, y in data]
    results: dict[int, list] = {}

    def work(k: int) -> None:
        results[k] = [pn.loss_and_grads(params, x, y) for _ in range(5) for x, y in data]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        for i, (value, g) in enumerate(results[k]):
            value_e, g_e = expected[i % len(data)]
            assert value == value_e
            assert_trees_equal(g, g_e)


def test_a_key_taken_twice_in_one_pass_gets_a_fresh_array():
    s = scratch.Scratch()
    a = s.empty("k", (3, 4), np.float32)
    b = s.empty("k", (3, 4), np.float32)
    assert not np.shares_memory(a, b)
    s.end_pass()
    c = s.empty("k", (2, 2), np.float64)  # smaller: the front of the same buffer
    assert np.shares_memory(a, c) and c.shape == (2, 2) and c.dtype == np.float64
    assert c.flags.c_contiguous and c.ctypes.data % 64 == 0
    z = s.scoped("layer").zeros("z", (5,), np.float32)
    np.testing.assert_array_equal(z, 0)
    assert "layer.z" in s._buffers


def test_release_frees_the_threads_buffers():
    params = pn.init(small_cnn(), 0)
    pn.loss_and_grads(params, *batch(4))
    assert scratch.held_bytes() > 0
    scratch.release()
    assert scratch.held_bytes() == 0
    pn.loss_and_grads(params, *batch(4))  # made again on demand
    assert scratch.held_bytes() > 0


def test_chunked_convolution_with_scratch_matches_fresh():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 7, 6))
    w = rng.normal(size=(4, 3, 3, 2))
    b = rng.normal(size=4)
    pads, stride = (1, 0, 1, 1), (2, 1)
    z_f, _ = conv.conv2d_forward(x, w, b, stride, pads, max_bytes=1)
    dz = rng.normal(size=z_f.shape)
    dx_f, dw_f, db_f = conv.conv2d_backward(dz, x, w, stride, pads, max_bytes=1)
    s = scratch.Scratch()
    for _ in range(2):
        z, cols = conv.conv2d_forward(x, w, b, stride, pads, keep_cols=True, max_bytes=1, scratch=s)
        assert cols is None
        dx, dw, db = conv.conv2d_backward(dz, x, w, stride, pads, max_bytes=1, scratch=s)
        for got, want in ((z, z_f), (dx, dx_f), (dw, dw_f), (db, db_f)):
            np.testing.assert_array_equal(got, want)
        s.end_pass()
