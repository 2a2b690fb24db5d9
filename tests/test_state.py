"""How BatchNorm's running statistics flow through the pure functions.

One test (or a few) per promise of issue 16, item 2: the statistics are never
treated as weights (optimizers, clipping, weight decay, sgd_step); they are
returned, never written in place; checkpoints keep them and resuming is
bit-exact; the card's loop keeps them up to date, and evaluating statistics
never updated raises an error that says what to call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import purenn as pn
from purenn.optim import clip_by_global_norm, global_norm

ROOT = Path(__file__).resolve().parent.parent


def bn_mlp() -> pn.Network:
    return pn.Network(
        4,
        [
            pn.Dense(8, "linear"),
            pn.BatchNorm(activation="relu"),
            pn.Residual([pn.Dense(8, "linear"), pn.BatchNorm()], activation="relu"),
            pn.Dense(3, "softmax"),
        ],
    )


def data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=1.5, scale=2.0, size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 1.5).astype(np.int64) + (x[:, 1] > 1.5)
    return x, y


def test_grads_carry_the_new_state_and_sgd_step_applies_it():
    """The card's loop keeps the statistics up to date."""
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    before = params[pn.STATE_KEY]
    for step in range(1, 4):
        g = pn.grads(params, x, y)
        assert int(g[pn.STATE_KEY]["batchnorm_0"]["count"]) == step
        params = pn.sgd_step(params, g, 0.1)
        assert params[pn.STATE_KEY] is g[pn.STATE_KEY]  # replaced, not combined
    state = params[pn.STATE_KEY]
    assert int(state["residual_0"]["batchnorm_0"]["count"]) == 3
    assert not np.array_equal(state["batchnorm_0"]["mean"], before["batchnorm_0"]["mean"])
    pn.predict(params, x)  # evaluation works now


def test_the_first_batch_statistics_follow_pytorchs_update():
    """mean <- 0.9 * 0 + 0.1 * batch mean; var <- 0.9 * 1 + 0.1 * unbiased batch variance."""
    params = pn.init(bn_mlp(), 0, dtype=np.float64)
    x, y = data()
    x = x.astype(np.float64)
    z = x @ params["dense_0"]["w"] + params["dense_0"]["b"]
    g = pn.grads(params, x, y)
    st = g[pn.STATE_KEY]["batchnorm_0"]
    np.testing.assert_allclose(st["mean"], 0.1 * z.mean(0), rtol=1e-12)
    np.testing.assert_allclose(st["var"], 0.9 + 0.1 * z.var(0, ddof=1), rtol=1e-12)


def test_evaluation_before_any_update_names_what_to_call():
    params = pn.init(bn_mlp(), 0)
    x, _ = data()
    with pytest.raises(ValueError, match=r"never updated.*sgd_step.*fit.*tree_with_state"):
        pn.predict(params, x)


@pytest.mark.parametrize(
    "opt",
    [
        pn.optim.sgd(0.1),
        pn.optim.sgd(0.1, momentum=0.9, weight_decay=0.5, clip_norm=1e-3),
        pn.optim.rmsprop(1e-2, momentum=0.5, weight_decay=0.5),
        pn.optim.adam(1e-2, weight_decay=0.5, clip_norm=1e-3),
        pn.optim.adamw(1e-2, weight_decay=0.5),
    ],
    ids=lambda o: repr(o)[:40],
)
def test_no_optimizer_treats_the_state_as_weights(opt):
    """Huge weight decay and tight clipping change the weights; the state comes out
    exactly as the training pass computed it, and no moment tree holds a copy."""
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    state = opt.init(params)
    for _ in range(3):
        g = pn.grads(params, x, y)
        new, state = opt.update(g, state, params)
        assert new[pn.STATE_KEY] is g[pn.STATE_KEY]
        assert not pn.tree_allclose(
            {k: v for k, v in new.items() if k != pn.STATE_KEY},
            {k: v for k, v in params.items() if k != pn.STATE_KEY},
        )
        params = new
    for field in ("momentum", "mu", "nu"):
        moments = getattr(state, field, None)
        if moments is not None:
            assert pn.STATE_KEY not in moments


def test_norms_clipping_and_leaves_never_see_the_state():
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    g = pn.grads(params, x, y)
    without = {k: v for k, v in g.items() if k != pn.STATE_KEY}
    assert global_norm(g) == global_norm(without)
    clipped = clip_by_global_norm(g, 1e-6)
    assert clipped[pn.STATE_KEY] is g[pn.STATE_KEY]
    assert len(pn.tree_leaves(g)) == len(pn.tree_leaves(without))
    assert [p for p, _ in pn.tree.state_items(g)] == [
        "batchnorm_0/count",
        "batchnorm_0/mean",
        "batchnorm_0/var",
        "residual_0/batchnorm_0/count",
        "residual_0/batchnorm_0/mean",
        "residual_0/batchnorm_0/var",
    ]
    zeros = pn.tree_zeros_like(params)
    assert pn.STATE_KEY not in zeros
    pn.tree_check_like(zeros, params, "moments")  # a tree without state matches
    kept = pn.sgd_step(params, zeros, 0.1)  # gradients without state keep params' state
    assert kept[pn.STATE_KEY] is params[pn.STATE_KEY]


