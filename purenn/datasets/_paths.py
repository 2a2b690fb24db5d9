"""Where data sets are looked for, and where downloads are cached.

Search order, first match wins:

1. the ``data_dir`` argument of a loader;
2. the ``PURENN_DATA`` environment variable (one folder, or several joined
   with ``os.pathsep``);
3. the user cache, ``$XDG_CACHE_HOME/purenn`` or ``~/.cache/purenn``;
4. data-set specific system folders (Debian's ``/usr/share/datasets/...``);
5. a copy bundled inside the package (pendigits only).

Inside each folder a data set lives in its own subfolder (``mnist/``), or
directly in the folder itself (a flat layout).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from purenn._checks import as_path

__all__ = ["cache_dir", "find_files", "search_dirs"]

ENV_VAR = "PURENN_DATA"


def cache_dir() -> Path:
    """The user cache folder for purenn downloads (it may not exist yet).

    Returns:
        ``$XDG_CACHE_HOME/purenn`` when ``XDG_CACHE_HOME`` is set to an absolute
        path (as the XDG spec requires), else ``~/.cache/purenn``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "purenn"
    return Path.home() / ".cache" / "purenn"


def search_dirs(
    data_dir: str | os.PathLike[str] | None, system_dirs: Sequence[Path] = ()
) -> list[Path]:
    """The folders to search, in order, without duplicates.

    Args:
        data_dir: The loader's ``data_dir`` argument, or None.
        system_dirs: Extra folders searched last (they already point at the
            data set itself, so they are searched flat only).

    Returns:
        The folders, in search order. They need not exist.

    Raises:
        TypeError: If ``data_dir`` is not a path, or ``system_dirs`` not a list or
            tuple of paths.
    """
    dirs: list[Path] = []
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(
                f"data_dir must be a path (str or os.PathLike) or None; "
                f"got {type(data_dir).__name__}. Pass e.g. data_dir='~/data'."
            )
        dirs.append(Path(data_dir).expanduser())
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()).expanduser())
    dirs.append(cache_dir())
    if isinstance(system_dirs, str | os.PathLike) or not isinstance(system_dirs, list | tuple):
        raise TypeError(
            f"system_dirs must be a list or tuple of folders; got {type(system_dirs).__name__}"
        )
    dirs.extend(as_path(d, "each of system_dirs") for d in system_dirs)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def candidate_folders(root: Path, subdirs: Sequence[str]) -> list[Path]:
    """The folders inside ``root`` where a data set may live: its subfolders, then ``root``."""
    return [root / s for s in subdirs] + [root]


def find_files(
    roots: Sequence[Path],
    subdirs: Sequence[str],
    names: Sequence[Sequence[str]],
    flat_only: Sequence[Path] = (),
) -> list[Path] | None:
    """The first folder holding every wanted file, and the paths found there.

    Args:
        roots: Folders in search order.
        subdirs: Subfolder names tried inside each root before the root itself.
        names: For each wanted file, the acceptable file names in preference
            order (e.g. ``("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte")``).
        flat_only: Roots that are searched flat only (no subfolders).

    Returns:
        One path per wanted file, all from the same folder, or None when no
        folder holds them all.
    """
    for root in roots:
        folders = [root] if root in flat_only else candidate_folders(root, subdirs)
        for folder in folders:
            found: list[Path] = []
            for alternatives in names:
                hit = next((folder / n for n in alternatives if (folder / n).is_file()), None)
                if hit is None:
                    break
                found.append(hit)
            else:
                return found
    return None


def not_found_message(
    dataset: str,
    files: Sequence[str],
    roots: Sequence[Path],
    subdirs: Sequence[str],
    flat_only: Sequence[Path] = (),
    download_errors: Sequence[str] = (),
    download: bool = False,
) -> str:
    """The message of a :class:`DataNotFoundError`: what, where, why, and how to fix."""
    lines = [f"{dataset} not found. Expected these files together in one folder:"]
    if any(f.endswith(".gz") for f in files):
        lines[0] += " (.gz or uncompressed)"
    lines += [f"    {f}" for f in files]
    lines.append("Folders searched, in order:")
    for root in roots:
        folders = [root] if root in flat_only else candidate_folders(root, subdirs)
        for folder in folders:
            lines.append(f"    {folder}{'' if folder.is_dir() else '  (does not exist)'}")
    if download_errors:
        lines.append("Download failed from every mirror:")
        lines += [f"    {e}" for e in download_errors]
    elif not download:
        lines.append("Downloading was off (download=False).")
    lines.append(
        f"To fix: put the files in a folder, e.g. /data/{subdirs[0]}/, and run with "
        f"{ENV_VAR}=/data (or pass data_dir='/data'); or call with download=True on a "
        "machine with internet access, which fills the cache "
        f"{cache_dir() / subdirs[0]}."
    )
    return "\n".join(lines)
