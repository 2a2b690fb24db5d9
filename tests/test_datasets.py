"""Loaders against the real files, the search order, and corrupt inputs.

Real data: pendigits and MNIST from the shared data folder (``$PURENN_DATA``, else
``<repo>/../shared/data``), Fashion-MNIST from Debian's package. Where the files
are absent these tests skip with a reason; with ``PURENN_REQUIRE_DATA=1`` (CI)
they fail instead.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tracemalloc
from pathlib import Path

import attrs
import numpy as np
import pytest

from purenn.datasets import (
    CorruptFileError,
    DataNotFoundError,
    _images,
    _pendigits,
    cache_dir,
    load_csv,
    load_fashion_mnist,
    load_mnist,
    load_pendigits,
    read_idx,
    search_dirs,
)
from purenn.datasets._pendigits import arrays_sha256, parse_pendigits

REPO = Path(__file__).resolve().parents[1]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _data_root() -> Path:
    for part in os.environ.get("PURENN_DATA", "").split(os.pathsep):
        if part.strip():
            return Path(part.strip()).expanduser()
    return REPO.parent / "shared" / "data"


def require(folder: Path, files: tuple[str, ...], how: str) -> Path:
    """Skip (or, with PURENN_REQUIRE_DATA=1, fail) unless ``folder`` holds ``files``."""
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        msg = f"real data missing: {', '.join(missing)} not in {folder}. To run this test: {how}"
        if os.environ.get("PURENN_REQUIRE_DATA") == "1":
            pytest.fail(msg + " (PURENN_REQUIRE_DATA=1 forbids skipping)")
        pytest.skip(msg)
    return folder


HOW_SHARED = "set PURENN_DATA to the shared data folder (it holds pendigits/ and mnist/)."
HOW_FASHION = "apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist)."


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No PURENN_DATA, an empty user cache in tmp_path; returns the cache folder."""
    monkeypatch.delenv("PURENN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "purenn"


@pytest.fixture(scope="module")
def pendigits_dir() -> Path:
    return require(_data_root() / "pendigits", ("pendigits.tra", "pendigits.tes"), HOW_SHARED)


@pytest.fixture(scope="module")
def mnist_dir() -> Path:
    return require(_data_root() / "mnist", tuple(s + ".gz" for s in IDX_STEMS), HOW_SHARED)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir.parent, download=False)


@pytest.fixture(scope="module")
def fashion():
    require(DEBIAN_FASHION, tuple(s + ".gz" for s in IDX_STEMS), HOW_FASHION)
    mp = pytest.MonkeyPatch()  # module scope: isolate from PURENN_DATA and the user cache
    mp.delenv("PURENN_DATA", raising=False)
    mp.setenv("XDG_CACHE_HOME", "/nonexistent-purenn-test-cache")
    try:
        return load_fashion_mnist(download=False)  # found in Debian's folder by itself
    finally:
        mp.undo()


# --- real files ----------------------------------------------------------------------


def test_pendigits_real(pendigits_dir):
    (x, y), (xt, yt) = load_pendigits(pendigits_dir.parent, download=False)
    assert x.shape == (7494, 16) and xt.shape == (3498, 16)
    assert y.shape == (7494,) and yt.shape == (3498,)
    assert x.dtype == np.int64 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 100 and xt.min() >= 0 and xt.max() <= 100
    assert np.bincount(y).tolist() == [780, 779, 780, 719, 780, 720, 720, 778, 719, 719]
    assert np.bincount(yt).tolist() == [363, 364, 364, 336, 364, 335, 336, 364, 336, 336]
    assert arrays_sha256(x, y) == (
        "b288b33ea7f273546860e7fd22a7b342b4e5ac2009c20d2697695821efc26cf3"
    )
    assert arrays_sha256(xt, yt) == (
        "e6d72ab16ed7cba3eebbcc783f6c8fee818b497ee2cd21a71f068ee7b40cc1d7"
    )
    assert x.flags.writeable


