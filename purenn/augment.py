"""Seeded augmentation: images (shifts, small rotations, scaling, mirroring) and pen strokes.

Each image gets its own random affine map about the image centre. The output is
computed by the inverse map: for every output pixel, find where it came from in
the input and sample there bilinearly; pixels that come from outside the image
take ``fill``. Everything is vectorised over the batch (no Python loop over
samples), pure (the input is never written) and seeded (same rng state, same
output).

Coordinates are ``(col, row)`` with rows pointing down, relative to the centre
``((w - 1) / 2, (h - 1) / 2)``. The forward map of an image with rotation ``a``
(degrees, counter-clockwise as displayed), scale ``s`` and shift ``(dr, dc)``::

    p_out = s * R(a) @ p_in + (dc, dr),      R(a) = [[cos a,  sin a],
                                                     [-sin a, cos a]]

and its inverse, which is what the sampler evaluates::

    p_in = R(-a) @ (p_out - (dc, dr)) / s
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from purenn._checks import as_array, as_generator, as_shape, is_finite_real, show

__all__ = [
    "MAX_WARP",
    "augment_images",
    "augment_strokes",
    "crop_images",
    "flip_images",
    "warp_images",
]

MAX_WARP = 1000.0
"""Bounds of a warp: ``scale`` in ``[1 / MAX_WARP, MAX_WARP]`` and shifts of at
most ``MAX_WARP`` image sizes. Beyond them the image is a single pixel or gone,
and the sampling coordinates would overflow float32."""


def _as_images(
    x: npt.ArrayLike, image_shape: tuple[int, ...] | None, fn: str
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``x`` as an array plus its per-image ``(channels, h, w)``."""
    arr = as_array(x, f"{fn}: x")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{fn} expects numeric images (uint8 or float); got dtype {arr.dtype}. "
            "Convert with x.astype(np.float32)."
        )
    if image_shape is not None:
        shape = as_shape(image_shape, f"{fn}: image_shape")
        if len(shape) not in (2, 3):
            raise ValueError(
                f"{fn}: image_shape must be (h, w) or (c, h, w) of positive ints; "
                f"got {show(image_shape)}."
            )
        chw = shape if len(shape) == 3 else (1, *shape)
        if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != int(np.prod(chw)):
            raise ValueError(
                f"{fn}: x of shape {arr.shape} does not hold images of shape {shape}: "
                f"expected (n, {int(np.prod(chw))}) or (n, {', '.join(map(str, shape))})."
            )
        return arr, chw  # type: ignore[return-value]
    if arr.ndim == 3:
        return arr, (1, arr.shape[1], arr.shape[2])
    if arr.ndim == 4:
        return arr, (arr.shape[1], arr.shape[2], arr.shape[3])
    hint = " Flat images need their shape: pass image_shape=(28, 28)." if arr.ndim == 2 else ""
    raise ValueError(
        f"{fn} expects images of shape (n, h, w) or (n, c, h, w); got {arr.shape}.{hint}"
    )


