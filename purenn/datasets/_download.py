"""Verified, atomic downloads with mirrors, progress and timeouts.

A download streams into a temporary file in the destination folder, is checked
(MD5 as published, and/or a parser-level ``verify`` callback), and only then is
renamed onto its final name by :func:`purenn.fileio.publish` (flushed, mode 0644,
:func:`os.replace`), which is atomic on POSIX and
Windows. An interrupted, truncated or corrupt download therefore never looks
complete: either the final file is there and verified, or it is not there.

Every download is bounded: a size cap (``max_bytes``, derived by each data set
from what it expects: a body larger than that is refused as soon as it is
announced or reached, whether or not the server sends a ``Content-Length``),
a per-read timeout and an overall deadline (a server that drips one byte at a
time is given up on too), and redirects only to ``http`` or ``https``. A
temporary ``.part`` file left by a killed run is removed by the next download
of the same file (see :func:`purenn.fileio.remove_orphans`); a failed write
(a full disk) names the folder and the fix, and the next mirror is tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from purenn.fileio import publish, remove_orphans, temp_file

__all__ = [
    "MirrorsFailedError",
    "download_first",
    "download_zip_members",
    "fetch_to_temp",
    "file_md5",
]

#: Seconds a connect or a single read may take before the mirror counts as down.
TIMEOUT_SECONDS = 30.0
#: Seconds a whole download may take (checked after every read), whatever its pace.
DEADLINE_SECONDS = 1800.0
#: Size cap of a download whose caller gives none (bytes).
DEFAULT_MAX_BYTES = 1 << 28
#: Downloads larger than this show a progress line on stderr.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
_CHUNK = 1 << 16
_SCHEMES = ("http", "https")


class DownloadFailedError(Exception):
    """One URL failed; the message says why. Internal: turned into a list of reasons."""


class MirrorsFailedError(Exception):
    """Every mirror failed. ``errors`` holds one ``"url: reason"`` line per attempt."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("every mirror failed:\n" + "\n".join(errors))
        self.errors = list(errors)


