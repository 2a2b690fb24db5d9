"""Scalers, one-hot, image helpers, train/val split and batching."""

from __future__ import annotations

import numpy as np
import pytest

from purenn.preprocessing import (
    MinMaxScaler,
    Standardizer,
    batches,
    flatten_images,
    minmax_apply,
    minmax_fit,
    one_hot,
    scale_images,
    standardize_apply,
    standardize_fit,
    train_val_split,
)


def _ro(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = _ro(rng.normal(3.0, 2.0, (200, 5)).astype(np.float32))
    y = _ro(rng.integers(0, 4, 200))
    return x, y


# --- scalers ------------------------------------------------------------------------


def test_standardize_fit_apply(data):
    x, _ = data
    state = standardize_fit(x)
    assert isinstance(state, Standardizer) and state.mean.shape == (5,)
    assert not state.mean.flags.writeable and not state.std.flags.writeable
    z = state.apply(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)
    np.testing.assert_array_equal(standardize_apply(state, x), z)
    assert standardize_apply(state, x.astype(np.float64)).dtype == np.float64
    assert standardize_apply(state, x, dtype=np.float64).dtype == np.float64
    assert state.apply(np.ones((2, 5), np.int64)).dtype == np.float32


def test_standardize_constant_feature_and_images():
    x = np.zeros((4, 2, 3), np.uint8)
    x[:, 0, 0] = [0, 10, 20, 30]
    state = standardize_fit(x)
    z = state.apply(x)
    assert z.shape == (4, 2, 3) and np.isfinite(z).all() and z[:, 1, 1].tolist() == [0] * 4


def test_minmax_fit_apply(data):
    x, _ = data
    state = minmax_fit(x)
    assert isinstance(state, MinMaxScaler)
    s = minmax_apply(state, x)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(s.max(0), 1, atol=1e-6)
    s2 = minmax_fit(x, feature_range=(-1, 1)).apply(x[:10])
    assert s2.min() >= -1 - 1e-6 and s2.max() <= 1 + 1e-6
    const = minmax_fit(np.full((3, 2), 7.0)).apply(np.full((1, 2), 7.0))
    assert const.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("fit", [standardize_fit, minmax_fit])
def test_scalers_refuse_bad_input(fit, data):
    x, _ = data
    with pytest.raises(ValueError, match=r"shape \(n, features"):
        fit(x[0])
    with pytest.raises(ValueError, match="n >= 1"):
        fit(x[:0])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(bad)
    with pytest.raises(TypeError, match="numeric"):
        fit(np.array([["a", "b"]]))
    state = fit(x)
    with pytest.raises(ValueError, match=r"fitted on features of shape \(n, 5\)"):
        state.apply(x[:, :4])
    with pytest.raises(TypeError, match="dtype"):
        state.apply(x, dtype=np.int32)
    with pytest.raises(ValueError, match="feature_range"):
        minmax_fit(x, feature_range=(1, 0))
    with pytest.raises(TypeError, match="Standardizer"):
        standardize_apply(minmax_fit(x), x)


# --- one_hot, images ----------------------------------------------------------------


def test_one_hot():
    y = _ro(np.array([2, 0, 1, 2]))
    out = one_hot(y, 3)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    assert out.argmax(1).tolist() == [2, 0, 1, 2] and out.sum() == 4
    assert one_hot(y, 3, dtype=np.float64).dtype == np.float64
    assert one_hot(np.array([], np.int64), 3).shape == (0, 3)
    with pytest.raises(ValueError, match=r"labels in 0\.\.1 \(k=2\); got values 0\.\.2"):
        one_hot(y, 2)
    with pytest.raises(ValueError, match=r"labels in 0\.\.2"):
        one_hot(np.array([-1]), 3)
    with pytest.raises(TypeError, match="integer labels"):
        one_hot(np.array([1.0]), 3)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        one_hot(np.array([[1]]), 3)
    with pytest.raises((TypeError, ValueError), match="k"):
        one_hot(y, 0)


def test_flatten_and_scale_images():
    x = _ro(np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28))
    flat = flatten_images(x)
    assert flat.shape == (2, 784) and np.shares_memory(flat, x)
    assert flatten_images(x[:, None]).shape == (2, 784)
    with pytest.raises(ValueError, match="images of shape"):
        flatten_images(x[0, 0])
    s = scale_images(x)
    assert s.dtype == np.float32 and s.shape == x.shape
    assert s.max() <= 1.0 and s.min() >= 0.0
    np.testing.assert_allclose(s, x / 255.0, rtol=1e-6)
    assert scale_images(x, np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="uint8"):
        scale_images(s)
    with pytest.raises(TypeError, match="float dtype"):
        scale_images(x, np.int32)