def _per_sample(value: npt.ArrayLike, n: int, width: int, name: str) -> np.ndarray:
    """Broadcast a scalar or per-sample parameter to shape ``(n,)`` or ``(n, width)``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"warp_images expects {name} as a number or an array of numbers; got {show(value)}."
        ) from None
    target = (n,) if width == 1 else (n, width)
    try:
        out = np.broadcast_to(arr, target)
    except ValueError:
        raise ValueError(
            f"warp_images expects {name} as a scalar or of shape {target}; got {arr.shape}."
        ) from None
    if not np.isfinite(out).all():
        raise ValueError(f"warp_images expects finite {name}; got NaN/inf.")
    return out


def warp_images(
    x: npt.ArrayLike,
    rotation: npt.ArrayLike = 0.0,
    scale: npt.ArrayLike = 1.0,
    shift: npt.ArrayLike = (0.0, 0.0),
    *,
    image_shape: tuple[int, ...] | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """Apply given affine maps (one per image) with bilinear sampling.

    Args:
        x: Images of shape ``(n, h, w)``, ``(n, c, h, w)``, or flat ``(n, d)``
            with ``image_shape``; uint8/int or float.
        rotation: Degrees counter-clockwise as displayed, scalar or ``(n,)``.
        scale: Zoom factor (above 1 enlarges), scalar or ``(n,)``, in
            ``[1 / MAX_WARP, MAX_WARP]``.
        shift: ``(rows down, cols right)`` in pixels, shape ``(2,)`` or ``(n, 2)``,
            at most ``MAX_WARP * max(h, w)`` either way.
        image_shape: ``(h, w)`` or ``(c, h, w)``; required for flat input.
        fill: Value for pixels that map from outside the image.

    Returns:
        A new array of ``x``'s shape and dtype. Integer images are rounded and
        clipped to their dtype's range.

    Raises:
        TypeError: If ``x`` is not numeric.
        ValueError: On bad shapes, non-positive scales, or non-finite values.
    """
    arr, (c, h, w) = _as_images(x, image_shape, "warp_images")
    n = arr.shape[0]
    angle = np.deg2rad(_per_sample(rotation, n, 1, "rotation"))
    zoom = _per_sample(scale, n, 1, "scale")
    if (zoom <= 0).any():
        raise ValueError(f"warp_images expects scale > 0; got min {zoom.min()}.")
    if n and not (1 / MAX_WARP <= zoom.min() and zoom.max() <= MAX_WARP):
        raise ValueError(
            f"warp_images expects scale in [{1 / MAX_WARP:g}, {MAX_WARP:g}] (MAX_WARP); got "
            f"{zoom.min():g} to {zoom.max():g}."
        )
    move = _per_sample(shift, n, 2, "shift")
    limit = MAX_WARP * max(h, w)
    if n and np.abs(move).max() > limit:
        raise ValueError(
            f"warp_images expects shifts of at most {limit:g} pixels (MAX_WARP image sizes); "
            f"got {np.abs(move).max():g}."
        )
    if not is_finite_real(fill):
        raise ValueError(f"warp_images expects a finite number as fill; got {show(fill)}.")
    return _warp(arr, (c, h, w), angle, zoom, move, float(fill))


def augment_images(
    x: npt.ArrayLike,
    rng: np.random.Generator | int,
    max_shift: float = 2.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
    *,
    image_shape: tuple[int, ...] | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """Randomly shift, rotate and scale each image of a batch (for training only).

    Per image, independently and uniformly: a shift of up to ``max_shift``
    pixels along each axis, a rotation of up to ``max_rotation`` degrees either
    way, and a scale factor in ``[1 - max_scale, 1 + max_scale]``. Apply it to
    each mini-batch, not to the whole training set at once (it needs a few
    float arrays the size of the batch).

    Args:
        x: Images of shape ``(n, h, w)``, ``(n, c, h, w)``, or flat ``(n, d)``
            with ``image_shape``; uint8/int or float (e.g. scaled to [0, 1]).
        rng: A ``numpy.random.Generator`` or an int seed.
        max_shift: Largest shift in pixels, in ``[0, MAX_WARP * max(h, w)]``.
        max_rotation: Largest rotation in degrees, in ``[0, 180]``.
        max_scale: Largest relative zoom, in ``[0, 1)``.
        image_shape: ``(h, w)`` or ``(c, h, w)``; required for flat input.
        fill: Value for pixels that come from outside the image (background).

    Returns:
        A new array of ``x``'s shape and dtype; ``x`` is not modified.

    Raises:
        TypeError: On a bad ``rng`` or non-numeric ``x``.
        ValueError: On bad shapes or out-of-range limits.
    """
    arr, chw = _as_images(x, image_shape, "augment_images")
    gen = as_generator(rng)
    for name, value, lo, hi, closed in (
        ("max_shift", max_shift, 0.0, MAX_WARP * max(chw[1:]), True),
        ("max_rotation", max_rotation, 0.0, 180.0, True),
        ("max_scale", max_scale, 0.0, 1.0, False),
    ):
        ok = is_finite_real(value) and lo <= value and (value <= hi if closed else value < hi)
        if not ok:
            bracket = "]" if closed else ")"
            raise ValueError(
                f"augment_images expects {name} in [{lo:g}, {hi:g}{bracket}; got {show(value)}."
            )
    if not is_finite_real(fill):
        raise ValueError(f"augment_images expects a finite number as fill; got {show(fill)}.")
    n = arr.shape[0]
    u = gen.uniform(-1.0, 1.0, size=(n, 4))  # one draw: shift rows, shift cols, angle, zoom
    move = u[:, :2] * float(max_shift)
    angle = np.deg2rad(u[:, 2] * float(max_rotation))
    zoom = 1.0 + u[:, 3] * float(max_scale)
    return _warp(arr, chw, angle, zoom, move, float(fill))


def flip_images(
    x: npt.ArrayLike,
    rng: np.random.Generator | int,
    p: float = 0.5,
    *,
    image_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Mirror each image left to right with probability ``p`` (for training only).

    Only for data whose labels survive a mirror image: a shirt mirrored is still
    a shirt (Fashion-MNIST), but a mirrored 3 is no digit (MNIST). Each image
    gets its own coin, drawn from ``rng`` in one call of ``rng.random(n)``.

    Args:
        x: Images of shape ``(n, h, w)``, ``(n, c, h, w)``, or flat ``(n, d)``
            with ``image_shape``; any numeric dtype.
        rng: A ``numpy.random.Generator`` or an int seed; same state, same output.
        p: Probability of mirroring each image, in ``[0, 1]``.
        image_shape: ``(h, w)`` or ``(c, h, w)``; required for flat input.

    Returns:
        A new array of ``x``'s shape and dtype (exact copies of the pixels, only
        reordered); ``x`` is not modified.

    Raises:
        TypeError: On a bad ``rng`` or non-numeric ``x``.
        ValueError: On bad shapes or ``p`` outside ``[0, 1]``.
    """
    arr, (c, h, w) = _as_images(x, image_shape, "flip_images")
    ok = isinstance(p, numbers.Real) and not isinstance(p, bool) and 0.0 <= p <= 1.0
    if not ok:
        raise ValueError(f"flip_images expects p in [0, 1]; got {show(p)}.")
    gen = as_generator(rng)
    n = arr.shape[0]
    mirror = gen.random(n) < p  # (n,) one coin per image
    grid = arr.reshape(n, c, h, w)
    out = np.where(mirror[:, None, None, None], grid[..., ::-1], grid)
    return out.reshape(arr.shape)


