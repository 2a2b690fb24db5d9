"""Exceptions raised by the data layer.

Both subclass a built-in exception, so callers that only know the standard
library (``except FileNotFoundError`` / ``except ValueError``) still catch them.
"""

from __future__ import annotations

__all__ = ["CorruptFileError", "DataNotFoundError"]


class DataNotFoundError(FileNotFoundError):
    """A data set's files are in none of the folders searched and could not be downloaded.

    The message lists the files expected, every folder searched, what each
    download attempt answered, and how to point ``PURENN_DATA`` at a folder
    holding the files.
    """


class CorruptFileError(ValueError):
    """A file on disk or from the network is truncated, malformed or fails its checksum.

    The message names the file, says what is wrong, and how to fix it (usually:
    delete the file so that it is downloaded again, or fetch a fresh copy).
    """