# --- train_val_split ----------------------------------------------------------------


def test_split_stratified_sizes_and_disjoint(data):
    x, y = data
    (xt, yt), (xv, yv) = train_val_split(x, y, 0.25, rng=0)
    assert len(xv) == 50 and len(xt) == 150
    assert xt.dtype == x.dtype and yt.dtype == y.dtype
    rows = {tuple(r) for r in xt} | {tuple(r) for r in xv}
    assert len(rows) == 200  # a partition of the samples
    counts, vcounts = np.bincount(y), np.bincount(yv, minlength=4)
    assert np.all(np.abs(vcounts - 0.25 * counts) < 1)  # each class keeps its share


def test_split_deterministic_under_seed(data):
    x, y = data
    a = train_val_split(x, y, 0.2, np.random.default_rng(7))
    b = train_val_split(x, y, 0.2, 7)
    c = train_val_split(x, y, 0.2, 8)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert not np.array_equal(a[1][0], c[1][0])
    d = train_val_split(x, y, 0.2, 7, stratify=False)
    assert len(d[1][0]) == 40


def test_split_one_hot_labels_and_errors(data):
    x, y = data
    (_, yt), (_, yv) = train_val_split(x, one_hot(y, 4), 0.5, 1)
    assert yt.shape == (100, 4) and yv.shape == (100, 4)
    with pytest.raises(ValueError, match="rng"):
        train_val_split(x, y, 0.2, None)
    with pytest.raises(TypeError, match="Generator"):
        train_val_split(x, y, 0.2, np.random.RandomState(0))
    for frac in (0.0, 1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(x, y, frac, 0)
    with pytest.raises(ValueError, match="at least one"):
        train_val_split(x[:3], y[:3], 0.1, 0)
    with pytest.raises(ValueError, match="same samples"):
        train_val_split(x, y[:-1], 0.2, 0)
    with pytest.raises(TypeError, match="stratify=False"):
        train_val_split(x, y.astype(float), 0.2, 0)


def test_split_refuses_one_hot_labels_that_are_no_numbers(data):
    """Found by the fuzz sweep through experiment.split_train_val: (n, k) labels of
    None were argmax-ed, and NumPy's "'>' not supported between instances of
    'NoneType' and 'NoneType'" came out; str labels were ranked as text."""
    x, _ = data
    for labels in (np.full((len(x), 4), None, dtype=object), np.full((len(x), 4), "a")):
        with pytest.raises(TypeError, match=r"expects integer labels \(n,\) or one-hot \(n, k\); "
                           rf"got dtype {labels.dtype} of shape \({len(x)}, 4\)"):  # fmt: skip
            train_val_split(x, labels, 0.2, 0)
    (_, yt), _ = train_val_split(x, np.eye(4, dtype=bool)[np.arange(len(x)) % 4], 0.5, 0)
    assert yt.dtype == bool and (yt.sum(axis=1) == 1).all()


# --- batches ------------------------------------------------------------------------


def test_batches_in_order_are_views(data):
    x, y = data
    got = list(batches(x, y, 64))
    assert [len(b[0]) for b in got] == [64, 64, 64, 8]
    assert all(np.shares_memory(xb, x) for xb, _ in got)
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), x)
    assert [len(b[0]) for b in batches(x, y, 64, drop_last=True)] == [64, 64, 64]


