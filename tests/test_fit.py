"""fit: history format, determinism, equivalence with a bare loop, early stopping,
NaN handling, checkpoints and exact resume (in a fresh process)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import attrs
import numpy as np
import pytest

import purenn
from purenn import optim, training
from purenn import schedules as S
from purenn.preprocessing import batches

LIST_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def blobs(n=240, seed=0, dtype=np.float32):
    """Three Gaussian blobs in 5-d: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[2, 0, 0, 1, 0], [0, 2, 0, 0, 1], [0, 0, 2, 1, 1]], dtype=np.float64)
    x = (centres[y] + rng.normal(scale=0.8, size=(n, 5))).astype(dtype)
    return x, y


def model(dtype=np.float32, dropout=0.2):
    layers = [purenn.Dense(16)]
    if dropout:
        layers.append(purenn.Dropout(dropout))
    layers.append(purenn.Dense(3, "softmax"))
    return purenn.init(purenn.Network(5, layers), rng=3, dtype=dtype)


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def test_history_format_is_plain_json_data():
    x, y = blobs()
    _, history = purenn.fit(
        model(), (x[:200], y[:200]), optimizer=optim.adam(0.01), epochs=3, batch_size=32,
        rng=0, val=(x[200:], y[200:]), verbose=0,
    )  # fmt: skip
    assert set(history) == {*LIST_KEYS, "best_epoch", "stopped_early", "stop_reason"}
    assert history["epoch"] == [1, 2, 3]
    for key in LIST_KEYS:
        assert len(history[key]) == 3
        assert all(type(v) is (int if key == "epoch" else float) for v in history[key]), key
    assert history["lr"] == [0.01] * 3
    assert history["best_epoch"] in (1, 2, 3) and history["stopped_early"] is False
    assert history["stop_reason"] is None
    assert json.loads(json.dumps(history)) == history
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.8


def test_without_val_the_val_entries_are_none():
    x, y = blobs()
    _, history = purenn.fit(
        model(), (x, y), optimizer=optim.sgd(0.1), epochs=2, batch_size=50, rng=1, verbose=0
    )
    assert history["val_loss"] == [None, None] and history["val_accuracy"] == [None, None]
    assert history["best_epoch"] is None


def test_running_train_metrics_are_batch_weighted_means():
    """One epoch of SGD with lr=0: params never move, so the running mean equals the
    evaluation of the whole set (dropout off to make both passes the same)."""
    x, y = blobs(n=101)
    params = model(np.float64, dropout=0)
    x = x.astype(np.float64)
    _, history = purenn.fit(
        params, (x, y), optimizer=optim.sgd(0.0), epochs=1, batch_size=25, rng=0, verbose=0
    )
    result = purenn.metrics.evaluate(params, x, y)
    assert history["train_loss"][0] == pytest.approx(result["loss"], rel=1e-12)
    assert history["train_accuracy"][0] == result["accuracy"]


def test_same_seed_same_history_and_params_different_seed_differs():
    x, y = blobs()
    kwargs = dict(
        optimizer=optim.adam(S.CosineDecay(0.01, 30)),
        epochs=3,
        batch_size=16,
        val=(x[200:], y[200:]),
        verbose=0,
    )
    p1, h1 = purenn.fit(model(), (x[:200], y[:200]), rng=5, **kwargs)
    p2, h2 = purenn.fit(model(), (x[:200], y[:200]), rng=np.random.default_rng(5), **kwargs)
    p3, h3 = purenn.fit(model(), (x[:200], y[:200]), rng=6, **kwargs)
    assert purenn.tree_equal(p1, p2) and without_seconds(h1) == without_seconds(h2)
    assert not purenn.tree_equal(p1, p3) and h1["train_loss"] != h3["train_loss"]


def noisy(xb, rng):
    return xb + rng.normal(0.0, 0.1, xb.shape).astype(xb.dtype)


