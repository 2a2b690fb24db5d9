"""Tree helpers: the spec entry is static, leaves are visited in a fixed order."""

from __future__ import annotations

import numpy as np
import pytest

import purenn as pn

SPEC = pn.Network(3, [pn.Dense(4, "tanh"), pn.Dropout(0.1), pn.Dense(2, "softmax")])
OTHER = pn.Network(3, [pn.Dense(4, "relu"), pn.Dense(2, "softmax")])


@pytest.fixture
def params():
    return pn.init(SPEC, 0, np.float64)


def test_tree_map_passes_the_spec_through(params):
    doubled = pn.tree_map(lambda a: 2 * a, params)
    assert doubled[pn.SPEC_KEY] is SPEC
    assert list(doubled) == list(params)
    for (path, a), (_, b) in zip(pn.tree_items(params), pn.tree_items(doubled), strict=True):
        assert np.array_equal(b, 2 * a), path


def test_tree_map_never_calls_fn_on_the_spec(params):
    seen = []
    pn.tree_map(lambda a: seen.append(type(a)) or a, params)
    assert seen == [np.ndarray] * 4


def test_tree_map_several_trees(params):
    g = pn.tree_map(np.ones_like, params)
    out = pn.tree_map(lambda p, q, r: p + q - r, params, g, g)
    assert pn.tree_equal(out, params)


def test_tree_map_structure_mismatch(params):
    fewer = {k: v for k, v in params.items() if k != "dense_1"}
    with pytest.raises(
        ValueError,
        match=r"differ at the top level: missing keys \['dense_1'\], unexpected keys \[\]",
    ):
        pn.tree_map(lambda a, b: a, params, fewer)
    more = {**params, "extra": np.zeros(1)}
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['extra'\]"):
        pn.tree_map(lambda a, b: a, params, more)
    nested = {**params, "dense_0": {"w": params["dense_0"]["w"]}}
    with pytest.raises(
        ValueError, match=r"tree structures differ at 'dense_0': missing keys \['b'\]"
    ):
        pn.tree_map(lambda a, b: a, params, nested)
    flat = {**params, "dense_0": np.zeros(3)}
    with pytest.raises(ValueError, match=r"differ at 'dense_0': expected a dict, got ndarray"):
        pn.tree_map(lambda a, b: a, params, flat)
    with pytest.raises(TypeError, match=r"tree_map expects a dict tree; got list"):
        pn.tree_map(lambda a: a, [params])  # type: ignore[arg-type]


def test_tree_map_spec_mismatch(params):
    other = {**params, pn.SPEC_KEY: OTHER}
    with pytest.raises(
        ValueError,
        match=r"trees carry different network specs at 'spec'.*combine only trees of the same",
    ):
        pn.tree_map(lambda a, b: a, params, other)
    equal_copy = {**params, pn.SPEC_KEY: pn.Network.from_json(SPEC.to_json())}
    pn.tree_map(lambda a, b: a, params, equal_copy)  # equal, not identical: fine


def test_tree_map_does_not_touch_inputs(params):
    frozen = pn.tree_map(np.copy, params)
    for leaf in pn.tree_leaves(frozen):
        leaf.flags.writeable = False
    out = pn.tree_map(lambda a: a * 3, frozen)
    assert pn.tree_equal(frozen, params)
    assert out is not frozen and out["dense_0"] is not frozen["dense_0"]


def test_tree_items_sorted_by_path_whatever_the_insertion_order(params):
    shuffled = {
        "dense_1": {"w": params["dense_1"]["w"], "b": params["dense_1"]["b"]},
        pn.SPEC_KEY: SPEC,
        "dense_0": {"w": params["dense_0"]["w"], "b": params["dense_0"]["b"]},
    }
    paths = [p for p, _ in pn.tree_items(shuffled)]
    assert paths == ["dense_0/b", "dense_0/w", "dense_1/b", "dense_1/w"]
    assert paths == [p for p, _ in pn.tree_items(params)]
    assert [id(a) for a in pn.tree_leaves(shuffled)] == [id(a) for _, a in pn.tree_items(params)]


def test_tree_items_deep_nesting_and_no_spec():
    tree = {"b": {"z": np.zeros(1), "a": {"q": np.ones(2)}}, "a": np.arange(3)}
    assert [p for p, _ in pn.tree_items(tree)] == ["a", "b/a/q", "b/z"]


def test_tree_equal_is_bitwise_and_checks_dtype_and_spec(params):
    assert pn.tree_equal(params, pn.tree_map(np.copy, params))
    nudged = pn.tree_map(np.copy, params)
    nudged["dense_1"]["w"][0, 0] = np.nextafter(nudged["dense_1"]["w"][0, 0], 9.0)
    assert not pn.tree_equal(params, nudged)
    assert pn.tree_allclose(params, nudged)
    as32 = pn.tree_map(lambda a: a.astype(np.float32), params)
    assert not pn.tree_equal(params, pn.tree_map(lambda a: a.astype(np.float64), as32))
    assert not pn.tree_equal(as32, params)  # same values after rounding? dtype differs
    assert not pn.tree_equal(params, {**params, pn.SPEC_KEY: OTHER})
    assert not pn.tree_equal(params, {k: v for k, v in params.items() if k != "dense_0"})
    nan = pn.tree_map(lambda a: np.full_like(a, np.nan), params)
    assert not pn.tree_equal(nan, nan)  # NaN is not equal to itself


