"""Tests for purenn.Workspace: reused work arrays must never be visible to callers.

A :class:`purenn.Workspace` is owned by the caller and lent to one training
pass at a time (``workspace=`` of ``train_pass``, ``loss_and_grads`` and
``grads``; ``fit`` makes one per run). These tests check that lending one
changes no bit of any result, that nothing a pass returns lives in it, that
results of one pass survive the next, that a workspace in use is refused, and
that only layers declaring ``uses_workspace`` ever see it.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest

import purenn as pn
from purenn import conv
from purenn.preprocessing import batches
from purenn.tree import tree_items

# ---------------------------------------------------------------- user layers that look at ctx

SEEN: list[tuple[str, str, pn.Context]] = []
"""``(layer class, "forward" | "backward", ctx)`` of every call of the probe layers."""


@pn.register_layer
@attrs.frozen
class WsProbe(pn.Layer):
    """The identity, recording the ctx of every call (does not use a workspace)."""

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        SEEN.append(("WsProbe", "forward", ctx))
        return x, None

    def backward(self, params, cache, dy, ctx):
        SEEN.append(("WsProbe", "backward", ctx))
        return (dy if ctx.need_dx else None), None


@pn.register_layer
@attrs.frozen
class WsBufferProbe(pn.Layer):
    """``y = 2 x`` written into a work array (which the protocol allows for ``y``),
    recording the ctx; it declares ``uses_workspace``."""

    uses_workspace = True

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        SEEN.append(("WsBufferProbe", "forward", ctx))
        y = ctx.workspace.empty("y", x.shape, x.dtype)
        np.multiply(x, 2.0, out=y)
        return y, None

    def backward(self, params, cache, dy, ctx):
        SEEN.append(("WsBufferProbe", "backward", ctx))
        if not ctx.need_dx:
            return None, None
        dx = ctx.workspace.empty("dx", dy.shape, dy.dtype)
        np.multiply(dy, 2.0, out=dx)  # dL/dx = 2 dL/dy
        return dx, None


@pn.register_layer
@attrs.frozen
class WsWrongShape(pn.Layer):
    """Promises its input's shape but drops the last feature."""

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        return x[:, :-1], None

    def backward(self, params, cache, dy, ctx):
        raise AssertionError("never reached: the forward pass is refused")


# ---------------------------------------------------------------- networks and helpers


def conv_chain() -> pn.Network:
    """Convolutions back to back: the second reads the first's workspace output and
    hands its padded workspace gradient to the first's activation derivative."""
    return pn.Network(
        (2, 9, 8),
        [
            pn.Conv2D(3, 3, padding="same"),
            pn.Conv2D(4, 2, stride=2, padding=1),
            pn.Flatten(),
            pn.Dense(3, "softmax"),
        ],
    )


def small_cnn(padding: Any = "valid") -> pn.Network:
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


def mlp() -> pn.Network:
    return pn.Network(
        18, [pn.Dense(8), pn.Dropout(0.3), pn.Dense(5, "leaky_relu"), pn.Dense(3, "softmax")]
    )


def conv_regressor(activation: str = "linear") -> pn.Network:
    """Ends in Flatten after a Conv2D: with a linear activation and a batch of one,
    the output is a view of the convolution's work array."""
    return pn.Network((1, 6, 6), [pn.Conv2D(2, 3, activation=activation), pn.Flatten()], loss="mse")


def batch(n: int, seed: int = 0, dtype=np.float32, shape=(2, 9, 8)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(dtype), rng.integers(0, 3, n)


def regression_batch(n: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 6, 6)).astype(dtype), rng.normal(size=(n, 32)).astype(dtype)


def assert_trees_equal(a, b):
    items_a, items_b = list(tree_items(a)), list(tree_items(b))
    assert [p for p, _ in items_a] == [p for p, _ in items_b]
    for (path, u), (_, v) in zip(items_a, items_b, strict=True):
        assert u.dtype == v.dtype, path
        np.testing.assert_array_equal(u, v, err_msg=path)


def assert_passes_equal(a: pn.TrainPass, b: pn.TrainPass) -> None:
    assert a.loss == b.loss
    assert_trees_equal(a.grads, b.grads)
    assert a.output.dtype == b.output.dtype
    np.testing.assert_array_equal(a.output, b.output)