def test_augment_is_applied_per_batch_with_the_run_rng():
    x, y = blobs()
    params0 = model()
    params, _ = purenn.fit(
        params0,
        (x, y),
        optimizer=optim.sgd(0.05),
        epochs=2,
        batch_size=32,
        rng=9,
        augment=noisy,
        verbose=0,
    )
    rng, p = np.random.default_rng(9), params0
    for _ in range(2):
        for xb, yb in batches(x, y, 32, rng):
            _, g = purenn.loss_and_grads(p, noisy(xb, rng), yb, rng=rng)
            p = purenn.sgd_step(p, g, 0.05)
    assert purenn.tree_equal(params, p)


def test_augment_must_keep_shape_and_dtype():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"augment must return an array of the batch's shape"):
        purenn.fit(
            model(),
            (x, y),
            optimizer=optim.sgd(0.05),
            epochs=1,
            batch_size=32,
            rng=0,
            augment=lambda xb, rng: xb.astype(np.float64),
            verbose=0,
        )
    with pytest.raises(TypeError, match="augment must be a function"):
        purenn.fit(
            model(),
            (x, y),
            optimizer=optim.sgd(0.05),
            epochs=1,
            batch_size=32,
            rng=0,
            augment="flip",
            verbose=0,
        )


def test_fit_with_sgd_equals_a_bare_loop_bit_for_bit():
    x, y = blobs()
    params0 = model()
    params, _ = purenn.fit(
        params0, (x, y), optimizer=optim.sgd(0.05), epochs=2, batch_size=32, rng=9, verbose=0
    )
    rng, p = np.random.default_rng(9), params0
    for _ in range(2):
        for xb, yb in batches(x, y, 32, rng):
            _, g = purenn.loss_and_grads(p, xb, yb, rng=rng)
            p = purenn.sgd_step(p, g, 0.05)
    assert purenn.tree_equal(params, p)


def test_inputs_are_not_mutated_and_read_only_inputs_work():
    x, y = blobs()
    params = model()
    copies = (x.copy(), y.copy(), purenn.tree_map(np.copy, params))
    for a in (x, y, *purenn.tree_leaves(params)):
        a.flags.writeable = False
    out, _ = purenn.fit(
        params, (x, y), optimizer=optim.sgd(0.1, momentum=0.9), epochs=1, batch_size=64,
        rng=0, val=(x, y), verbose=0,
    )  # fmt: skip
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(y, copies[1])
    assert purenn.tree_equal(params, copies[2]) and not purenn.tree_equal(out, params)


def test_one_hot_labels_and_float64_work():
    x, y = blobs(dtype=np.float64)
    params, history = purenn.fit(
        model(np.float64), (x, np.eye(3)[y]), optimizer=optim.rmsprop(0.01), epochs=2,
        batch_size=40, rng=0, val=(x, np.eye(3)[y]), verbose=0,
    )  # fmt: skip
    assert {leaf.dtype for leaf in purenn.tree_leaves(params)} == {np.dtype(np.float64)}
    assert history["train_accuracy"][-1] > 0.5


def test_regression_has_no_accuracies():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    t = x @ rng.normal(size=(3, 2)).astype(np.float32)
    params = purenn.init(purenn.Network(3, [purenn.Dense(2, "linear")], "mse"), rng=0)
    _, history = purenn.fit(
        params, (x, t), optimizer=optim.sgd(0.1), epochs=3, batch_size=16, rng=0,
        val=(x, t), verbose=0,
    )  # fmt: skip
    assert history["train_accuracy"] == [None] * 3 and history["val_accuracy"] == [None] * 3
    assert history["val_loss"][-1] < history["val_loss"][0]


# --------------------------------------------------------------------------- early stopping


def misleading_val(x, y):
    """Validation labels rotated by one class: the better the fit, the worse val gets."""
    return x, (y + 1) % 3


