"""fit's callbacks: history values, stops, step hooks, read-only params, the
built-ins (ReduceLROnPlateau, EarlyStopping, Snapshots, LayerDiagnostics) and
exact resume of a run whose learning rate a callback lowered."""

from __future__ import annotations

import numpy as np
import pytest

import purenn
import purenn.datasets
from purenn import callbacks as C
from purenn import optim
from purenn import schedules as S


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[2, 0, 0, 1, 0], [0, 2, 0, 0, 1], [0, 0, 2, 1, 1]], dtype=np.float64)
    return (centres[y] + rng.normal(scale=1.2, size=(n, 5))).astype(np.float32), y


def model(dropout=0.2):
    layers = [purenn.Dense(16)]
    if dropout:
        layers.append(purenn.Dropout(dropout))
    layers.append(purenn.Dense(3, "softmax"))
    return purenn.init(purenn.Network(5, layers), rng=3)


def train(callbacks=None, epochs=4, opt=None, **kw):
    x, y = blobs()
    kw.setdefault("val", (x[200:], y[200:]))
    return purenn.fit(
        model(), (x[:200], y[:200]), optimizer=opt or optim.adam(0.01), epochs=epochs,
        batch_size=32, rng=0, verbose=0, callbacks=callbacks, **kw,
    )  # fmt: skip


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def test_no_callbacks_and_empty_list_give_the_same_bits():
    p0, h0 = train(None)
    p1, h1 = train([])
    assert purenn.tree_equal(p0, p1) and without_seconds(h0) == without_seconds(h1)


def test_values_are_added_per_epoch_and_see_the_params_and_history():
    calls = []

    def w_norm(epoch, params, history):
        calls.append((epoch, len(history["epoch"]), history["train_loss"][-1]))
        return {"w_norm": np.float32(np.linalg.norm(params["dense_0"]["w"]))}

    params, history = train([w_norm])
    assert history["epoch"] == [1, 2, 3, 4]
    assert [c[:2] for c in calls] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert [c[2] for c in calls] == history["train_loss"]
    assert all(type(v) is float for v in history["w_norm"])  # numpy scalars become floats
    assert history["w_norm"][-1] == pytest.approx(float(np.linalg.norm(params["dense_0"]["w"])))
    p_plain, _ = train(None)
    assert purenn.tree_equal(params, p_plain)  # watching changes nothing


def test_params_are_read_only_and_the_history_is_a_copy():
    def vandal(epoch, params, history):
        with pytest.raises(ValueError, match="read-only"):
            params["dense_0"]["w"][0, 0] = 1.0
        history["train_loss"].clear()
        history["epoch"] = "gone"

    _, history = train([vandal], epochs=2)
    assert history["epoch"] == [1, 2] and len(history["train_loss"]) == 2


def test_a_key_given_on_some_epochs_only_is_padded_with_none():
    def odd(epoch, params, history):
        return {"odd": epoch} if epoch % 2 else None

    def late(epoch, params, history):
        return {"late": "x"} if epoch >= 3 else {}

    _, history = train([odd, late])
    assert history["odd"] == [1, None, 3, None]
    assert history["late"] == [None, None, "x", "x"]


def test_a_later_callback_sees_an_earlier_ones_value_and_can_stop():
    def acc_gap(epoch, params, history):
        return {"gap": history["train_accuracy"][-1] - history["val_accuracy"][-1]}

    def stop_at_3(epoch, params, history):
        assert "gap" in history and len(history["gap"]) == epoch
        return C.Feedback(stop="enough") if epoch == 3 else None

    _, history = train([acc_gap, stop_at_3], epochs=10)
    assert history["epoch"] == [1, 2, 3]
    assert history["stopped_early"] is True and history["stop_reason"] == "enough"