def assert_outside(ws: pn.Workspace, result: pn.TrainPass) -> None:
    """Nothing in ``result`` shares memory with the workspace."""
    assert ws.nbytes > 0  # otherwise the check proves nothing
    assert not ws.holds(result.output)
    for path, leaf in tree_items(result.grads):
        assert not ws.holds(leaf), path


# ---------------------------------------------------------------- same bits with and without


@pytest.mark.parametrize("net", ["valid", "same", "chain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cnn_pass_with_a_workspace_gives_the_bits_of_fresh_arrays(net, dtype):
    spec = conv_chain() if net == "chain" else small_cnn(net)
    params = pn.init(spec, 0, dtype=dtype)
    x, y = batch(6, dtype=dtype)
    ws = pn.Workspace()
    fresh = pn.train_pass(params, x, y)
    for _ in range(2):  # the second pass reuses the first pass's buffers
        assert_passes_equal(pn.train_pass(params, x, y, workspace=ws), fresh)
    assert ws.nbytes > 0
    value, g = pn.loss_and_grads(params, x, y, workspace=ws)
    assert value == fresh.loss
    assert_trees_equal(g, fresh.grads)
    assert_trees_equal(pn.grads(params, x, y, workspace=ws), fresh.grads)
    assert all(leaf.dtype == dtype for leaf in pn.tree_leaves(fresh.grads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_pass_with_a_workspace_gives_the_same_bits_and_keeps_no_buffers(dtype):
    """Dense and Dropout do not use work arrays: a workspace lent to an MLP pass
    stays empty, and the dropout masks are drawn from the rng alike."""
    params = pn.init(mlp(), 0, dtype=dtype)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 18)).astype(dtype), rng.integers(0, 3, 7)
    ws = pn.Workspace()
    got = pn.train_pass(params, x, y, rng=np.random.default_rng(2), workspace=ws)
    want = pn.train_pass(params, x, y, rng=np.random.default_rng(2))
    assert_passes_equal(got, want)
    assert ws.nbytes == 0


def test_batch_sizes_change_between_passes():
    """A smaller batch is served from the front of the buffers; a bigger one grows them."""
    params = pn.init(small_cnn(), 0)
    ws = pn.Workspace()
    sizes = []
    for n in (6, 3, 9, 2, 6, 1):
        x, y = batch(n, seed=n)
        assert_passes_equal(pn.train_pass(params, x, y, workspace=ws), pn.train_pass(params, x, y))
        sizes.append(ws.nbytes)
    assert sizes[1] == sizes[0]  # n = 3 fits in the buffers of n = 6
    assert sizes[2] > sizes[0]  # n = 9 grows them
    assert sizes[2:5] == [sizes[2]] * 3  # and nothing grows after that


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_convolution_with_a_workspace_matches_fresh_arrays(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 7, 6)).astype(dtype)
    w = rng.normal(size=(4, 3, 3, 2)).astype(dtype)
    b = rng.normal(size=4).astype(dtype)
    pads, stride = (1, 0, 1, 1), (2, 1)
    z_f, _ = conv.conv2d_forward(x, w, b, stride, pads, max_bytes=1)
    dz = rng.normal(size=z_f.shape).astype(dtype)
    dx_f, dw_f, db_f = conv.conv2d_backward(dz, x, w, stride, pads, max_bytes=1)
    ws = pn.Workspace()
    for _ in range(2):
        ws.begin_pass()
        z, cols = conv.conv2d_forward(
            x, w, b, stride, pads, keep_cols=True, max_bytes=1, scratch=ws
        )
        assert cols is None  # several chunks: backward rebuilds cols chunk by chunk
        dx, dw, db = conv.conv2d_backward(dz, x, w, stride, pads, max_bytes=1, scratch=ws)
        for got, want in ((z, z_f), (dx, dx_f), (dw, dw_f), (db, db_f)):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)
        assert ws.holds(z) and ws.holds(dx)  # these did come from the workspace
        ws.end_pass()


# ---------------------------------------------------------------- nothing returned lives there


