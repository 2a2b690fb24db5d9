"""Network.summary and Network.param_counts."""

from __future__ import annotations

import attrs
import pytest

import purenn as nn
from purenn.tree import tree_leaves


def _mlp():
    return nn.Network(2, [nn.Dense(16, "tanh"), nn.Dropout(0.1), nn.Dense(3, "softmax")])


def test_param_counts_match_the_initialised_params():
    for spec in (
        _mlp(),
        nn.Network(
            (1, 8, 8), [nn.Conv2D(4, 3), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(10, "softmax")]
        ),
    ):
        counts = spec.param_counts()
        params = nn.init(spec, rng=0)
        assert tuple(counts) == spec.layer_names()
        assert sum(counts.values()) == sum(leaf.size for leaf in tree_leaves(params))
        for name, count in counts.items():
            own = params.get(name, {})
            assert count == sum(a.size for a in own.values())


def test_summary_table_lists_every_layer_with_shapes_counts_and_total():
    text = _mlp().summary()
    lines = text.splitlines()
    assert lines[0] == "Network: input (2,), output (3,), loss 'cross_entropy'"
    assert lines[1].split() == ["layer", "kind", "output", "params"]
    body = {line.split()[0]: line for line in lines[3:] if not line.startswith("-")}
    assert body["input"].split()[-2:] == ["(2,)", "0"]
    assert "Dense(units=16, activation='tanh')" in body["dense_0"]
    assert body["dense_0"].split()[-2:] == ["(16,)", "48"]
    assert body["dropout_0"].split()[-2:] == ["(16,)", "0"]
    assert body["dense_1"].split()[-2:] == ["(3,)", "51"]
    assert body["total"].split() == ["total", "99"]
    # columns line up: every params cell ends in the same column
    ends = {len(line) for line in lines[1:] if not line.startswith("-")}
    assert len(ends) == 1


def test_summary_shows_only_non_default_fields_and_thousands():
    spec = nn.Network((1, 28, 28), [nn.Conv2D(8, 3), nn.Flatten(), nn.Dense(10, "softmax")])
    text = spec.summary()
    assert "Conv2D(filters=8, kernel_size=(3, 3))" in text  # stride=1 is the default
    assert "54,090" in text  # 8 * 26 * 26 * 10 + 10
    assert spec.summary() == spec.summary()  # no randomness leaks into the text


def _resnet():
    block = nn.Residual(
        [nn.Conv2D(4, 3, padding="same", activation="linear"), nn.BatchNorm()],
        shortcut=[nn.Conv2D(4, 1, activation="linear")],
        activation="relu",
    )
    return nn.Network((2, 6, 6), [block, nn.Flatten(), nn.Dense(3, "softmax")])


def _rows(text):
    """``{name with its indent: cells}`` of the summary's layer rows."""
    lines = text.splitlines()[3:]
    header = text.splitlines()[1]
    starts = [header.index(word) for word in ("kind", "output")]
    rows = {}
    for line in lines:
        if line.startswith("-"):
            continue
        name = line[: starts[0]].rstrip()
        rows[name] = (line[starts[0] : starts[1]].strip(), *line[starts[1] :].rsplit(None, 1))
    return rows


def test_a_containers_layers_are_listed_beneath_it_by_their_path_in_its_params():
    spec = _resnet()
    rows = _rows(spec.summary())
    assert list(rows) == [
        "input",
        "residual_0",
        "  conv2d_0",
        "  batchnorm_0",
        "  shortcut/conv2d_0",
        "flatten_0",
        "dense_0",
        "total",
    ]
    # the fields holding the children are left out of the container's kind
    assert rows["residual_0"] == ("Residual(activation='relu')", "(4, 6, 6)", "96")
    assert rows["  conv2d_0"][1:] == ("(4, 6, 6)", "76")  # 2 * 9 * 4 + 4
    assert rows["  batchnorm_0"][1:] == ("(4, 6, 6)", "8")
    assert rows["  shortcut/conv2d_0"][0].startswith("Conv2D(filters=4, kernel_size=(1, 1)")
    assert rows["  shortcut/conv2d_0"][1:] == ("(4, 6, 6)", "12")
    # the children's counts are the container's, and the total counts each once
    params = nn.init(spec, rng=0)["residual_0"]
    assert sum(a.size for a in params["conv2d_0"].values()) == 76
    assert sum(a.size for a in params["shortcut"]["conv2d_0"].values()) == 12
    assert rows["total"] == ("", f"{sum(spec.param_counts().values()):,}")