def test_step_hooks_run_after_every_update_average_values_and_can_stop():
    class Counter:
        def __init__(self):
            self.seen = []

        def on_step(self, info):
            assert info.params_before is not info.params
            with pytest.raises(ValueError, match="read-only"):
                info.grads["dense_0"]["w"][...] = 0
            self.seen.append((info.epoch, info.step))
            return {"step_no": info.step}

        def __call__(self, epoch, params, history):
            return None

    counter = Counter()
    _, history = train([counter], epochs=2)
    steps = -(-200 // 32)
    assert counter.seen == [(e, s) for e in (1, 2) for s in range(1, steps + 1)]
    assert history["step_no"] == [pytest.approx((steps + 1) / 2)] * 2

    class StopAt:
        def on_step(self, info):
            return C.Feedback(stop="step budget") if info.step == 2 else None

        def __call__(self, epoch, params, history):
            return None

    params, history = train([StopAt()], epochs=5)
    assert history["epoch"] == [1]
    assert history["stop_reason"] == "step budget (epoch 1, step 2)"
    # exactly two updates were applied: the same as a bare loop stopped after two batches
    x, y = blobs()
    opt, rng, p = optim.adam(0.01), np.random.default_rng(0), model()
    state = opt.init(p)
    stream = purenn.datasets.batches(x[:200], y[:200], 32, rng)
    for xb, yb in (next(stream), next(stream)):
        _, g = purenn.loss_and_grads(p, xb, yb, rng=rng)
        p, state = opt.update(g, state, p)
    assert purenn.tree_equal(params, p)


def test_bad_callbacks_and_values_are_refused_clearly():
    with pytest.raises(TypeError, match="list of callables"):
        train(lambda e, p, h: None)
    with pytest.raises(TypeError, match="must be callable"):
        train([42])
    with pytest.raises(TypeError, match="returned list"):
        train([lambda e, p, h: [1]])
    with pytest.raises(ValueError, match="which fit writes itself"):
        train([lambda e, p, h: {"val_loss": 1.0}])
    with pytest.raises(ValueError, match="without '/'"):
        train([lambda e, p, h: {"a/b": 1.0}])
    with pytest.raises(TypeError, match="reduce an array to a number"):
        train([lambda e, p, h: {"w": np.zeros(3)}])
    with pytest.raises(ValueError, match="given twice"):
        train([lambda e, p, h: {"k": 1}, lambda e, p, h: {"k": 2}])
    with pytest.raises(ValueError, match=r"Feedback.lr_factor must be .* > 0 or None; got 0.0"):
        C.Feedback(lr_factor=0.0)


class _UserOptimizer:
    """An optimizer of the protocol without an lr field."""

    def init(self, params):
        return None

    def update(self, grads, state, params):
        return purenn.sgd_step(params, grads, 0.1), state


def test_lr_changes_need_an_optimizer_with_an_lr_field():
    with pytest.raises(TypeError, match="has no lr field"):
        train([C.ReduceLROnPlateau(patience=1)], opt=_UserOptimizer())
    with pytest.raises(TypeError, match="has no lr field"):
        train([lambda e, p, h: C.Feedback(lr_factor=0.5)], opt=_UserOptimizer())


def test_lr_factor_scales_float_and_schedule_learning_rates():
    def halve_after_2(epoch, params, history):
        return C.Feedback(lr_factor=0.5) if epoch == 2 else None

    _, history = train([halve_after_2], opt=optim.sgd(0.1))
    assert history["lr"] == [0.1, 0.1, 0.05, 0.05]
    assert history["lr_scale"] == [1.0, 0.5, 0.5, 0.5]
    sched = S.StepDecay(0.1, step_size=7, factor=0.5)
    _, history = train([halve_after_2], opt=optim.sgd(sched))
    steps = 7  # ceil(200 / 32)
    expected = [sched(e * steps - 1) * (0.5 if e > 2 else 1.0) for e in (1, 2, 3, 4)]
    assert history["lr"] == pytest.approx(expected, rel=1e-12)


def _plateau_values(values):
    """A history whose val_loss follows ``values`` and whose lr is 1.0 throughout."""
    return {"epoch": list(range(1, len(values) + 1)), "val_loss": list(values), "lr": [1.0] * 9}


def test_reduce_lr_on_plateau_follows_keras_rule():
    cb = C.ReduceLROnPlateau(patience=2, factor=0.5, cooldown=1)
    seq = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.8]
    factors = [cb(len(v), {}, _plateau_values(v)).lr_factor for v in (seq[:i] for i in range(1, 9))]
    # waits 2 epochs (0.95, 0.96) -> drop at epoch 4; as in Keras, the cooldown epoch 5
    # ends its cooldown and counts a wait, so epoch 6 drops again; epoch 8 improves
    assert factors == [None, None, None, 0.5, None, 0.5, None, None]
    floor = C.ReduceLROnPlateau(patience=1, factor=0.1, min_lr=0.5)
    assert floor(2, {}, _plateau_values([1.0, 1.0])).lr_factor == pytest.approx(0.5)
    hist = _plateau_values([1.0, 1.0, 1.0])
    hist["lr"] = [0.5, 0.5, 0.5]
    assert floor(3, {}, hist).lr_factor is None  # at the floor already
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau.factor must be a float in \(0, 1\)"):
        C.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="pass val=\\(x, y\\)"):
        train([C.ReduceLROnPlateau()], val=None)