def test_nothing_a_cnn_pass_returns_lives_in_the_workspace():
    params = pn.init(small_cnn(), 0)
    x, y = batch(5)
    ws = pn.Workspace()
    for _ in range(2):
        assert_outside(ws, pn.train_pass(params, x, y, workspace=ws))


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_nothing_returned_lives_in_the_workspace_when_flatten_ends_the_network(n, activation):
    """Flatten of a linear Conv2D's output for one sample is a view of the
    convolution's work array: the pass must copy it before returning it."""
    params = pn.init(conv_regressor(activation), 0)
    x, y = regression_batch(n)
    ws = pn.Workspace()
    fresh = pn.train_pass(params, x, y)
    for _ in range(2):
        result = pn.train_pass(params, x, y, workspace=ws)
        assert_outside(ws, result)
        assert_passes_equal(result, fresh)


def test_results_of_one_pass_survive_the_next():
    for spec, make in ((small_cnn(), batch), (conv_regressor(), regression_batch)):
        params = pn.init(spec, 0)
        ws = pn.Workspace()
        x1, y1 = make(1, seed=1)
        x2, y2 = make(1, seed=2)
        first = pn.train_pass(params, x1, y1, workspace=ws)
        kept_out = first.output.copy()
        kept = {path: leaf.copy() for path, leaf in tree_items(first.grads)}
        second = pn.train_pass(params, x2, y2, workspace=ws)
        assert not np.array_equal(second.output, kept_out)  # the second pass differs...
        np.testing.assert_array_equal(first.output, kept_out)  # ...and left the first alone
        for path, leaf in tree_items(first.grads):
            np.testing.assert_array_equal(leaf, kept[path], err_msg=path)


