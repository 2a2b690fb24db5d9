"""Network.summary and Network.param_counts."""

from __future__ import annotations

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
