"""Crafted checkpoints: every one refused with a ValueError naming the file,
within a small memory bound (tracemalloc), never an error from zipfile, json,
NumPy or the bit generators."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import purenn as pn
from purenn import optim

MiB = 2**20


def small():
    spec = pn.Network(4, [pn.Dense(6), pn.BatchNorm(), pn.Dense(3, "softmax")])
    return pn.init(spec, 0)


def members_of(path) -> dict[str, bytes]:
    """The raw ``.npy`` bytes of every member, by name."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def meta_of(members) -> dict:
    return json.loads(str(np.load(io.BytesIO(members["metadata.npy"]))[()]))


def with_meta(members, meta) -> dict:
    return {**members, "metadata.npy": npy(np.array(json.dumps(meta)))}


def refused(path, match=""):
    """load(path) raises a ValueError naming the file, allocating < 16 MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as info:
            pn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 16 * MiB, f"refusing {path.name} cost {peak / MiB:.1f} MiB"
    return info.value


@pytest.fixture
def saved(tmp_path):
    params = small()
    opt = optim.adam()
    state = opt.update(
        pn.grads(params, np.ones((3, 4), np.float32), np.array([0, 1, 2])), opt.init(params), params
    )[1]
    path = pn.save(
        tmp_path / "ck.npz",
        params,
        opt_state=state,
        rng=np.random.default_rng(0),
        blob=np.arange(5.0),
    )
    return path, members_of(path)


def test_the_fixture_loads(saved):
    path, _ = saved
    assert pn.check_params(pn.load(path).params) == np.float32


@pytest.mark.parametrize(
    "spec",
    [
        pn.Network(8000, [pn.Dense(8000, "softmax")]),
        pn.Network(4, [pn.Dense(2**20), pn.Dense(3, "softmax")]),
        pn.Network((1, 30000, 30000), [pn.Conv2D(2, 3), pn.Flatten(), pn.Dense(3, "softmax")]),
    ],
    ids=["dense8000", "dense2**20", "conv-huge-input"],
)
def test_a_spec_bigger_than_the_file_is_refused_before_any_array(saved, tmp_path, spec):
    _, members = saved
    meta = meta_of(members)
    meta["spec"] = spec.to_dict()
    meta["params"]["spec"]["spec"] = spec.to_dict()
    write_zip(tmp_path / "big.npz", with_meta(members, meta))
    refused(
        tmp_path / "big.npz",
        r"its network spec makes [\d,]+ bytes of float32 params but "
        r"the file holds [\d,]+",
    )


def test_an_npy_header_claiming_2_40_elements_is_refused(saved, tmp_path):
    _, members = saved
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
    )
    crafted = {**members, "extra/blob.npy": buf.getvalue() + b"\0" * 40}
    write_zip(tmp_path / "npy.npz", crafted)
    claims = r"array 'extra/blob' is corrupt .*header claims shape \(1099511627776,\)"
    refused(tmp_path / "npy.npz", claims)
    # the same header on the metadata member
    write_zip(tmp_path / "meta.npz", {**members, "metadata.npy": buf.getvalue() + b"\0" * 40})
    refused(tmp_path / "meta.npz", "array 'metadata' is corrupt")


def test_deep_json_is_refused(saved, tmp_path):
    _, members = saved
    meta = meta_of(members)
    deep = "[" * 100_000 + "]" * 100_000
    text = json.dumps(meta).replace('"extra": {', '"extra": {"deep": ' + deep + ", ", 1)
    write_zip(tmp_path / "deep.npz", {**members, "metadata.npy": npy(np.array(text))})
    refused(tmp_path / "deep.npz", "nested too deeply")
    # records nested in records: shallow enough for json, too deep for the decoder
    depth = 350  # 700 json levels; about 1,050 decoder frames
    record = '{"$type": "record", "class": "AdamState", "fields": {"count": 0, "mu": '
    nested = record * depth + "null" + "}}" * depth
    text = json.dumps(meta).replace('"extra": {', '"extra": {"deep": ' + nested + ", ", 1)
    write_zip(tmp_path / "deep2.npz", {**members, "metadata.npy": npy(np.array(text))})
    refused(tmp_path / "deep2.npz", "nested too deeply")


def test_a_generator_state_of_2_200_is_refused(saved, tmp_path):
    _, members = saved
    meta = meta_of(members)
    meta["extra"]["rng"]["state"]["state"]["state"] = 2**200
    write_zip(tmp_path / "rng.npz", with_meta(members, meta))
    refused(tmp_path / "rng.npz", r"invalid PCG64 state at 'extra/rng'")


def _patch_central(raw: bytes, name: bytes, offset: int, value: int) -> bytes:
    """Set a 2-byte field of ``name``'s central directory entry."""
    at = 0
    while True:
        at = raw.index(b"PK\x01\x02", at)
        length = struct.unpack("<H", raw[at + 28 : at + 30])[0]
        if raw[at + 46 : at + 46 + length] == name:
            return raw[: at + offset] + struct.pack("<H", value) + raw[at + offset + 2 :]
        at += 4