def test_a_user_layer_output_in_the_workspace_is_copied_before_it_is_returned():
    spec = pn.Network(4, [pn.Dense(3, "tanh"), WsBufferProbe()], loss="mse")
    params = pn.init(spec, 0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    ws = pn.Workspace()
    first = pn.train_pass(params, x, y, workspace=ws)
    assert_outside(ws, first)
    kept = first.output.copy()
    second = pn.train_pass(params, 2 * x, y, workspace=ws)
    np.testing.assert_array_equal(first.output, kept)
    assert_passes_equal(second, pn.train_pass(params, 2 * x, y))


def test_read_only_inputs_and_params_still_work():
    params = pn.init(small_cnn(), 0)
    for _, leaf in tree_items(params):
        leaf.flags.writeable = False
    x, y = batch(4)
    x.flags.writeable = False
    before = x.copy()
    ws = pn.Workspace()
    results = [pn.train_pass(params, x, y, workspace=ws) for _ in range(2)]
    assert_passes_equal(*results)
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------- one pass at a time


def test_a_workspace_in_use_is_refused():
    params = pn.init(small_cnn(), 0)
    x, y = batch(3)
    ws = pn.Workspace()
    ws.begin_pass()  # as a pass running in another thread, or inside a layer, would
    for call in (pn.train_pass, pn.loss_and_grads, pn.grads):
        with pytest.raises(ValueError, match=r"in use by another pass.*own purenn.Workspace"):
            call(params, x, y, workspace=ws)
    with pytest.raises(ValueError, match="cannot release a Workspace while a pass is using it"):
        ws.release()
    ws.end_pass()
    assert_passes_equal(pn.train_pass(params, x, y, workspace=ws), pn.train_pass(params, x, y))


def test_a_failed_pass_gives_the_workspace_back():
    spec = pn.Network((2, 9, 8), [pn.Conv2D(2, 3), pn.Flatten(), WsWrongShape()], loss="mse")
    params = pn.init(spec, 0)
    x, _ = batch(2)
    y = np.zeros((2, 2 * 7 * 6), np.float32)
    ws = pn.Workspace()
    with pytest.raises(ValueError, match=r"wswrongshape_0 \(WsWrongShape\)\.forward returned"):
        pn.train_pass(params, x, y, workspace=ws)
    ws.release()  # not still marked as in use
    ws.begin_pass()
    ws.end_pass()


def test_workspace_must_be_a_workspace():
    params = pn.init(small_cnn(), 0)
    with pytest.raises(TypeError, match=r"workspace must be a purenn.Workspace or None; got dict"):
        pn.train_pass(params, *batch(2), workspace={})


def test_a_key_taken_twice_in_one_pass_gets_a_fresh_array():
    ws = pn.Workspace()
    ws.begin_pass()
    a = ws.empty("k", (3, 4), np.float32)
    b = ws.empty("k", (3, 4), np.float32)
    assert not np.shares_memory(a, b)
    assert ws.holds(a) and not ws.holds(b)
    ws.end_pass()
    ws.begin_pass()
    c = ws.empty("k", (2, 2), np.float64)  # smaller: the front of the same buffer
    assert np.shares_memory(a, c) and c.shape == (2, 2) and c.dtype == np.float64
    assert c.flags.c_contiguous and c.ctypes.data % 64 == 0
    scoped = ws.scoped("layer")
    z = scoped.zeros("z", (5,), np.float32)
    np.testing.assert_array_equal(z, 0)
    assert not np.shares_memory(z, ws.empty("z", (5,), np.float32))  # another key
    assert not np.shares_memory(z, ws.empty("layer.z", (5,), np.float32))  # taken: fresh
    ws.end_pass()


def test_release_frees_the_buffers():
    params = pn.init(small_cnn(), 0)
    x, y = batch(4)
    ws = pn.Workspace()
    pn.train_pass(params, x, y, workspace=ws)
    held = ws.nbytes
    assert held > 0 and f"{held:,} bytes" in repr(ws)
    ws.release()
    assert ws.nbytes == 0
    assert_passes_equal(pn.train_pass(params, x, y, workspace=ws), pn.train_pass(params, x, y))
    assert ws.nbytes == held  # made again on demand


# ---------------------------------------------------------------- who sees the workspace


def test_only_layers_declaring_uses_workspace_see_it():
    assert not WsProbe.uses_workspace and WsBufferProbe.uses_workspace
    spec = pn.Network(4, [WsProbe(), pn.Dense(3, "tanh"), WsBufferProbe(), WsProbe()], loss="mse")
    params = pn.init(spec, 0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32)
    ws = pn.Workspace()
    SEEN.clear()
    pn.train_pass(params, x, y, rng=np.random.default_rng(1), workspace=ws)
    calls = [(who, what) for who, what, _ in SEEN]
    assert calls == [
        ("WsProbe", "forward"),
        ("WsBufferProbe", "forward"),
        ("WsProbe", "forward"),
        ("WsProbe", "backward"),
        ("WsBufferProbe", "backward"),
        ("WsProbe", "backward"),
    ]
    for who, _, ctx in SEEN:
        assert isinstance(ctx, pn.Context) and ctx.train
        assert isinstance(ctx.rng, np.random.Generator)
        if who == "WsProbe":
            assert ctx.workspace is None
        else:
            assert ctx.workspace is not None and ctx.workspace is not ws  # scoped to the layer
    assert [ctx.need_dx for _, _, ctx in SEEN[:3]] == [False, True, True]  # the first: no dx
    assert ws.nbytes > 0  # WsBufferProbe's buffers
    # without a workspace, the layer that declares it gets fresh arrays, the others None
    SEEN.clear()
    pn.train_pass(params, x, y)
    for who, _, ctx in SEEN:
        assert (ctx.workspace is None) == (who == "WsProbe")
        assert ctx.rng is None
    # evaluation passes: train False, no rng even if one is given
    SEEN.clear()
    pn.forward(params, x, rng=np.random.default_rng(1))
    assert [who for who, _, _ in SEEN] == ["WsProbe", "WsBufferProbe", "WsProbe"]
    for who, _, ctx in SEEN:
        assert not ctx.train and ctx.rng is None
        assert (ctx.workspace is None) == (who == "WsProbe")


# ---------------------------------------------------------------- fit


def test_fit_matches_a_hand_written_loop_with_a_workspace():
    spec = small_cnn()
    x, y = batch(20, seed=3)
    optimizer = pn.optim.adam(1e-2)
    fitted, history = pn.fit(
        pn.init(spec, 0), (x, y), optimizer=optimizer, epochs=2, batch_size=8, rng=0, verbose=0
    )

    params = pn.init(spec, 0)
    state = optimizer.init(params)
    rng, ws = np.random.default_rng(0), pn.Workspace()
    losses = []
    for _ in range(2):
        total = 0.0
        for xb, yb in batches(x, y, 8, rng):
            result = pn.train_pass(params, xb, yb, rng=rng, workspace=ws)
            total += result.loss * xb.shape[0]
            params, state = optimizer.update(result.grads, state, params)
        losses.append(total / x.shape[0])
    assert ws.nbytes > 0
    assert_trees_equal(fitted, params)
    assert history["train_loss"] == losses
