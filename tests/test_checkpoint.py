"""Checkpoints: round trips, refusals with clear errors, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import purenn
from purenn import checkpoint, optim
from purenn import schedules as S


def network(dtype=np.float32):
    spec = purenn.Network(
        4, [purenn.Dense(6), purenn.Dropout(0.25), purenn.Dense(3, "softmax")], "cross_entropy"
    )
    return purenn.init(spec, rng=0, dtype=dtype)


def rewrite(src, dst, change):
    """Copy an .npz member by member, letting ``change(members)`` edit the dict."""
    with np.load(src, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    change(members)
    np.savez(dst, **members)


def meta_of(members) -> dict:
    return json.loads(str(members["metadata"][()]))


def set_meta(members, meta) -> None:
    members["metadata"] = np.array(json.dumps(meta))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_params_round_trip_bit_for_bit(tmp_path, dtype):
    params = network(dtype)
    path = purenn.save(tmp_path / "ck.npz", params)
    ck = purenn.load(path)
    assert isinstance(ck, purenn.Checkpoint)
    assert purenn.tree_equal(ck.params, params)
    assert ck.params["spec"] == params["spec"]
    assert ck.extra == {}
    meta = ck.metadata
    assert meta["format_version"] == checkpoint.FORMAT_VERSION
    assert meta["dtype"] == np.dtype(dtype).name
    assert meta["numpy_version"] == np.__version__
    assert meta["purenn_version"] == purenn.__version__
    assert purenn.Network.from_dict(meta["spec"]) == params["spec"]
    # still usable: same outputs
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(dtype)
    np.testing.assert_array_equal(purenn.forward(ck.params, x), purenn.forward(params, x))


def test_extras_round_trip(tmp_path):
    params = network()
    opt = optim.adamw(S.LinearWarmup(S.CosineDecay(0.01, 100), 10), clip_norm=1.0)
    state = opt.init(params)
    rng = np.random.default_rng(7)
    rng.normal(size=3)  # advance it a little
    history = {"epoch": [1, 2], "val_loss": [0.5, None], "best_epoch": 1, "stopped_early": False}
    purenn.save(
        tmp_path / "ck.npz",
        params,
        optimizer=opt,
        opt_state=state,
        rng=rng,
        history=history,
        epoch=2,
        note="hello",
        scale=np.float32(0.5),
        table=np.arange(6, dtype=np.int16).reshape(2, 3),
        pair=(1, 2.5),
        nothing=None,
    )
    ck = purenn.load(tmp_path / "ck.npz")
    e = ck.extra
    assert e["optimizer"] == opt
    assert isinstance(e["opt_state"], optim.AdamState) and e["opt_state"].count == 0
    assert purenn.tree_equal(e["opt_state"].mu, state.mu)
    assert e["opt_state"].mu["spec"] is ck.params["spec"]  # one spec object per file
    assert e["history"] == history and e["epoch"] == 2 and e["note"] == "hello"
    assert e["scale"] == np.float32(0.5) and e["scale"].dtype == np.float32
    assert e["table"].dtype == np.int16 and e["table"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert e["pair"] == [1, 2.5] and e["nothing"] is None
    # the generator continues exactly where the saved one was
    np.testing.assert_array_equal(e["rng"].normal(size=5), rng.normal(size=5))


@pytest.mark.parametrize("name", ["MT19937", "Philox", "SFC64", "PCG64DXSM"])
def test_every_numpy_bit_generator_round_trips(tmp_path, name):
    rng = np.random.Generator(getattr(np.random, name)(3))
    rng.random(7)
    purenn.save(tmp_path / "g.npz", network(), rng=rng)
    back = purenn.load(tmp_path / "g.npz").extra["rng"]
    np.testing.assert_array_equal(back.integers(0, 2**31, 10), rng.integers(0, 2**31, 10))


def test_load_gives_fresh_writable_arrays(tmp_path):
    params = network()
    for leaf in purenn.tree_leaves(params):
        leaf.flags.writeable = False  # read-only input is fine for save
    purenn.save(tmp_path / "ck.npz", params)
    ck = purenn.load(tmp_path / "ck.npz")
    assert all(leaf.flags.writeable for leaf in purenn.tree_leaves(ck.params))


# --------------------------------------------------------------------------- refusals


def test_refuses_a_missing_file_and_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        purenn.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        purenn.save(tmp_path / "no" / "such" / "dir.npz", network())


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"not a zip at all" * 10,
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: raw[:200] + bytes(b ^ 0xFF for b in raw[200:400]) + raw[400:],  # flipped
        lambda raw: b"",
    ],
    ids=["garbage", "truncated", "flipped-bytes", "empty"],
)
def test_refuses_corrupt_files_with_a_value_error(tmp_path, damage):
    path = purenn.save(tmp_path / "ck.npz", network(), opt_state=optim.adam().init(network()))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match="checkpoint"):
        purenn.load(path)


def test_refuses_a_plain_npz_and_a_single_npy(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(ValueError, match="not a purenn checkpoint"):
        purenn.load(tmp_path / "plain.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match="single array"):
        purenn.load(tmp_path / "one.npy")


def test_refuses_unknown_format_versions(tmp_path):
    path = purenn.save(tmp_path / "ck.npz", network())

    def bump(members):
        meta = meta_of(members)
        meta["format_version"] = 99
        set_meta(members, meta)

    rewrite(path, tmp_path / "v99.npz", bump)
    with pytest.raises(ValueError, match="unknown format version 99; this purenn reads version 1"):
        purenn.load(tmp_path / "v99.npz")


def test_refuses_missing_arrays(tmp_path):
    params = network()
    path = purenn.save(tmp_path / "ck.npz", params, opt_state=optim.adam().init(params))
    rewrite(path, tmp_path / "a.npz", lambda m: m.pop("params/dense_1/b"))
    with pytest.raises(ValueError, match="missing array 'params/dense_1/b'"):
        purenn.load(tmp_path / "a.npz")
    rewrite(path, tmp_path / "b.npz", lambda m: m.pop("extra/opt_state/nu/dense_0/w"))
    with pytest.raises(ValueError, match="missing array 'extra/opt_state/nu/dense_0/w'"):
        purenn.load(tmp_path / "b.npz")


def test_refuses_shapes_that_do_not_match_the_stored_spec(tmp_path):
    params = network()
    path = purenn.save(tmp_path / "ck.npz", params, best_params=params)

    def shrink(key):
        def change(members):
            members[key] = members[key][:-1]

        return change

    rewrite(path, tmp_path / "a.npz", shrink("params/dense_0/w"))
    with pytest.raises(ValueError, match=r"params/dense_0/w has shape \(3, 6\).*gives \(4, 6\)"):
        purenn.load(tmp_path / "a.npz")
    rewrite(path, tmp_path / "b.npz", shrink("extra/best_params/dense_1/b"))
    with pytest.raises(ValueError, match=r"best_params/dense_1/b has shape \(2,\)"):
        purenn.load(tmp_path / "b.npz")

    def other_spec(members):
        meta = meta_of(members)
        meta["spec"]["layers"][0]["units"] = 7
        meta["params"]["spec"]["spec"]["layers"][0]["units"] = 7
        set_meta(members, meta)

    rewrite(path, tmp_path / "c.npz", other_spec)
    with pytest.raises(ValueError, match=r"shape .* but the stored network spec gives"):
        purenn.load(tmp_path / "c.npz")


def test_refuses_unknown_records_and_tags(tmp_path):
    path = purenn.save(tmp_path / "ck.npz", network(), opt=optim.sgd(0.1))

    def evil(members):
        meta = meta_of(members)
        meta["extra"]["opt"]["class"] = "os.system"
        set_meta(members, meta)

    rewrite(path, tmp_path / "a.npz", evil)
    with pytest.raises(ValueError, match=r"unknown record type 'os\.system'"):
        purenn.load(tmp_path / "a.npz")


def test_save_refuses_what_it_cannot_store_without_pickle(tmp_path):
    params = network()
    with pytest.raises(TypeError, match="cannot store 'extra/fn'"):
        purenn.save(tmp_path / "x.npz", params, fn=lambda: 0)
    with pytest.raises(TypeError, match="object array"):
        purenn.save(tmp_path / "x.npz", params, junk=np.array([{}, 1], dtype=object))
    with pytest.raises(TypeError, match="string keys"):
        purenn.save(tmp_path / "x.npz", params, table={1: 2})
    with pytest.raises(ValueError, match="may not contain '/'"):
        purenn.save(tmp_path / "x.npz", params, table={"a/b": 2})
    with pytest.raises(TypeError, match=r"params must be a dict made by purenn\.init"):
        purenn.save(tmp_path / "x.npz", {"w": np.ones(3)})
    assert not any(tmp_path.iterdir())  # nothing half-written


def _nested(levels: int) -> dict:
    """``levels`` dicts, one array at the bottom: ``{"a": {"a": ... {"w": w}}}``."""
    tree: dict = {"w": np.arange(3.0)}
    for _ in range(levels - 1):
        tree = {"a": tree}
    return tree


def test_extras_nested_past_the_tree_depth_limit_are_refused(tmp_path):
    limit = purenn.tree.MAX_TREE_DEPTH
    params = network()
    # an extra sits one level below the extras dict: limit - 1 levels of its own fit
    assert checkpoint.storable(_nested(limit - 1))
    purenn.save(tmp_path / "ok.npz", params, deep=_nested(limit - 1))
    back = purenn.load(tmp_path / "ok.npz").extra["deep"]
    assert purenn.tree_equal(back, _nested(limit - 1))
    for levels in (limit, 2000):
        assert not checkpoint.storable(_nested(levels))
        assert not checkpoint.storable([_nested(levels)])
        with pytest.raises(ValueError, match=r"cannot save .*extra is nested more than 64 levels"):
            purenn.save(tmp_path / "x.npz", params, deep=_nested(levels))
    assert not (tmp_path / "x.npz").exists()


# --------------------------------------------------------------------------- atomicity


def test_a_crash_mid_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    old = network()
    path = purenn.save(tmp_path / "ck.npz", old)
    before = path.read_bytes()

    def crash(file, members):
        file.write(b"PK\x03\x04 half a zip")  # some bytes reach the temporary file
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint, "_write_npz", crash)
    new = purenn.tree_map(lambda a: a + 1, old)
    with pytest.raises(KeyboardInterrupt):
        purenn.save(path, new)
    assert path.read_bytes() == before
    assert purenn.tree_equal(purenn.load(path).params, old)
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]  # the temporary file is gone


def test_overwriting_replaces_the_file(tmp_path):
    a, b = network(), purenn.tree_map(lambda x: x * 2, network())
    purenn.save(tmp_path / "ck.npz", a)
    purenn.save(tmp_path / "ck.npz", b, epoch=3)
    ck = purenn.load(tmp_path / "ck.npz")
    assert purenn.tree_equal(ck.params, b) and ck.extra == {"epoch": 3}
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_resume_kwargs_need_a_fit_checkpoint(tmp_path):
    purenn.save(tmp_path / "ck.npz", network())
    with pytest.raises(ValueError, match="cannot resume training"):
        purenn.load(tmp_path / "ck.npz").resume_kwargs()


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    from purenn.datasets import read_idx

    monkeypatch.chdir(tmp_path)
    params = purenn.init(purenn.Network(2, [purenn.Dense(2, "softmax")]), rng=0)
    for call in (lambda: purenn.save("", params), lambda: purenn.load(""), lambda: read_idx("")):
        with pytest.raises(ValueError, match="path is empty; pass a file or folder path"):
            call()
    assert list(tmp_path.iterdir()) == []
