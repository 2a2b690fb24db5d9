"""Atomic file writes: a reader sees the old file or the complete new one, never half.

Checkpoints, JSON results, goldens and figures go through a temporary file in
the destination's own folder, which is flushed to disk and then renamed over
the destination (``os.replace`` is
atomic on POSIX and Windows). If writing fails or is interrupted, the temporary
file is removed and the previous file, if any, is left untouched. Downloads
follow the same rule in ``purenn.datasets._download``, with a checksum test
between the write and the rename; both end in :func:`publish`.

A process killed mid-write (``kill -9``, a power cut) cannot remove its
temporary file. So every writer holds an exclusive lock (``flock``) on its
temporary file while it exists, and the next write to the same destination
removes the temporary files of that destination that nobody holds a lock on
(:func:`remove_orphans`): whatever a killed run left is cleaned by the next
run that writes there, while a write in progress in another process is never
touched. Where ``flock`` does not exist (Windows), only temporary files older
than :data:`ORPHAN_AGE_SECONDS` are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: Without ``flock``, a temporary file this old (seconds) counts as left by a dead run.
ORPHAN_AGE_SECONDS = 24 * 3600.0


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary path beside it.

    Args:
        path: the destination; its folder is created if needed. A symbolic
            link is followed: its target is replaced and the link kept.
        write: writes the whole content to the path it is given. The temporary
            name keeps ``path``'s suffix, so writers that pick a format from the
            extension (``np.savez``, ``savefig``, Pillow) see the right one.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.stem}-"
    remove_orphans(target.parent, f"{prefix}{'?' * 8}{target.suffix}")
    with temp_file(target.parent, prefix, target.suffix) as tmp:
        write(tmp)
        publish(tmp, target)
    return path


@contextlib.contextmanager
def temp_file(folder: Path, prefix: str, suffix: str) -> Iterator[Path]:
    """A new empty file ``folder/<prefix>XXXXXXXX<suffix>``, locked while the block runs.

    The file is removed at exit unless the block moved it away (:func:`publish`).
    The lock tells :func:`remove_orphans` in other processes that it is in use.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        _lock(fd)
        # another process's remove_orphans may have unlinked the file between
        # mkstemp and the lock: then it is not ours any more, make another
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(name))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(fd)


def remove_orphans(folder: Path, pattern: str) -> list[Path]:
    """Remove the temporary files matching ``pattern`` in ``folder`` that no
    live writer holds (see the module docstring); returns those removed.

    Best effort: a file that cannot be opened or removed is left alone.
    """
    removed = []
    try:
        candidates = list(Path(folder).glob(pattern))
    except OSError:
        return removed
    for candidate in candidates:
        if _orphaned(candidate):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _orphaned(path: Path) -> bool:
    if fcntl is None:
        try:
            return time.time() - path.stat().st_mtime > ORPHAN_AGE_SECONDS
        except OSError:
            return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it
    finally:
        os.close(fd)  # also releases our own lock
    return True


def _lock(fd: int) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):  # e.g. a file system without locks
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