def test_early_stopping_restores_the_best_params():
    x, y = blobs()
    kwargs = dict(optimizer=optim.adam(0.02), batch_size=32, rng=2, verbose=0)
    val = misleading_val(x, y)
    params, history = purenn.fit(model(), (x, y), epochs=20, val=val, patience=2, **kwargs)
    assert history["stopped_early"] is True
    best = history["best_epoch"]
    assert history["epoch"][-1] == best + 2
    assert history["val_loss"][best - 1] == min(history["val_loss"])
    assert "val_loss did not improve for 2 epochs" in history["stop_reason"]
    # the returned params are those after the best epoch, bit for bit
    at_best, _ = purenn.fit(model(), (x, y), epochs=best, val=val, restore_best=False, **kwargs)
    assert purenn.tree_equal(params, at_best)
    last, h = purenn.fit(
        model(), (x, y), epochs=20, val=val, patience=2, restore_best=False, **kwargs
    )
    assert not purenn.tree_equal(last, params) and h["epoch"] == history["epoch"]


def test_monitor_val_accuracy_and_min_delta():
    x, y = blobs()
    _, history = purenn.fit(
        model(), (x[:200], y[:200]), optimizer=optim.adam(0.01), epochs=6, batch_size=32, rng=0,
        val=(x[200:], y[200:]), monitor="val_accuracy", patience=1, min_delta=1.0, verbose=0,
    )  # fmt: skip
    # nothing can improve accuracy by more than 1.0: stop after epoch 2, best epoch 1
    assert history["epoch"] == [1, 2] and history["best_epoch"] == 1
    assert history["stop_reason"].startswith("val_accuracy did not improve for 1 epoch:")


# --------------------------------------------------------------------------- NaN and bad input


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_diverging_loss_stops_with_a_clear_error_keeping_finite_params():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32) * 10
    t = (x @ rng.normal(size=(3, 2)).astype(np.float32)) * 10
    params = purenn.init(purenn.Network(3, [purenn.Dense(2, "linear")], "mse"), rng=0)
    with pytest.raises(purenn.NonFiniteLossError) as info:
        purenn.fit(
            params, (x, t), optimizer=optim.sgd(5.0), epochs=50, batch_size=8, rng=0, verbose=0
        )
    err = info.value
    assert isinstance(err, FloatingPointError)
    message = str(err)
    assert f"epoch {err.epoch}, step {err.step}/8" in message
    assert "learning rate" in message and "lower it" in message
    assert all(np.isfinite(leaf).all() for leaf in purenn.tree_leaves(err.params))
    assert math.isfinite(purenn.loss(err.params, x, t))
    assert len(err.history["epoch"]) == err.epoch - 1
    assert err.opt_state.count >= 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data_is_refused_before_training(bad, monkeypatch):
    x, y = blobs()
    x = x.copy()
    x[17, 3] = bad
    calls = []
    monkeypatch.setattr(training, "train_pass", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match=r"train x holds NaN or inf \(first at sample 17\)"):
        purenn.fit(model(), (x, y), optimizer=optim.sgd(0.1), epochs=1, batch_size=8, rng=0)
    with pytest.raises(ValueError, match="val x holds NaN or inf"):
        purenn.fit(
            model(), blobs(), optimizer=optim.sgd(0.1), epochs=1, batch_size=8, rng=0, val=(x, y)
        )
    assert calls == []


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(patience=2), ValueError, "needs validation data"),
        (dict(epochs=2, initial_epoch=3, history=None), ValueError, "must be >= initial_epoch"),
        (dict(monitor="loss"), ValueError, "monitor must be"),
        (dict(optimizer=0.1), TypeError, "optimizer must have init"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=1000, drop_last=True), ValueError, "leaves no batch"),
        (dict(rng=None), TypeError, "rng must be a numpy.random.Generator"),
        (dict(train=([1.0], [0])), TypeError, "x must be a NumPy array"),
        (dict(train="data"), TypeError, r"train must be a pair \(x, y\)"),
        (dict(min_delta=-1), ValueError, "min_delta"),
        (dict(min_delta=float("nan")), ValueError, "min_delta must be a finite float"),
        (dict(min_delta="0.1"), TypeError, "min_delta"),
        (dict(shuffle="no"), TypeError, "shuffle must be True or False"),
        (dict(drop_last=1), TypeError, "drop_last must be True or False"),
        (dict(patience=0, val=blobs()), ValueError, "patience"),
        (dict(epochs=2.5), TypeError, "epochs must be an int"),
    ],
)
def test_bad_arguments_are_refused(change, error, match):
    kwargs = dict(train=blobs(), optimizer=optim.sgd(0.1), epochs=1, batch_size=8, rng=0)
    kwargs.update(change)
    train = kwargs.pop("train")
    with pytest.raises(error, match=match):
        purenn.fit(model(), train, **kwargs)


