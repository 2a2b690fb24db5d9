"""Data sets that load anywhere: pendigits, MNIST, Fashion-MNIST and CSV files,
and seeded toy problems (``make_spiral``, ``make_moons``, ``make_circles``,
``make_xor``, ``make_sine``).

Every loader returns raw values as ``(x_train, y_train), (x_test, y_test)`` and
verifies what it reads against pinned checksums. Files are looked for in the
``data_dir`` argument, then ``$PURENN_DATA``, then the user cache
(``$XDG_CACHE_HOME/purenn`` or ``~/.cache/purenn``), then (pendigits only)
the copy bundled with purenn; missing files are downloaded into the cache when
``download=True``. See ``docs/data.md``.

    (x_train, y_train), (x_test, y_test) = purenn.datasets.load_mnist()

The batching and splitting helpers of :mod:`purenn.preprocessing` are
re-exported here (``purenn.datasets.batches``), as the training loop uses them.
"""

from purenn.datasets._csv import MAX_CSV_BYTES, load_csv
from purenn.datasets._errors import CorruptFileError, DataNotFoundError
from purenn.datasets._idx import read_idx
from purenn.datasets._images import load_fashion_mnist, load_mnist
from purenn.datasets._paths import cache_dir, search_dirs
from purenn.datasets._pendigits import load_pendigits
from purenn.datasets._toy import (
    MAX_TOY_SAMPLES,
    make_circles,
    make_moons,
    make_sine,
    make_spiral,
    make_xor,
)
from purenn.preprocessing import batches, train_val_split

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_TOY_SAMPLES",
    "CorruptFileError",
    "batches",
    "DataNotFoundError",
    "cache_dir",
    "load_csv",
    "load_fashion_mnist",
    "load_mnist",
    "load_pendigits",
    "make_circles",
    "make_moons",
    "make_sine",
    "make_spiral",
    "make_xor",
    "read_idx",
    "search_dirs",
    "train_val_split",
]
