"""The toy data sets: shapes, dtypes, labels, seeding, geometry and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from purenn.datasets import make_circles, make_moons, make_sine, make_spiral, make_xor

CLASSIFIERS = {
    "spiral": (make_spiral, 3),
    "moons": (make_moons, 2),
    "circles": (make_circles, 2),
    "xor": (make_xor, 2),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 300), seed=st.integers(0, 2**32 - 1))
def test_classification_sets_have_the_promised_form(name, n, seed):
    make, k = CLASSIFIERS[name]
    x, y = make(n, rng=seed)
    assert x.shape == (n, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(k))
    counts = np.bincount(y, minlength=k)
    assert counts.max() - counts.min() <= 1  # balanced
    assert np.isfinite(x).all()


@pytest.mark.parametrize("make", [f for f, _ in CLASSIFIERS.values()] + [make_sine])
def test_same_seed_same_bits_other_seed_differs(make):
    a, b = make(50, rng=3), make(50, rng=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = make(50, rng=4)
    assert not np.array_equal(a[0], c[0])
    gen = np.random.default_rng(3)
    d = make(50, rng=gen)
    assert np.array_equal(a[0], d[0])  # an int seed is default_rng(seed)


@pytest.mark.parametrize("make", [f for f, _ in CLASSIFIERS.values()] + [make_sine])
def test_float64_on_request_and_same_numbers(make):
    x32, _ = make(20, rng=0)
    x64, _ = make(20, rng=0, dtype=np.float64)
    assert x64.dtype == np.float64
    np.testing.assert_allclose(x64, x32, rtol=1e-6, atol=1e-6)


def test_xor_without_noise_is_the_truth_table():
    x, y = make_xor(4, noise=0.0, rng=0)
    rows = {(int(a), int(b)): int(label) for (a, b), label in zip(x, y, strict=True)}
    assert rows == {(-1, -1): 0, (-1, 1): 1, (1, -1): 1, (1, 1): 0}


def test_circles_and_moons_geometry_without_noise():
    x, y = make_circles(100, noise=0.0, rng=0, factor=0.3)
    radius = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.3, rtol=1e-6)
    x, y = make_moons(100, noise=0.0, rng=0)
    np.testing.assert_allclose(np.hypot(x[y == 0, 0], x[y == 0, 1]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.hypot(x[y == 1, 0] - 1, x[y == 1, 1] - 0.5), 1.0, rtol=1e-6)


def test_spiral_arms_reach_the_unit_circle_and_classes_option():
    x, y = make_spiral(400, noise=0.0, rng=0, classes=4)
    assert set(np.unique(y)) == {0, 1, 2, 3}
    radius = np.hypot(x[:, 0], x[:, 1])
    assert radius.max() == pytest.approx(1.0, abs=1e-6) and radius.min() > 0


def test_sine_targets_follow_the_sine():
    x, y = make_sine(500, noise=0.0, rng=0, periods=2.0)
    assert x.shape == y.shape == (500, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.sin(x), atol=1e-6)
    assert np.abs(x).max() <= 2 * np.pi
    _, noisy = make_sine(2000, noise=0.5, rng=0)
    assert 0.4 < float(np.std(noisy - np.sin(make_sine(2000, noise=0.5, rng=0)[0]))) < 0.6


@pytest.mark.parametrize("make", [f for f, _ in CLASSIFIERS.values()] + [make_sine])
def test_bad_arguments_are_refused_with_clear_messages(make):
    with pytest.raises(TypeError, match="n must be a positive int"):
        make(10.0, rng=0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        make(0, rng=0)
    with pytest.raises(ValueError, match="noise must be a finite float >= 0"):
        make(10, noise=-0.1, rng=0)
    with pytest.raises(ValueError, match="noise"):
        make(10, noise=float("nan"), rng=0)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        make(10, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="float32 or float64"):
        make(10, rng=0, dtype=np.int32)
    with pytest.raises(TypeError):
        make(10)  # rng is required: no hidden default seed


def test_option_errors():
    with pytest.raises(ValueError, match="n >= 3"):
        make_spiral(2, rng=0)
    with pytest.raises(ValueError, match="classes must be >= 2"):
        make_spiral(10, rng=0, classes=1)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        make_circles(10, rng=0, factor=1.0)
    with pytest.raises(ValueError, match="periods"):
        make_sine(10, rng=0, periods=0)


@pytest.mark.parametrize("make", [make_circles, make_moons, make_sine, make_spiral, make_xor])
def test_a_huge_n_is_refused_before_any_allocation(make):
    from purenn.datasets import MAX_TOY_SAMPLES

    for n in (MAX_TOY_SAMPLES + 1, 10**12, 2**63):
        with pytest.raises(ValueError, match=r"at most 10,000,000; got .*MAX_TOY_SAMPLES"):
            make(n, rng=0)