def test_the_state_is_returned_never_written_in_place():
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    params = pn.sgd_step(params, pn.grads(params, x, y), 0.1)

    def frozen(tree):
        out = {}
        for k, v in tree.items():
            if isinstance(v, dict):
                out[k] = frozen(v)
            elif isinstance(v, np.ndarray):
                v = v.copy()
                v.flags.writeable = False
                out[k] = v
            else:
                out[k] = v
        return out

    ro = frozen(params)
    copy = frozen(params)
    ws = pn.Workspace()
    g = pn.grads(ro, x, y, workspace=ws)
    new = pn.sgd_step(ro, g, 0.1)
    opt = pn.optim.adam(1e-3)
    new2, _ = opt.update(g, opt.init(ro), ro)
    pn.forward(ro, x)
    assert pn.tree_equal(ro, copy)  # state included
    assert new[pn.STATE_KEY] is g[pn.STATE_KEY] and new2[pn.STATE_KEY] is g[pn.STATE_KEY]
    assert not pn.tree_equal(new, ro)


def test_mismatched_state_in_grads_is_refused():
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    g = pn.grads(params, x, y)
    bad = {**g, pn.STATE_KEY: {**g[pn.STATE_KEY], "batchnorm_0": {"mean": np.zeros(2)}}}
    with pytest.raises(ValueError, match=r"grads does not match params.*'state/batchnorm_0'"):
        pn.sgd_step(params, bad, 0.1)
    with pytest.raises(ValueError, match=r"'state/batchnorm_0'"):
        pn.optim.sgd(0.1).update(bad, pn.optim.sgd(0.1).init(params), params)
    no_state = {k: v for k, v in params.items() if k != pn.STATE_KEY}
    with pytest.raises(
        ValueError, match=r"'state' \(the state of \['batchnorm_0', 'residual_0'\]\)"
    ):
        pn.forward(no_state, x)


def test_tree_equal_compares_states():
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    after = pn.sgd_step(params, pn.grads(params, x, y), 0.0)  # lr 0: only the state moved
    assert pn.tree_equal(after, after)
    assert not pn.tree_equal(after, params)
    assert not pn.tree_allclose(after, params)


class _Ignores:
    """A user's optimizer that knows nothing of state (returns its own tree_map)."""

    def init(self, params):
        return None

    def update(self, grads, state, params):
        return pn.tree_map(lambda p, g: p - 0.05 * g, params, grads), None


def test_fit_carries_the_state_whatever_the_optimizer_does():
    params = pn.init(bn_mlp(), 0)
    x, y = data()
    out, history = pn.fit(
        params, (x, y), optimizer=_Ignores(), epochs=2, batch_size=20, rng=0, val=(x, y), verbose=0
    )
    assert int(out[pn.STATE_KEY]["batchnorm_0"]["count"]) == 6
    assert history["val_accuracy"][-1] is not None


@pytest.mark.slow
def test_checkpoints_keep_the_state_and_resuming_is_bit_exact(tmp_path):
    params = pn.init(bn_mlp(), 0)
    x, y = data(120)
    kwargs = dict(optimizer=pn.optim.adam(1e-2), batch_size=16, val=(x, y), verbose=0)
    full, _ = pn.fit(params, (x, y), epochs=4, rng=1, checkpoint_dir=tmp_path / "a", **kwargs)
    ck = pn.load(tmp_path / "a" / "epoch_0002.npz")
    assert int(ck.params[pn.STATE_KEY]["batchnorm_0"]["count"]) == 2 * 8
    resumed, _ = pn.fit(ck.params, (x, y), epochs=4, **ck.resume_kwargs(), **kwargs)
    assert pn.tree_equal(resumed, full)
    last = pn.load(tmp_path / "a" / "last.npz")
    np.testing.assert_array_equal(pn.forward(last.params, x), pn.forward(full, x))


@pytest.mark.slow
def test_a_trained_batchnorm_network_predicts_the_same_in_a_fresh_process(tmp_path):
    """Trained a few epochs, saved, loaded by another Python process: same outputs."""
    spec = pn.Network(
        (1, 6, 6),
        [
            pn.Conv2D(4, 3, padding="same", activation="linear"),
            pn.BatchNorm(activation="relu"),
            pn.Residual(
                [pn.Conv2D(4, 3, padding="same", activation="linear"), pn.BatchNorm()],
                activation="relu",
            ),
            pn.GlobalAvgPool2D(),
            pn.Dense(2, "softmax"),
        ],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].mean(axis=(1, 2)) > 0).astype(np.int64)
    params, _ = pn.fit(
        pn.init(spec, 0),
        (x, y),
        optimizer=pn.optim.adam(1e-2),
        epochs=3,
        batch_size=16,
        rng=0,
        verbose=0,
    )
    pn.save(tmp_path / "bn.npz", params)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np, purenn as pn
        ck = pn.load({str(tmp_path / "bn.npz")!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, pn.forward(ck.params, x))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    theirs = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(theirs, pn.forward(params, x))
    assert int(params[pn.STATE_KEY]["residual_0"]["batchnorm_0"]["count"]) == 12
