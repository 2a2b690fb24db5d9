"""The pendigits copy shipped inside the package: verified, found last (before
any download), refused when corrupt, attributed, and included in the wheel."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import attrs
import numpy as np
import pytest

from purenn.datasets import CorruptFileError, DataNotFoundError, _pendigits, load_pendigits
from purenn.datasets._pendigits import BUNDLED_DIR, PENDIGITS, arrays_sha256, parse_pendigits

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "pendigits"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No PURENN_DATA and an empty user cache: only the bundled copy is left."""
    monkeypatch.delenv("PURENN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_the_bundled_files_match_the_pinned_checksums():
    for f in PENDIGITS.files:
        path = BUNDLED_DIR / f"{f.name}.gz"
        assert path.read_bytes()[:2] == b"\x1f\x8b", f"{path} is not gzipped"
        x, y = parse_pendigits(path)
        assert arrays_sha256(x, y) == f.sha256 and len(y) == f.rows


def test_used_when_no_other_copy_is_found_and_never_downloads(isolated, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the bundled copy must be used before any download")

    monkeypatch.setattr(_pendigits, "_download", no_network)
    (x, y), (xt, _) = load_pendigits()  # download=True, yet nothing is fetched
    assert x.shape == (7494, 16) and xt.shape == (3498, 16)
    assert x.dtype == np.int64 and y.dtype == np.int64
    if (SHARED / "pendigits.tra").is_file():
        (sx, sy), _ = load_pendigits(SHARED, download=False)
        np.testing.assert_array_equal(x, sx)
        np.testing.assert_array_equal(y, sy)


def test_every_other_folder_comes_first(isolated):
    # a corrupt copy in data_dir is read (and refused) rather than the bundled one
    folder = isolated / "mine" / "pendigits"
    folder.mkdir(parents=True)
    for f in PENDIGITS.files:
        (folder / f.name).write_text("1,2,3\n")
    with pytest.raises(CorruptFileError, match=str(folder)):
        load_pendigits(isolated / "mine")


def test_a_corrupt_bundled_copy_is_refused(isolated, monkeypatch):
    bad = isolated / "bundled"
    bad.mkdir()
    for f in PENDIGITS.files:
        text = gzip.decompress((BUNDLED_DIR / f"{f.name}.gz").read_bytes())
        changed = text.replace(b"100", b" 99", 1)  # one value edited: counts still fit
        (bad / f"{f.name}.gz").write_bytes(gzip.compress(changed))
    monkeypatch.setattr(_pendigits, "PENDIGITS", attrs.evolve(PENDIGITS, bundled=bad))
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        load_pendigits(download=False)
    (bad / "pendigits.tra.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CorruptFileError, match="not valid gzip data"):
        load_pendigits(download=False)


def test_without_any_copy_the_error_lists_the_bundled_folder(isolated, monkeypatch):
    empty = isolated / "no-bundle"
    monkeypatch.setattr(_pendigits, "PENDIGITS", attrs.evolve(PENDIGITS, bundled=empty))
    with pytest.raises(DataNotFoundError) as info:
        load_pendigits(download=False)
    assert f"{empty}  (does not exist)" in str(info.value)


def test_attribution_sits_beside_the_files_and_in_the_docs():
    readme = (BUNDLED_DIR / "README.md").read_text()
    for needed in ("CC BY 4.0", "Alpaydin", "Alimoglu", "UCI"):
        assert needed in readme
    docs = (ROOT / "docs" / "data.md").read_text()
    assert "bundled" in docs and "CC BY 4.0" in docs


@pytest.mark.slow
def test_the_wheel_includes_the_bundled_copy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "purenn", src / "purenn",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("purenn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("pendigits.tra.gz", "pendigits.tes.gz", "README.md"):
        assert f"purenn/datasets/data/pendigits/{f}" in names