MNIST_SHA256 = {  # from the shared data README
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def test_mnist_real(mnist, mnist_dir):
    (x, y), (xt, yt) = mnist
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64 and y.shape == (60000,)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x.max() == 255 and x[:, 0, 0].max() == 0  # corners are background
    assert y[:5].tolist() == [5, 0, 4, 1, 9] and yt[:5].tolist() == [7, 2, 1, 0, 4]
    for stem, sha in MNIST_SHA256.items():  # the README's checksums, independently
        assert _images.MNIST.files[IDX_STEMS.index(stem)].sha256 == sha
        raw = gzip.decompress((mnist_dir / (stem + ".gz")).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == sha


def test_fashion_mnist_real(fashion):
    (x, y), (xt, yt) = fashion
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10
    assert y[:5].tolist() == [9, 0, 0, 3, 0] and yt[:5].tolist() == [9, 2, 1, 1, 6]


def test_mnist_found_via_env_and_flat_layout(mnist_dir, isolated, tmp_path, monkeypatch):
    flat = tmp_path / "flat"
    flat.mkdir()
    for stem in IDX_STEMS:  # symlinks: the real files are never copied
        (flat / (stem + ".gz")).symlink_to(mnist_dir / (stem + ".gz"))
    monkeypatch.setenv("PURENN_DATA", str(flat))
    (_, y), _ = load_mnist(download=False)
    assert y.shape == (60000,)


# --- search order (pendigits: small, so cheap to load many times) -------------------


def _link_pendigits(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pendigits.tra", "pendigits.tes"):
        (dest / name).symlink_to(src / name)
    return dest


def _bad_pendigits(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pendigits.tra", "pendigits.tes"):
        (dest / name).write_text("1,2,3\n")
    return dest


def test_search_order(pendigits_dir, isolated, tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    _link_pendigits(pendigits_dir, good / "pendigits")
    _bad_pendigits(bad / "pendigits")
    # data_dir beats PURENN_DATA ...
    monkeypatch.setenv("PURENN_DATA", str(bad))
    assert load_pendigits(good, download=False)[0][0].shape == (7494, 16)
    with pytest.raises(CorruptFileError, match="line 1"):
        load_pendigits(download=False)
    # ... PURENN_DATA beats the cache ...
    _bad_pendigits(isolated / "pendigits")
    monkeypatch.setenv("PURENN_DATA", str(good))
    assert load_pendigits(download=False)[1][0].shape == (3498, 16)
    # ... and the cache is used last (flat layout inside it accepted too).
    monkeypatch.delenv("PURENN_DATA")
    for f in (isolated / "pendigits").iterdir():
        f.unlink()
    (isolated / "pendigits").rmdir()
    _link_pendigits(pendigits_dir, isolated)
    assert load_pendigits(download=False)[0][1].shape == (7494,)


def test_search_dirs_and_cache_dir(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("PURENN_DATA", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    dirs = search_dirs(tmp_path / "arg", [Path("/sys/x")])
    assert dirs == [tmp_path / "arg", tmp_path / "a", tmp_path / "b", isolated, Path("/sys/x")]
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "purenn"
    with pytest.raises(TypeError, match="data_dir"):
        search_dirs(42)


def test_not_found_error_lists_files_folders_and_fix(isolated, tmp_path, monkeypatch):
    without_bundled = attrs.evolve(_pendigits.PENDIGITS, bundled=None)
    monkeypatch.setattr(_pendigits, "PENDIGITS", without_bundled)
    with pytest.raises(DataNotFoundError) as info:
        load_pendigits(tmp_path / "nowhere", download=False)
    msg = str(info.value)
    assert "pendigits.tra" in msg and "pendigits.tes" in msg
    assert str(tmp_path / "nowhere" / "pendigits") in msg and str(isolated) in msg
    assert "PURENN_DATA" in msg and "download=False" in msg
    with pytest.raises(TypeError, match="download"):
        load_mnist(tmp_path, download="yes")


def test_fashion_search_includes_debian_folder(isolated, tmp_path, monkeypatch):
    with_debian = _images.FASHION_MNIST
    ds = attrs.evolve(with_debian, system_dirs=(str(tmp_path / "debian"),))
    monkeypatch.setattr(_images, "FASHION_MNIST", ds)
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(download=False)
    assert str(tmp_path / "debian") in str(info.value)
    assert "/usr/share/datasets/fashion-mnist" in with_debian.system_dirs


# --- corrupt IDX files --------------------------------------------------------------


def _idx(a: np.ndarray, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def test_read_idx_roundtrip_raw_gz_and_types(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx(a))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx(a)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    f = np.linspace(-1, 1, 6).astype(">f4").reshape(2, 3)
    (tmp_path / "f").write_bytes(_idx(f, 0x0D))
    got = read_idx(tmp_path / "f")
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, f)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (_idx(np.zeros((3, 2, 2), np.uint8))[:-1], "truncated"),
        (_idx(np.zeros((3, 2, 2), np.uint8))[:9], "truncated"),
        (_idx(np.zeros(3, np.uint8)) + b"\0", "longer than its header"),
        (b"\x00\x00\x08\x03" + b"\x00" * 8, r"truncated .*IDX header"),
        (b"\x08\x00\x00\x01\x00\x00\x00\x01\x00", "magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "magic number"),
        (b"", "magic number"),
        (b"\x00\x00\x08\x01\xff\xff\xff\xff", "corrupt"),
    ],
)
def test_corrupt_idx_refused(tmp_path, blob, match):
    for name, data in (("raw", blob), ("raw.gz", gzip.compress(blob))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptFileError, match=match) as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_gzip_garbage_refused(tmp_path):
    good = gzip.compress(_idx(np.zeros((50, 28, 28), np.uint8)))
    for name, data in (
        ("cut.gz", good[: len(good) // 2]),
        ("garbage.gz", b"\x1f\x8b" + bytes(range(200))),
        ("flipped.gz", good[:20] + bytes([good[20] ^ 0xFF]) + good[21:]),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CorruptFileError, match=r"garbage|cut|flipped") as info:
            read_idx(path)
        assert "gzip" in str(info.value)


def test_loader_refuses_wrong_or_corrupt_files_in_a_data_folder(isolated, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 4).astype(np.uint8),
        rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 3).astype(np.uint8),
    ]
    folder = tmp_path / "d" / "mnist"
    folder.mkdir(parents=True)
    files = []
    for stem, a in zip(IDX_STEMS, arrays, strict=True):
        raw = _idx(a)
        (folder / stem).write_bytes(raw)  # uncompressed copies are accepted
        files.append(_images.IdxFile(stem, "0" * 32, hashlib.sha256(raw).hexdigest(), a.shape))
    monkeypatch.setattr(_images, "MNIST", attrs.evolve(_images.MNIST, files=tuple(files)))
    (x, y), _ = load_mnist(tmp_path / "d", download=False)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, arrays[0])
    # same shape, different content: checksum mismatch, with the path
    (folder / IDX_STEMS[1]).write_bytes(_idx((arrays[1] + 1) % 10))
    with pytest.raises(CorruptFileError, match="checksum mismatch") as info:
        load_mnist(tmp_path / "d", download=False)
    assert str(folder / IDX_STEMS[1]) in str(info.value)
    # wrong shape: refused before reading the data
    (folder / IDX_STEMS[1]).write_bytes(_idx(arrays[3]))
    with pytest.raises(CorruptFileError, match=r"expected an array of shape \(4,\)"):
        load_mnist(tmp_path / "d", download=False)


# --- pendigits parser ---------------------------------------------------------------


def test_pendigits_bad_rows(tmp_path):
    row = ", ".join(["  5"] * 16) + ",  3"
    cases = {
        "short": (f"{row}\n1,2,3\n", "line 2: expected 17"),
        "text": (f"{row}\n{row.replace('  5', ' x', 1)}\n", "line 2: expected integers"),
        "range": (f"{row}\n{row.replace('  5', '101', 1)}\n", "line 2: expected features"),
        "label": (f"{row[:-1]}11\n", "line 1: expected features"),
        "empty": ("\n\n", "empty"),
        "binary": ("\xff", "non-ASCII"),
    }
    for name, (text, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(CorruptFileError, match=match):
            parse_pendigits(path)
    path = tmp_path / "ok"
    path.write_text(f"{row}\n\n{row}\n")
    x, y = parse_pendigits(path)
    assert x.shape == (2, 16) and y.tolist() == [3, 3]


def test_pendigits_wrong_counts_refused(pendigits_dir, isolated, tmp_path):
    folder = tmp_path / "pendigits"
    folder.mkdir()
    (folder / "pendigits.tes").symlink_to(pendigits_dir / "pendigits.tes")
    lines = (pendigits_dir / "pendigits.tra").read_text().splitlines(keepends=True)
    (folder / "pendigits.tra").write_text("".join(lines[:-3]))  # 3 rows short
    with pytest.raises(CorruptFileError, match="rows with class counts"):
        load_pendigits(tmp_path, download=False)


# --- CSV ----------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_kaggle_layout(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 784))
    labels = rng.integers(0, 10, 5)
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    body = "".join(
        f"{lab}," + ",".join(map(str, p)) + "\n" for lab, p in zip(labels, pixels, strict=True)
    )
    path = _write(tmp_path / "mnist_train.csv", header + "\n" + body)
    x, y = load_csv(path)
    assert x.shape == (5, 784) and x.dtype == np.int64 and y.dtype == np.int64
    np.testing.assert_array_equal(x, pixels)
    np.testing.assert_array_equal(y, labels)
    x8, _ = load_csv(path, dtype=np.uint8)
    assert x8.dtype == np.uint8 and x8.reshape(-1, 28, 28).shape == (5, 28, 28)
    _, yn = load_csv(path, label_column="label")
    np.testing.assert_array_equal(yn, labels)
    gz = tmp_path / "mnist_train.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(load_csv(gz)[0], pixels)


def test_csv_header_and_label_column_options(tmp_path):
    path = _write(tmp_path / "a.csv", "0.5,1,2\n1.5,3,0\n\n")
    x, y = load_csv(path, label_column=-1)
    assert x.dtype == np.float64 and x.tolist() == [[0.5, 1.0], [1.5, 3.0]]
    assert y.tolist() == [2, 0]
    x, y = load_csv(path, label_column=1, header=False)
    assert y.tolist() == [1, 3]
    x, y = load_csv(path, label_column=1, header=True)  # first line taken as header
    assert y.tolist() == [3]
    with pytest.raises(ValueError, match="no header"):
        load_csv(path, label_column="label")
    with pytest.raises(ValueError, match="label_column must be in"):
        load_csv(path, label_column=3)
    with pytest.raises(TypeError, match="label_column"):
        load_csv(path, label_column=1.0)
    with pytest.raises(ValueError, match="header must be"):
        load_csv(path, header="yes")
    with pytest.raises(ValueError, match="cannot hold"):
        load_csv(path, label_column=-1, dtype=np.uint8)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("label,a,b\n1,2,3\n4,5\n6,7,8\n", "line 3: expected 3 comma-separated columns"),
        ("label,a,b\n1,2,3\n4,5,6,7\n", "line 3: expected 3"),
        ("label,a,b\n1,2,3\n\n4,x,6\n", "line 4 column 2: expected a number; got 'x'"),
        ("1,2,3\n4,nan,6\n", "line 2 column 2: expected a finite number"),
        ("1.5,2,3\n", "line 1: expected a non-negative integer label"),
        ("-1,2,3\n", "line 1: expected a non-negative integer label"),
        ("", "empty"),
        ("label,a\n", "expected data rows"),
    ],
)
def test_csv_bad_rows_named_by_line(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as info:
        load_csv(path)
    assert str(path) in str(info.value)


# --- bounded readers (issue 14) ------------------------------------------------------


def test_idx_header_larger_than_the_file_can_hold_is_refused_before_allocating(tmp_path):
    # 1 MB of gzip cannot hold 2 GB; a raw file must hold exactly what its header says
    head = b"\x00\x00\x08\x03" + np.array([2000, 1000, 1000], ">u4").tobytes()
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(head + b"\0" * 1_000_000))
    with pytest.raises(CorruptFileError, match="more than the 268435456"):
        read_idx(tmp_path / "bomb.gz")
    with pytest.raises(CorruptFileError, match="more than a gzip file of"):
        read_idx(tmp_path / "bomb.gz", max_bytes=1 << 40)
    (tmp_path / "raw").write_bytes(head + b"\0" * 100)
    with pytest.raises(CorruptFileError, match="truncated"):
        read_idx(tmp_path / "raw", max_bytes=1 << 40)


def test_idx_element_count_never_wraps_around(tmp_path):
    # 2**32-1 cubed times 2**16 wraps int64 to a small number in np.prod
    dims = [2**32 - 1, 2**32 - 1, 2**32 - 1, 2**16]
    blob = b"\x00\x00\x08\x04" + np.array(dims, ">u4").tobytes() + b"\0" * 16
    (tmp_path / "wrap").write_bytes(blob)
    with pytest.raises(CorruptFileError, match="header promises") as info:
        read_idx(tmp_path / "wrap")
    assert f"promises {(2**32 - 1) ** 3 * 2**16} bytes" in str(info.value)


def test_idx_max_bytes_is_checked(tmp_path):
    (tmp_path / "a").write_bytes(_idx(np.zeros(10, np.uint8)))
    assert read_idx(tmp_path / "a", max_bytes=10).shape == (10,)
    with pytest.raises(CorruptFileError, match="max_bytes"):
        read_idx(tmp_path / "a", max_bytes=9)
    for bad in (0, True, 1.5):
        with pytest.raises((TypeError, ValueError), match="max_bytes"):
            read_idx(tmp_path / "a", max_bytes=bad)


def test_csv_gzip_bomb_stops_at_the_cap(tmp_path):
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"0,1\n" * 5_000_000))  # 20 MB of text in ~20 KB
    with pytest.raises(ValueError, match="larger than max_bytes=1000000"):
        load_csv(path, max_bytes=1_000_000)
    raw = _write(tmp_path / "raw.csv", "0,1\n" * 1000)
    with pytest.raises(ValueError, match="max_bytes"):
        load_csv(raw, max_bytes=100)
    assert load_csv(raw, max_bytes=4000)[0].shape == (1000, 1)
    two = tmp_path / "two.csv.gz"  # concatenated gzip members are one file
    two.write_bytes(gzip.compress(b"0,1\n") + gzip.compress(b"1,2\n"))
    assert load_csv(two, header=False)[1].tolist() == [0, 1]
    with pytest.raises(CorruptFileError, match="gzip"):
        path.write_bytes(gzip.compress(b"0,1\n" * 100)[:-12])
        load_csv(path)


def test_csv_memory_is_a_small_multiple_of_the_text(tmp_path):
    # what docs/reliability.md promises: about 12x the text at peak (two bytes of
    # text per cell become eight of float64, copied a few times); a list of
    # line strings would cost over 20x for a file of short lines
    path = _write(tmp_path / "short.csv", "0,1,2\n" * 200_000)
    tracemalloc.start()
    try:
        x, y = load_csv(path, header=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (200_000, 2) and y.shape == (200_000,)
    assert peak < 14 * path.stat().st_size, peak / path.stat().st_size


def test_csv_line_endings_and_blank_lines(tmp_path):
    text = "a,b\r\n0,1\r\n\r\n   \n1,2\r2,3\n"
    x, y = load_csv(_write(tmp_path / "a.csv", text))
    assert x.ravel().tolist() == [1, 2, 3] and y.tolist() == [0, 1, 2]
    with pytest.raises(CorruptFileError, match="line 7: expected 2 comma-separated"):
        load_csv(_write(tmp_path / "b.csv", text + "3\n"))
    with pytest.raises(CorruptFileError, match="line 5 column 2: expected a number; got 'x'"):
        load_csv(_write(tmp_path / "c.csv", text.replace("1,2", "1,x")))
    with pytest.raises(ValueError, match="expected data rows after the header"):
        load_csv(_write(tmp_path / "d.csv", "a,b\n\n  \n"))


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("0,9007199254740993\n1,2\n", [9007199254740993, 2]),  # int64, not float64's ...992
        ("0,-9223372036854775808\n1,2\n", [-9223372036854775808, 2]),
        ("0,9223372036854775808\n1,2\n", [2.0**63, 2.0]),  # not int64; float64 holds it
        ("0,1e20\n1,2\n", [1e20, 2.0]),  # exact in float64, beyond int64: stays float
    ],
)
def test_csv_numbers_are_kept_exactly(tmp_path, text, expect):
    x, _ = load_csv(_write(tmp_path / "a.csv", text), header=False)
    assert x.ravel().tolist() == expect
    assert all(type(v) is type(e) for v, e in zip(x.ravel().tolist(), expect, strict=True))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0,9007199254740993.0\n1,2.5\n", "line 1 column 2: 9007199254740993.0 cannot be held"),
        ("1e20,1\n0,2\n", "line 1: label 1e\\+20 in column 1 is beyond int64"),
        ("9223372036854775808,1\n0,2\n", "beyond int64"),
    ],
)
def test_csv_numbers_that_would_change_are_refused(tmp_path, text, match):
    with pytest.raises(CorruptFileError, match=match):
        load_csv(_write(tmp_path / "a.csv", text), header=False)


