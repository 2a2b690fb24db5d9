"""Convolution and pooling layers for channels-first images: Conv2D, MaxPool2D,
AvgPool2D, GlobalAvgPool2D, and the shape layers Flatten and Reshape.

Arrays are batch-first and channels-first: ``x`` is ``(n, c, h, w)``. The layers
follow the protocol of :mod:`purenn.base`: frozen ``attrs`` specs with
``output_shape``, ``init_params``, ``forward`` and ``backward``, registered
like a user's own. Convolution and pooling declare ``uses_workspace``: their
work arrays come from ``ctx.workspace`` (:class:`purenn.Workspace`).

How the convolution is computed (derived in full in ``docs/math.md``):

* **im2col.** Every ``kh x kw`` window of the (zero-padded) input is read
  through :func:`numpy.lib.stride_tricks.sliding_window_view` and copied once
  into a matrix ``cols`` of shape ``(c*kh*kw, oh*ow*n)``: one column per output
  pixel and sample, one row per (channel, kernel row, kernel column). The whole
  layer is then one matrix product ``z = w.reshape(f, -1) @ cols``, and
  ``dw = dz @ cols.T`` in the backward pass.
* **col2im.** The backward pass turns ``dcols = w2d.T @ dz`` back into an image
  gradient by looping over the ``kh*kw`` kernel offsets: each offset's rows of
  ``dcols`` (one small product) are added into a strided slice of ``dx``. No
  ``np.add.at``, no loop over samples or pixels.
* **Bounded memory.** ``cols`` for a big batch can be huge (a 3x3 conv on
  ``(1024, 64, 32, 32)`` float32 would need 2.4 GB), so the batch is processed
  in chunks of samples whose ``cols`` stays under :data:`MAX_WORK_BYTES`.
* **Layout.** Internally images are stored *batch-last*, ``(c, h, w, n)`` in
  memory, so that every kernel-offset slice (in im2col, col2im and pooling) is
  a long contiguous run instead of rows of a few pixels. The product gives
  ``z`` as ``(f, oh, ow, n)``; the layer returns the ``(n, f, oh, ow)`` *view*
  of it rather than copying. NumPy's elementwise functions keep that memory
  order, so the next pooling and convolution layers read it without a
  transposing copy, and only Flatten (or the first convolution, for an
  ordinary C-ordered batch) reorders memory. Callers see an ordinary
  ``(n, f, oh, ow)`` array (``np.ascontiguousarray`` gives C order if needed).

Padding ``"same"`` follows TensorFlow: the output has ``ceil(h / stride)`` rows,
and the ``max((oh - 1) * stride + kh - h, 0)`` zero rows needed are split with
the smaller half on top (left) and the larger half at the bottom (right). With
stride 1 this keeps the spatial size for any kernel, also an even one.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from purenn._checks import MAX_SAMPLE_SIZE, float_field, int_field, one_of, plain_number, show
from purenn.activations import activation_validator, get_activation
from purenn.base import Context, Layer, Shape, register_layer
from purenn.initializers import INITIALIZERS
from purenn.workspace import FRESH, Allocator, empty_like

MAX_WORK_BYTES = 64 * 2**20
"""Upper bound, in bytes, on one im2col matrix ``cols`` (forward and backward).

A batch whose ``cols`` would be bigger is processed in chunks of samples. The
result is the same up to the order of floating-point sums.
"""

Pads = tuple[int, int, int, int]
"""Zero padding of an image as ``(top, bottom, left, right)``."""


# ---------------------------------------------------------------------------
# Field converters and validators
# ---------------------------------------------------------------------------


def _to_pair(value: Any) -> Any:
    """``3`` -> ``(3, 3)``; ``[3, 2]`` -> ``(3, 2)``; anything else unchanged
    (the validator then names the field in its error)."""
    value = plain_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple(plain_number(v) for v in value)
    return value


def _pair_of(minimum: int):
    """attrs validator: a pair of ints ``>= minimum``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        what = "positive ints" if minimum == 1 else f"ints >= {minimum}"
        ok = (
            isinstance(value, tuple)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        )
        if not ok:
            raise TypeError(
                f"{type(instance).__name__}.{attribute.name} must be an int or a pair of "
                f"{what}, e.g. 3 or (3, 3); got {show(value)}"
            )
        if min(value) < minimum or max(value) > MAX_SAMPLE_SIZE:
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name} must hold {what} up to "
                f"{MAX_SAMPLE_SIZE:,}; got {show(value)}"
            )

    return check