def test_tree_allclose(params):
    scaled = pn.tree_map(lambda a: a * (1 + 1e-9), params)
    assert pn.tree_allclose(params, scaled)
    assert not pn.tree_allclose(params, scaled, rtol=1e-12)
    assert pn.tree_allclose(params, pn.tree_map(lambda a: a + 1e-3, params), atol=1e-2)
    assert not pn.tree_allclose(params, {**params, pn.SPEC_KEY: OTHER})


def test_tree_zeros_like(params):
    zeros = pn.tree_zeros_like(params)
    assert zeros[pn.SPEC_KEY] is SPEC
    pn.tree_check_like(zeros, params, "zeros")
    assert not any(a.any() for a in pn.tree_leaves(zeros))


def test_tree_check_like_messages(params):
    pn.tree_check_like(pn.tree_map(np.copy, params), params, "grads")
    with pytest.raises(TypeError, match=r"moments must be a dict tree like params; got tuple"):
        pn.tree_check_like((), params, "moments")
    with pytest.raises(
        ValueError,
        match=r"moments does not match params: tree structures differ at the top level: "
        r"missing keys \['dense_1'\]",
    ):
        pn.tree_check_like({k: v for k, v in params.items() if k != "dense_1"}, params, "moments")
    with pytest.raises(
        ValueError,
        match=r"moments belong to another network: its spec .*relu.* differs from params' spec",
    ):
        pn.tree_check_like({**params, pn.SPEC_KEY: OTHER}, params, "moments")
    wrong_shape = {**params, "dense_0": {**params["dense_0"], "b": np.zeros(5)}}
    with pytest.raises(
        ValueError,
        match=r"moments\['dense_0/b'\] should have shape \(4,\) and dtype float64 like params; "
        r"got shape \(5,\) and dtype float64",
    ):
        pn.tree_check_like(wrong_shape, params, "moments")
    wrong_kind = {**params, "dense_0": {**params["dense_0"], "w": [[0.0] * 4] * 3}}
    with pytest.raises(
        ValueError, match=r"moments\['dense_0/w'\] .* got shape None and dtype None"
    ):
        pn.tree_check_like(wrong_kind, params, "moments")


def _nested(levels: int) -> dict:
    """A tree of ``levels`` dicts, one array at the bottom: ``{"a": {"a": ... {"w": w}}}``."""
    tree: dict = {"w": np.zeros(1)}
    for _ in range(levels - 1):
        tree = {"a": tree}
    return tree


@pytest.mark.parametrize(
    "walk",
    [
        pn.tree_items,
        pn.tree_leaves,
        pn.tree_zeros_like,
        lambda t: pn.tree_map(np.negative, t),
        lambda t: pn.tree_map(np.add, t, t),
        lambda t: pn.tree_equal(t, t),
        lambda t: pn.tree_allclose(t, t),
        lambda t: pn.tree_check_like(t, t, "grads"),
        lambda t: pn.optim.global_norm(t),
        lambda t: pn.callbacks.read_only(t),
        lambda t: pn.tree.state_items({pn.STATE_KEY: t}),
    ],
    ids=[
        "tree_items",
        "tree_leaves",
        "tree_zeros_like",
        "tree_map",
        "tree_map2",
        "tree_equal",
        "tree_allclose",
        "tree_check_like",
        "global_norm",
        "read_only",
        "state_items",
    ],
)
def test_a_tree_deeper_than_the_limit_is_a_value_error_naming_it(walk):
    walk(_nested(pn.tree.MAX_TREE_DEPTH - 1))  # one level to spare (state sits one down): works
    deep = r"is nested more than 64 levels deep \(purenn.tree.MAX_TREE_DEPTH\) at 'a/a/a"
    with pytest.raises(ValueError, match=deep):
        walk(_nested(2001))


def test_a_tree_at_exactly_the_depth_limit_works():
    tree = _nested(pn.tree.MAX_TREE_DEPTH)
    assert len(pn.tree_items(tree)) == 1
    assert pn.tree_equal(pn.tree_map(np.copy, tree), tree)
    pn.tree_check_like(pn.tree_zeros_like(tree), tree, "grads")
    with pytest.raises(ValueError, match="tree is nested more than"):
        pn.tree_items({"top": tree})
    with pytest.raises(ValueError, match="grads is nested more than"):
        pn.tree_check_like({"top": tree}, {"top": tree}, "grads")


def test_tree_check_like_wants_a_name_for_the_tree():
    params = {"a": np.zeros(2)}
    with pytest.raises(TypeError, match="what must be a str naming the tree; got dict"):
        pn.tree_check_like(params, params, {"a": {"a": {}}})