def test_nested_containers_indent_once_more_per_level():
    inner = nn.Residual(nn.Dense(3))
    spec = nn.Network(
        4,
        [nn.Parallel([[nn.Dense(3), inner], nn.Dense(2)], join="concat"), nn.Dense(2, "softmax")],
    )
    rows = _rows(spec.summary())
    assert list(rows)[1:6] == [
        "parallel_0",
        "  branch_0/dense_0",
        "  branch_0/residual_0",
        "    dense_0",
        "  branch_1/dense_0",
    ]
    assert rows["parallel_0"] == ("Parallel(join='concat')", "(5,)", "37")
    assert rows["  branch_0/residual_0"][1:] == ("(3,)", "12")
    assert rows["    dense_0"][1:] == ("(3,)", "12")
    assert rows["  branch_1/dense_0"][1:] == ("(2,)", "10")


def test_a_plain_layer_has_no_sublayers():
    assert nn.Dense(3).sublayers((4,)) == ()
    assert nn.Conv2D(2, 3).sublayers((1, 5, 5)) == ()


def test_sublayers_name_the_paths_and_shapes_the_container_uses():
    block = _resnet().layers[0]
    subs = block.sublayers((2, 6, 6))
    assert [s.path for s in subs] == [("conv2d_0",), ("batchnorm_0",), ("shortcut", "conv2d_0")]
    assert [s.in_shape for s in subs] == [(2, 6, 6), (4, 6, 6), (2, 6, 6)]
    assert all(isinstance(s, nn.Sublayer) for s in subs)
    params = nn.init(_resnet(), rng=0)["residual_0"]
    for sub in subs:
        entry = params
        for key in sub.path:
            entry = entry[key]
        assert {k: v.shape for k, v in entry.items()} == sub.layer.param_shapes(sub.in_shape)


@nn.register_layer
@attrs.frozen
class _Twice(nn.Layer):
    """A user's container for the summary: ``y = inner(inner'(x))``, two copies
    of one layer under ``first`` and ``second`` (only shapes and params here)."""

    inner: nn.Layer

    def output_shape(self, in_shape):
        return self.inner.output_shape(self.inner.output_shape(in_shape))

    def init_params(self, rng, in_shape, dtype):
        mid = self.inner.output_shape(in_shape)
        return {
            "first": self.inner.init_params(rng, in_shape, dtype),
            "second": self.inner.init_params(rng, mid, dtype),
        }

    def sublayers(self, in_shape):
        mid = self.inner.output_shape(in_shape)
        return (
            nn.Sublayer(("first",), self.inner, in_shape),
            nn.Sublayer(("second",), self.inner, mid),
        )


@nn.register_layer
@attrs.frozen
class _BadSublayers(nn.Layer):
    def output_shape(self, in_shape):
        return in_shape

    def sublayers(self, in_shape):
        return [("dense_0", nn.Dense(3), in_shape)]


def test_a_users_own_container_gets_rows_from_its_sublayers():
    spec = nn.Network(4, [_Twice(nn.Dense(4, "tanh")), nn.Dense(2, "softmax")])
    rows = _rows(spec.summary())
    assert list(rows)[1:4] == ["_twice_0", "  first", "  second"]
    assert rows["  first"] == ("Dense(units=4, activation='tanh')", "(4,)", "20")
    assert rows["_twice_0"][1:] == ("(4,)", "40")


def test_sublayers_that_are_not_sublayer_records_are_refused_by_name():
    spec = nn.Network(4, [_BadSublayers(), nn.Dense(2, "softmax")])
    with pytest.raises(TypeError, match=r"_BadSublayers.sublayers must return purenn.Sublayer"):
        spec.summary()


@nn.register_layer
@attrs.frozen
class _Holder(nn.Layer):
    """A container that does not define sublayers: its summary row keeps the
    field that holds its child, so nothing is lost."""

    inner: nn.Layer

    def output_shape(self, in_shape):
        return self.inner.output_shape(in_shape)


def test_a_container_without_sublayers_keeps_its_children_in_its_kind():
    spec = nn.Network(4, [_Holder(nn.Dense(4)), nn.Dense(2, "softmax")])
    rows = _rows(spec.summary())
    assert list(rows)[1:3] == ["_holder_0", "dense_0"]
    assert rows["_holder_0"][0].startswith("_Holder(inner=Dense(units=4")