def test_csv_float_dtypes_refuse_overflow(tmp_path):
    path = _write(tmp_path / "a.csv", "0,70000\n1,1e39\n")
    with pytest.raises(ValueError, match="float16's 65504"):
        load_csv(path, header=False, dtype=np.float16)
    with pytest.raises(ValueError, match="float32"):
        load_csv(path, header=False, dtype=np.float32)
    assert load_csv(path, header=False, dtype=np.float64)[0].max() == 1e39


def test_pendigits_bad_gzip_and_too_much_text_are_refused(tmp_path):
    good = (_pendigits.BUNDLED_DIR / "pendigits.tes.gz").read_bytes()
    flipped = bytearray(good)
    flipped[266] ^= 0x5A  # deflate's "invalid distance too far back"
    (tmp_path / "flipped.gz").write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError, match="not valid gzip data"):
        parse_pendigits(tmp_path / "flipped.gz")
    (tmp_path / "plain.gz").write_bytes(gzip.decompress(good))
    with pytest.raises(CorruptFileError, match=r"named \.gz but not a gzip file"):
        parse_pendigits(tmp_path / "plain.gz")
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(b"0," * 16 + b"0\n" * 2**22))
    with pytest.raises(CorruptFileError, match="more than 4,194,304 bytes of text"):
        parse_pendigits(tmp_path / "bomb.gz")
    (tmp_path / "big").write_bytes(b"0\n" * 2**22)
    with pytest.raises(CorruptFileError, match="more than 4,194,304 bytes of text"):
        parse_pendigits(tmp_path / "big")
