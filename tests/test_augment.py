"""Seeded, vectorised image augmentation: geometry, determinism, purity, errors."""

from __future__ import annotations

import numpy as np
import pytest

from purenn.augment import augment_images, flip_images, warp_images


def _ro(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return _ro(rng.integers(0, 256, (16, 28, 28), dtype=np.uint8))


def test_zero_limits_are_the_identity(images):
    out = augment_images(images, 0, max_shift=0, max_rotation=0, max_scale=0)
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8 and not np.shares_memory(out, images)


def test_integer_shift_moves_pixels_and_fills(images):
    x = images.astype(np.float32)
    out = warp_images(x, shift=(2, -1))  # 2 rows down, 1 column left
    np.testing.assert_array_equal(out[:, 2:, :-1], x[:, :-2, 1:])
    assert (out[:, :2, :] == 0).all() and (out[:, :, -1] == 0).all()
    filled = warp_images(x, shift=(0, 3), fill=-1.0)
    assert (filled[:, :, :3] == -1).all()


def test_rotation_by_90_degrees_matches_rot90(images):
    x = images.astype(np.float64)
    out = warp_images(x, rotation=90.0)
    np.testing.assert_allclose(out, np.rot90(x, k=1, axes=(1, 2)), atol=1e-9)
    back = warp_images(out, rotation=-90.0)
    np.testing.assert_allclose(back, x, atol=1e-9)


def test_scale_zooms_about_the_centre():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 3:6, 3:6] = 1.0  # a 3x3 square in the middle
    big = warp_images(x, scale=3.0)  # output (r, c) samples input 4 + (r - 4, c - 4) / 3
    assert big[0, 4, 7] == 1.0  # from input column 5: inside the square
    np.testing.assert_allclose(big[0, 4, 8], 2 / 3, rtol=1e-6)  # column 5.33: 2/3 inside
    np.testing.assert_allclose(big[0, 8, 8], 4 / 9, rtol=1e-6)
    small = warp_images(x, scale=1 / 3)  # output (r, c) samples input 4 + 3 (r - 4, c - 4)
    assert small[0, 4, 4] == 1.0 and small[0, 4, 5] == 0.0 and small.sum() == 1.0


def test_per_sample_parameters():
    x = np.ones((3, 8, 8), np.float32)
    out = warp_images(x, shift=np.array([[0, 0], [0, 4], [4, 0]]))
    assert out[0].sum() == 64 and out[1].sum() == 32 and out[2].sum() == 32


def test_deterministic_under_seed_and_differs_across_seeds(images):
    a = augment_images(images, np.random.default_rng(1))
    b = augment_images(images, 1)
    c = augment_images(images, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, images)
    same = augment_images(np.repeat(images[:1], 4, axis=0), 1)  # one image, four draws
    assert len({s.tobytes() for s in same}) == 4  # each sample gets its own transform


def test_shapes_and_dtypes_preserved(images):
    x = images.astype(np.float32) / 255
    for arr, kw in (
        (x, {}),
        (x[:, None], {}),
        (np.repeat(x[:, None], 3, axis=1), {}),
        (x.reshape(16, 784), {"image_shape": (28, 28)}),
        (x.astype(np.float64), {}),
        (images, {}),
    ):
        out = augment_images(_ro(arr), 0, **kw)
        assert out.shape == arr.shape and out.dtype == arr.dtype
    flat = augment_images(x.reshape(16, 784), 5, image_shape=(28, 28))
    np.testing.assert_array_equal(flat.reshape(16, 28, 28), augment_images(x, 5))
    rgb = np.repeat(x[:, None], 3, axis=1)
    out = augment_images(rgb, 4)
    np.testing.assert_array_equal(out[:, 0], out[:, 2])  # one transform for all channels
    assert augment_images(x[:0], 0).shape == (0, 28, 28)