def _to_padding(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return _to_pair(value)


def _check_padding(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, str):
        if value not in ("valid", "same"):
            raise ValueError(
                f"{type(instance).__name__}.padding must be 'valid', 'same', an int >= 0 "
                f"or a pair of them; got {show(value)}"
            )
        return
    _pair_of(0)(instance, attribute, value)


def _to_optional_pair(value: Any) -> Any:
    return None if value is None else _to_pair(value)


def _check_optional_pair(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _pair_of(1)(instance, attribute, value)


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------


def _image_shape(in_shape: Shape) -> Shape:
    if len(in_shape) != 3:
        raise ValueError(
            "expects channels-first images of shape "
            f"(channels, height, width); got {in_shape}. Give the Network an input_shape "
            "like (1, 28, 28), and put image layers before Flatten()"
        )
    return in_shape


def _same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TensorFlow's "same": ``(out, pad_lo, pad_hi)`` with ``out = ceil(size / s)``."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _window_fit(
    in_shape: Shape,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    what: str,
    pads: Pads,
) -> tuple[int, int]:
    """Output ``(oh, ow)`` of sliding ``kernel`` over the padded image, or a clear error."""
    _, h, w = in_shape
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if hp < kernel[0] or wp < kernel[1]:
        padded = f" (padded to {hp}x{wp})" if any(pads) else ""
        raise ValueError(
            f"the {kernel[0]}x{kernel[1]} {what} does not fit "
            f"the input of shape {in_shape}{padded}; use a smaller {what}, more padding, "
            "or fewer downsampling layers before it"
        )
    return (hp - kernel[0]) // stride[0] + 1, (wp - kernel[1]) // stride[1] + 1


# ---------------------------------------------------------------------------
# Pure convolution math (im2col, matrix product, col2im), chunked over samples
# ---------------------------------------------------------------------------


def _batch_last(x: np.ndarray, scratch: Allocator = FRESH, key: str = "xt") -> np.ndarray:
    """``x`` (n, c, h, w) stored as ``(c, h, w, n)`` in C order: a free view for the
    arrays this module makes, one copy for an ordinary C-ordered batch."""
    xt = x.transpose(1, 2, 3, 0)
    if xt.flags.c_contiguous:
        return xt
    out = scratch.empty(key, xt.shape, x.dtype)
    np.copyto(out, xt)
    return out


def _pad(xt: np.ndarray, pads: Pads, scratch: Allocator = FRESH, key: str = "xp") -> np.ndarray:
    """Zero-pad the spatial axes of a batch-last ``xt`` (c, h, w, n); new array if padded."""
    if not any(pads):
        return xt
    c, h, w, n = xt.shape
    t, b, l, r = pads
    xp = scratch.zeros(key, (c, h + t + b, w + l + r, n), xt.dtype)
    xp[:, t : t + h, l : l + w] = xt
    return xp


def _empty_like(
    scratch: Allocator, key: str, ref: np.ndarray, dtype: Any = None, shape: Shape | None = None
) -> np.ndarray:
    """An uninitialised array of ``shape`` (default: ``ref``'s) with its axes in
    ``ref``'s memory order (elementwise work on mixed layouts is several times slower)."""
    return empty_like(scratch, key, ref, dtype, shape)


def _same_layout(a: np.ndarray, ref: np.ndarray) -> bool:
    return np.array_equal(
        np.argsort(a.strides, kind="stable"), np.argsort(ref.strides, kind="stable")
    )


def _chunk_size(n: int, row_bytes: int, max_bytes: int) -> int:
    """How many samples fit in one work matrix of at most ``max_bytes``."""
    return max(1, min(n, max_bytes // max(row_bytes, 1)))


def _im2col(
    xp: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    out: tuple[int, int],
    buf: np.ndarray,
) -> np.ndarray:
    """Windows of a padded batch-last chunk ``xp`` (c, hp, wp, m) as ``cols``
    of shape (c*kh*kw, oh*ow*m), written into the front of the flat ``buf``.

    Row ``(ci, i, j)`` of ``cols`` holds ``xp[ci, i + sh*r, j + sw*q, s]`` for every
    output pixel ``(r, q)`` and sample ``s``, in (r, q, s) order.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    c, m = xp.shape[0], xp.shape[3]
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (c, hp-kh+1, wp-kw+1, m, kh, kw)
    win = win[:, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw]  # (c, oh, ow, m, kh, kw)
    cols = buf[: c * kh * kw * oh * ow * m]
    np.copyto(cols.reshape(c, kh, kw, oh, ow, m), win.transpose(0, 4, 5, 1, 2, 3))  # one copy
    return cols.reshape(c * kh * kw, oh * ow * m)


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: tuple[int, int],
    pads: Pads,
    *,
    keep_cols: bool = False,
    max_bytes: int | None = None,
    scratch: Allocator = FRESH,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cross-correlation ``z[s, f, r, q] = b[f] + sum_{c,i,j} w[f, c, i, j] *
    xp[s, c, sh*r + i, sw*q + j]`` with ``xp`` the zero-padded ``x``.

    Args:
        x: input ``(n, c, h, w)``, float32 or float64 (not modified).
        w: kernels ``(f, c, kh, kw)`` of the same dtype.
        b: biases ``(f,)``.
        stride: ``(sh, sw)``.
        pads: zero padding ``(top, bottom, left, right)``.
        keep_cols: return the im2col matrix for the backward pass when the batch
            fits in one chunk (otherwise None is returned and backward rebuilds it).
        max_bytes: bound on one im2col chunk; default :data:`MAX_WORK_BYTES`.
        scratch: where the work arrays (and ``z``) come from; see :mod:`purenn.workspace`.

    Returns:
        ``(z, cols)``: ``z`` of shape ``(n, f, oh, ow)`` and dtype of ``x`` (a view
        of a batch-last ``(f, oh, ow, n)`` array); ``cols`` ``(c*kh*kw, oh*ow*n)``
        or None.
    """
    max_bytes = MAX_WORK_BYTES if max_bytes is None else max_bytes
    n, c = x.shape[:2]
    f, _, kh, kw = w.shape
    xp = _pad(_batch_last(x, scratch), pads, scratch)  # (c, hp, wp, n)
    oh = (xp.shape[1] - kh) // stride[0] + 1
    ow = (xp.shape[2] - kw) // stride[1] + 1
    k, npix = c * kh * kw, oh * ow
    w2d = w.reshape(f, k)
    step = _chunk_size(n, k * npix * x.dtype.itemsize, max_bytes)
    colbuf = scratch.empty("cols", (k * npix * step,), x.dtype)
    z = scratch.empty("z", (f, npix * n), x.dtype)
    if step == n:
        cols = _im2col(xp, (kh, kw), stride, (oh, ow), colbuf)
        np.matmul(w2d, cols, out=z)  # z = w2d @ cols, (f, oh*ow*n)
    else:
        cols = None
        z4 = z.reshape(f, oh, ow, n)
        for s0 in range(0, n, step):
            s1 = min(n, s0 + step)
            colc = _im2col(xp[..., s0:s1], (kh, kw), stride, (oh, ow), colbuf)
            z4[..., s0:s1] = (w2d @ colc).reshape(f, oh, ow, s1 - s0)
    z += b[:, None]
    z = z.reshape(f, oh, ow, n).transpose(3, 0, 1, 2)
    return z, (cols if keep_cols else None)


def conv2d_backward(
    dz: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: tuple[int, int],
    pads: Pads,
    *,
    cols: np.ndarray | None = None,
    need_dx: bool = True,
    max_bytes: int | None = None,
    scratch: Allocator = FRESH,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` given ``dz = dL/dz``.

    Args:
        dz: ``(n, f, oh, ow)``, the gradient of the pre-activation output.
        x: the forward input ``(n, c, h, w)``.
        w: kernels ``(f, c, kh, kw)``.
        stride, pads: as in the forward pass.
        cols: the forward's im2col matrix, if it kept it; else rebuilt per chunk.
        need_dx: whether to compute ``dL/dx`` (the first layer does not need it).
        max_bytes: bound on one im2col chunk; default :data:`MAX_WORK_BYTES`.
        scratch: where the work arrays (and ``dx``) come from; see :mod:`purenn.workspace`.

    Returns:
        ``(dx, dw, db)`` with the shapes and dtype of ``x`` (or None), ``w`` and ``(f,)``;
        ``dx`` is a view of a batch-last array, like the forward's output.
    """
    max_bytes = MAX_WORK_BYTES if max_bytes is None else max_bytes
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    _, _, oh, ow = dz.shape
    sh, sw = stride
    k, npix = c * kh * kw, oh * ow
    wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (kh, kw, c, f): wt[i, j] = w[:, :, i, j].T
    dzt = _batch_last(dz, scratch, "dzt")  # (f, oh, ow, n): free for this module's arrays
    db = dzt.reshape(f, npix * n).sum(axis=1)  # dL/db[f] = sum over samples and pixels of dz
    step = n if cols is not None else _chunk_size(n, k * npix * x.dtype.itemsize, max_bytes)
    if cols is None:
        xp = _pad(_batch_last(x, scratch, "bxt"), pads, scratch, "bxp")
        colbuf = scratch.empty("bcols", (k * npix * step,), x.dtype)
    t, l = pads[0], pads[2]
    # dL/dxp, batch-last (c, hp, wp, n): each kernel offset adds one long contiguous slab
    if need_dx:
        dxp = scratch.zeros("dxp", (c, h + t + pads[1], wd + l + pads[3], n), x.dtype)
        dcolbuf = scratch.empty("dcols", (c * npix * step,), x.dtype)
    dw = np.zeros((f, k), dtype=x.dtype)
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        dzc = dzt.reshape(f, npix * n) if step == n else dzt[..., s0:s1].reshape(f, -1)
        if cols is None:
            colc = _im2col(xp[..., s0:s1], (kh, kw), stride, (oh, ow), colbuf)
        else:
            colc = cols
        dw += dzc @ colc.T  # dL/dw2d = dz2d @ cols.T
        if not need_dx:
            continue
        # col2im, one kernel offset (i, j) at a time: its rows of dL/dcols = w2d.T @ dz2d
        # are w[:, :, i, j].T @ dz2d, and every window adds them back where it read
        # (one small product per offset keeps the temporary at c*oh*ow*m, not k*oh*ow*m)
        dcols = dcolbuf[: c * npix * (s1 - s0)].reshape(c, npix * (s1 - s0))
        for i in range(kh):
            for j in range(kw):
                dcols_ij = np.matmul(wt[i, j], dzc, out=dcols).reshape(c, oh, ow, s1 - s0)
                ys = slice(i, i + sh * (oh - 1) + 1, sh)
                xs = slice(j, j + sw * (ow - 1) + 1, sw)
                dxp[:, ys, xs, s0:s1] += dcols_ij
    dx = None
    if need_dx:
        dx = dxp[:, t : t + h, l : l + wd].transpose(3, 0, 1, 2)  # drop the padding
    return dx, dw.reshape(w.shape), db


# ---------------------------------------------------------------------------
# Pure pooling math: a loop over the pool's kernel offsets, vectorised over all else
# ---------------------------------------------------------------------------


def _offset_slices(
    pool: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
) -> list[tuple[int, tuple[slice, slice, slice, slice]]]:
    """``(i * pw + j, index)`` for each pool offset: ``x[index]`` is ``(n, c, oh, ow)``
    holding element ``(i, j)`` of every window."""
    (ph, pw), (sh, sw), (oh, ow) = pool, stride, out
    full = slice(None)
    return [
        (
            i * pw + j,
            (full, full, slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)),
        )
        for i in range(ph)
        for j in range(pw)
    ]


def _pool_out(x_shape: tuple[int, ...], pool: tuple[int, int], stride: tuple[int, int]):
    return (x_shape[2] - pool[0]) // stride[0] + 1, (x_shape[3] - pool[1]) // stride[1] + 1


def _pool_grad_buffer(
    like: np.ndarray,
    pool: tuple[int, int],
    stride: tuple[int, int],
    out: tuple[int, ...],
    scratch: Allocator,
) -> np.ndarray:
    """The array a pooling backward fills, in the memory order of ``like``: zeros,
    except when the windows tile the input exactly (stride == pool, no rows or
    columns left over): then every element is written once by the offset loop,
    so the zero-filling pass (a full pass over a large array) is skipped."""
    dx = _empty_like(scratch, "dx", like)
    tiles = tuple(stride) == tuple(pool) and like.shape[2:] == (out[0] * pool[0], out[1] * pool[1])
    if not tiles:
        dx.fill(0)
    return dx


def _in_layout_of(a: np.ndarray, ref: np.ndarray, scratch: Allocator) -> np.ndarray:
    """``a`` itself if its axes are ordered in memory like ``ref``'s, else a copy
    that is (elementwise work on arrays of mixed layouts is several times slower)."""
    if _same_layout(a, ref):
        return a
    out = _empty_like(scratch, "relayout", ref, a.dtype, a.shape)
    np.copyto(out, a)
    return out


def maxpool_forward(
    x: np.ndarray,
    pool: tuple[int, int],
    stride: tuple[int, int],
    *,
    keep_argmax: bool = True,
    scratch: Allocator = FRESH,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Window maxima ``y[s, c, r, q] = max_{i,j} x[s, c, sh*r + i, sw*q + j]``.

    Args:
        x: ``(n, c, h, w)``, float32 or float64 (not modified).
        pool: ``(ph, pw)``; stride: ``(sh, sw)``.
        keep_argmax: also return which window element won.
        scratch: where ``y``, ``arg`` and the work arrays come from.

    Returns:
        ``(y, arg)``: ``y`` ``(n, c, oh, ow)`` of x's dtype; ``arg`` ``(n, c, oh, ow)``
        holds ``i * pw + j`` of the winner, the first in row-major order on ties
        (as PyTorch); None without ``keep_argmax``. A NaN in a window makes its
        maximum NaN; where its gradient goes is then unspecified.
    """
    out = _pool_out(x.shape, pool, stride)
    offsets = _offset_slices(pool, stride, out)
    first = x[offsets[0][1]]
    y = _empty_like(scratch, "y", first)
    np.copyto(y, first)
    arg = better = None
    if keep_argmax:
        arg = _empty_like(scratch, "arg", y, _index_dtype(pool[0] * pool[1]))
        arg.fill(0)
        better = _empty_like(scratch, "better", y, arg.dtype)
    for k, index in offsets[1:]:
        v = x[index]
        if arg is not None:
            # k exceeds every index so far, so max(arg, k * better) sets arg = k exactly
            # where v beats the running maximum (strictly: the first maximum keeps its
            # place); plain arithmetic is much faster than masked assignment
            np.greater(v, y, out=better)
            np.multiply(better, better.dtype.type(k), out=better)
            np.maximum(arg, better, out=arg)
        np.maximum(y, v, out=y)
    return y, arg


def _index_dtype(size: int) -> np.dtype:
    """The smallest unsigned int dtype that holds ``0 .. size - 1``."""
    return np.dtype(np.uint8 if size <= 256 else np.uint16 if size <= 65536 else np.uint32)


def maxpool_backward(
    dy: np.ndarray,
    arg: np.ndarray,
    like: np.ndarray,
    pool: tuple[int, int],
    stride: tuple[int, int],
    scratch: Allocator = FRESH,
) -> np.ndarray:
    """Route ``dy`` (n, c, oh, ow) to each window's winning element; zeros elsewhere.

    ``like`` is the forward input (only its shape, dtype and memory order are used).
    """
    out = dy.shape[2:]
    dy = _in_layout_of(dy, arg, scratch)
    dx = _pool_grad_buffer(like, pool, stride, out, scratch)
    overlap = stride[0] < pool[0] or stride[1] < pool[1]
    won = _empty_like(scratch, "won", arg, bool)
    for k, index in _offset_slices(pool, stride, out):
        np.equal(arg, k, out=won)
        if overlap:
            dx[index] += dy * won  # an element in several windows collects from each
        else:
            np.multiply(dy, won, out=dx[index])  # dL/dx[winner] = dL/dy; 0 elsewhere
    return dx


def avgpool_forward(
    x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int], scratch: Allocator = FRESH
) -> np.ndarray:
    """Window means ``y[s, c, r, q] = mean_{i,j} x[s, c, sh*r + i, sw*q + j]``.

    Args:
        x: ``(n, c, h, w)``, float32 or float64 (not modified).
        pool: ``(ph, pw)``; stride: ``(sh, sw)``.

    Returns:
        ``y`` of shape ``(n, c, oh, ow)`` and x's dtype.
    """
    out = _pool_out(x.shape, pool, stride)
    offsets = _offset_slices(pool, stride, out)
    first = x[offsets[0][1]]
    y = _empty_like(scratch, "y", first)
    np.copyto(y, first)
    for _, index in offsets[1:]:
        y += x[index]
    y *= 1.0 / (pool[0] * pool[1])  # Python float: a weak scalar, the dtype stays
    return y


def avgpool_backward(
    dy: np.ndarray,
    like: np.ndarray,
    pool: tuple[int, int],
    stride: tuple[int, int],
    scratch: Allocator = FRESH,
) -> np.ndarray:
    """Spread ``dy`` (n, c, oh, ow) evenly over each window; ``like`` is the forward input."""
    dy = _in_layout_of(dy, like, scratch)
    g = dy * (1.0 / (pool[0] * pool[1]))  # dL/dx[window element] = dL/dy / (ph * pw)
    dx = _pool_grad_buffer(like, pool, stride, dy.shape[2:], scratch)
    overlap = stride[0] < pool[0] or stride[1] < pool[1]
    for _, index in _offset_slices(pool, stride, dy.shape[2:]):
        if overlap:
            dx[index] += g
        else:
            dx[index] = g
    return dx


# ---------------------------------------------------------------------------
# Layer specs
# ---------------------------------------------------------------------------


def _workspace(ctx: Context) -> Allocator:
    return FRESH if ctx.workspace is None else ctx.workspace


@register_layer
@attrs.frozen
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in PyTorch and TensorFlow) over
    channels-first images: ``y = activation(conv(x, w) + b)``.

    Args:
        filters: number of output channels ``f``.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; default 1.
        padding: ``"valid"`` (no padding), ``"same"`` (output ``ceil(h / sh)`` by
            ``ceil(w / sw)``, TensorFlow's rule; the input size when the stride is 1),
            or an int ``p`` / a pair ``(ph, pw)`` of zeros added on both sides.
        activation: a registered activation name, as for :class:`purenn.Dense`
            (not ``"softmax"``).
        weight_init: an initialiser name, or None for He (ReLU family) / Glorot;
            ``fan_in = c_in * kh * kw`` and ``fan_out = filters * kh * kw``.
        bias_init: constant every bias starts at.

    Params: ``w`` of shape ``(filters, c_in, kh, kw)`` (PyTorch's layout) and ``b``
    of shape ``(filters,)``, under the key ``conv2d_<i>``.

    Shapes: ``x`` ``(n, c_in, h, w)`` -> ``y`` ``(n, filters, oh, ow)`` with
    ``oh = (h + pad_top + pad_bottom - kh) // sh + 1`` (likewise ``ow``).
    """

    uses_workspace = True

    filters: int = int_field(maximum=MAX_SAMPLE_SIZE)
    kernel_size: tuple[int, int] = attrs.field(converter=_to_pair, validator=_pair_of(1))
    stride: tuple[int, int] = attrs.field(default=1, converter=_to_pair, validator=_pair_of(1))
    padding: str | tuple[int, int] = attrs.field(
        default="valid", converter=_to_padding, validator=_check_padding
    )
    activation: str = attrs.field(default="relu", validator=activation_validator)
    weight_init: str | None = attrs.field(
        default=None, validator=one_of(INITIALIZERS, allow_none=True)
    )
    bias_init: float = float_field(default=0.0)

    @activation.validator
    def _no_softmax(self, attribute: attrs.Attribute, value: str) -> None:
        if value == "softmax":
            raise ValueError(
                "Conv2D.activation 'softmax' would normalise over width, not classes; "
                "use it on the final Dense layer and pick e.g. 'relu' here"
            )

    def pads(self, in_shape: Shape) -> Pads:
        """Zero padding ``(top, bottom, left, right)`` for a ``(c, h, w)`` input."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            _, t, b = _same_pads(in_shape[1], self.kernel_size[0], self.stride[0])
            _, l, r = _same_pads(in_shape[2], self.kernel_size[1], self.stride[1])
            return (t, b, l, r)
        ph, pw = self.padding
        return (ph, ph, pw, pw)

    def output_shape(self, in_shape: Shape) -> Shape:
        _image_shape(in_shape)
        oh, ow = _window_fit(in_shape, self.kernel_size, self.stride, "kernel", self.pads(in_shape))
        return (self.filters, oh, ow)

    def param_shapes(self, in_shape: Shape) -> dict:
        return {"w": (self.filters, in_shape[0], *self.kernel_size), "b": (self.filters,)}

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        c_in, (kh, kw) = in_shape[0], self.kernel_size
        scheme = self.weight_init or get_activation(self.activation).weight_init
        shape = (self.filters, c_in, kh, kw)
        w = INITIALIZERS[scheme](rng, shape, c_in * kh * kw, self.filters * kh * kw)
        b = np.full(self.filters, self.bias_init, dtype=dtype)
        return {"w": w.astype(dtype), "b": b}

    def forward(self, params: dict, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, c_in, h, w) -> ``a`` (n, filters, oh, ow), same dtype."""
        pads = self.pads(x.shape[1:])
        z, cols = conv2d_forward(
            x,
            params["w"],
            params["b"],
            self.stride,
            pads,
            keep_cols=ctx.train,
            scratch=_workspace(ctx),
        )
        act = get_activation(self.activation)
        # z is this pass's own work array and backward needs only a: a can take its place
        a = act.forward(z, out=z) if act.in_place else act.forward(z)
        return a, (x, cols, z, a, pads)

    def backward(
        self, params: dict, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, dict]:
        """``dy`` = dL/da (n, filters, oh, ow) -> (dL/dx, {w, b})."""
        x, cols, z, a, pads = cache
        act = get_activation(self.activation)
        if act.in_place:  # dL/dz = dL/da * da/dz, into a work array
            dz = act.backward(z, a, dy, out=_empty_like(_workspace(ctx), "dz", a))
        else:
            dz = act.backward(z, a, dy)
        dx, dw, db = conv2d_backward(
            dz,
            x,
            params["w"],
            self.stride,
            pads,
            cols=cols,
            need_dx=ctx.need_dx,
            scratch=_workspace(ctx),
        )
        return dx, {"w": dw, "b": db}


@attrs.frozen
class _Pool2D(Layer):
    """What max and average pooling share: the window, the stride, the shapes."""

    uses_workspace = True

    pool_size: tuple[int, int] = attrs.field(converter=_to_pair, validator=_pair_of(1))
    stride: tuple[int, int] | None = attrs.field(
        default=None, converter=_to_optional_pair, validator=_check_optional_pair
    )

    @property
    def strides(self) -> tuple[int, int]:
        """The stride in effect: ``stride``, or ``pool_size`` when it is None."""
        return self.pool_size if self.stride is None else self.stride

    def output_shape(self, in_shape: Shape) -> Shape:
        _image_shape(in_shape)
        oh, ow = _window_fit(in_shape, self.pool_size, self.strides, "pool", (0, 0, 0, 0))
        return (in_shape[0], oh, ow)


@register_layer
@attrs.frozen
class MaxPool2D(_Pool2D):
    """Max pooling: each output pixel is the largest input in its window.

    Args:
        pool_size: ``p`` or ``(ph, pw)``.
        stride: ``s`` or ``(sh, sw)``; None (default) means ``pool_size``, so the
            windows tile the image. No padding: rows and columns that do not fill a
            whole window at the bottom/right are dropped (PyTorch's default).

    Shapes: ``(n, c, h, w)`` -> ``(n, c, (h - ph) // sh + 1, (w - pw) // sw + 1)``.
    The gradient goes to the window's maximum; on ties to the first in row-major
    order, as in PyTorch.
    """

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, c, h, w) -> ``y`` (n, c, oh, ow), same dtype."""
        y, arg = maxpool_forward(
            x, self.pool_size, self.strides, keep_argmax=ctx.train, scratch=_workspace(ctx)
        )
        return y, (x, arg)

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        x, arg = cache
        if arg is None:
            raise ValueError(
                "MaxPool2D.backward needs the cache of a forward pass with train=True "
                "(evaluation mode does not record the argmax)"
            )
        if not ctx.need_dx:
            return None, None
        dx = maxpool_backward(dy, arg, x, self.pool_size, self.strides, _workspace(ctx))
        return dx, None


@register_layer
@attrs.frozen
class AvgPool2D(_Pool2D):
    """Average pooling: each output pixel is the mean of its window.

    Args:
        pool_size: ``p`` or ``(ph, pw)``.
        stride: ``s`` or ``(sh, sw)``; None (default) means ``pool_size``. No
            padding; incomplete windows at the bottom/right are dropped.

    Shapes: ``(n, c, h, w)`` -> ``(n, c, (h - ph) // sh + 1, (w - pw) // sw + 1)``.
    """

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, c, h, w) -> ``y`` (n, c, oh, ow), same dtype."""
        return avgpool_forward(x, self.pool_size, self.strides, _workspace(ctx)), x

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        if not ctx.need_dx:
            return None, None
        dx = avgpool_backward(dy, cache, self.pool_size, self.strides, _workspace(ctx))
        return dx, None


@register_layer
@attrs.frozen
class Flatten(Layer):
    """Flatten each sample to a vector: ``(n, c, h, w)`` -> ``(n, c*h*w)``, in
    C order (channel, then row, then column), as ``torch.flatten(x, 1)``."""

    def output_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, *shape) -> ``(n, prod(shape))``; a copy only if x is not C-ordered."""
        return x.reshape(x.shape[0], -1), x.shape

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        return (dy.reshape(cache) if ctx.need_dx else None), None  # dL/dx = dL/dy, unflattened


@register_layer
@attrs.frozen
class GlobalAvgPool2D(Layer):
    """The mean of each channel over the whole image: ``(n, c, h, w)`` -> ``(n, c)``,
    as ``torch.mean(x, dim=(2, 3))``. A residual CNN's usual last image layer:
    a ``Dense`` classifier follows, with no ``Flatten``."""

    def output_shape(self, in_shape: Shape) -> Shape:
        return (_image_shape(in_shape)[0],)

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, c, h, w) -> ``y`` (n, c), same dtype."""
        return x.mean(axis=(2, 3)), x

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        if not ctx.need_dx:
            return None, None
        x = cache
        dx = np.empty_like(x)  # in x's memory order, which the layer before reads fastest
        # dL/dx[s, c, i, j] = dL/dy[s, c] / (h * w): every pixel counts equally
        np.multiply(dy[:, :, None, None], 1.0 / (x.shape[2] * x.shape[3]), out=dx)
        return dx, None


def _to_shape(value: Any) -> Any:
    """``7`` -> ``(7,)``; a list -> a tuple; NumPy ints -> ints (the validator checks)."""
    value = plain_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(plain_number(v) for v in value)
    return value


def _check_target(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple):  # the converter made lists and ints tuples
        raise TypeError(
            "Reshape.shape must be an int or a tuple of ints, e.g. (1, 28, 28) or (-1,); got "
            f"{type(value).__name__} {show(value, 40)}"
        )
    ok = (
        value
        and all(
            isinstance(v, int) and not isinstance(v, bool) and (0 < v <= MAX_SAMPLE_SIZE or v == -1)
            for v in value
        )
        and sum(v == -1 for v in value) <= 1
    )
    if not ok:
        raise ValueError(
            "Reshape.shape must be a non-empty tuple of positive ints (up to "
            f"{MAX_SAMPLE_SIZE:,}), at most one of them -1 (worked out from the input), "
            f"e.g. (1, 28, 28) or (-1,); got {show(value)}"
        )


@register_layer
@attrs.frozen
class Reshape(Layer):
    """Give each sample a new shape: ``(n, *in_shape)`` -> ``(n, *shape)``, in C
    order (``x.reshape(n, *shape)``). One entry of ``shape`` may be ``-1``, worked
    out from the input size. ``Reshape((1, 28, 28))`` turns flat MNIST vectors
    into images for a CNN; ``Reshape(-1)`` is ``Flatten()``.

    Args:
        shape: the per-sample output shape (an int for a flat one).
    """

    shape: tuple = attrs.field(converter=_to_shape, validator=_check_target)

    def output_shape(self, in_shape: Shape) -> Shape:
        size = math.prod(in_shape)
        known = math.prod(v for v in self.shape if v != -1)
        if -1 in self.shape:
            if size % known:
                raise ValueError(
                    f"cannot reshape {in_shape} ({size} values) to {self.shape}: {size} is "
                    f"not a multiple of {known}"
                )
            return tuple(size // known if v == -1 else v for v in self.shape)
        if known != size:
            raise ValueError(
                f"cannot reshape {in_shape} ({size} values) to {self.shape} ({known} values)"
            )
        return self.shape

    def forward(self, params: None, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        """``x`` (n, *in_shape) -> ``(n, *shape)``; a copy only if x is not C-ordered."""
        return x.reshape(x.shape[0], *self.output_shape(x.shape[1:])), x.shape

    def backward(
        self, params: None, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, None]:
        return (dy.reshape(cache) if ctx.need_dx else None), None  # dL/dx = dL/dy, reshaped