def test_dtype_mismatch_is_refused():
    x, y = blobs(dtype=np.float64)
    with pytest.raises(TypeError, match="dtype"):
        purenn.fit(
            model(np.float32), (x, y), optimizer=optim.sgd(0.1), epochs=1, batch_size=8, rng=0
        )


# --------------------------------------------------------------------------- progress output


def test_verbose_zero_is_silent_and_verbose_one_prints_epoch_lines(capsys):
    x, y = blobs()
    kwargs = dict(optimizer=optim.sgd(0.1), epochs=2, batch_size=32, rng=0, val=(x, y))
    purenn.fit(model(), (x, y), verbose=0, **kwargs)
    assert capsys.readouterr() == ("", "")
    purenn.fit(model(), (x, y), verbose=1, **kwargs)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and "\r" not in err
    assert lines[0].startswith("epoch 1/2 | loss ") and "val loss" in lines[0]
    assert "ETA" in lines[0] and "ETA" not in lines[1]


def test_live_bar_appears_when_an_epoch_is_slow(capsys, monkeypatch):
    monkeypatch.setattr(training, "_LIVE_AFTER", 0.0)
    monkeypatch.setattr(training, "_LIVE_EVERY", 0.0)
    x, y = blobs()
    purenn.fit(model(), (x, y), optimizer=optim.sgd(0.1), epochs=1, batch_size=32, rng=0)
    err = capsys.readouterr().err
    assert "\repoch 1/1 [" in err and "8/8" in err
    assert err.rstrip("\n").splitlines()[-1].lstrip("\r ").startswith("epoch 1/1 | loss")


# --------------------------------------------------------------------------- checkpoints, resume


def test_periodic_checkpoints(tmp_path):
    x, y = blobs()
    opt = optim.sgd(0.1, momentum=0.9)
    params, history = purenn.fit(
        model(), (x, y), optimizer=opt, epochs=5, batch_size=32, rng=0,
        checkpoint_dir=tmp_path / "run", checkpoint_every=2, verbose=0,
    )  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["epoch_0002.npz", "epoch_0004.npz", "epoch_0005.npz", "last.npz"]
    last = purenn.load(tmp_path / "run" / "last.npz")
    assert purenn.tree_equal(last.params, params)
    assert last.extra["epoch"] == 5 and last.extra["optimizer"] == opt
    assert last.extra["opt_state"].count == 5 * 8
    assert without_seconds(last.extra["history"]) == without_seconds(history)
    assert purenn.load(tmp_path / "run" / "epoch_0002.npz").extra["history"]["epoch"] == [1, 2]


def test_resume_in_the_same_process_matches_a_straight_run(tmp_path):
    x, y = blobs()
    val = misleading_val(x, y)
    opt = optim.adamw(S.LinearWarmup(S.CosineDecay(0.02, 40), 5), clip_norm=5.0)
    kwargs = dict(optimizer=opt, batch_size=32, val=val, verbose=0)
    straight, h_straight = purenn.fit(model(), (x, y), epochs=6, rng=4, **kwargs)
    purenn.fit(model(), (x, y), epochs=3, rng=4, checkpoint_dir=tmp_path, **kwargs)
    ck = purenn.load(tmp_path / "last.npz")
    resumed, h_resumed = purenn.fit(ck.params, (x, y), epochs=6, **kwargs, **ck.resume_kwargs())
    assert purenn.tree_equal(resumed, straight)
    assert without_seconds(h_resumed) == without_seconds(h_straight)
    assert h_straight["best_epoch"] == 1  # the best params came from before the resume


