"""Download path end to end against a local HTTP server on 127.0.0.1.

No test here touches the internet: every mirror URL points at a server the test
starts itself (or at a closed local port), and the cache lives in tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import pytest

from purenn.datasets import (
    DataNotFoundError,
    _download,
    _images,
    _pendigits,
    load_fashion_mnist,
    load_mnist,
    load_pendigits,
)
from purenn.datasets._download import MirrorsFailedError, download_first
from purenn.datasets._pendigits import arrays_sha256

# --- a scriptable local HTTP server -------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple]] = {}
    hits: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.hits.append(self.path)
        kind, *rest = self.routes.get(self.path, ("status", 404))
        if kind == "ok":
            (body,) = rest
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif kind == "drop":  # promise the whole body, send part of it, hang up
            body, keep = rest
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:keep])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "nolength":  # a body without Content-Length, ended by closing
            (body,) = rest
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        elif kind == "announce":  # a Content-Length far above the body
            (length,) = rest
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.close_connection = True
        elif kind == "drip":  # one byte at a time, each well within the read timeout
            count, pause = rest
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(count):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:  # the client gave up, as it should
                pass
            self.close_connection = True
        elif kind == "redirect":
            (location,) = rest
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "stall":
            (seconds,) = rest
            time.sleep(seconds)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "1")
                self.end_headers()
                self.wfile.write(b"x")
            except OSError:  # the client gave up first, as it should
                pass
        else:
            self.send_response(rest[0])
            self.send_header("Content-Length", "0")
            self.end_headers()


class Server:
    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"routes": {}, "hits": []})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # do not wait for stalled handlers
        self.routes = handler.routes
        self.hits = handler.hits
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a local port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache; no PURENN_DATA; no proxies."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("PURENN_DATA", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(_download, "TIMEOUT_SECONDS", 5.0)
    return tmp_path / "xdg" / "purenn"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# --- synthetic IDX data sets with their own checksums ------------------------------


def _idx_bytes(a: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, dtype=">u4").tobytes()
    return head + a.astype(np.uint8).tobytes()


def _fake_idx_dataset(base: _images.IdxDataset, mirrors: list[str], n: int = 7):
    """A tiny stand-in for MNIST: arrays, served gz bytes, and a matching IdxDataset."""
    rng = np.random.default_rng(5)
    arrays = [
        rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n).astype(np.uint8),
        rng.integers(0, 256, (n - 2, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n - 2).astype(np.uint8),
    ]
    blobs, files = {}, []
    for f, a in zip(base.files, arrays, strict=True):
        raw = _idx_bytes(a)
        gz = gzip.compress(raw, mtime=0)
        blobs[f.stem + ".gz"] = gz
        files.append(
            _images.IdxFile(
                f.stem,
                hashlib.md5(gz).hexdigest(),
                hashlib.sha256(raw).hexdigest(),
                a.shape,
            )
        )
    ds = attrs.evolve(base, mirrors=tuple(mirrors), files=tuple(files), system_dirs=())
    return ds, arrays, blobs


LOADERS = [(load_mnist, "MNIST", "mnist"), (load_fashion_mnist, "FASHION_MNIST", "fashion-mnist")]


@pytest.mark.parametrize(("load", "attr", "subdir"), LOADERS)
def test_download_success_then_cache_reused(server, cache, monkeypatch, capsys, load, attr, subdir):
    ds, arrays, blobs = _fake_idx_dataset(getattr(_images, attr), [server.url + "a/"])
    monkeypatch.setattr(_images, attr, ds)
    monkeypatch.setattr(_download, "PROGRESS_MIN_BYTES", 1)  # show progress for tiny files
    for name, blob in blobs.items():
        server.routes["/a/" + name] = ("ok", blob)

    (x_tr, y_tr), (x_te, y_te) = load()

    np.testing.assert_array_equal(x_tr, arrays[0])
    np.testing.assert_array_equal(y_tr, arrays[1])
    np.testing.assert_array_equal(x_te, arrays[2])
    np.testing.assert_array_equal(y_te, arrays[3])
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int64
    assert _leftovers(cache / subdir) == sorted(blobs)  # no .part files
    for name in blobs:  # published like every other file purenn writes: readable by all
        assert (cache / subdir / name).stat().st_mode & 0o777 == 0o644
    assert "downloading" in capsys.readouterr().err
    n_hits = len(server.hits)
    load(download=False)  # from the cache, no network
    assert len(server.hits) == n_hits


def test_first_mirror_down_second_works(server, cache, monkeypatch, closed_port_url):
    mirrors = [closed_port_url, server.url + "broken/", server.url + "good/"]
    ds, arrays, blobs = _fake_idx_dataset(_images.MNIST, mirrors)
    monkeypatch.setattr(_images, "MNIST", ds)
    for name, blob in blobs.items():
        server.routes["/broken/" + name] = ("status", 503)
        server.routes["/good/" + name] = ("ok", blob)

    (x_tr, _), _ = load_mnist()

    np.testing.assert_array_equal(x_tr, arrays[0])
    assert any(h.startswith("/broken/") for h in server.hits)
    assert _leftovers(cache / "mnist") == sorted(blobs)


def test_checksum_mismatch_is_refused_and_leaves_nothing(server, cache, monkeypatch):
    ds, _, blobs = _fake_idx_dataset(_images.MNIST, [server.url + "m1/", server.url + "m2/"])
    monkeypatch.setattr(_images, "MNIST", ds)
    bad = gzip.compress(b"not the real file", mtime=0)
    for name in blobs:
        server.routes["/m1/" + name] = ("ok", bad)
        server.routes["/m2/" + name] = ("ok", bad)

    with pytest.raises(DataNotFoundError) as info:
        load_mnist()

    msg = str(info.value)
    assert "checksum mismatch" in msg and "m1/" in msg and "m2/" in msg
    assert _leftovers(cache / "mnist") == []


def test_checksum_mismatch_on_first_mirror_then_good_second(server, cache, monkeypatch):
    ds, arrays, blobs = _fake_idx_dataset(_images.MNIST, [server.url + "m1/", server.url + "m2/"])
    monkeypatch.setattr(_images, "MNIST", ds)
    for name, blob in blobs.items():
        server.routes["/m1/" + name] = ("ok", blob[:-1] + bytes([blob[-1] ^ 1]))
        server.routes["/m2/" + name] = ("ok", blob)
    (_, y_tr), _ = load_mnist()
    np.testing.assert_array_equal(y_tr, arrays[1])


def test_connection_dropped_mid_file(server, cache, monkeypatch):
    ds, _, blobs = _fake_idx_dataset(_images.MNIST, [server.url + "d/"])
    monkeypatch.setattr(_images, "MNIST", ds)
    for name, blob in blobs.items():
        server.routes["/d/" + name] = ("drop", blob, len(blob) // 2)

    with pytest.raises(DataNotFoundError) as info:
        load_mnist()

    assert "connection dropped" in str(info.value) or "transfer failed" in str(info.value)
    assert _leftovers(cache / "mnist") == []


def test_all_mirrors_down_gives_the_clear_error(server, cache, monkeypatch, closed_port_url):
    ds, _, blobs = _fake_idx_dataset(_images.MNIST, [closed_port_url, server.url + "x/"])
    monkeypatch.setattr(_images, "MNIST", ds)

    with pytest.raises(DataNotFoundError) as info:
        load_mnist()

    msg = str(info.value)
    for name in blobs:  # the files expected
        assert name in msg
    assert str(cache / "mnist") in msg  # the folders searched
    assert "PURENN_DATA" in msg  # how to fix
    assert closed_port_url in msg and "cannot connect" in msg  # what each mirror said
    assert server.url + "x/" in msg and "HTTP 404" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert _leftovers(cache / "mnist") == []


def test_download_false_never_touches_the_network(server, cache, monkeypatch):
    ds, _, _ = _fake_idx_dataset(_images.MNIST, [server.url])
    monkeypatch.setattr(_images, "MNIST", ds)
    with pytest.raises(DataNotFoundError, match="download=False"):
        load_mnist(download=False)
    assert server.hits == []


def test_timeout_instead_of_hanging(server, cache, monkeypatch, tmp_path):
    monkeypatch.setattr(_download, "TIMEOUT_SECONDS", 0.2)
    server.routes["/slow"] = ("stall", 1.0)
    start = time.monotonic()
    with pytest.raises(MirrorsFailedError) as info:
        download_first([server.url + "slow"], tmp_path / "out" / "slow")
    assert time.monotonic() - start < 0.9
    assert "timed out" in str(info.value)
    assert _leftovers(tmp_path / "out") == []


def test_only_http_and_https_are_fetched(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"local file")
    with pytest.raises(MirrorsFailedError, match="scheme"):
        download_first([secret.as_uri()], tmp_path / "dl" / "copy")
    assert not (tmp_path / "dl" / "copy").exists()


# --- bounded downloads: size caps, deadline, redirects, full disk, leftovers ---------


def test_body_without_length_is_cut_at_the_cap(server, tmp_path):
    server.routes["/big"] = ("nolength", b"x" * 200_000)
    with pytest.raises(MirrorsFailedError, match="exceeds 5000 bytes"):
        download_first([server.url + "big"], tmp_path / "dl" / "big", max_bytes=5000)
    assert _leftovers(tmp_path / "dl") == []


def test_announced_length_above_the_cap_is_refused_at_once(server, tmp_path):
    server.routes["/huge"] = ("announce", 1 << 40)
    with pytest.raises(MirrorsFailedError, match="announces 1099511627776 bytes"):
        download_first([server.url + "huge"], tmp_path / "dl" / "huge", max_bytes=5000)
    assert _leftovers(tmp_path / "dl") == []


def test_builtin_caps_follow_the_expected_sizes():
    for ds in (_images.MNIST, _images.FASHION_MNIST):
        for f in ds.files:
            raw = 4 + 4 * len(f.shape) + int(np.prod(f.shape))
            assert raw < _images.gz_cap(f) < raw * 1.01 + 4096
    tra = _pendigits.PENDIGITS.files[0]
    assert 600_000 < _pendigits.text_cap(tra) < 1_100_000  # the real file is 636,990 bytes


def test_a_dripping_server_meets_the_overall_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setattr(_download, "TIMEOUT_SECONDS", 5.0)
    server.routes["/drip"] = ("drip", 1000, 0.02)  # 20 s in all, never a 5 s pause
    start = time.monotonic()
    with pytest.raises(MirrorsFailedError, match=r"overall deadline of 0\.3 s"):
        download_first([server.url + "drip"], tmp_path / "dl" / "drip", deadline=0.3)
    assert time.monotonic() - start < 3
    assert _leftovers(tmp_path / "dl") == []


def test_redirects_only_to_http_or_https(server, tmp_path):
    server.routes["/good"] = ("ok", b"payload")
    server.routes["/to-http"] = ("redirect", server.url + "good")
    server.routes["/to-ftp"] = ("redirect", "ftp://127.0.0.1/secret")
    server.routes["/to-file"] = ("redirect", (tmp_path / "x").as_uri())
    download_first([server.url + "to-http"], tmp_path / "dl" / "a")
    assert (tmp_path / "dl" / "a").read_bytes() == b"payload"
    for route in ("to-ftp", "to-file"):
        with pytest.raises(MirrorsFailedError, match=r"redirect|not allowed"):
            download_first([server.url + route], tmp_path / "dl" / route)
        assert not (tmp_path / "dl" / route).exists()


def test_a_full_disk_names_the_folder_and_tries_the_next_mirror(server, tmp_path):
    resource = pytest.importorskip("resource")
    import signal

    server.routes["/m1/f"] = ("ok", b"y" * 100_000)
    server.routes["/m2/f"] = ("ok", b"y" * 100_000)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, old_limit[1]))  # writes fail: EFBIG
    try:
        with pytest.raises(MirrorsFailedError) as info:
            download_first([server.url + "m1/f", server.url + "m2/f"], tmp_path / "dl" / "f")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert len(info.value.errors) == 2  # the second mirror was tried
    for line in info.value.errors:
        assert f"cannot write to {tmp_path / 'dl'}" in line and "free some space" in line
    assert _leftovers(tmp_path / "dl") == []


def test_a_killed_download_leaves_a_part_file_the_next_run_removes(server, tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    orphan = folder / ".f.abcd1234.part"  # as a kill -9 mid-download leaves it
    orphan.write_bytes(b"half")
    other = folder / ".g.abcd1234.part"  # another file's: left to its own next run
    other.write_bytes(b"half")
    server.routes["/f"] = ("ok", b"whole")
    download_first([server.url + "f"], folder / "f")
    assert _leftovers(folder) == [".g.abcd1234.part", "f"]


def test_a_part_file_in_use_by_another_download_is_left_alone(server, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    folder = tmp_path / "dl"
    folder.mkdir()
    live = folder / ".f.live1234.part"
    with open(live, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a download in progress holds it
        server.routes["/f"] = ("ok", b"whole")
        download_first([server.url + "f"], folder / "f")
        assert live.exists()


# --- pendigits: plain files, then UCI's zip -----------------------------------------


def _fake_pendigits(monkeypatch, mirror: str, zip_url: str):
    rng = np.random.default_rng(3)
    texts, files = {}, []
    for name, n in (("pendigits.tra", 12), ("pendigits.tes", 7)):
        x = rng.integers(0, 101, (n, 16))
        y = np.arange(n) % 10
        texts[name] = "".join(
            ",".join(f"{v:4d}" for v in [*row, label]) + "\n"
            for row, label in zip(x, y, strict=True)
        ).encode()
        counts = tuple(int(c) for c in np.bincount(y, minlength=10))
        files.append(_pendigits.PendigitsFile(name, counts, arrays_sha256(x, y)))
    src = attrs.evolve(  # no bundled copy: these files must come from the fake mirrors
        _pendigits.PENDIGITS,
        mirrors=(mirror,),
        zip_urls=(zip_url,),
        files=tuple(files),
        bundled=None,
    )
    monkeypatch.setattr(_pendigits, "PENDIGITS", src)
    return texts


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pendigits.names", b"description")
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_pendigits_direct_download(server, cache, monkeypatch):
    texts = _fake_pendigits(monkeypatch, server.url + "uci/", server.url + "pd.zip")
    for name, text in texts.items():
        server.routes["/uci/" + name] = ("ok", text)
    (x, y), (xt, yt) = load_pendigits()
    assert yt.shape == (7,)
    assert x.shape == (12, 16) and xt.shape == (7, 16) and y.dtype == np.int64
    assert "/pd.zip" not in server.hits
    assert _leftovers(cache / "pendigits") == sorted(texts)


def test_pendigits_falls_back_to_the_zip(server, cache, monkeypatch):
    texts = _fake_pendigits(monkeypatch, server.url + "uci/", server.url + "pd.zip")
    server.routes["/pd.zip"] = ("ok", _zip({"sub/" + k: v for k, v in texts.items()}))
    (x, _), (xt, _) = load_pendigits()
    assert x.shape == (12, 16) and xt.shape == (7, 16)
    assert _leftovers(cache / "pendigits") == sorted(texts)  # zip itself not kept
    for name in texts:  # zip members are published like direct downloads
        assert (cache / "pendigits" / name).stat().st_mode & 0o777 == 0o644


def test_pendigits_wrong_content_and_bad_zip_are_refused(server, cache, monkeypatch):
    texts = _fake_pendigits(monkeypatch, server.url + "uci/", server.url + "pd.zip")
    extra_row = b",".join([b"   0"] * 17) + b"\n"
    for name, text in texts.items():  # parses, but one row too many
        server.routes["/uci/" + name] = ("ok", text + extra_row)
    server.routes["/pd.zip"] = ("ok", b"PK\x03\x04 garbage")
    with pytest.raises(DataNotFoundError) as info:
        load_pendigits()
    msg = str(info.value)
    assert "content refused" in msg and "not a valid zip" in msg and "pendigits.tra" in msg
    assert _leftovers(cache / "pendigits") == []
