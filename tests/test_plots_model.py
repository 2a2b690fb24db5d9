"""Pictures of what a network learned: decision boundaries, their GIF over
training, first-layer weights and per-layer diagnostics (purenn.plots)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

import purenn as nn
from purenn import callbacks as C
from purenn import plots
from purenn.datasets import make_moons, make_sine, make_spiral


def classifier(k=3, seed=0):
    spec = nn.Network(2, [nn.Dense(16, "tanh"), nn.Dense(k, "softmax")])
    return nn.init(spec, rng=seed)


def test_decision_boundary_colours_the_predicted_class_everywhere():
    x, y = make_spiral(90, rng=0)
    params = classifier()
    fig = plots.decision_boundary(params, x, y, resolution=40)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (image,) = ax.get_images()
    rgb = np.asarray(image.get_array())
    assert rgb.shape == (40, 40, 3) and rgb.min() >= 0 and rgb.max() <= 1
    # the grid covers the data with a margin, and the points are drawn on top
    x0, x1 = ax.get_xlim()
    assert x0 < x[:, 0].min() and x1 > x[:, 0].max()
    (points,) = ax.collections[-1:]
    assert points.get_offsets().shape == (90, 2)
    # region colours follow the argmax: recompute one grid point
    ext = image.get_extent()
    corner = np.array([[ext[0], ext[2]]], dtype=np.float32)
    cls = int(nn.forward(params, corner).argmax())
    tint = rgb[0, 0]
    expected = np.array(to_rgb(plots.CLASS_COLORS[cls]))
    # the tint is a blend of white and the class colour: same direction from white
    d_img, d_cls = 1 - tint, 1 - expected
    assert np.allclose(d_img / d_img.sum(), d_cls / d_cls.sum(), atol=1e-6)


def test_decision_boundary_for_a_sigmoid_classifier_and_for_regression():
    x, y = make_moons(60, rng=0)
    spec = nn.Network(2, [nn.Dense(8, "tanh"), nn.Dense(1, "sigmoid")], "binary_cross_entropy")
    fig = plots.decision_boundary(nn.init(spec, 0), x, y[:, None].astype(np.float32))
    assert fig.axes[0].get_title() == "Decision boundary"
    xs, ys = make_sine(50, rng=0)
    reg = nn.init(nn.Network(1, [nn.Dense(8, "tanh"), nn.Dense(1, "linear")], "mse"), 0)
    fig = plots.decision_boundary(reg, xs, ys, resolution=30, title="sine")
    (ax,) = fig.axes
    assert ax.get_title() == "sine"
    (curve,) = ax.get_lines()
    gx, gy = curve.get_data()
    np.testing.assert_allclose(gy, nn.forward(reg, gx[:, None].astype(np.float32))[:, 0])


def test_decision_boundary_refuses_what_it_cannot_draw():
    x, y = make_spiral(30, rng=0)
    with pytest.raises(TypeError, match="params tree"):
        plots.decision_boundary({"w": 1}, x, y)
    wide = nn.init(nn.Network(3, [nn.Dense(3, "softmax")]), 0)
    with pytest.raises(ValueError, match="2-D inputs; this one takes \\(3,\\)"):
        plots.decision_boundary(wide, x, y)
    with pytest.raises(ValueError, match="one entry per sample"):
        plots.decision_boundary(classifier(), x, y[:-1])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plots.decision_boundary(classifier(), bad, y)
    with pytest.raises(ValueError, match="resolution"):
        plots.decision_boundary(classifier(), x, y, resolution=1)


def test_boundary_animation_has_one_frame_per_snapshot(tmp_path):
    x, y = make_spiral(60, rng=0)
    snaps = C.Snapshots(tmp_path / "snaps", every=1)
    params = classifier()
    snaps.record(0, params)
    nn.fit(params, (x, y), optimizer=nn.optim.adam(0.05), epochs=3, batch_size=20, rng=0,
           verbose=0, callbacks=[snaps])  # fmt: skip
    frames = C.load_snapshots(tmp_path / "snaps")
    out = plots.boundary_animation(frames, x, y, tmp_path / "b.gif", resolution=20, hold_seconds=0)
    with Image.open(out) as im:
        assert im.n_frames == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gif", "snaps"]  # nothing half-written
    with pytest.raises(ValueError, match=r"\.gif"):
        plots.boundary_animation(frames, x, y, tmp_path / "b.png")
    with pytest.raises(TypeError, match="non-empty list of \\(epoch, params\\)"):
        plots.boundary_animation([], x, y, tmp_path / "c.gif")
    other = [(0, nn.init(nn.Network(2, [nn.Dense(3, "softmax")]), 0))]
    with pytest.raises(ValueError, match="same network"):
        plots.boundary_animation(frames + other, x, y, tmp_path / "c.gif")


def test_first_layer_weights_for_dense_on_images_and_for_conv_filters():
    dense = nn.init(nn.Network((1, 6, 6), [nn.Flatten(), nn.Dense(5, "softmax")]), 0)
    # the first layer with params is dense_0 on a flattened 6x6 image
    fig = plots.first_layer_weights(dense)  # (1, 6, 6) inputs: each unit as a 6x6 image
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 5
    np.testing.assert_allclose(images[2].get_array(), dense["dense_0"]["w"][:, 2].reshape(6, 6))
    flat = nn.init(nn.Network(16, [nn.Dense(4, "softmax")]), 0)
    with pytest.raises(ValueError, match="pass image_shape=\\(h, w\\) with h \\* w == 16"):
        plots.first_layer_weights(flat)
    assert len(plots.first_layer_weights(flat, image_shape=(4, 4), max_units=3).axes) >= 3
    conv = nn.init(
        nn.Network((1, 8, 8), [nn.Conv2D(6, 3), nn.Flatten(), nn.Dense(2, "softmax")]), 0
    )
    fig = plots.first_layer_weights(conv)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 6
    np.testing.assert_allclose(images[1].get_array(), conv["conv2d_0"]["w"][1, 0])


def test_layer_diagnostics_figure_from_a_recorded_history():
    x, y = make_spiral(60, rng=0)
    _, history = nn.fit(classifier(), (x, y), optimizer=nn.optim.adam(0.05), epochs=3,
                        batch_size=20, rng=0, verbose=0,
                        callbacks=[C.LayerDiagnostics(probe=x)])  # fmt: skip
    fig = plots.layer_diagnostics(history)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["gradient norm", "|update| / |weights|", "dead units (fraction)"]
    assert len(fig.axes[0].get_lines()) == 2  # dense_0, dense_1
    assert len(fig.axes[2].get_lines()) == 1  # the output layer is not counted
    with pytest.raises(ValueError, match="LayerDiagnostics"):
        plots.layer_diagnostics({k: v for k, v in history.items() if "." not in k})


def test_first_layer_weights_refuses_an_image_shape_that_is_no_shape():
    params = nn.init(nn.Network(4, [nn.Dense(3, "softmax")]), rng=0)
    for bad in (1.5, "ab", (2.0, 2)):
        with pytest.raises(TypeError, match="image_shape must be an int or a tuple of ints"):
            plots.first_layer_weights(params, image_shape=bad)
    with pytest.raises(ValueError, match="pass image_shape=\\(h, w\\) with h \\* w == 4"):
        plots.first_layer_weights(params, image_shape=np.int64(4))
    assert isinstance(plots.first_layer_weights(params, image_shape=(2, 2)), Figure)