def crop_images(
    x: npt.ArrayLike,
    rng: np.random.Generator | int,
    pad: int = 2,
    *,
    image_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Random crops of the zero-padded images (for training only): each image is
    padded with ``pad`` zero pixels on every side and an ``h x w`` window is cut
    from it at a random offset, so it moves by up to ``pad`` pixels in each
    direction, zeros coming in at the edges (the CIFAR "pad 4, crop 32" recipe).

    The offsets are drawn from ``rng`` in one call, ``rng.integers(0, 2 * pad + 1,
    (n, 2))`` (rows, then columns), whole pixels, so pixel values are copied, never
    interpolated.

    Args:
        x: Images of shape ``(n, h, w)``, ``(n, c, h, w)``, or flat ``(n, d)``
            with ``image_shape``; any numeric dtype.
        rng: A ``numpy.random.Generator`` or an int seed; same state, same output.
        pad: Zero pixels added on each side, an int from 0 (a copy of ``x``) to
            ``max(h, w)``.
        image_shape: ``(h, w)`` or ``(c, h, w)``; required for flat input.

    Returns:
        A new array of ``x``'s shape and dtype; ``x`` is not modified.

    Raises:
        TypeError: On a bad ``rng`` or non-numeric ``x``.
        ValueError: On bad shapes or a ``pad`` that is not an int >= 0.
    """
    arr, (c, h, w) = _as_images(x, image_shape, "crop_images")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or not 0 <= pad <= max(h, w):
        # a pad beyond the image size would crop windows of padding alone
        raise ValueError(
            f"crop_images expects pad as an int in [0, {max(h, w)}] (the image size); "
            f"got {show(pad)}."
        )
    pad = int(pad)
    gen = as_generator(rng)
    n = arr.shape[0]
    offsets = gen.integers(0, 2 * pad + 1, size=(n, 2))  # (row, col) in the padded image
    grid = arr.reshape(n, c, h, w)
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad), arr.dtype)
    padded[:, :, pad : pad + h, pad : pad + w] = grid
    out = np.empty_like(grid)
    # one slice per distinct offset, every image with that offset at once
    codes = offsets[:, 0] * (2 * pad + 1) + offsets[:, 1]
    for code in np.unique(codes):
        pick = np.flatnonzero(codes == code)
        r, q = divmod(int(code), 2 * pad + 1)
        out[pick] = padded[pick, :, r : r + h, q : q + w]
    return out.reshape(arr.shape)


def _warp(
    arr: np.ndarray,
    chw: tuple[int, int, int],
    angle: np.ndarray,
    zoom: np.ndarray,
    move: np.ndarray,
    fill: float,
) -> np.ndarray:
    """Inverse-map bilinear sampling; arguments already validated, angle in radians."""
    c, h, w = chw
    n = arr.shape[0]
    work = np.float64 if arr.dtype == np.float64 else np.float32
    if n == 0:
        return arr.copy()
    src = arr.reshape(n, c, h * w)
    # Output grid relative to the centre, minus the shift: (n, h, w) each.
    rows = np.arange(h, dtype=work)[None, :, None] - work((h - 1) / 2)
    cols = np.arange(w, dtype=work)[None, None, :] - work((w - 1) / 2)
    v = rows - move[:, 0, None, None].astype(work)
    u = cols - move[:, 1, None, None].astype(work)
    cos = (np.cos(angle) / zoom).astype(work)[:, None, None]
    sin = (np.sin(angle) / zoom).astype(work)[:, None, None]
    # p_in = R(-a) @ (u, v) / s  with R(-a) = [[cos, -sin], [sin, cos]]
    col_in = cos * u - sin * v + work((w - 1) / 2)
    row_in = sin * u + cos * v + work((h - 1) / 2)
    c0 = np.floor(col_in)
    r0 = np.floor(row_in)
    wc = (col_in - c0).reshape(n, 1, h * w)
    wr = (row_in - r0).reshape(n, 1, h * w)
    c0 = c0.astype(np.intp).reshape(n, h * w)
    r0 = r0.astype(np.intp).reshape(n, h * w)

    def tap(r: np.ndarray, cc: np.ndarray) -> np.ndarray:
        """Pixel values at integer (r, cc), ``fill`` outside: shape (n, c, h*w)."""
        inside = (r >= 0) & (r < h) & (cc >= 0) & (cc < w)
        flat = np.clip(r, 0, h - 1) * w + np.clip(cc, 0, w - 1)
        vals = np.take_along_axis(src, flat[:, None, :], axis=2).astype(work, copy=False)
        return np.where(inside[:, None, :], vals, work(fill))

    top = tap(r0, c0) * (1 - wc) + tap(r0, c0 + 1) * wc
    bottom = tap(r0 + 1, c0) * (1 - wc) + tap(r0 + 1, c0 + 1) * wc
    out = (top * (1 - wr) + bottom * wr).reshape(arr.shape)
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(arr.dtype)
    return out.astype(arr.dtype, copy=False)


# --------------------------------------------------------------------------- pen strokes


def _limit(value: object, name: str, hi: float) -> float:
    if not (is_finite_real(value) and 0.0 <= value <= hi):
        raise ValueError(f"augment_strokes expects {name} in [0, {hi:g}]; got {show(value)}.")
    return float(value)


def augment_strokes(
    x: npt.ArrayLike,
    rng: np.random.Generator | int,
    max_rotation: float = 10.0,
    max_shear: float = 0.2,
    noise: float = 2.0,
) -> np.ndarray:
    """Randomly rotate, shear and jitter pen strokes, then re-normalise each axis.

    A pendigits sample is ``p`` pen points stored as ``(x1, y1, x2, y2, ...)``,
    each axis min-max normalised to 0..100 on its own. Per sample, independently:
    a rotation by an angle uniform in ``[-max_rotation, max_rotation]`` degrees,
    a horizontal shear (slant) ``x <- x + s * y`` with ``s`` uniform in
    ``[-max_shear, max_shear]``, Gaussian jitter of standard deviation ``noise``
    on every coordinate, and finally each axis mapped back onto 0..100 (min to 0,
    max to 100), as the data set itself was built. An axis whose new range is
    (numerically) zero keeps its original values. Vectorised over the batch;
    ``x`` is never written.

    Since the output is re-normalised, the rotation centre does not matter and
    ``noise`` is in the units of the input (0..100), before re-normalising.

    Use it on *raw* coordinates. For a network trained on standardised features,
    undo the standardisation, augment, standardise again, e.g. in ``fit``'s
    ``augment`` hook (``purenn.experiment.in_raw_units`` does exactly that).

    Args:
        x: Samples of shape ``(n, 2 * p)`` with ``p >= 2`` points, int or float,
            finite, laid out ``x1, y1, x2, y2, ...``.
        rng: A ``numpy.random.Generator`` or an int seed; same state, same output.
        max_rotation: Largest rotation in degrees, in ``[0, 180]``.
        max_shear: Largest shear factor, in ``[0, 1]``.
        noise: Jitter standard deviation in input units, in ``[0, 100]``.

    Returns:
        A new array of ``x``'s shape: ``x``'s dtype when it is a float dtype,
        else float32. Every sample spans exactly 0..100 on both axes (up to
        float rounding), unless an axis was degenerate.

    Raises:
        TypeError: On a bad ``rng`` or non-numeric ``x``.
        ValueError: On a bad shape, NaN/inf, or out-of-range limits.
    """
    arr = as_array(x, "augment_strokes: x")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"augment_strokes expects numeric pen coordinates; got dtype {arr.dtype}. "
            "Convert with x.astype(np.float32)."
        )
    if arr.ndim != 2 or arr.shape[1] < 4 or arr.shape[1] % 2:
        raise ValueError(
            "augment_strokes expects samples of shape (n, 2 * points) laid out x1, y1, x2, "
            f"y2, ... (pendigits: (n, 16)); got {arr.shape}."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("augment_strokes expects finite coordinates; got NaN/inf.")
    max_rotation = _limit(max_rotation, "max_rotation", 180.0)
    max_shear = _limit(max_shear, "max_shear", 1.0)
    noise = _limit(noise, "noise", 100.0)
    gen = as_generator(rng)
    out_dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)
    n, d = arr.shape
    pts = arr.astype(np.float64).reshape(n, d // 2, 2)  # (n, points, [x, y])
    u = gen.uniform(-1.0, 1.0, size=(n, 2))  # one draw: angle, shear
    angle = np.deg2rad(u[:, 0] * max_rotation)[:, None]
    shear = (u[:, 1] * max_shear)[:, None]
    px, py = pts[..., 0], pts[..., 1]
    # rotate by `angle`, then slant: x <- x + shear * y
    rx = np.cos(angle) * px - np.sin(angle) * py
    ry = np.sin(angle) * px + np.cos(angle) * py
    moved = np.stack([rx + shear * ry, ry], axis=-1)
    if noise > 0:
        moved = moved + gen.normal(0.0, noise, size=moved.shape)
    lo = moved.min(axis=1, keepdims=True)
    span = moved.max(axis=1, keepdims=True) - lo
    flat = span < 1e-9
    scaled = (moved - lo) * (100.0 / np.where(flat, 1.0, span))
    scaled = np.where(flat, pts, scaled)
    return scaled.reshape(n, d).astype(out_dtype)