def test_compressed_and_encrypted_members_are_refused(saved, tmp_path):
    path, members = saved
    write_zip(tmp_path / "deflated.npz", members, zipfile.ZIP_DEFLATED)
    refused(tmp_path / "deflated.npz", "is compressed")
    raw = path.read_bytes()
    for field, value, match in [(8, 0x1, "is encrypted"), (10, 99, r"is compressed \(method 99\)")]:
        bad = tmp_path / f"flag{field}.npz"
        bad.write_bytes(_patch_central(raw, b"params/dense_0/w.npy", field, value))
        refused(bad, match)


def test_string_and_datetime_params_are_refused(saved, tmp_path):
    _, members = saved
    w = np.load(io.BytesIO(members["params/dense_0/w.npy"]))
    when = w.astype(np.int64).astype("M8[s]")
    for name, arr, meta_dtype, match in [
        ("str", w.astype("<U4"), "<U4", "metadata gives the dtype '<U4'"),
        ("datetime", when, "float32", r"dense_0/w has dtype datetime64"),
        ("float16", w.astype(np.float16), "float32", r"params/dense_0/w has dtype float16"),
        ("float16-meta", w.astype(np.float16), "float16", "metadata gives the dtype 'float16'"),
    ]:
        meta = meta_of(members)
        meta["dtype"] = meta_dtype
        crafted = with_meta({**members, "params/dense_0/w.npy": npy(arr)}, meta)
        # the file must still hold as many bytes as a float32 spec needs: pad a member
        crafted["params/pad.npy"] = npy(np.zeros(64))
        write_zip(tmp_path / f"{name}.npz", crafted)
        refused(tmp_path / f"{name}.npz", match)


def test_an_array_referenced_twice_is_refused(saved, tmp_path):
    _, members = saved
    meta = meta_of(members)
    meta["extra"]["copy"] = meta["extra"]["blob"]
    write_zip(tmp_path / "twice.npz", with_meta(members, meta))
    refused(tmp_path / "twice.npz", "referenced twice")


def test_moments_of_the_wrong_dtype_or_shape_are_refused(saved, tmp_path):
    _, members = saved
    nu = np.load(io.BytesIO(members["extra/opt_state/nu/dense_0/w.npy"]))
    cases = {
        "dtype": (
            nu.astype(np.float64),
            r"extra/opt_state/nu/dense_0/w has dtype float64; "
            "the params it goes with are float32",
        ),
        "shape": (
            nu[:2],
            r"extra/opt_state/nu/dense_0/w has shape \(2, 6\) but the stored "
            r"network spec gives \(4, 6\)",
        ),
        "negative": (-nu - 1, r"invalid AdamState at 'extra/opt_state'.*nu\['dense_0/w'\] holds"),
        "nan": (
            np.where(np.arange(nu.size).reshape(nu.shape) == 5, np.float32(np.nan), nu),
            r"invalid AdamState at 'extra/opt_state'.*nu\['dense_0/w'\] holds nan",
        ),
    }
    for name, (arr, match) in cases.items():
        crafted = {**members, "extra/opt_state/nu/dense_0/w.npy": npy(arr)}
        write_zip(tmp_path / f"{name}.npz", crafted)
        refused(tmp_path / f"{name}.npz", match)


@pytest.mark.parametrize("count", ["abc", -1, 1.5, True])
def test_an_optimizer_count_that_is_not_an_int_is_refused(saved, tmp_path, count):
    _, members = saved
    meta = meta_of(members)
    meta["extra"]["opt_state"]["fields"]["count"] = count
    write_zip(tmp_path / "count.npz", with_meta(members, meta))
    refused(tmp_path / "count.npz", r"invalid AdamState at 'extra/opt_state': AdamState.count")


def test_truncations_and_flips_are_refused_at_every_offset(saved, tmp_path):
    path, _ = saved
    raw = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for cut in range(0, len(raw), max(1, len(raw) // 60)):
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="checkpoint"):
            pn.load(bad)
    for at in range(0, len(raw), max(1, len(raw) // 60)):
        bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
        try:
            ck = pn.load(bad)
        except ValueError as err:
            assert str(bad) in str(err)
        else:  # a flip the format cannot see (inside a header's padding): the content is intact
            pn.check_params(ck.params)


def test_save_refuses_what_load_would_refuse(tmp_path):
    params = small()
    wrong = {**params, "dense_0": {**params["dense_0"], "b": np.zeros(1, np.float32)}}
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(1,\) but the spec gives \(6,\)"):
        pn.save(tmp_path / "a.npz", wrong)
    with pytest.raises(ValueError, match=r"cannot save .*extra/best_params/dense_0/b has shape"):
        pn.save(tmp_path / "a.npz", params, best_params=wrong)
    state = optim.adam().init(params)
    bad_state = optim.AdamState(
        count=0, mu=pn.tree_map(lambda a: a.astype(np.float64), state.mu), nu=state.nu
    )
    with pytest.raises(ValueError, match=r"cannot save .*opt_state/mu/dense_0/w has dtype float64"):
        pn.save(tmp_path / "a.npz", params, opt_state=bad_state)
    assert not (tmp_path / "a.npz").exists()
