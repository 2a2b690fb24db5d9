"""A strict reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped).

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions, d
    4*d bytes   the dimensions, uint32 each
    the rest    prod(dims) elements, C order

The reader checks the magic number, the dimensions and the exact byte count;
it never returns a half-read array.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from purenn.datasets._errors import CorruptFileError

__all__ = ["read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"
_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: Refuse headers promising more than this many bytes (a corrupt header must
#: not make us allocate terabytes).
_MAX_BYTES = 1 << 33


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected from its first bytes).

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A writable array in native byte order with the file's shape, e.g.
        ``uint8`` of shape ``(60000, 28, 28)`` for MNIST training images.

    Raises:
        CorruptFileError: (a ``ValueError``) on a wrong magic number, bad gzip
            data, or a byte count that does not match the header.
        FileNotFoundError: If the file does not exist.
    """
    return read_idx_hashed(Path(path))[0]


def read_idx_hashed(
    path: Path, expected_shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, str]:
    """Read an IDX file and hash its decompressed bytes on the way.

    Args:
        path: The file (raw or gzip).
        expected_shape: If given, the header's dimensions must equal it; checked
            before any large allocation.

    Returns:
        ``(array, sha256)``: the array as in :func:`read_idx`, and the SHA-256
        hex digest of the decompressed file bytes.

    Raises:
        CorruptFileError: See :func:`read_idx`; also on a shape mismatch.
    """
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
    kind = "gzip-compressed IDX" if is_gzip else "IDX"
    fix = "Delete it and download or copy it again."
    opener = gzip.open if is_gzip else open
    digest = hashlib.sha256()
    try:
        with opener(path, "rb") as f:
            head = _read_exact(f, 4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _TYPES:
                raise CorruptFileError(
                    f"{path}: not an {kind} file: expected a magic number 00 00 TT DD with "
                    f"type TT in {{08, 09, 0B, 0C, 0D, 0E}}; got {head.hex(' ') or 'nothing'}. "
                    f"{fix}"
                )
            dtype, ndim = _TYPES[head[2]], head[3]
            dims_bytes = _read_exact(f, 4 * ndim)
            if len(dims_bytes) < 4 * ndim:
                raise CorruptFileError(
                    f"{path}: truncated {kind} header: expected {ndim} dimensions "
                    f"({4 * ndim} bytes); got {len(dims_bytes)} bytes. {fix}"
                )
            shape = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
            digest.update(head + dims_bytes)
            if expected_shape is not None and shape != tuple(expected_shape):
                raise CorruptFileError(
                    f"{path}: expected an array of shape {tuple(expected_shape)}; the header "
                    f"says {shape}. Is it the right file (e.g. labels vs images, another "
                    f"data set)? {fix}"
                )
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            nbytes = count * dtype.itemsize
            if nbytes > _MAX_BYTES:
                raise CorruptFileError(
                    f"{path}: header promises {nbytes} bytes of data (shape {shape}), more "
                    f"than the {_MAX_BYTES} this reader accepts; the header is corrupt. {fix}"
                )
            out = np.empty(count, dtype=dtype)
            view = memoryview(out).cast("B")
            got = _readinto_exact(f, view)
            if got < nbytes:
                raise CorruptFileError(
                    f"{path}: truncated {kind} file: header shape {shape} needs {nbytes} "
                    f"data bytes; got {got}. {fix}"
                )
            digest.update(view)
            extra = len(f.read(1 << 16))
            if extra:
                raise CorruptFileError(
                    f"{path}: {kind} file is longer than its header says: shape {shape} "
                    f"needs {nbytes} data bytes; found at least {extra} more. {fix}"
                )
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CorruptFileError(
            f"{path}: cannot read {kind} data ({type(e).__name__}: {e}); the file is "
            f"truncated or not valid gzip. {fix}"
        ) from None
    array = out.reshape(shape)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array, digest.hexdigest()


def _read_exact(f, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of file."""
    parts, left = [], n
    while left > 0:
        block = f.read(left)
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def _readinto_exact(f, view: memoryview) -> int:
    """Fill ``view`` from ``f``, looping over short reads; returns the bytes read."""
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            break
        done += n
    return done