def test_resuming_without_the_best_params_is_refused(tmp_path):
    x, y = blobs()
    kwargs = dict(optimizer=optim.sgd(0.1), batch_size=32, val=misleading_val(x, y), verbose=0)
    purenn.fit(model(), (x, y), epochs=3, rng=0, checkpoint_dir=tmp_path, **kwargs)
    resume = purenn.load(tmp_path / "last.npz").resume_kwargs()
    assert resume["best_params"] is not None
    resume["best_params"] = None
    with pytest.raises(ValueError, match="best_params were not given"):
        purenn.fit(model(), (x, y), epochs=4, **kwargs, **resume)
    history = resume["history"]
    snapshot = json.dumps(history)
    purenn.fit(model(), (x, y), epochs=4, restore_best=False, **kwargs, **resume)
    assert json.dumps(history) == snapshot  # the caller's history is copied, not extended


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import purenn
    from purenn import optim, schedules as S

    folder = sys.argv[1]
    data = np.load(folder + "/data.npz")
    x, y = data["x"], data["y"]
    ck = purenn.load(folder + "/last.npz")
    opt = optim.sgd(S.StepDecay(0.05, 10, 0.5), momentum=0.9, nesterov=True)
    params, history = purenn.fit(ck.params, (x, y), optimizer=opt, epochs=6, batch_size=24,
                                 val=(x[:50], y[:50]), restore_best=False, verbose=0,
                                 **ck.resume_kwargs())
    purenn.save(folder + "/resumed.npz", params, history=history)
    """
)


def test_six_epochs_equal_three_then_save_load_in_a_fresh_process_then_three(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    opt = optim.sgd(S.StepDecay(0.05, 10, 0.5), momentum=0.9, nesterov=True)
    kwargs = dict(optimizer=opt, batch_size=24, val=(x[:50], y[:50]), restore_best=False, verbose=0)
    straight, h_straight = purenn.fit(model(), (x, y), epochs=6, rng=11, **kwargs)
    purenn.fit(model(), (x, y), epochs=3, rng=11, checkpoint_dir=tmp_path, **kwargs)
    done = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ck = purenn.load(tmp_path / "resumed.npz")
    assert purenn.tree_equal(ck.params, straight), "resumed params differ from the straight run"
    assert without_seconds(ck.extra["history"]) == without_seconds(h_straight)


class PlainSGD:
    """A user's optimizer: any object with init and update, its state a plain dict.

    It also has an ``_update`` that would do something else: fit must never call it.
    """

    def __init__(self, lr):
        self.lr = lr

    def init(self, params):
        return {"steps": 0}

    def update(self, grads, state, params):
        new = purenn.tree_map(lambda p, g: p - self.lr * g, params, grads)
        return new, {"steps": state["steps"] + 1}

    def _update(self, grads, state, params):
        raise AssertionError("fit called the private _update")


def test_fit_trains_with_any_optimizer_through_its_public_update():
    x, y = blobs()
    params, history = purenn.fit(
        model(dropout=0), (x, y), optimizer=PlainSGD(0.1), epochs=3, batch_size=32, rng=0,
        verbose=0,
    )  # fmt: skip
    assert history["lr"] == [None, None, None]  # it does not say its learning rate
    assert history["train_loss"][-1] < history["train_loss"][0]
    # the same steps as purenn's own plain SGD, bit for bit
    same, _ = purenn.fit(
        model(dropout=0), (x, y), optimizer=optim.sgd(0.1), epochs=3, batch_size=32, rng=0,
        verbose=0,
    )  # fmt: skip
    assert purenn.tree_equal(params, same)


class Opaque:
    """A state a checkpoint cannot hold (not a registered record)."""


class OpaqueStateSGD(PlainSGD):
    def init(self, params):
        return Opaque()

    def update(self, grads, state, params):
        return purenn.tree_map(lambda p, g: p - self.lr * g, params, grads), state


def test_unstorable_optimizer_state_is_refused_before_the_first_step(tmp_path, monkeypatch):
    x, y = blobs()
    calls = []
    monkeypatch.setattr(training, "train_pass", lambda *a, **k: calls.append(a))
    with pytest.raises(TypeError, match=r"optimizer state \(Opaque\) cannot be stored"):
        purenn.fit(
            model(), (x, y), optimizer=OpaqueStateSGD(0.1), epochs=2, batch_size=32, rng=0,
            checkpoint_dir=tmp_path / "ck", verbose=0,
        )  # fmt: skip
    assert calls == [] and not (tmp_path / "ck").exists()
    # without checkpoints the same optimizer trains
    monkeypatch.undo()
    purenn.fit(
        model(), (x, y), optimizer=OpaqueStateSGD(0.1), epochs=1, batch_size=32, rng=0,
        verbose=0,
    )  # fmt: skip


def test_a_registered_record_state_is_checkpointed_and_resumes(tmp_path):
    import attrs

    from purenn.checkpoint import register_record

    @register_record
    @attrs.frozen
    class CountState:
        count: int

    class CountingSGD(PlainSGD):
        def init(self, params):
            return CountState(0)

        def update(self, grads, state, params):
            new = purenn.tree_map(lambda p, g: p - self.lr * g, params, grads)
            return new, CountState(state.count + 1)

    x, y = blobs()
    purenn.fit(
        model(), (x, y), optimizer=CountingSGD(0.1), epochs=2, batch_size=32, rng=0,
        checkpoint_dir=tmp_path, verbose=0,
    )  # fmt: skip
    state = purenn.load(tmp_path / "last.npz").extra["opt_state"]
    assert state == CountState(2 * 8)  # 240 samples in batches of 32: 8 steps an epoch


# ------------------------------------------------------------------ interrupts, failed writes


def straight_run(epochs, **kwargs):
    x, y = blobs()
    return purenn.fit(
        model(), (x, y), optimizer=optim.adam(1e-2), epochs=epochs, batch_size=32, rng=0,
        verbose=0, **kwargs,
    )  # fmt: skip


def test_ctrl_c_in_a_callback_keeps_params_state_and_history():
    x, y = blobs()

    def interrupt(epoch, params, history):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(purenn.TrainingInterrupted) as info:
        purenn.fit(
            model(), (x, y), optimizer=optim.adam(1e-2), epochs=5, batch_size=32, rng=0,
            val=blobs(60, seed=1), callbacks=[interrupt], verbose=0,
        )  # fmt: skip
    err = info.value
    assert isinstance(err, KeyboardInterrupt)  # code that only knows Ctrl-C still stops
    assert isinstance(err.__cause__, KeyboardInterrupt)
    assert (err.epoch, err.step) == (2, 8)
    assert "epoch 2, step 8/8" in str(err) and ".params" in str(err)
    expected, history = straight_run(2, val=blobs(60, seed=1), restore_best=False)
    assert purenn.tree_equal(err.params, expected)
    assert err.opt_state.count == 16
    assert without_seconds(err.history) == without_seconds(history)
    assert err.best_params is not None


def test_ctrl_c_in_a_step_hook_keeps_the_params_of_the_last_complete_update():
    x, y = blobs()
    seen = {}

    class Hook:
        def __call__(self, epoch, params, history):
            return None

        def on_step(self, info):
            seen[(info.epoch, info.step)] = info.params
            if (info.epoch, info.step) == (2, 3):
                raise KeyboardInterrupt

    with pytest.raises(purenn.TrainingInterrupted) as info:
        purenn.fit(
            model(), (x, y), optimizer=optim.adam(1e-2), epochs=5, batch_size=32, rng=0,
            callbacks=[Hook()], verbose=0,
        )  # fmt: skip
    err = info.value
    assert (err.epoch, err.step) == (2, 3)
    assert purenn.tree_equal(err.params, seen[(2, 3)])
    assert err.opt_state.count == 8 + 3
    assert err.history["epoch"] == [1] and err.best_params is None


def test_ctrl_c_inside_an_update_returns_the_pair_before_it():
    """An interrupt mid-update must not give new params with the old state."""
    x, y = blobs()
    adam = optim.adam(1e-2)
    calls = []

    class Flaky:
        def init(self, params):
            return adam.init(params)

        def update(self, grads, state, params):
            calls.append(state.count)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return adam.update(grads, state, params)

    with pytest.raises(purenn.TrainingInterrupted) as info:
        purenn.fit(model(), (x, y), optimizer=Flaky(), epochs=3, batch_size=32, rng=0, verbose=0)
    err = info.value
    assert (err.epoch, err.step) == (1, 4) and err.opt_state.count == 4
    # the same four steps by hand give the same params
    params, state = model(), adam.init(model())
    rng = np.random.default_rng(0)
    for i, (xb, yb) in enumerate(batches(x, y, 32, rng)):
        if i == 4:
            break
        step = purenn.train_pass(params, xb, yb, rng=rng)
        params, state = adam.update(step.grads, state, params)
        params = purenn.tree_with_state(params, step.grads)
    assert purenn.tree_equal(err.params, params)


def test_a_failed_checkpoint_write_keeps_the_training_and_the_previous_files(tmp_path, monkeypatch):
    """A full disk at epoch 2: the error carries epoch 2, the epoch-1 files are intact."""
    import errno

    from purenn import checkpoint

    real = checkpoint._write_npz
    writes = []

    def disk_full_at_epoch_2(file, members):
        writes.append(1)
        if len(writes) > 2:  # epoch 1 wrote epoch_0001.npz and last.npz
            file.write(b"PK\x03\x04 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file, members)

    monkeypatch.setattr(checkpoint, "_write_npz", disk_full_at_epoch_2)
    x, y = blobs()
    run = tmp_path / "run"
    with pytest.raises(purenn.CheckpointWriteError) as info:
        purenn.fit(
            model(), (x, y), optimizer=optim.adam(1e-2), epochs=4, batch_size=32, rng=0,
            checkpoint_dir=run, verbose=0,
        )  # fmt: skip
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert err.filename == str(run / "epoch_0002.npz")
    assert isinstance(err.__cause__, OSError)
    message = str(err)
    assert "epoch_0002.npz and " in message and "last.npz" in message  # both were tried
    assert "intact" in message and "Free disk space" in message
    assert err.epoch == 2 and err.history["epoch"] == [1, 2]
    expected, _ = straight_run(2)
    assert purenn.tree_equal(err.params, expected)
    assert err.opt_state.count == 16
    # what was there before is untouched and nothing half-written is left
    assert sorted(p.name for p in run.iterdir()) == ["epoch_0001.npz", "last.npz"]
    assert purenn.load(run / "last.npz").extra["epoch"] == 1
    assert purenn.load(run / "epoch_0001.npz").extra["epoch"] == 1
    # and the training kept on the exception can be saved and resumed
    monkeypatch.setattr(checkpoint, "_write_npz", real)
    purenn.save(tmp_path / "rescued.npz", err.params, opt_state=err.opt_state)
    assert purenn.tree_equal(purenn.load(tmp_path / "rescued.npz").params, expected)


def test_a_failed_epoch_file_still_updates_last(tmp_path):
    """Only epoch_0002.npz cannot be written (a folder is in its way): last.npz
    is still brought up to date, and the error names the file that failed."""
    x, y = blobs()
    run = tmp_path / "run"
    (run / "epoch_0002.npz").mkdir(parents=True)
    with pytest.raises(purenn.CheckpointWriteError) as info:
        purenn.fit(
            model(), (x, y), optimizer=optim.adam(1e-2), epochs=3, batch_size=32, rng=0,
            checkpoint_dir=run, verbose=0,
        )  # fmt: skip
    assert info.value.filename == str(run / "epoch_0002.npz")
    assert "last.npz" not in str(info.value).split(":")[0]
    assert purenn.load(run / "last.npz").extra["epoch"] == 2


def test_huge_epochs_and_a_non_path_checkpoint_dir_are_refused_before_training(tmp_path):
    params = purenn.init(purenn.Network(2, [purenn.Dense(2, "softmax")]), rng=0)
    data = (np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]))
    opt = optim.sgd(0.1)
    for epochs in (training.MAX_EPOCHS + 1, 2**63):
        with pytest.raises(ValueError, match="epochs must be at most 1,000,000"):
            purenn.fit(params, data, optimizer=opt, epochs=epochs, batch_size=2, rng=0, verbose=0)
    with pytest.raises(ValueError, match="initial_epoch must be at most"):
        purenn.fit(
            params,
            data,
            optimizer=opt,
            epochs=2,
            initial_epoch=2**63,
            batch_size=2,
            rng=0,
            verbose=0,
        )
    with pytest.raises(TypeError, match=r"checkpoint_dir must be a str or os\.PathLike"):
        purenn.fit(
            params,
            data,
            optimizer=opt,
            epochs=1,
            batch_size=2,
            rng=0,
            verbose=0,
            checkpoint_dir=np.array(1.0),
        )


def test_best_params_are_checked_even_without_val():
    """Found by the fuzzer: without ``val``, any ``best_params`` (a number, the
    params of another network) was ignored unchecked."""
    (x, y), params = blobs(), model()
    other = purenn.init(purenn.Network(3, [purenn.Dense(3, "softmax")]), rng=0)
    run = {"optimizer": optim.sgd(0.1), "epochs": 1, "batch_size": 32, "rng": 0, "verbose": 0}
    for bad, err, match in [
        (1.5, TypeError, r"best_params must be a dict tree like params; got float"),
        (other, ValueError, r"best_params belong to another network"),
    ]:
        with pytest.raises(err, match=match):
            purenn.fit(params, (x, y), best_params=bad, **run)
    # well-formed best params without val are accepted and not used
    fitted, history = purenn.fit(params, (x, y), best_params=params, **run)
    assert history["best_epoch"] is None
    assert not purenn.tree_equal(fitted, params)


@purenn.register_layer
@attrs.frozen
class _NaNBackward(purenn.Layer):
    """The identity forward, NaN backward: gradients go NaN behind a finite loss."""

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, params, x, ctx):
        return x, None

    def backward(self, params, cache, dy, ctx):
        return dy * np.nan, None


def _nan_grads_run(optimizer):
    spec = purenn.Network(5, [purenn.Dense(4), _NaNBackward(), purenn.Dense(3, "softmax")])
    params = purenn.init(spec, rng=0)
    x, y = blobs()
    with pytest.raises(purenn.NonFiniteLossError) as caught:
        purenn.fit(params, (x, y), optimizer=optimizer, epochs=2, batch_size=32, rng=0, verbose=0)
    return params, caught.value


@pytest.mark.parametrize("make", [optim.adam, optim.adamw, optim.rmsprop])
def test_nan_gradients_behind_a_finite_loss_stop_fit_with_the_last_good_params(make):
    """Adam, AdamW and RMSprop refuse NaN gradients (their second moment would be
    NaN); fit turns that into the NonFiniteLossError a NaN loss gives, carrying
    the params before the step, instead of a bare ValueError without them."""
    params, err = _nan_grads_run(make(1e-3))
    assert (err.epoch, err.step) == (1, 1)
    assert "gradients became NaN or infinite at epoch 1, step 1/8" in str(err)
    assert "loss was 1." in str(err)
    assert isinstance(err.__cause__, ValueError) and "holds nan" in str(err.__cause__)
    assert purenn.tree_equal(err.params, params)
    assert err.opt_state.count == 0


def test_nan_gradients_under_sgd_stop_fit_at_the_next_loss():
    params, err = _nan_grads_run(optim.sgd(0.1))
    assert (err.epoch, err.step) == (1, 2)  # the NaN params give a NaN loss one step later
    assert "the training loss became nan" in str(err)
    assert purenn.tree_equal(err.params, params)