def test_batches_shuffled_cover_everything_once(data):
    x, y = data
    got = list(batches(x, y, 32, rng=np.random.default_rng(0)))
    xs = np.concatenate([xb for xb, _ in got])
    ys = np.concatenate([yb for _, yb in got])
    order = np.lexsort(xs.T)
    np.testing.assert_array_equal(xs[order], x[np.lexsort(x.T)])
    assert not np.array_equal(xs, x)
    # rows stay paired with their labels
    lookup = {tuple(r): lab for r, lab in zip(x, y, strict=True)}
    assert all(lookup[tuple(r)] == lab for r, lab in zip(xs, ys, strict=True))


def test_batches_deterministic_and_fresh_each_epoch(data):
    x, y = data
    first = [yb for _, yb in batches(x, y, 50, rng=3)]
    again = [yb for _, yb in batches(x, y, 50, rng=3)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    gen = np.random.default_rng(3)
    e1 = np.concatenate([xb for xb, _ in batches(x, y, 50, rng=gen)])
    e2 = np.concatenate([xb for xb, _ in batches(x, y, 50, rng=gen)])
    assert not np.array_equal(e1, e2)  # one Generator: a new shuffle per epoch


def test_batches_validate_eagerly_and_never_use_global_rng(data, monkeypatch):
    x, y = data

    def forbidden(*args, **kwargs):
        raise AssertionError("global NumPy RNG used")

    monkeypatch.setattr(np.random, "permutation", forbidden)
    monkeypatch.setattr(np.random, "shuffle", forbidden)
    list(batches(x, y, 16, rng=0))
    train_val_split(x, y, 0.1, 0)
    with pytest.raises(ValueError, match="batch_size"):
        batches(x, y, 0)  # raised at the call, before iterating
    with pytest.raises(TypeError, match="batch_size"):
        batches(x, y, 2.5)
    with pytest.raises(ValueError, match="same samples"):
        batches(x, y[:5], 4)
    with pytest.raises(TypeError, match="rng"):
        batches(x, y, 4, rng="seed")
    with pytest.raises(ValueError, match="n >= 1"):
        batches(x[:0], y[:0], 4)


def test_flatten_images_keeps_an_empty_batch():
    out = flatten_images(np.zeros((0, 3, 2), np.float32))
    assert out.shape == (0, 6) and out.dtype == np.float32


def test_fitted_state_refuses_what_it_could_not_apply():
    for bad in ("abc", [[1], [1, 2]], np.array([None]), np.array([True])):
        with pytest.raises(TypeError, match="std must be an array"):
            Standardizer(mean=np.zeros(1), std=bad)
    with pytest.raises(ValueError, match="std must be > 0 everywhere"):
        Standardizer(mean=np.zeros(2), std=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="mean must be finite; got 1 NaN/inf"):
        Standardizer(mean=np.array([np.nan, 0.0]), std=np.ones(2))
    with pytest.raises(ValueError, match=r"same shape.*\(3,\) and \(2,\)"):
        Standardizer(mean=np.zeros(3), std=np.ones(2))
    with pytest.raises(ValueError, match="data_min and data_max must have the same shape"):
        MinMaxScaler(data_min=np.zeros(3), data_max=np.ones(2))
    with pytest.raises(TypeError, match="data_max must be an array of real numbers"):
        MinMaxScaler(data_min=np.zeros(1), data_max="x")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_stratified_split_refuses_one_hot_labels_with_nan_or_inf(bad):
    """Was: the argmax of a row with NaN or inf silently picked its class."""
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    y[4, 0] = bad
    with pytest.raises(ValueError, match=r"argmax, which NaN or inf make meaningless"):
        train_val_split(np.zeros((12, 2), np.float32), y, 0.25, np.random.default_rng(0))