def test_values_stay_in_range_and_input_untouched(images):
    before = images.copy()
    out = augment_images(images, 3, max_shift=3, max_rotation=30, max_scale=0.3)
    np.testing.assert_array_equal(images, before)
    x = images.astype(np.float32) / 255
    out = augment_images(x, 3, max_shift=3, max_rotation=30, max_scale=0.3)
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_bad_arguments(images):
    with pytest.raises(ValueError, match="image_shape"):
        augment_images(images.reshape(16, 784), 0)
    with pytest.raises(ValueError, match="does not hold images"):
        augment_images(images.reshape(16, 784), 0, image_shape=(27, 28))
    with pytest.raises(ValueError, match=r"shape \(n, h, w\)"):
        augment_images(images[0, 0], 0)
    with pytest.raises(TypeError, match="Generator"):
        augment_images(images, None)
    with pytest.raises(TypeError, match="numeric"):
        augment_images(images.astype(bool), 0)
    for kw in ({"max_shift": -1}, {"max_rotation": 200}, {"max_scale": 1.0}, {"max_shift": np.nan}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            augment_images(images, 0, **kw)
    with pytest.raises(ValueError, match="fill"):
        augment_images(images, 0, fill=np.inf)
    with pytest.raises(ValueError, match="scale > 0"):
        warp_images(images, scale=0.0)
    with pytest.raises(ValueError, match="shift"):
        warp_images(images, shift=(1, 2, 3))


# --------------------------------------------------------------------------- flip_images


def test_flip_all_or_none(images):
    out = flip_images(images, 0, p=1.0)
    np.testing.assert_array_equal(out, images[:, :, ::-1])
    assert out.dtype == images.dtype and out.flags.writeable
    same = flip_images(images, 0, p=0.0)
    np.testing.assert_array_equal(same, images)
    assert not np.shares_memory(same, images)


def test_flip_layouts_agree(images):
    x = images.astype(np.float32) / 255
    ref = flip_images(x, 5)
    np.testing.assert_array_equal(flip_images(x[:, None], 5)[:, 0], ref)
    flat = flip_images(x.reshape(16, 784), 5, image_shape=(28, 28))
    assert flat.shape == (16, 784)
    np.testing.assert_array_equal(flat.reshape(16, 28, 28), ref)
    rgb = np.repeat(x[:, None], 3, axis=1)
    np.testing.assert_array_equal(flip_images(rgb, 5), np.repeat(ref[:, None], 3, axis=1))


def test_flip_is_seeded_with_one_coin_per_image(images):
    a = flip_images(images, np.random.default_rng(7))
    np.testing.assert_array_equal(a, flip_images(images, 7))
    mirrored = [np.array_equal(a[i], images[i, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(a[i], images[i]) for i in range(16)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert any(mirrored) and any(kept)
    coins = np.random.default_rng(7).random(16) < 0.5
    assert mirrored == coins.tolist()
    assert not np.array_equal(a, flip_images(images, 8))


def test_flip_bad_arguments(images):
    for p in (-0.1, 1.5, np.nan, True, "0.5"):
        with pytest.raises(ValueError, match="p in"):
            flip_images(images, 0, p=p)
    with pytest.raises(ValueError, match="image_shape"):
        flip_images(images.reshape(16, 784), 0)
    with pytest.raises(TypeError, match="Generator"):
        flip_images(images, None)
    with pytest.raises(TypeError, match="numeric"):
        flip_images(images.astype(bool), 0)


def test_crop_images_moves_whole_pixels_with_zeros_coming_in():
    from purenn.augment import crop_images

    rng = np.random.default_rng(0)
    x = rng.integers(1, 255, size=(200, 1, 6, 5)).astype(np.uint8)
    x.flags.writeable = False
    out = crop_images(x, np.random.default_rng(3), 2)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = np.random.default_rng(3).integers(0, 5, size=(200, 2))
    for i in range(200):
        padded = np.zeros((1, 10, 9), np.uint8)
        padded[:, 2:8, 2:7] = x[i]
        r, q = offsets[i]
        np.testing.assert_array_equal(out[i], padded[:, r : r + 6, q : q + 5])
    assert len({tuple(o) for o in offsets}) == 25  # every offset drawn
    flat = crop_images(x.reshape(200, -1).astype(np.float32), np.random.default_rng(3), 2,
                       image_shape=(6, 5))  # fmt: skip
    np.testing.assert_array_equal(flat.reshape(out.shape), out)
    np.testing.assert_array_equal(crop_images(x, 0, 0), x)
    with pytest.raises(ValueError, match="pad as an int in"):
        crop_images(x, 0, -1)
    with pytest.raises(ValueError, match="pad as an int in"):
        crop_images(x, 0, 1.5)
