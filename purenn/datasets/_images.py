"""MNIST and Fashion-MNIST: 28x28 grey-scale images in IDX files, 10 classes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs
import numpy as np

from purenn._checks import show
from purenn.datasets._download import MirrorsFailedError, download_first
from purenn.datasets._errors import CorruptFileError, DataNotFoundError
from purenn.datasets._idx import read_idx_hashed
from purenn.datasets._paths import cache_dir, find_files, not_found_message, search_dirs

__all__ = ["FASHION_MNIST", "MNIST", "load_fashion_mnist", "load_mnist"]

Split = tuple[np.ndarray, np.ndarray]


@attrs.frozen
class IdxFile:
    """One IDX file of a data set and what it must contain.

    Attributes:
        stem: File name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
        md5_gz: Published MD5 of the ``.gz`` file as served by the mirrors
            (checked on download, before the file enters the cache).
        sha256: SHA-256 of the decompressed file (checked on every load, so
            any gzip wrapping or an uncompressed copy is accepted).
        shape: The array shape the header must declare.
    """

    stem: str
    md5_gz: str
    sha256: str
    shape: tuple[int, ...]


@attrs.frozen
class IdxDataset:
    """An IDX image data set: where it lives, where to fetch it, what it holds.

    Attributes:
        title: Human-readable name used in messages.
        subdirs: Subfolder names tried inside each data folder; the first is
            the one downloads go to in the cache.
        mirrors: Base URLs (ending in ``/``) tried in order.
        files: Train images, train labels, test images, test labels.
        system_dirs: Folders holding the files directly (e.g. Debian's).
        n_classes: Labels must lie in ``0 .. n_classes - 1``.
    """

    title: str
    subdirs: tuple[str, ...]
    mirrors: tuple[str, ...]
    files: tuple[IdxFile, IdxFile, IdxFile, IdxFile]
    system_dirs: tuple[str, ...] = ()
    n_classes: int = 10


MNIST = IdxDataset(
    title="MNIST",
    subdirs=("mnist", "MNIST/raw"),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    files=(
        IdxFile(
            "train-images-idx3-ubyte",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            (60000, 28, 28),
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            (60000,),
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            "9fb629c4189551a2d022fa330f9573f3",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            (10000, 28, 28),
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            "ec29112dd5afa0611ce80d1b7f02629c",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            (10000,),
        ),
    ),
)

FASHION_MNIST = IdxDataset(
    title="Fashion-MNIST",
    subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=(
        IdxFile(
            "train-images-idx3-ubyte",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            (60000, 28, 28),
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            (60000,),
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            "bef4ecab320f06d8554ea6380940ec79",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            (10000, 28, 28),
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            (10000,),
        ),
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[Split, Split]:
    """Load MNIST handwritten digits, verified against pinned checksums.

    Files are looked for in ``data_dir``, then ``$PURENN_DATA``, then the user
    cache, each in a ``mnist/`` subfolder or flat; ``.gz`` or uncompressed.

    Args:
        data_dir: A folder to search first, or None.
        download: If the files are found nowhere, download them into the
            cache (``~/.cache/purenn/mnist``), trying each mirror in turn.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: images ``uint8`` of shape
        ``(60000, 28, 28)`` and ``(10000, 28, 28)`` with values 0..255 (0 is
        background), labels ``int64`` of shape ``(60000,)`` and ``(10000,)``.

    Raises:
        DataNotFoundError: Files missing and ``download=False``, or every mirror
            failed; the message lists files, folders searched, and the fix.
        CorruptFileError: A file is truncated, malformed or fails its checksum.
    """
    return load_idx_dataset(MNIST, data_dir, download)


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[Split, Split]:
    """Load Fashion-MNIST (Zalando article images), verified against pinned checksums.

    Searched like :func:`load_mnist` (subfolder ``fashion-mnist/``), and also in
    ``/usr/share/datasets/fashion-mnist/`` where Debian's package
    ``dataset-fashion-mnist`` installs it.

    Args:
        data_dir: A folder to search first, or None.
        download: If the files are found nowhere, download them into the cache.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: images ``uint8`` of shape
        ``(60000, 28, 28)`` and ``(10000, 28, 28)``, labels ``int64`` in 0..9
        (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal,
        6 shirt, 7 sneaker, 8 bag, 9 ankle boot).

    Raises:
        DataNotFoundError: As for :func:`load_mnist`.
        CorruptFileError: As for :func:`load_mnist`.
    """
    return load_idx_dataset(FASHION_MNIST, data_dir, download)


def load_idx_dataset(
    ds: IdxDataset, data_dir: str | os.PathLike[str] | None, download: bool
) -> tuple[Split, Split]:
    """Find (or download), read and verify the four files of an IDX data set."""
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False; got {show(download)}.")
    flat_only = [Path(d) for d in ds.system_dirs]
    roots = search_dirs(data_dir, flat_only)
    names = [(f.stem + ".gz", f.stem) for f in ds.files]
    paths = find_files(roots, ds.subdirs, names, flat_only)
    errors: list[str] = []
    if paths is None and download:
        dest = cache_dir() / ds.subdirs[0]
        for f in ds.files:
            target = dest / (f.stem + ".gz")
            if target.is_file():  # verified when it entered the cache
                continue
            try:
                download_first(
                    [m + f.stem + ".gz" for m in ds.mirrors],
                    target,
                    md5=f.md5_gz,
                    max_bytes=gz_cap(f),
                )
            except MirrorsFailedError as e:
                errors = e.errors
                break
        else:
            paths = find_files([cache_dir()], ds.subdirs[:1], names)
    if paths is None:
        raise DataNotFoundError(
            not_found_message(
                ds.title,
                [n[0] for n in names],
                roots,
                ds.subdirs,
                flat_only,
                errors,
                download,
            )
        )
    arrays = [_read_verified(p, f, ds) for p, f in zip(paths, ds.files, strict=True)]
    x_train, y_train, x_test, y_test = arrays
    for path, y in ((paths[1], y_train), (paths[3], y_test)):
        if y.dtype != np.uint8 or (y.size and int(y.max()) >= ds.n_classes):
            raise CorruptFileError(
                f"{path}: expected uint8 labels in 0..{ds.n_classes - 1}; got dtype {y.dtype}, "
                f"max {y.max() if y.size else None}. Delete it and fetch it again."
            )
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def gz_cap(f: IdxFile) -> int:
    """The most bytes ``f``'s ``.gz`` can take: its uint8 IDX content stored
    uncompressed (deflate's stored blocks add 5 bytes per 64 KiB), plus gzip's
    header and trailer. A download larger than this is refused while it streams."""
    raw = 4 + 4 * len(f.shape) + math.prod(f.shape)
    return raw + raw // 1024 + 4096


def _known_file(sha256: str) -> str | None:
    for ds in (MNIST, FASHION_MNIST):
        for f in ds.files:
            if f.sha256 == sha256:
                return f"{ds.title}'s {f.stem}"
    return None


def _read_verified(path: Path, f: IdxFile, ds: IdxDataset) -> np.ndarray:
    array, sha = read_idx_hashed(path, f.shape)
    if sha != f.sha256:
        other = _known_file(sha)
        hint = f" It is {other}: a different file in the wrong place." if other else ""
        raise CorruptFileError(
            f"{path}: checksum mismatch for {ds.title} {f.stem}: SHA-256 of the decompressed "
            f"content is {sha}; expected {f.sha256}.{hint} Delete or replace the file "
            f"(an original {f.stem}.gz has MD5 {f.md5_gz})."
        )
    return array