def test_reduce_lr_run_resumes_bit_exactly_from_a_checkpoint(tmp_path):
    kw = {"opt": optim.adam(0.05)}
    cbs = [C.ReduceLROnPlateau(monitor="train_loss", patience=1, factor=0.5, min_delta=0.05)]
    straight, h_straight = train(cbs, epochs=8, **kw)
    assert min(h_straight["lr_scale"]) < 1.0, "the test needs at least one drop"
    train(cbs, epochs=4, checkpoint_dir=tmp_path, **kw)
    ck = purenn.load(tmp_path / "last.npz")
    assert ck.extra["history"]["lr_scale"] == h_straight["lr_scale"][:4]
    x, y = blobs()
    resumed, h_resumed = purenn.fit(
        ck.params, (x[:200], y[:200]), optimizer=optim.adam(0.05), epochs=8, batch_size=32,
        val=(x[200:], y[200:]), verbose=0, callbacks=cbs, **ck.resume_kwargs(),
    )  # fmt: skip
    assert purenn.tree_equal(resumed, straight)
    assert without_seconds(h_resumed) == without_seconds(h_straight)


def test_early_stopping_callback_matches_fits_patience():
    kw = {"opt": optim.adam(0.05), "epochs": 40}
    p_fit, h_fit = train(None, patience=2, min_delta=0.01, **kw)
    # fit's min_delta decides which epoch is best (the params restore_best returns)
    stopper = C.EarlyStopping("val_loss", patience=2, min_delta=0.01)
    p_cb, h_cb = train([stopper], min_delta=0.01, **kw)
    assert h_fit["stopped_early"] and len(h_fit["epoch"]) < 40
    assert without_seconds(h_cb) == without_seconds(h_fit)
    assert purenn.tree_equal(p_cb, p_fit)
    _, h_acc = train([C.EarlyStopping("train_accuracy", patience=1)], **kw)
    assert h_acc["stopped_early"] and "train_accuracy did not improve" in h_acc["stop_reason"]


def test_snapshots_are_written_and_read_back(tmp_path):
    snaps = C.Snapshots(tmp_path / "snaps", every=2)
    snaps.record(0, model())
    train([snaps], epochs=5)
    loaded = C.load_snapshots(tmp_path / "snaps")
    assert [e for e, _ in loaded] == [0, 2, 4]
    assert purenn.tree_equal(loaded[0][1], model())
    with pytest.raises(FileNotFoundError, match=r"no snapshot_NNNN\.npz"):
        C.load_snapshots(tmp_path / "empty")


