"""A strict reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped).

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions, d
    4*d bytes   the dimensions, uint32 each
    the rest    prod(dims) elements, C order

The reader checks the magic number, the dimensions and the exact byte count;
it never returns a half-read array. Before it allocates the array it checks
that the file can hold what the header promises: exactly that many bytes for
a raw file; for a gzip file, no more than deflate's largest ratio (1032:1)
allows, and in any case no more than ``max_bytes`` (a decompression bomb or a
corrupt header costs nothing).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from purenn._checks import as_path, positive_int
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
#: Default cap of :func:`read_idx` on the decompressed data (bytes): four times
#: MNIST's training images. Pass ``max_bytes`` for larger files (EMNIST).
MAX_IDX_BYTES = 1 << 28
#: Deflate cannot compress better than this (a 258-byte match in 2 bits, about 1032:1).
_DEFLATE_MAX_RATIO = 1032


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (detected from its first bytes).

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte.gz``.
        max_bytes: Refuse a header that promises more data than this (bytes);
            default :data:`MAX_IDX_BYTES` (256 MiB).

    Returns:
        A writable array in native byte order with the file's shape, e.g.
        ``uint8`` of shape ``(60000, 28, 28)`` for MNIST training images.

    Raises:
        CorruptFileError: (a ``ValueError``) on a wrong magic number, bad gzip
            data, a byte count that does not match the header, or a header
            promising more than ``max_bytes`` or than the file can hold.
        FileNotFoundError: If the file does not exist.
    """
    max_bytes = positive_int(max_bytes, "max_bytes")
    return read_idx_hashed(as_path(path, "path"), max_bytes=max_bytes)[0]


def read_idx_hashed(
    path: Path, expected_shape: tuple[int, ...] | None = None, *, max_bytes: int = MAX_IDX_BYTES
) -> tuple[np.ndarray, str]:
    """Read an IDX file and hash its decompressed bytes on the way.

    Args:
        path: The file (raw or gzip).
        expected_shape: If given, the header's dimensions must equal it; checked
            before any large allocation.
        max_bytes: The cap on the data bytes the header may promise.

    Returns:
        ``(array, sha256)``: the array as in :func:`read_idx`, and the SHA-256
        hex digest of the decompressed file bytes.

    Raises:
        CorruptFileError: See :func:`read_idx`; also on a shape mismatch.
    """
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        file_size = os.fstat(raw.fileno()).st_size
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
            count = math.prod(shape)  # Python ints: no wraparound
            nbytes = count * dtype.itemsize
            header = 4 + 4 * ndim
            if nbytes > max_bytes:
                raise CorruptFileError(
                    f"{path}: header promises {nbytes} bytes of data (shape {shape}), more "
                    f"than the {max_bytes} this reader accepts (max_bytes); the header is "
                    f"corrupt, or pass a larger max_bytes. {fix}"
                )
            if not is_gzip and nbytes != file_size - header:
                what = "truncated" if nbytes > file_size - header else "longer than its header says"
                raise CorruptFileError(
                    f"{path}: {kind} file is {what}: header shape {shape} needs {nbytes} "
                    f"data bytes; the file holds {file_size - header}. {fix}"
                )
            if is_gzip and nbytes + header > _DEFLATE_MAX_RATIO * file_size + 1024:
                raise CorruptFileError(
                    f"{path}: IDX header shape {shape} needs {nbytes} data bytes, more than "
                    f"a gzip file of {file_size} bytes can hold; the header is corrupt. {fix}"
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
