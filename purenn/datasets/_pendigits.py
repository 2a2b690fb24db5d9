"""UCI Pen-Based Recognition of Handwritten Digits (Alpaydin and Alimoglu, 1996).

Each row is a digit written on a tablet, resampled to 8 (x, y) points scaled to
0..100: 16 integer features, then the class 0..9. The official split is
writer-independent: ``pendigits.tra`` (30 writers, 7,494 rows) and
``pendigits.tes`` (14 other writers, 3,498 rows).

UCI publishes no checksum, so a file is accepted when it parses cleanly, has
the known row and class counts, and the SHA-256 of the parsed arrays
(``x`` then ``y``, each as little-endian int64 in C order) matches the pinned one.
Files may be gzipped (``pendigits.tra.gz``).

A gzipped copy of both files ships inside the package (:data:`BUNDLED_DIR`,
with its CC BY 4.0 attribution beside it). It is used when no other copy is
found, before any download, and is verified like any other copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import attrs
import numpy as np

from purenn._checks import show
from purenn.datasets._download import (
    MirrorsFailedError,
    download_first,
    download_zip_members,
)
from purenn.datasets._errors import CorruptFileError, DataNotFoundError
from purenn.datasets._gzip import GZIP_MAGIC, gunzip
from purenn.datasets._paths import cache_dir, find_files, not_found_message, search_dirs

__all__ = ["BUNDLED_DIR", "PENDIGITS", "load_pendigits", "parse_pendigits"]

N_FEATURES = 16
N_CLASSES = 10
#: The most text a pendigits file may hold (after decompression): about six
#: times the UCI training file, so a damaged or crafted file costs no more.
MAX_TEXT_BYTES = 4 * 2**20


@attrs.frozen
class PendigitsFile:
    """One split of pendigits and the facts it is verified against."""

    name: str
    class_counts: tuple[int, ...]
    sha256: str

    @property
    def rows(self) -> int:
        return sum(self.class_counts)


@attrs.frozen
class PendigitsSource:
    """Where pendigits lives and comes from."""

    subdirs: tuple[str, ...]
    mirrors: tuple[str, ...]
    zip_urls: tuple[str, ...]
    files: tuple[PendigitsFile, PendigitsFile]
    bundled: Path | None = None
    """A folder shipped with the package holding the files (gzipped), searched
    after every other folder and before any download; None: no bundled copy."""


BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "pendigits"
"""The copy shipped with purenn: ``pendigits.tra.gz``, ``pendigits.tes.gz``, ``README.md``."""

PENDIGITS = PendigitsSource(
    subdirs=("pendigits",),
    mirrors=("https://archive.ics.uci.edu/ml/machine-learning-databases/pendigits/",),
    zip_urls=(
        "https://archive.ics.uci.edu/static/public/81/"
        "pen+based+recognition+of+handwritten+digits.zip",
    ),
    files=(
        PendigitsFile(
            "pendigits.tra",
            (780, 779, 780, 719, 780, 720, 720, 778, 719, 719),
            "b288b33ea7f273546860e7fd22a7b342b4e5ac2009c20d2697695821efc26cf3",
        ),
        PendigitsFile(
            "pendigits.tes",
            (363, 364, 364, 336, 364, 335, 336, 364, 336, 336),
            "e6d72ab16ed7cba3eebbcc783f6c8fee818b497ee2cd21a71f068ee7b40cc1d7",
        ),
    ),
    bundled=BUNDLED_DIR,
)

Split = tuple[np.ndarray, np.ndarray]


def arrays_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of ``x`` then ``y``, each as little-endian int64 bytes in C order."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return digest.hexdigest()


def parse_pendigits(path: str | os.PathLike[str]) -> Split:
    """Parse a file in UCI's pendigits layout, without checking counts or hashes.

    Args:
        path: A text file of rows ``f1, ..., f16, class``; spaces around the
            commas are allowed (UCI right-aligns the numbers), blank lines skipped.
            A name ending in ``.gz`` is decompressed first.

    Returns:
        ``(x, y)``: features ``int64`` of shape ``(n, 16)`` in 0..100 and labels
        ``int64`` of shape ``(n,)`` in 0..9.

    Raises:
        CorruptFileError: On a row without 17 fields, a non-integer cell, a value
            out of range, or no rows at all (the message gives the line number);
            on bad gzip data or more than :data:`MAX_TEXT_BYTES` of text.
    """
    path = Path(path)
    fix = "Delete the file and fetch it again, or fix that line."
    too_big = (
        f"{path}: more than {MAX_TEXT_BYTES:,} bytes of text (the UCI training file has "
        f"637 KB); this is not a pendigits file. {fix}"
    )
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_TEXT_BYTES:
            raise CorruptFileError(too_big)
        raw = f.read()
    if path.suffix == ".gz":
        if raw[:2] != GZIP_MAGIC:
            raise CorruptFileError(f"{path}: named .gz but not a gzip file. {fix}")
        raw = gunzip(path, raw, MAX_TEXT_BYTES, too_big, CorruptFileError)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise CorruptFileError(
            f"{path}: not a pendigits text file: non-ASCII byte at offset {e.start}. {fix}"
        ) from None
    rows: list[list[int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != N_FEATURES + 1:
            raise CorruptFileError(
                f"{path} line {lineno}: expected {N_FEATURES + 1} comma-separated integers "
                f"({N_FEATURES} features, then the class); got {len(cells)} fields. {fix}"
            )
        try:
            row = [int(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not c.strip().lstrip("+-").isdigit())
            raise CorruptFileError(
                f"{path} line {lineno}: expected integers; got {show(bad.strip())}. {fix}"
            ) from None
        if not all(0 <= v <= 100 for v in row[:-1]) or not 0 <= row[-1] < N_CLASSES:
            raise CorruptFileError(
                f"{path} line {lineno}: expected features in 0..100 and a class in "
                f"0..{N_CLASSES - 1}; got {row}. {fix}"
            )
        rows.append(row)
    if not rows:
        raise CorruptFileError(f"{path}: expected pendigits rows; the file is empty. {fix}")
    data = np.array(rows, dtype=np.int64)
    return np.ascontiguousarray(data[:, :N_FEATURES]), data[:, N_FEATURES].copy()


def _parse_verified(path: Path, f: PendigitsFile) -> Split:
    x, y = parse_pendigits(path)
    counts = tuple(int(c) for c in np.bincount(y, minlength=N_CLASSES))
    fix = "Delete it and fetch it again (UCI's writer-independent split is expected)."
    if len(y) != f.rows or counts != f.class_counts:
        raise CorruptFileError(
            f"{path}: expected {f.rows} rows with class counts {f.class_counts} for "
            f"{f.name}; got {len(y)} rows with class counts {counts}. {fix}"
        )
    sha = arrays_sha256(x, y)
    if sha != f.sha256:
        raise CorruptFileError(
            f"{path}: checksum mismatch for {f.name}: SHA-256 of the parsed arrays is "
            f"{sha}; expected {f.sha256}. {fix}"
        )
    return x, y


def load_pendigits(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[Split, Split]:
    """Load UCI pen-based handwritten digits with the official writer-independent split.

    Files ``pendigits.tra`` and ``pendigits.tes`` (or ``.gz``) are looked for in
    ``data_dir``, then ``$PURENN_DATA``, then the user cache, each in a
    ``pendigits/`` subfolder or flat; then the copy bundled with purenn
    (:data:`BUNDLED_DIR`). Only if that is missing too are they downloaded.

    Args:
        data_dir: A folder to search first, or None.
        download: If the files are found nowhere, download them into the cache
            (``~/.cache/purenn/pendigits``): from UCI's machine-learning-databases
            path, else from UCI's static zip.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: features ``int64`` of shape
        ``(7494, 16)`` and ``(3498, 16)`` with values 0..100, labels ``int64``
        of shape ``(7494,)`` and ``(3498,)`` in 0..9.

    Raises:
        DataNotFoundError: Files missing and ``download=False``, or every source
            failed; the message lists files, folders searched, and the fix.
        CorruptFileError: A file is malformed or fails its counts or checksum.
    """
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False; got {show(download)}.")
    src = PENDIGITS
    bundled = [] if src.bundled is None else [src.bundled]
    roots = [*search_dirs(data_dir), *bundled]
    names = [(f.name, f.name + ".gz") for f in src.files]
    paths = find_files(roots, src.subdirs, names, flat_only=bundled)
    errors: list[str] = []
    if paths is None and download:
        errors = _download(src)
        if not errors:
            paths = find_files([cache_dir()], src.subdirs[:1], names)
    if paths is None:
        raise DataNotFoundError(
            not_found_message(
                "pendigits",
                [f.name for f in src.files],
                roots,
                src.subdirs,
                bundled,
                errors,
                download,
            )
        )
    train, test = (_parse_verified(p, f) for p, f in zip(paths, src.files, strict=True))
    return train, test


#: Room in UCI's zip for what is not a data file (the description, the raw files).
_ZIP_EXTRA_BYTES = 8 << 20


def text_cap(f: PendigitsFile) -> int:
    """The most bytes ``f`` can take as text: its rows of 17 fields, each at most
    8 characters with its comma and padding. Larger downloads are refused."""
    return f.rows * (N_FEATURES + 1) * 8 + 4096


def _download(src: PendigitsSource) -> list[str]:
    """Fetch missing files into the cache; returns the failures (empty on success)."""
    dest = cache_dir() / src.subdirs[0]
    by_name = {f.name: f for f in src.files}
    missing = [f for f in src.files if not (dest / f.name).is_file()]
    errors: list[str] = []

    def verify(name: str, tmp: Path) -> None:
        _parse_verified(tmp, by_name[name])

    still: list[PendigitsFile] = []
    for f in missing:
        try:
            download_first(
                [m + f.name for m in src.mirrors],
                dest / f.name,
                verify=lambda tmp, name=f.name: verify(name, tmp),
                max_bytes=text_cap(f),
            )
        except MirrorsFailedError as e:
            errors.extend(e.errors)
            still.append(f)
    if not still:
        return []
    for url in src.zip_urls:
        try:
            download_zip_members(
                url,
                {f.name: dest / f.name for f in still},
                verify=verify,
                max_member_bytes=max(text_cap(f) for f in still),
                max_bytes=sum(text_cap(f) for f in src.files) + _ZIP_EXTRA_BYTES,
            )
            return []
        except MirrorsFailedError as e:
            errors.extend(e.errors)
    return errors
