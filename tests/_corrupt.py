"""Damaged and crafted files for tests/test_corrupt_files.py and scripts/fuzz.py.

A case is ``(kind, seed)``: a good file of that kind is written, damaged as
the seed says (truncated at an offset, bytes flipped, or replaced by one of the
crafted files of the kind), and read back by purenn's reader. Verdicts as in
tests/_fuzz.py: a refusal must be a ``ValueError`` (or a documented subclass,
e.g. ``purenn.datasets.CorruptFileError``) raised by purenn; a file that still
loads must give what was written (else ``silent``); and no case may allocate
more than :data:`ALLOCATION_CAP` bytes (traced by ``tracemalloc``, which sees
NumPy's buffers).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _fuzz import Deadline, classify

import purenn
from purenn import datasets

#: No damaged file of these few kilobytes may cost more than this to refuse.
ALLOCATION_CAP = 64 * 2**20
#: load_csv's memory is bounded by its ``max_bytes`` (about 12 times the text at
#: peak, docs/reliability.md), so CSVs are read with the cap that keeps a
#: decompression bomb within ALLOCATION_CAP; the default (1 GiB) would allow a
#: bomb of 1 GiB of text.
CSV_MAX_BYTES = 4 * 2**20

KINDS = ("checkpoint", "idx", "idx.gz", "csv", "csv.gz", "pendigits", "mnist")


# --------------------------------------------------------------------------- good files


def _checkpoint_bytes() -> bytes:
    spec = purenn.Network(4, [purenn.Dense(5), purenn.Dense(3, "softmax")])
    params = purenn.init(spec, rng=0)
    opt = purenn.optim.adam(1e-3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "good.npz"
        purenn.save(
            path, params, opt_state=opt.init(params), rng=np.random.default_rng(0),
            history={"epoch": [1], "train_loss": [0.5]}, optimizer=opt,
        )  # fmt: skip
        return path.read_bytes()


def _idx_bytes() -> bytes:
    data = (np.arange(3 * 5 * 4) % 251).astype(np.uint8).reshape(3, 5, 4)
    return struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", *data.shape) + data.tobytes()


def _csv_bytes() -> bytes:
    rows = ["label,a,b,c"] + [f"{i % 3},{i},{2 * i},{i * i}" for i in range(20)]
    return ("\n".join(rows) + "\n").encode()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _pendigits_bytes() -> bytes:
    return (datasets._pendigits.BUNDLED_DIR / "pendigits.tes.gz").read_bytes()


_GOOD: dict[str, Callable[[], bytes]] = {
    "checkpoint": _checkpoint_bytes,
    "idx": _idx_bytes,
    "idx.gz": lambda: _gz(_idx_bytes()),
    "csv": _csv_bytes,
    "csv.gz": lambda: _gz(_csv_bytes()),
    "pendigits": _pendigits_bytes,
    "mnist": lambda: _gz(
        struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10) + bytes(range(10))
    ),
}
_CACHE: dict[str, bytes] = {}


def good(kind: str) -> bytes:
    if kind not in _CACHE:
        _CACHE[kind] = _GOOD[kind]()
    return _CACHE[kind]


# --------------------------------------------------------------------------- crafted files


def _npz(members: dict[str, bytes], *, method: int = zipfile.ZIP_STORED, flags: int = 0) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            z.writestr(info, data)
    data = bytearray(out.getvalue())
    if flags:
        # zipfile resets flag_bits when it writes, so set them in the bytes: the
        # general-purpose flags sit 6 bytes into each local header and 8 bytes
        # into each central-directory entry
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = data.find(signature)
            while start >= 0:
                old = struct.unpack_from("<H", data, start + offset)[0]
                struct.pack_into("<H", data, start + offset, old | flags)
                start = data.find(signature, start + 4)
    return bytes(data)


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _with_metadata(change: Callable[[dict], object]) -> bytes:
    members = _members(good("checkpoint"))
    meta_npy = members["metadata.npy"]
    meta = json.loads(str(np.load(io.BytesIO(meta_npy))))
    new = change(meta)
    text = new if isinstance(new, str) else json.dumps(meta)
    buffer = io.BytesIO()
    np.save(buffer, np.array(text))
    members["metadata.npy"] = buffer.getvalue()
    return _npz(members)


def _replace_member(name: str, data: bytes) -> bytes:
    members = _members(good("checkpoint"))
    members[name] = data
    return _npz(members)


def _zip_bomb() -> bytes:
    """A 'w' member that inflates to 512 MiB of zeros (about 7 MB on disk)."""
    out = io.BytesIO()
    # level 1: deflating 512 MiB at the default level takes seconds more, for a
    # bomb that is no less of one (75 to 1)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in _members(good("checkpoint")).items():
            if name.endswith("dense_0/w.npy"):
                with z.open(name, "w", force_zip64=True) as f:
                    f.write(_npy_header((2**27,)))
                    zeros = bytes(1 << 20)
                    for _ in range(512):
                        f.write(zeros)
            else:
                z.writestr(name, data)
    return out.getvalue()


def _set(meta: dict, keys: tuple, value: object) -> None:
    target = meta
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value


def _crafted_checkpoints() -> list[tuple[str, Callable[[], bytes]]]:
    w_member = "params/dense_0/w.npy"
    return [
        (
            "npy header claims 2**40 elements",
            lambda: _replace_member(w_member, _npy_header((2**20, 2**20))),
        ),
        (
            "npy of strings",
            lambda: _replace_member(w_member, _npy_header((4, 5), "<U3") + b"\0" * 240),
        ),
        (
            "npy of datetimes",
            lambda: _replace_member(w_member, _npy_header((4, 5), "<M8[s]") + b"\0" * 160),
        ),
        (
            "npy of objects",
            lambda: _replace_member(w_member, _npy_header((4, 5), "|O") + b"\0" * 160),
        ),
        (
            "zip with compression method 99",
            lambda: _npz(_members(good("checkpoint")), method=zipfile.ZIP_LZMA),
        ),
        ("zip with the encryption flag", lambda: _npz(_members(good("checkpoint")), flags=0x1)),
        ("zip bomb", _zip_bomb),
        (
            "metadata JSON 100000 deep",
            lambda: _with_metadata(lambda m: "[" * 100000 + "]" * 100000),
        ),
        ("metadata not JSON", lambda: _with_metadata(lambda m: "{not json")),
        ("metadata a list", lambda: _with_metadata(lambda m: "[1, 2]")),
        (
            "generator state 2**200",
            lambda: _with_metadata(
                lambda m: _set(m, ("extra", "rng", "state", "state", "state"), 2**200)
            ),
        ),
        (
            "spec of a Dense(8000) network",
            lambda: _with_metadata(lambda m: _set(m, ("spec", "layers", 1, "units"), 8000)),
        ),
        (
            "spec of a Dense(2**20) input",
            lambda: _with_metadata(lambda m: _set(m, ("spec", "input_shape"), [2**20])),
        ),
        (
            "adam count 'abc'",
            lambda: _with_metadata(
                lambda m: _set(m, ("extra", "opt_state", "fields", "count"), "abc")
            ),
        ),
        (
            "dtype says complex64",
            lambda: _with_metadata(lambda m: _set(m, ("dtype",), "complex64")),
        ),
        ("format_version 2", lambda: _with_metadata(lambda m: _set(m, ("format_version",), 2))),
        ("empty file", lambda: b""),
        ("not a zip", lambda: b"hello world" * 10),
    ]


def _crafted_idx() -> list[tuple[str, Callable[[], bytes]]]:
    def head(dims: tuple, code: int = 0x08) -> bytes:
        return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)

    return [
        ("claims 2**32-1 x 2**32-1 elements", lambda: head((2**32 - 1, 2**32 - 1)) + bytes(64)),
        ("element count wraps int64", lambda: head((2**32 - 1,) * 3) + bytes(64)),
        ("unknown type code", lambda: head((3, 4), 0x07) + bytes(12)),
        ("zero dims", lambda: head(())),
        ("255 dims", lambda: struct.pack(">HBB", 0, 0x08, 255) + bytes(8)),
        ("bad magic", lambda: b"\x01\x02" + _idx_bytes()[2:]),
        ("empty file", lambda: b""),
        ("gzip bomb: 1 GiB promised", lambda: _gz(head((2**15, 2**15)) + bytes(2**24))),
    ]


def _crafted_csv() -> list[tuple[str, Callable[[], bytes]]]:
    return [
        ("binary garbage", lambda: bytes(range(256)) * 4),
        ("one 1 MiB line", lambda: b"1," * 2**19 + b"\n"),
        ("ragged rows", lambda: b"1,2,3\n1,2\n"),
        ("label 1e20", lambda: b"1e20,1,2\n0,1,2\n"),
        ("integer beyond 2**63", lambda: b"0,9223372036854775808\n1,1\n"),
        ("gzip bomb", lambda: _gz(b"0,0,0\n" * 2**22)),
        ("NUL bytes", lambda: b"0,1\x00,2\n"),
        ("empty file", lambda: b""),
    ]


_CRAFTED = {
    "checkpoint": _crafted_checkpoints,
    "idx": _crafted_idx,
    "idx.gz": lambda: [(n, (lambda f=f: _gz(f()))) for n, f in _crafted_idx()],
    "csv": _crafted_csv,
    "csv.gz": lambda: [(n, (lambda f=f: _gz(f()))) for n, f in _crafted_csv()],
    "pendigits": lambda: [("the training file as the test file", lambda: _gz(
        gzip.decompress((datasets._pendigits.BUNDLED_DIR / "pendigits.tra.gz").read_bytes())))],
    "mnist": lambda: [("an IDX of 10 labels", lambda: good("mnist"))],
}  # fmt: skip


def crafted_names(kind: str) -> list[str]:
    """The crafted files of ``kind``, in order: seeds 0, 4, 8, ... step through them."""
    return [what for what, _ in _CRAFTED[kind]()]


def damaged(kind: str, seed: int) -> tuple[str, bytes]:
    """``(what was done, the damaged bytes)`` for case ``seed`` of ``kind``."""
    data = good(kind)
    crafted = _CRAFTED[kind]()
    rng = np.random.default_rng(seed)
    choice = seed % 4
    if choice == 0 and crafted:
        what, make = crafted[(seed // 4) % len(crafted)]
        return f"crafted: {what}", make()
    if choice in (0, 1):
        offset = int(rng.integers(0, len(data)))
        return f"truncated at {offset} of {len(data)}", data[:offset]
    flips = int(rng.integers(1, 4))
    out = bytearray(data)
    where = rng.integers(0, len(data), size=flips)
    for i in where:
        out[i] ^= int(rng.integers(1, 256))
    return f"{flips} byte(s) flipped at {sorted(int(i) for i in where)}", bytes(out)


# --------------------------------------------------------------------------- reading


def _read(kind: str, folder: Path, data: bytes):
    if kind == "checkpoint":
        path = folder / "case.npz"
        path.write_bytes(data)
        return purenn.load(path)
    if kind.startswith("idx"):
        path = folder / f"case.{kind}"
        path.write_bytes(data)
        return datasets.read_idx(path)
    if kind.startswith("csv"):
        path = folder / f"case.{kind}"
        path.write_bytes(data)
        return datasets.load_csv(path, max_bytes=CSV_MAX_BYTES)
    if kind == "pendigits":
        sub = folder / "pendigits"
        sub.mkdir()
        (sub / "pendigits.tra.gz").write_bytes(
            (datasets._pendigits.BUNDLED_DIR / "pendigits.tra.gz").read_bytes()
        )
        (sub / "pendigits.tes.gz").write_bytes(data)
        return datasets.load_pendigits(folder, download=False)
    if kind == "mnist":
        sub = folder / "mnist"
        sub.mkdir()
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
            (sub / f"{name}.gz").write_bytes(data)
        return datasets.load_mnist(folder, download=False)
    raise ValueError(f"unknown kind {kind!r}")


#: Crafted files that are valid files of the kind, and what they must load to
#: (2**63 is exactly a float64; the docstring of load_csv says features are float64).
_CRAFTED_LOADS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "integer beyond 2**63": lambda: (np.array([[2.0**63], [1.0]]), np.array([0, 1])),
}

#: Formats without a checksum: a flipped byte there is a valid file of other
#: content (a raw CSV cut at a line end, too), which no reader can tell apart.
_NO_CHECKSUM = {"idx": ("flipped",), "csv": ("flipped", "truncated")}


def _equal(result, expected) -> bool:
    flat = lambda r: r if isinstance(r, np.ndarray) else np.concatenate([a.ravel() for a in r])  # noqa: E731
    a, b = flat(result), flat(expected)
    return a.shape == b.shape and np.array_equal(a, b)


def _same(kind: str, result, folder: Path, what: str = "") -> bool:
    """Whether a damaged file that loaded gave what the good one gives (for a
    crafted file: what that file says)."""
    if what.startswith("crafted: "):
        expect = _CRAFTED_LOADS.get(what[len("crafted: ") :])
        if expect is not None:
            return _equal(result, expect())
    if any(word in what for word in _NO_CHECKSUM.get(kind, ())):
        return True
    if kind == "mnist":  # the good file is no MNIST file either: loading it is wrong
        return False
    expected = _read(kind, folder / "good", good(kind)) if kind != "pendigits" else None
    if kind == "checkpoint":
        return purenn.tree_equal(result.params, expected.params)
    if kind == "pendigits":
        real = datasets.load_pendigits(download=False)
        return all(np.array_equal(a, b) for a, b in zip(result[1], real[1], strict=True))
    return _equal(result, expected)


def run_case(kind: str, seed: int) -> dict:
    """Damage, read and judge one file; the verdict as a dict."""
    what, data = damaged(kind, seed)
    case = {"kind": kind, "seed": seed, "damage": what, "bytes": len(data)}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "good").mkdir()
        tracemalloc.start()
        try:
            result = _read(kind, folder, data)
        except (KeyboardInterrupt, SystemExit, Deadline):
            raise
        except BaseException as err:  # classifying every escape is the point
            verdict, why = classify(err)
            if verdict == "clean" and not isinstance(err, ValueError):
                verdict, why = "unhelpful", f"{type(err).__name__}, not a ValueError"
            case.update(verdict=verdict, why=why, message=str(err)[:300])
            result = None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if result is not None:
            same = _same(kind, result, folder, what)
            case.update(verdict="ok" if same else "silent", why="" if same else "other content")
        case["peak_mb"] = round(peak / 2**20, 2)
        if peak > ALLOCATION_CAP and case["verdict"] in ("clean", "ok"):
            case.update(verdict="unhelpful", why=f"allocated {case['peak_mb']} MB to read")
    return case
