"""Kaggle-style CSV files: one sample per line, a label column and numeric features."""

from __future__ import annotations

import decimal
import io
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from purenn._checks import as_path, show
from purenn.datasets._errors import CorruptFileError
from purenn.datasets._gzip import GZIP_MAGIC, gunzip

__all__ = ["MAX_CSV_BYTES", "load_csv"]

#: Default cap on a CSV file's (decompressed) size in bytes: 1 GiB, about nine
#: times Kaggle's ``mnist_train.csv``. Pass ``max_bytes`` to read larger files.
MAX_CSV_BYTES = 1 << 30
#: float64 holds every integer up to this magnitude exactly, and not all above it.
_EXACT_FLOAT_INT = 2**53
_INTEGER_CELL = re.compile(r"[+-]?[0-9]+(\.0*)?")


def load_csv(
    path: str | os.PathLike[str],
    label_column: int | str = 0,
    header: bool | str | None = "infer",
    *,
    dtype: npt.DTypeLike | None = None,
    max_bytes: int = MAX_CSV_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a comma-separated file such as Kaggle's ``mnist_train.csv``.

    Kaggle's MNIST CSVs have a header line (``label,1x1,1x2,...``), then one
    image per line: the label, then 784 pixel values 0..255 in row-major order.
    Reshape with ``x.reshape(-1, 28, 28)``. Files ending in ``.gz`` (or starting
    with the gzip magic bytes) are decompressed on the fly.

    Args:
        path: The CSV file.
        label_column: Index of the label column (negative counts from the end),
            or its name in the header line.
        header: ``"infer"`` treats the first line as a header when any of its
            cells is not a number; ``True`` always, ``False``/``None`` never.
        dtype: dtype of the features. Default: ``int64`` when every value is
            an integer that int64 holds, else ``float64``. An integer dtype such
            as ``np.uint8`` is checked to hold every value exactly; a float dtype
            (``np.float32``) to hold every value without overflow.
        max_bytes: Refuse a file whose text (after decompression) is larger
            than this many bytes; default :data:`MAX_CSV_BYTES` (1 GiB). The
            text is held in memory while it is parsed, a few times over.

    Numbers are never changed silently: a value that float64 cannot hold
    exactly (a cell written as an integer beyond 2**53, such as
    ``9007199254740993.0``, in a file that int64 cannot hold) and a label beyond
    int64 are refused with the line and column. Cells written as floats
    (``1e39``) are rounded to float64 as usual.

    Returns:
        ``(x, y)``: features of shape ``(n, columns - 1)`` and labels ``int64``
        of shape ``(n,)``.

    Raises:
        CorruptFileError: (a ``ValueError``) on ragged rows, non-numeric or
            non-finite cells, or non-integer labels; the message gives the line
            number (1-based, counting the header).
        ValueError: On an unknown label column, a bad ``header`` value, an
            empty file, a file larger than ``max_bytes``, or values that do not
            fit ``dtype``.
        TypeError: If ``label_column`` is neither int nor str.
    """
    path = as_path(path, "path")
    if header not in ("infer", True, False, None):
        raise ValueError(
            f"header must be 'infer', True, False or None; got {show(header)}. "
            "Use header=True when the first line names the columns."
        )
    if isinstance(label_column, bool) or not isinstance(label_column, (int, str)):
        raise TypeError(
            f"label_column must be a column index (int) or a header name (str); "
            f"got {type(label_column).__name__}."
        )
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | np.integer):
        raise TypeError(f"max_bytes must be an int; got {show(max_bytes)}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1; got {max_bytes}")
    text = _read_text(path, int(max_bytes))
    first = next((i for i, line in enumerate(_lines(text)) if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: expected CSV rows; the file is empty. Check the path.")
    first_cells = [c.strip() for c in _line(text, first).split(",")]
    has_header = header is True or (header == "infer" and not all(map(_is_number, first_cells)))
    n_cols = len(first_cells)
    if isinstance(label_column, str):
        if not has_header:
            raise ValueError(
                f"{path}: label_column={label_column!r} names a column, but the file has no "
                "header line. Pass the column index instead, e.g. label_column=0."
            )
        if label_column not in first_cells:
            raise ValueError(
                f"{path}: label_column {label_column!r} is not in the header; the header's "
                f"first columns are {first_cells[:5]}. Pass one of them or an index."
            )
        label_index = first_cells.index(label_column)
    else:
        if not -n_cols <= label_column < n_cols:
            raise ValueError(
                f"{path}: label_column must be in {-n_cols}..{n_cols - 1} for a file with "
                f"{n_cols} columns; got {label_column}."
            )
        label_index = label_column % n_cols
    if n_cols < 2:
        raise ValueError(
            f"{path}: expected a label column and at least one feature column; got "
            f"{n_cols} column. Is the file comma-separated?"
        )
    body = _Body(path, text, first + 1 if has_header else first, n_cols)
    data = body.exact(body.parse())
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise CorruptFileError(
            f"{path} line {body.line_of(row)} column {col + 1}: expected a "
            f"finite number; got {data[row, col]}. Fix or remove that row."
        )
    labels = data[:, label_index]
    nonint = np.flatnonzero(labels != np.round(labels)) if labels.dtype.kind == "f" else []
    if len(nonint) or (labels.size and labels.min() < 0):
        row = int(nonint[0]) if len(nonint) else int(np.argmin(labels))
        raise CorruptFileError(
            f"{path} line {body.line_of(row)}: expected a non-negative integer "
            f"label in column {label_index + 1}; got {labels[row]}. Is label_column right?"
        )
    if labels.dtype.kind == "f" and labels.size and labels.max() >= 2.0**63:
        row = int(np.argmax(labels))
        raise CorruptFileError(
            f"{path} line {body.line_of(row)}: label {labels[row]:g} in column "
            f"{label_index + 1} is beyond int64 (the labels' dtype). Is label_column right?"
        )
    x = np.delete(data, label_index, axis=1)
    return _cast(path, x, dtype), labels.astype(np.int64)


def _read_text(path: Path, max_bytes: int) -> str:
    too_big = (
        f"{path}: the CSV text is larger than max_bytes={max_bytes} bytes; pass a larger "
        "max_bytes if the file is meant to be that big"
    )
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > max_bytes:
            raise ValueError(too_big)
        raw = f.read()
    if raw[:2] == GZIP_MAGIC:
        raw = gunzip(path, raw, max_bytes, too_big)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorruptFileError(
            f"{path}: expected UTF-8 text; got a non-text byte at offset {e.start}. "
            "Is this really a CSV file?"
        ) from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _lines(text: str) -> io.StringIO:
    """The lines of ``text`` one at a time (``\n``, ``\r\n`` or ``\r`` ends a line,
    as in the csv module), without holding a list of them: a file of millions of
    short lines would cost many times its size as Python strings."""
    return io.StringIO(text, newline=None)


def _line(text: str, index: int) -> str:
    """Line ``index`` (0-based) of ``text``."""
    return next(itertools.islice(_lines(text), index, None))


class _Body:
    """The data rows of a CSV text: the non-blank lines from line ``start`` on,
    each of ``n_cols`` cells, read lazily."""

    def __init__(self, path: Path, text: str, start: int, n_cols: int) -> None:
        self.path, self.text, self.start, self.n_cols = path, text, start, n_cols

    def rows(self) -> Iterator[tuple[int, str]]:
        """``(1-based line number, line)`` of every data row, in order."""
        lines = itertools.islice(_lines(self.text), self.start, None)
        for number, line in enumerate(lines, self.start + 1):
            if line.strip():
                yield number, line

    def line_of(self, row: int) -> int:
        """The 1-based line number of data row ``row``."""
        return next(itertools.islice(self.rows(), row, None))[0]

    def load(self, dtype: type) -> np.ndarray:
        return np.loadtxt(
            (line for _, line in self.rows()), delimiter=",", dtype=dtype, ndmin=2, comments=None
        )

    def parse(self) -> np.ndarray:
        if next(self.rows(), None) is None:
            raise ValueError(f"{self.path}: expected data rows after the header; got none.")
        try:
            data = self.load(np.float64)
        except ValueError:
            data = None
        if data is not None and data.shape[1:] == (self.n_cols,):
            return data
        # Slow path, only for a broken file: find the first bad line and say what is wrong.
        for number, line in self.rows():
            cells = line.split(",")
            if len(cells) != self.n_cols:
                raise CorruptFileError(
                    f"{self.path} line {number}: expected {self.n_cols} comma-separated columns "
                    f"(as on line {self.start + 1}); got {len(cells)}. Fix or "
                    "remove that row."
                )
            for j, cell in enumerate(cells):
                if not _is_number(cell.strip()):
                    raise CorruptFileError(
                        f"{self.path} line {number} column {j + 1}: expected a number; got "
                        f"{cell.strip()!r}. Fix that cell (or pass header=True if line "
                        f"{number} is a header)."
                    )
        raise CorruptFileError(
            f"{self.path}: could not parse the CSV data; expected {self.n_cols} columns."
        )

    def exact(self, data: np.ndarray) -> np.ndarray:
        """``data`` (parsed as float64), or the same values as exact int64 when some
        integer is too large for float64 to hold; refuse a value float64 changed."""
        big = np.abs(data) >= _EXACT_FLOAT_INT
        if not big.any():
            return data
        try:
            return self.load(np.int64)
        except (ValueError, OverflowError):
            pass  # not all plain int64 literals: keep float64 if it holds every value
        wanted = {int(r) for r in np.flatnonzero(big.any(axis=1))}
        for row, (number, line) in enumerate(self.rows()):
            if row not in wanted:
                continue
            cells = line.split(",")
            for col in np.flatnonzero(big[row]):
                cell, value = cells[col].strip(), float(data[row, col])
                # a cell written as a float (1e39) is rounded as floats are; one written
                # as an integer must come back as that integer
                if _INTEGER_CELL.fullmatch(cell) and decimal.Decimal(cell) != decimal.Decimal(
                    value
                ):
                    raise CorruptFileError(
                        f"{self.path} line {number} column {col + 1}: {cell} cannot be held "
                        f"exactly: float64 keeps integers exactly only up to 2**53 (it would "
                        f"read {value!r}), and int64 is used only when every cell is an integer "
                        "within int64. Fix that cell, or store it as text elsewhere."
                    )
        return data


def _cast(path: Path, x: np.ndarray, dtype: npt.DTypeLike | None) -> np.ndarray:
    if x.dtype.kind == "i":
        integral, fits_int64 = True, True
    else:
        integral = bool(np.all(x == np.round(x)))
        fits_int64 = not x.size or (-(2.0**63) <= x.min() and x.max() < 2.0**63)
    if dtype is None:
        return x.astype(np.int64) if integral and fits_int64 else x
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = (x.min().item(), x.max().item()) if x.size else (0, 0)
        if not integral or lo < info.min or hi > info.max:
            raise ValueError(
                f"{path}: dtype {dt} cannot hold the features exactly: they span "
                f"{lo:g}..{hi:g}{'' if integral else ' and include fractions'}. "
                "Pass a wider or a float dtype."
            )
    elif dt.kind != "f":
        raise TypeError(f"dtype must be an integer or float dtype; got {dt}.")
    else:
        peak = np.abs(x).max().item() if x.size else 0
        if peak > float(np.finfo(dt).max):
            raise ValueError(
                f"{path}: dtype {dt} cannot hold the features: the largest magnitude is "
                f"{peak:g}, beyond {dt}'s {np.finfo(dt).max:g}. Pass a wider float dtype."
            )
    return x.astype(dt)