def file_md5(path: Path) -> str:
    """The MD5 hex digest of a file's bytes (integrity check against published sums)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """A one-line progress report on stderr, shown only for large downloads."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label = label
        self.total = total
        self.shown = False
        self.last_step = -1

    def update(self, done: int) -> None:
        big = (self.total or done) >= PROGRESS_MIN_BYTES
        if not big:
            return
        step = done * 50 // self.total if self.total else done // (1 << 20)
        if step == self.last_step:
            return
        self.last_step = step
        mb = done / 1e6
        if self.total:
            text = f"{mb:.1f}/{self.total / 1e6:.1f} MB ({100 * done // self.total}%)"
        else:
            text = f"{mb:.1f} MB"
        sys.stderr.write(f"\rdownloading {self.label}: {text}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s); urllib alone would also follow ``ftp://``."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme
        if scheme not in _SCHEMES:
            raise DownloadFailedError(
                f"refusing a redirect to {newurl!r}: only http and https are used"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _fail_write(directory: Path, e: OSError) -> DownloadFailedError:
    return DownloadFailedError(
        f"cannot write to {directory} ({type(e).__name__}: {e}); free some space there, "
        "or set XDG_CACHE_HOME (the download cache) to a writable folder with room"
    )


@contextlib.contextmanager
def fetch_to_temp(
    url: str,
    directory: Path,
    timeout: float | None = None,
    *,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> Iterator[Path]:
    """Download ``url`` into a temporary file in ``directory``; delete it on exit.

    The caller verifies the file and moves it with :func:`os.replace` inside the
    ``with`` block; whatever is left at exit (a failure, an exception) is removed.
    Temporary files of the same name that a killed run left are removed first.

    Args:
        url: An ``http://`` or ``https://`` URL.
        directory: Folder for the temporary file (created if needed); use the
            destination's folder so that the final rename stays atomic.
        timeout: Seconds per connect/read; default :data:`TIMEOUT_SECONDS`.
        max_bytes: Refuse a body larger than this; default :data:`DEFAULT_MAX_BYTES`.
        deadline: Seconds the whole transfer may take; default :data:`DEADLINE_SECONDS`.

    Yields:
        The temporary file's path, holding the complete response body.

    Raises:
        DownloadFailedError: On HTTP errors, refused connections, timeouts, a
            body shorter than its ``Content-Length`` or larger than ``max_bytes``,
            a redirect or URL that is not http(s), or a failed write.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        raise DownloadFailedError(f"refusing scheme {scheme!r}; only http and https are used")
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    deadline = DEADLINE_SECONDS if deadline is None else deadline
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    prefix = f".{name}."
    with contextlib.ExitStack() as stack:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            remove_orphans(directory, f"{prefix}{'?' * 8}.part")
            tmp = stack.enter_context(temp_file(directory, prefix, ".part"))
            with open(tmp, "wb") as out:  # its close flushes: a full disk shows there too
                _stream(url, out, directory, timeout, deadline, max_bytes, label=name)
        except OSError as e:
            raise _fail_write(directory, e) from None
        yield tmp


class _Sink:
    """Writes to the temporary file, telling a failed write from a failed transfer."""

    def __init__(self, out, directory: Path) -> None:
        self.out, self.directory = out, directory

    def write(self, block: bytes) -> None:
        try:
            self.out.write(block)
        except OSError as e:
            raise _fail_write(self.directory, e) from None


def _stream(
    url: str,
    out,
    directory: Path,
    timeout: float,
    deadline: float,
    max_bytes: int,
    label: str,
) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "purenn"})
    sink = _Sink(out, directory)
    start = time.monotonic()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise DownloadFailedError(
                    f"the server announces {total} bytes, more than the {max_bytes} this "
                    "file can be; refused"
                )
            progress = _Progress(label, total)
            done = 0
            try:
                while True:
                    # read1: return what has arrived (at most one read from the
                    # socket), so that the deadline is checked however slow the pace
                    block = response.read1(_CHUNK)
                    if not block:
                        break
                    done += len(block)
                    if done > max_bytes:
                        raise DownloadFailedError(
                            f"the body exceeds {max_bytes} bytes, more than this file can be; "
                            "refused"
                        )
                    sink.write(block)
                    progress.update(done)
                    if time.monotonic() - start > deadline:
                        raise DownloadFailedError(
                            f"gave up after the overall deadline of {deadline:g} s "
                            f"({done} bytes received)"
                        )
            finally:
                progress.close()
    except urllib.error.HTTPError as e:
        raise DownloadFailedError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadFailedError(f"cannot connect ({e.reason})") from None
    except TimeoutError:
        raise DownloadFailedError(f"timed out after {timeout:g} s") from None
    except OSError as e:  # connection reset, IncompleteRead, ...
        raise DownloadFailedError(f"transfer failed ({type(e).__name__}: {e})") from None
    if total is not None and done != total:
        raise DownloadFailedError(
            f"connection dropped: got {done} of {total} bytes (Content-Length)"
        )


def download_first(
    urls: Sequence[str],
    dest: Path,
    *,
    md5: str | None = None,
    verify: Callable[[Path], None] | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> str:
    """Download the first URL that works and verifies, atomically, to ``dest``.

    Args:
        urls: Mirrors in preference order, all for the same file.
        dest: Final path. Written only after verification, by rename.
        md5: Expected MD5 hex digest of the bytes as served, or None.
        verify: Called with the temporary file's path; raises ``ValueError``
            (e.g. :class:`CorruptFileError`) when the content is wrong.
        timeout: Seconds per connect/read; default :data:`TIMEOUT_SECONDS`.
        max_bytes: The largest the file can be (bytes); a larger body is
            refused. Default :data:`DEFAULT_MAX_BYTES`.
        deadline: Seconds each attempt may take in all; default :data:`DEADLINE_SECONDS`.

    Returns:
        The URL that succeeded.

    Raises:
        MirrorsFailedError: When no mirror delivered a file that verifies; its
            ``errors`` say what each mirror answered. Nothing is left at ``dest``.
    """
    errors: list[str] = []
    for url in urls:
        try:
            with fetch_to_temp(
                url, dest.parent, timeout, max_bytes=max_bytes, deadline=deadline
            ) as tmp:
                if md5 is not None:
                    got = file_md5(tmp)
                    if got != md5:
                        raise DownloadFailedError(
                            f"checksum mismatch: MD5 {got}, expected {md5}; file refused"
                        )
                if verify is not None:
                    try:
                        verify(tmp)
                    except ValueError as e:
                        raise DownloadFailedError(f"content refused: {e}") from None
                try:
                    publish(tmp, dest)
                except OSError as e:
                    raise _fail_write(dest.parent, e) from None
            return url
        except DownloadFailedError as e:
            errors.append(f"{url}: {e}")
    raise MirrorsFailedError(errors)


def download_zip_members(
    url: str,
    members: dict[str, Path],
    *,
    verify: Callable[[str, Path], None] | None = None,
    timeout: float | None = None,
    max_member_bytes: int = 1 << 27,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> None:
    """Download a zip archive and extract some members, each verified and atomic.

    The archive itself is a temporary file, removed afterwards. Members are found
    by base name anywhere in the archive.

    Args:
        url: The archive's ``http(s)`` URL.
        members: Base name inside the archive -> final path on disk.
        verify: Called as ``verify(name, tmp_path)`` before a member is renamed
            into place; raises ``ValueError`` when the content is wrong.
        timeout: Seconds per connect/read; default :data:`TIMEOUT_SECONDS`.
        max_member_bytes: Refuse members larger than this (zip bombs); a
            member's declared size also bounds what is decompressed.
        max_bytes: The largest the archive can be; default :data:`DEFAULT_MAX_BYTES`.
        deadline: Seconds the download may take; default :data:`DEADLINE_SECONDS`.

    Raises:
        MirrorsFailedError: With one ``"url: reason"`` line, when the download,
            the archive or a member fails. Members verified before the failure
            stay in place.
    """
    if not members:
        return
    dest_dir = next(iter(members.values())).parent
    try:
        with fetch_to_temp(url, dest_dir, timeout, max_bytes=max_bytes, deadline=deadline) as tmp:
            try:
                archive = zipfile.ZipFile(tmp)
            except (zipfile.BadZipFile, OSError) as e:
                raise DownloadFailedError(f"not a valid zip archive ({e})") from None
            with archive:
                by_name = {
                    PurePosixPath(i.filename).name: i
                    for i in archive.infolist()
                    if not i.is_dir() and not i.filename.startswith("__MACOSX")
                }
                for name, dest in members.items():
                    _extract_member(archive, by_name, name, dest, verify, max_member_bytes)
    except DownloadFailedError as e:
        raise MirrorsFailedError([f"{url}: {e}"]) from None


def _extract_member(
    archive: zipfile.ZipFile,
    by_name: dict[str, zipfile.ZipInfo],
    name: str,
    dest: Path,
    verify: Callable[[str, Path], None] | None,
    max_bytes: int,
) -> None:
    info = by_name.get(name)
    if info is None:
        raise DownloadFailedError(
            f"archive has no member {name!r}; it holds {sorted(by_name) or 'nothing'}"
        )
    if info.file_size > max_bytes:
        raise DownloadFailedError(
            f"member {name!r} is {info.file_size} bytes, more than the {max_bytes} expected"
        )
    try:
        data = archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DownloadFailedError(f"member {name!r} is corrupt ({e})") from None
    except (NotImplementedError, RuntimeError) as e:  # unknown compression, encryption
        raise DownloadFailedError(f"member {name!r} cannot be read ({e})") from None
    folder = dest.parent
    try:
        remove_orphans(folder, f".{name}.{'?' * 8}.part")
        with temp_file(folder, f".{name}.", ".part") as tmp:
            tmp.write_bytes(data)
            if verify is not None:
                try:
                    verify(name, tmp)
                except ValueError as e:
                    raise DownloadFailedError(f"member {name!r} refused: {e}") from None
            publish(tmp, dest)
    except OSError as e:
        raise _fail_write(folder, e) from None
