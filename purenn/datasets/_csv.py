"""Kaggle-style CSV files: one sample per line, a label column and numeric features."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from purenn.datasets._errors import CorruptFileError

__all__ = ["load_csv"]


def load_csv(
    path: str | os.PathLike[str],
    label_column: int | str = 0,
    header: bool | str | None = "infer",
    *,
    dtype: npt.DTypeLike | None = None,
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
            an integer, else ``float64``. An integer dtype such as ``np.uint8``
            is checked to hold every value exactly.

    Returns:
        ``(x, y)``: features of shape ``(n, columns - 1)`` and labels ``int64``
        of shape ``(n,)``.

    Raises:
        CorruptFileError: (a ``ValueError``) on ragged rows, non-numeric or
            non-finite cells, or non-integer labels; the message gives the line
            number (1-based, counting the header).
        ValueError: On an unknown label column, a bad ``header`` value, an
            empty file, or values that do not fit ``dtype``.
        TypeError: If ``label_column`` is neither int nor str.
    """
    path = Path(path)
    if header not in ("infer", True, False, None):
        raise ValueError(
            f"header must be 'infer', True, False or None; got {header!r}. "
            "Use header=True when the first line names the columns."
        )
    if isinstance(label_column, bool) or not isinstance(label_column, (int, str)):
        raise TypeError(
            f"label_column must be a column index (int) or a header name (str); "
            f"got {type(label_column).__name__}."
        )
    text = _read_text(path)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: expected CSV rows; the file is empty. Check the path.")
    first_cells = [c.strip() for c in lines[first].split(",")]
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
    body_start = first + 1 if has_header else first
    data = _parse_body(path, lines, body_start, n_cols)
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise CorruptFileError(
            f"{path} line {_line_of(lines, body_start, row)} column {col + 1}: expected a "
            f"finite number; got {data[row, col]}. Fix or remove that row."
        )
    labels = data[:, label_index]
    nonint = np.flatnonzero(labels != np.round(labels))
    if nonint.size or (labels.size and labels.min() < 0):
        row = int(nonint[0]) if nonint.size else int(np.argmin(labels))
        raise CorruptFileError(
            f"{path} line {_line_of(lines, body_start, row)}: expected a non-negative integer "
            f"label in column {label_index + 1}; got {labels[row]}. Is label_column right?"
        )
    x = np.delete(data, label_index, axis=1)
    return _cast(path, x, dtype), labels.astype(np.int64)


def _read_text(path: Path) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise CorruptFileError(
                f"{path}: not valid gzip data ({e}). Delete it and fetch it again."
            ) from None
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


def _line_of(lines: list[str], start: int, row: int) -> int:
    """The 1-based line number of data row ``row`` (blank lines are skipped)."""
    seen = -1
    for i in range(start, len(lines)):
        if lines[i].strip():
            seen += 1
            if seen == row:
                return i + 1
    return len(lines)


def _parse_body(path: Path, lines: list[str], start: int, n_cols: int) -> np.ndarray:
    body = "\n".join(lines[start:])
    if not body.strip():
        raise ValueError(f"{path}: expected data rows after the header; got none.")
    try:
        data = np.loadtxt(
            io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None
        )
    except ValueError:
        data = None
    if data is not None and data.shape[1:] == (n_cols,):
        return data
    # Slow path, only for a broken file: find the first bad line and say what is wrong.
    for i in range(start, len(lines)):
        if not lines[i].strip():
            continue
        cells = lines[i].split(",")
        if len(cells) != n_cols:
            raise CorruptFileError(
                f"{path} line {i + 1}: expected {n_cols} comma-separated columns (as on line "
                f"{start + 1 if start else 1}); got {len(cells)}. Fix or remove that row."
            )
        for j, cell in enumerate(cells):
            if not _is_number(cell.strip()):
                raise CorruptFileError(
                    f"{path} line {i + 1} column {j + 1}: expected a number; got "
                    f"{cell.strip()!r}. Fix that cell (or pass header=True if line {i + 1} "
                    "is a header)."
                )
    raise CorruptFileError(f"{path}: could not parse the CSV data; expected {n_cols} columns.")


def _cast(path: Path, x: np.ndarray, dtype: npt.DTypeLike | None) -> np.ndarray:
    integral = bool(np.all(x == np.round(x)))
    if dtype is None:
        return x.astype(np.int64) if integral else x
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not integral or lo < info.min or hi > info.max:
            raise ValueError(
                f"{path}: dtype {dt} cannot hold the features exactly: they span "
                f"{lo:g}..{hi:g}{'' if integral else ' and include fractions'}. "
                "Pass a wider or a float dtype."
            )
    elif dt.kind != "f":
        raise TypeError(f"dtype must be an integer or float dtype; got {dt}.")
    return x.astype(dt)
