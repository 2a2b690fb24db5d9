"""Atomic file writes: a reader sees the old file or the complete new one, never half.

Checkpoints, JSON results, goldens and figures go through a temporary file in
the destination's own folder, which is flushed to disk and then renamed over
the destination (``os.replace`` is
atomic on POSIX and Windows). If writing fails or is interrupted, the temporary
file is removed and the previous file, if any, is left untouched. Downloads
follow the same rule in ``purenn.datasets._download``, with a checksum test
between the write and the rename; both end in :func:`publish`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary path beside it.

    Args:
        path: the destination; its folder is created if needed.
        write: writes the whole content to the path it is given. The temporary
            name keeps ``path``'s suffix, so writers that pick a format from the
            extension (``np.savez``, ``savefig``, Pillow) see the right one.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the complete file ``tmp`` onto ``path`` (same folder) for good.

    The data is flushed to disk first, the file made readable by everyone
    (``mkstemp`` makes it 0600; results and data are meant to be read by
    others), then renamed atomically, and the rename itself made durable by
    flushing the folder (best effort).
    """
    tmp, path = Path(tmp), Path(path)
    _fsync(tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    _fsync(path.parent)


def write_json(path: str | os.PathLike, value: Any, *, indent: int = 2) -> Path:
    """Write ``value`` as JSON (sorted keys, no NaN) atomically; see :func:`atomic_write`."""
    text = json.dumps(value, indent=indent, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
