"""Numeric edge cases of issue 14: labels of every integer width, targets out of
range, gradient clipping when the norm overflows, tree_allclose shapes, eps-like
arguments, an augment that writes in place, and the documented caps on class
counts, dpi, frame rates, hold times and grid resolutions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import purenn as pn
from purenn import metrics, optim, plots, preprocessing, schedules
from purenn.metrics import MAX_CLASSES

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
SPEC = pn.Network(4, [pn.Dense(6, "tanh"), pn.Dense(3, "softmax")])
PARAMS = pn.init(SPEC, 0)
X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
LABELS = np.arange(12) % 3


# ---------------------------------------------------------------- labels of any integer width


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_integer_labels_of_any_width_give_the_same_results(dtype):
    """Issue 14, item 4: uint64 labels passed the label check and crashed in the
    loss with IndexError."""
    y, ref = LABELS.astype(dtype), LABELS.astype(np.int64)
    assert pn.loss(PARAMS, X, y) == pn.loss(PARAMS, X, ref)
    assert pn.tree_equal(pn.grads(PARAMS, X, y), pn.grads(PARAMS, X, ref))
    assert pn.train_pass(PARAMS, X, y, rng=0).loss == pn.train_pass(PARAMS, X, ref, rng=0).loss
    got, want = metrics.evaluate(PARAMS, X, y), metrics.evaluate(PARAMS, X, ref)
    assert got["loss"] == want["loss"] and got["accuracy"] == want["accuracy"]
    np.testing.assert_array_equal(got["confusion"], want["confusion"])
    assert metrics.accuracy(y, ref) == 1.0
    np.testing.assert_array_equal(metrics.confusion_matrix(y, ref), np.diag([4, 4, 4]))
    np.testing.assert_array_equal(preprocessing.one_hot(y, 3), preprocessing.one_hot(ref, 3))
    (_, y_train), _ = preprocessing.train_val_split(X, y, 0.25, rng=0)
    assert y_train.dtype == np.dtype(dtype)
    fit = {"optimizer": optim.sgd(0.1), "epochs": 1, "batch_size": 4, "rng": 0, "verbose": 0}
    assert pn.tree_equal(pn.fit(PARAMS, (X, y), **fit)[0], pn.fit(PARAMS, (X, ref), **fit)[0])


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_labels_out_of_range_are_refused_for_every_width(dtype):
    info = np.iinfo(dtype)
    for bad in {3, int(info.max)} | ({-1, int(info.min)} if info.min < 0 else set()):
        y = LABELS.astype(dtype)
        y[5] = bad
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\]"):
            pn.loss(PARAMS, X, y)
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\]"):
            pn.grads(PARAMS, X, y)
        with pytest.raises(ValueError, match=r"one_hot expects labels in 0..2"):
            preprocessing.one_hot(y, 3)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (LABELS + 0.5, TypeError, r"must be int class indices; got dtype float64"),
        (LABELS.astype(np.float32), TypeError, r"must be int class indices; got dtype float32"),
        (LABELS.astype(bool), TypeError, r"must be int class indices; got dtype bool"),
        (LABELS.astype(object), TypeError, r"must be int class indices; got dtype object"),
        (LABELS.astype(str), TypeError, r"must be int class indices; got dtype <U"),
    ],
)
def test_labels_that_are_not_integers_are_refused(labels, error, message):
    with pytest.raises(error, match=message):
        pn.loss(PARAMS, X, labels)
    with pytest.raises(TypeError, match="int class labels"):
        metrics.confusion_matrix(labels, LABELS)


def test_dense_targets_outside_their_range_are_refused():
    onehot = np.eye(3, dtype=np.float32)[LABELS]
    for bad in (-onehot, np.where(onehot == 1, np.float32(np.nan), onehot)):
        with pytest.raises(ValueError, match=r"expects targets finite and >= 0; got values"):
            pn.loss(PARAMS, X, bad)
    binary = pn.init(pn.Network(4, [pn.Dense(1, "sigmoid")], loss="binary_cross_entropy"), 0)
    y = (LABELS[:, None] > 0).astype(np.float32)
    assert np.isfinite(pn.loss(binary, X, y))
    for bad in (y * 2, y - 1, np.full_like(y, np.nan), LABELS[:, None]):
        with pytest.raises(ValueError, match=r"expects targets \[0, 1\]; got values"):
            pn.loss(binary, X, bad)


# ---------------------------------------------------------------- gradient clipping


def test_clipping_works_when_the_float32_norm_overflows():
    """Issue 14, item 7: when the float32 sum of squares overflowed, the
    gradients were returned unclipped."""
    grads = {"a": np.full(3, 3e38, np.float32), "b": np.array([1e20, -1e20], np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        norm = optim.global_norm(grads)
        clipped = optim.clip_by_global_norm(grads, 2.0)
    ref64 = {k: v.astype(np.float64) for k, v in grads.items()}
    want_norm = float(np.sqrt(sum((v * v).sum() for v in ref64.values())))
    assert norm == pytest.approx(want_norm, rel=1e-6)
    assert all(v.dtype == np.float32 for v in clipped.values())
    assert optim.global_norm(clipped) == pytest.approx(2.0, rel=1e-5)
    for k in grads:  # the direction is kept
        np.testing.assert_allclose(clipped[k], ref64[k] * (2.0 / want_norm), rtol=1e-5, atol=1e-30)


def test_clipping_works_when_the_float64_norm_overflows():
    grads = {"w": np.array([1e200, -1e200, 3.0], np.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert optim.global_norm(grads) == pytest.approx(np.sqrt(2) * 1e200)
        clipped = optim.clip_by_global_norm(grads, 1.0)
    want = np.array([1.0, -1.0, 3e-200]) / np.sqrt(2)  # g / norm, norm = sqrt(2) * 1e200
    np.testing.assert_allclose(clipped["w"], want, rtol=1e-12)


def test_optimizers_clip_overflowing_gradients():
    big = pn.tree_map(lambda p: np.full_like(p, 1e30), PARAMS)
    for opt in (optim.sgd(0.1, clip_norm=1.0), optim.adam(0.1, clip_norm=1.0)):
        new, _ = opt.update(big, opt.init(PARAMS), PARAMS)
        step = pn.tree_map(lambda a, b: a - b, new, PARAMS)
        assert np.isfinite(optim.global_norm(step))
        if isinstance(opt, optim.SGD):
            assert optim.global_norm(step) == pytest.approx(0.1, rel=1e-4)


def test_non_finite_gradients_are_left_for_the_loss_to_report():
    """Documented: a NaN or inf gradient has no direction; it is returned as is
    (fit then stops with NonFiniteLossError, which carries the last good params)."""
    for bad in (np.nan, np.inf):
        grads = {"a": np.array([1.0, bad], np.float32)}
        assert optim.clip_by_global_norm(grads, 1.0) is grads
        norm = optim.global_norm(grads)
        assert np.isnan(norm) if np.isnan(bad) else norm == np.inf


def test_small_gradients_are_not_touched():
    grads = {"a": np.array([0.3, 0.4], np.float32)}
    assert optim.clip_by_global_norm(grads, 1.0) is grads
    assert optim.clip_by_global_norm(grads, None) is grads
    for bad in (0.0, -1.0, np.nan, True, "1"):
        with pytest.raises((TypeError, ValueError), match="max_norm must be a positive"):
            optim.clip_by_global_norm(grads, bad)


# ---------------------------------------------------------------- tree_allclose


def test_tree_allclose_does_not_broadcast():
    """Issue 14: (3,) was "close" to (1,)."""
    assert not pn.tree_allclose({"a": np.ones(3)}, {"a": np.ones(1)})
    assert not pn.tree_allclose({"a": np.ones((3, 1))}, {"a": np.ones(3)})
    assert not pn.tree_allclose({"a": np.ones(())}, {"a": np.ones(1)})
    assert pn.tree_allclose({"a": np.ones(3)}, {"a": np.ones(3) + 1e-9}, rtol=1e-6)
    assert pn.tree_allclose(PARAMS, pn.tree_map(lambda p: p.copy(), PARAMS))


def test_tree_allclose_refuses_bad_tolerances():
    a = {"a": np.ones(3)}
    for bad in (-1.0, np.nan, np.inf, "1e-6", True):
        with pytest.raises((TypeError, ValueError), match="rtol must be"):
            pn.tree_allclose(a, a, rtol=bad)
        with pytest.raises((TypeError, ValueError), match="atol must be"):
            pn.tree_allclose(a, a, atol=bad)


# ---------------------------------------------------------------- eps-like arguments


def test_standardize_fit_refuses_bad_eps():
    x = np.ones((4, 3), np.float32)
    for bad in (-1, 0, 0.0, np.nan, np.inf, -np.inf, True, "1e-8", None):
        with pytest.raises((TypeError, ValueError), match="standardize_fit: eps must be"):
            preprocessing.standardize_fit(x, eps=bad)
    state = preprocessing.standardize_fit(x, eps=np.float32(1e-6))
    np.testing.assert_array_equal(state.std, 1.0)  # constant features: std 1


def test_minmax_fit_refuses_bad_ranges():
    x = np.arange(6.0).reshape(3, 2)
    for bad in ((0, 10**400), (-1e308, 1e308), (True, 2), ("0", "1"), (1.0, 0.0), (0, np.nan)):
        with pytest.raises((TypeError, ValueError), match="minmax_fit expects feature_range"):
            preprocessing.minmax_fit(x, bad)
    out = preprocessing.minmax_apply(preprocessing.minmax_fit(x, (np.int64(-1), 1)), x)
    np.testing.assert_allclose(out[[0, -1]], [[-1, -1], [1, 1]])


def test_a_growing_exponential_schedule_gives_inf_not_overflow_error():
    sched = schedules.ExponentialDecay(0.1, 10.0, 1)
    assert sched(10**6) == np.inf
    with pytest.raises(ValueError, match="the lr schedule returned inf"):
        optim.sgd(sched).learning_rate(10**6)


# ---------------------------------------------------------------- augment that writes in place


@pytest.mark.parametrize("read_only", [False, True])
def test_an_in_place_augment_does_not_touch_the_callers_data(read_only):
    """Issue 14: with shuffle=False the batches are views of x, and an augment
    writing in place corrupted the caller's data."""
    x = X.copy()
    x.flags.writeable = not read_only
    before = x.copy()

    def in_place(xb, rng):
        xb *= 0.5
        xb += rng.normal(size=xb.shape).astype(xb.dtype)
        return xb

    def pure(xb, rng):
        return xb * 0.5 + rng.normal(size=xb.shape).astype(xb.dtype)

    kwargs = {"optimizer": optim.sgd(0.1), "epochs": 2, "batch_size": 4, "rng": 0}
    kwargs |= {"verbose": 0, "shuffle": False}
    got, _ = pn.fit(PARAMS, (x, LABELS), augment=in_place, **kwargs)
    np.testing.assert_array_equal(x, before)
    want, _ = pn.fit(PARAMS, (x, LABELS), augment=pure, **kwargs)
    assert pn.tree_equal(got, want)


