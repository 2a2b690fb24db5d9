"""Bounded gzip decompression for the text data readers (CSV, pendigits)."""

from __future__ import annotations

import zlib
from pathlib import Path

from purenn.datasets._errors import CorruptFileError

GZIP_MAGIC = b"\x1f\x8b"


def gunzip(
    path: Path, raw: bytes, max_bytes: int, too_big: str, error: type[ValueError] = ValueError
) -> bytes:
    """Decompress every gzip member of ``raw``, stopping as soon as the output
    would pass ``max_bytes`` (a decompression bomb costs at most that).

    Raises:
        ValueError: ``error(too_big)``, once the output passes ``max_bytes``.
        CorruptFileError: for data that is not valid gzip, or is truncated.
    """
    out = bytearray()
    rest = raw
    try:
        while rest:
            unzip = zlib.decompressobj(wbits=31)
            chunk = unzip.decompress(rest, max_bytes + 1 - len(out))
            while True:
                out += chunk
                if len(out) > max_bytes:
                    raise error(too_big)
                if unzip.eof or not unzip.unconsumed_tail:
                    break
                chunk = unzip.decompress(unzip.unconsumed_tail, max_bytes + 1 - len(out))
            if not unzip.eof:
                raise EOFError("the gzip stream is truncated")
            rest = unzip.unused_data.lstrip(b"\0")  # members may be padded with zeros
    except (zlib.error, EOFError) as e:
        raise CorruptFileError(
            f"{path}: not valid gzip data ({e}). Delete it and fetch it again."
        ) from None
    return bytes(out)