def test_layer_diagnostics_record_norms_ratios_and_dead_units():
    x, _ = blobs()
    _, history = train([C.LayerDiagnostics(probe=x[:64])], epochs=2)
    for key in ("dense_0.grad_norm", "dense_1.grad_norm", "dense_0.update_ratio"):
        assert len(history[key]) == 2 and all(v > 0 for v in history[key]), key
    assert all(0 < v < 1 for v in history["dense_0.update_ratio"])
    assert "dense_0.dead_fraction" in history and "dense_1.dead_fraction" not in history
    # a unit whose weights and bias push it below zero everywhere is dead
    params = model(dropout=0)
    w = params["dense_0"]["w"].copy()
    b = params["dense_0"]["b"].copy()
    w[:, :4], b[:4] = -1.0, -100.0
    dead = {**params, "dense_0": {"w": w, "b": b}}
    ((name, frac),) = C.dead_fractions(dead, np.abs(x[:50]))
    assert name == "dense_0" and frac >= 4 / 16


def test_dead_fractions_and_diagnostics_on_batchnorm_and_residual_networks():
    """Evaluation mode as forward runs it: BatchNorm with its running statistics,
    a container as one layer (its output after the join)."""
    spec = purenn.Network(
        8,
        [
            purenn.Dense(16, "linear"),
            purenn.BatchNorm(activation="relu"),
            purenn.Residual([purenn.Dense(16, "relu"), purenn.Dense(16, "linear")]),
            purenn.Dense(3, "softmax"),
        ],
    )
    params = purenn.init(spec, 0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    params = purenn.sgd_step(params, purenn.grads(params, x, y), 0.1)  # BatchNorm statistics
    outputs = purenn.layer_outputs(params, x)
    assert [name for name, _ in outputs] == ["dense_0", "batchnorm_0", "residual_0", "dense_1"]
    assert [o.shape for _, o in outputs] == [(40, 16)] * 3 + [(40, 3)]
    np.testing.assert_array_equal(outputs[-1][1], purenn.logits(params, x))
    fractions = dict(C.dead_fractions(params, x))
    assert list(fractions) == ["dense_0", "batchnorm_0", "residual_0"]
    assert fractions["dense_0"] == 0.0 and all(0 <= f <= 1 for f in fractions.values())
    _, history = purenn.fit(
        params,
        (x, y),
        optimizer=optim.sgd(0.1),
        epochs=2,
        batch_size=20,
        rng=0,
        verbose=0,
        callbacks=[C.LayerDiagnostics(probe=x[:16])],
    )
    assert len(history["batchnorm_0.dead_fraction"]) == 2
    assert len(history["residual_0.grad_norm"]) == 2


def test_dead_fractions_refuses_an_empty_probe():
    with pytest.raises(ValueError, match="at least one sample"):
        C.dead_fractions(model(), np.zeros((0, 5), np.float32))


def test_diagnostics_off_costs_nothing_and_changes_nothing():
    x, _ = blobs()
    p_diag, h_diag = train([C.LayerDiagnostics(probe=x[:64])], epochs=2)
    p_plain, h_plain = train(None, epochs=2)
    assert purenn.tree_equal(p_diag, p_plain)
    assert h_diag["train_loss"] == h_plain["train_loss"]
    assert not any("." in k for k in h_plain)


def test_repeated_cuts_of_a_schedule_stay_one_scaled_schedule():
    opt = optim.sgd(S.CosineDecay(0.1, 100))
    for _ in range(200):  # far past MAX_TREE_DEPTH cuts: to_dict and save still work
        opt = C.scaled_optimizer(opt, 0.9)
    assert isinstance(opt.lr, S.Scaled) and isinstance(opt.lr.after, S.CosineDecay)
    assert opt.lr.scale == pytest.approx(0.9**200)
    assert S.from_dict(S.to_dict(opt.lr)) == opt.lr


def test_read_only_refuses_a_leaf_that_is_not_an_array():
    with pytest.raises(TypeError, match=r"tree of NumPy arrays; got a leaf 1 \(int\)"):
        C.read_only({"a": 1})