# ---------------------------------------------------------------- documented caps


def test_huge_class_counts_are_refused_before_allocating():
    y = np.array([0, 1])
    for k in (MAX_CLASSES + 1, 10**12, 2**70):
        with pytest.raises(ValueError, match=rf"one_hot: k must be at most {MAX_CLASSES:,}"):
            preprocessing.one_hot(y, k)
        with pytest.raises(ValueError, match=rf"num_classes must be at most {MAX_CLASSES:,}"):
            metrics.confusion_matrix(y, y, num_classes=k)
    for top in (MAX_CLASSES, 10**11, 2**63 - 1):
        big = np.array([0, top])
        with pytest.raises(ValueError, match="more than the 10,000 classes"):
            metrics.confusion_matrix(big, y)
    assert preprocessing.one_hot(y, MAX_CLASSES).shape == (2, MAX_CLASSES)


def test_evaluate_skips_the_confusion_matrix_beyond_the_cap():
    wide = pn.init(pn.Network(2, [pn.Dense(MAX_CLASSES + 1, "softmax")]), 0)
    x = np.zeros((3, 2), np.float32)
    result = metrics.evaluate(wide, x, np.array([0, 1, 2]))
    assert result["confusion"] is None and result["accuracy"] is not None


HISTORY = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dpi": plots.MAX_DPI + 1}, "dpi must be at most"),
        ({"dpi": 10**9}, "dpi must be at most"),
        ({"fps": 10**9}, "fps must be at most"),
        ({"hold_seconds": 1e9}, r"hold_seconds must be a number in \[0, 600\]"),
        ({"hold_seconds": 10**400}, r"hold_seconds must be a number in \[0, 600\]"),
        ({"hold_seconds": -1}, r"hold_seconds must be a number in \[0, 600\]"),
    ],
)
def test_animations_refuse_huge_settings_up_front(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.loss_curves_animation(HISTORY, tmp_path / "a.gif", **kwargs)
    two_d = pn.init(pn.Network(2, [pn.Dense(2, "softmax")]), 0)
    snaps = [(0, two_d), (1, two_d)]
    x2, y2 = np.zeros((2, 2), np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match=message):
        plots.boundary_animation(snaps, x2, y2, tmp_path / "b.gif", **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written, nothing left behind


def test_figures_refuse_huge_dpi_and_resolution(tmp_path):
    import matplotlib.pyplot as plt

    fig = plots.loss_curves(HISTORY)
    try:
        with pytest.raises(ValueError, match=r"dpi must be at most 1000 \(MAX_DPI\); got 5000"):
            plots.save_figure(fig, tmp_path / "f.png", dpi=5000)
    finally:
        plt.close(fig)
    two_d = pn.init(pn.Network(2, [pn.Dense(2, "softmax")]), 0)
    x2, y2 = np.zeros((2, 2), np.float32), np.array([0, 1])
    for bad in (plots.MAX_RESOLUTION + 1, 10**6, 1):
        with pytest.raises(ValueError, match=r"resolution must be 2 to 1000"):
            plots.decision_boundary(two_d, x2, y2, resolution=bad)


# ---------------------------------------------------------------- augment limits


def test_augment_limits_refuse_huge_and_non_finite_numbers():
    from purenn import augment as A

    x = np.zeros((2, 8, 8), np.float32)
    cases = [
        (lambda: A.augment_images(x, 0, max_shift=10**400), "max_shift in \\[0, 8000\\]"),
        (lambda: A.augment_images(x, 0, max_shift=1e300), "max_shift in \\[0, 8000\\]"),
        (lambda: A.augment_images(x, 0, fill=10**400), "finite number as fill"),
        (lambda: A.augment_images(x, 0, fill=True), "finite number as fill"),
        (lambda: A.crop_images(x, 0, pad=10**6), r"pad as an int in \[0, 8\]"),
        (lambda: A.crop_images(x, 0, pad=2**40), r"pad as an int in \[0, 8\]"),
        (lambda: A.warp_images(x, shift=(1e300, 0)), "shifts of at most 8000 pixels"),
        (lambda: A.warp_images(x, scale=1e-300), r"scale in \[0.001, 1000\]"),
        (lambda: A.warp_images(x, scale=1e300), r"scale in \[0.001, 1000\]"),
        (lambda: A.augment_strokes(np.zeros((2, 16), np.float32), 0, noise=10**400), "noise"),
    ]
    for call, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused before any overflowing arithmetic
            with pytest.raises(ValueError, match=message):
                call()
    for bad in ("abc", ["1", "x"], {"a": 1}):
        with pytest.raises(TypeError, match="warp_images expects rotation as a number"):
            A.warp_images(x, rotation=bad)
    for shape in ((8.5, 8), (True, 8), "88"):
        with pytest.raises(TypeError, match="image_shape must be an int or a tuple of ints"):
            A.warp_images(x.reshape(2, 64), image_shape=shape)
    assert A.crop_images(x, 0, pad=8).shape == x.shape  # the cap itself is allowed


def test_learning_rates_past_float_range_are_refused_clearly():
    for call in (lambda: pn.sgd_step(PARAMS, PARAMS, lr=10**400), lambda: optim.sgd(10**400)):
        with pytest.raises(ValueError, match=r"lr must be .*finite"):
            call()


def test_gradient_checks_refuse_bad_steps_and_tolerances():
    """A zero step divided by zero, and a NaN tolerance passed every check."""
    from purenn import gradcheck

    spec = pn.Network(2, [pn.Dense(2, "softmax")])
    params = pn.init(spec, 0, dtype=np.float64)
    x, y = np.ones((3, 2)), np.array([0, 1, 0])
    for name in ("eps", "rtol", "floor"):
        for bad in (0.0, -1e-4, np.nan, np.inf, True, "1e-4", 10**400):
            with pytest.raises((TypeError, ValueError), match=rf"{name} must be a positive"):
                gradcheck.check_grads(params, x, y, **{name: bad})
    with pytest.raises(ValueError, match="eps must be a positive"):
        gradcheck.numeric_grads(lambda p: 0.0, {"w": np.ones(2)}, eps=0.0)
    gradcheck.check_grads(params, x, y, eps=np.float32(1e-4), rtol=np.float64(1e-6))


def test_train_val_split_refuses_fractions_past_float_range():
    for bad in (10**400, -(10**400), np.nan, True, "0.5", 1, 0):
        with pytest.raises(ValueError, match=r"expects val_fraction in \(0, 1\)"):
            preprocessing.train_val_split(X, LABELS, bad, rng=0)
    (x_train, _), _ = preprocessing.train_val_split(X, LABELS, np.float32(0.25), rng=0)
    assert x_train.shape == (9, 4)
