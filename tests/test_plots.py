"""Tests for purenn.plots and scripts/plot_run.py: figures from plain data, files on disk."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from purenn import plots

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_history(n: int = 6, *, validation: bool = True, best: int | None = 4) -> dict:
    """A history dict in exactly the format purenn.training.fit returns."""
    epochs = list(range(1, n + 1))
    train_loss = [1.0 / e for e in epochs]
    val_loss = [1.1 / e + 0.02 * max(0, e - 4) for e in epochs]
    return {
        "epoch": epochs,
        "train_loss": train_loss,
        "train_accuracy": [1 - 0.5 / e for e in epochs],
        "val_loss": val_loss if validation else [None] * n,
        "val_accuracy": [1 - 0.6 / e for e in epochs] if validation else [None] * n,
        "lr": [0.1] * n,
        "seconds": [0.01] * n,
        "best_epoch": best if validation else None,
        "stopped_early": validation,
        "stop_reason": "patience 2 exhausted" if validation else None,
    }


def make_cm(k: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, size=(k, k))
    cm[np.arange(k), np.arange(k)] = 90
    return cm


def pendigits_samples(m: int = 5):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 101, size=(m, 16))
    y_true = np.arange(m) % 10
    return x, y_true, (y_true + 1) % 10


def image_samples(m: int = 5, shape=(28, 28)):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(m, shape[0] * shape[1]), dtype=np.uint8)
    y_true = np.arange(m) % 10
    return x, y_true, (y_true + 3) % 10


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------- curves


def test_loss_curves_lines_legend_and_best_epoch():
    fig = plots.loss_curves(make_history())
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    labels = legend_texts(ax)
    assert labels[:2] == ["train loss", "validation loss"]
    assert labels[2].startswith("best epoch 4")
    train = next(line for line in ax.get_lines() if line.get_label() == "train loss")
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 7))
    assert any(list(line.get_xdata()) == [4, 4] for line in ax.get_lines())  # axvline
    assert "stopped early: patience 2 exhausted" in ax.get_title()
    assert ax.get_xlabel() == "epoch"


def test_loss_curves_without_validation_has_only_train_line():
    fig = plots.loss_curves(make_history(validation=False))
    (ax,) = fig.axes
    assert legend_texts(ax) == ["train loss"]
    assert ax.get_title() == "Loss per epoch"


def test_loss_curves_log_scale_and_diverged_run():
    h = make_history()
    h["train_loss"][-1] = float("nan")  # diverged: drawn as a gap, not refused
    fig = plots.loss_curves(h, log_scale=True)
    assert fig.axes[0].get_yscale() == "log"


def test_loss_curves_pick_a_log_axis_when_the_loss_spans_decades():
    steep = make_history(n=30)
    steep["train_loss"] = [0.4] + [0.008] * 29  # epoch 1 is 50x the rest
    assert plots.loss_curves(steep).axes[0].get_yscale() == "log"
    assert "log scale" in plots.loss_curves(steep).axes[0].get_ylabel()
    assert plots.loss_curves(steep, log_scale=False).axes[0].get_yscale() == "linear"
    gentle = make_history()  # 1.0 down to 0.17: a 6x span
    assert plots.loss_curves(gentle).axes[0].get_yscale() == "linear"


def test_loss_animation_follows_the_same_axis_rule(tmp_path, monkeypatch):
    limits = []
    padded = plots._padded_limits
    monkeypatch.setattr(
        plots, "_padded_limits", lambda v, log=False: limits.append(log) or padded(v, log=log)
    )
    steep = make_history(n=12)
    steep["train_loss"] = [0.5] + [0.01] * 11
    for history, log in ((steep, True), (make_history(), False)):
        path = plots.loss_curves_animation(
            history, tmp_path / "loss.gif", max_frames=3, hold_seconds=0
        )
        assert path.is_file() and path.stat().st_size > 0
        assert limits[-1] is log


def test_accuracy_curves_percent_axis():
    fig = plots.accuracy_curves(make_history())
    (ax,) = fig.axes
    assert legend_texts(ax)[:2] == ["train accuracy", "validation accuracy"]
    assert "%" in legend_texts(ax)[2]
    fig.canvas.draw()
    assert any("%" in t.get_text() for t in ax.get_yticklabels())


def test_figures_are_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.loss_curves(make_history())
    assert plt.get_fignums() == before


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda h: h.pop("train_loss"), ValueError, "train_loss"),
        (lambda h: h["val_loss"].pop(), ValueError, "one entry per epoch"),
        (lambda h: h.update(epoch=[0, 1, 2, 3, 4, 5]), ValueError, "1-based"),
        (lambda h: h.update(epoch=[1, 2, 2, 3, 4, 5]), ValueError, "increasing"),
        (lambda h: h.update(epoch=[]), ValueError, "empty"),
        (lambda h: h["train_loss"].__setitem__(0, "1.0"), TypeError, "number or None"),
        (lambda h: h["train_loss"].__setitem__(0, None), ValueError, "needs a train_loss"),
        (lambda h: h.update(best_epoch=99), ValueError, "best_epoch"),
        (lambda h: h.update(val_loss=np.ones(6)), TypeError, "must be a list"),
    ],
)
def test_loss_curves_bad_history(change, error, match):
    h = make_history()
    change(h)
    with pytest.raises(error, match=match):
        plots.loss_curves(h)


def test_accuracy_as_percentage_is_refused():
    h = make_history()
    h["train_accuracy"] = [100 * a for a in h["train_accuracy"]]
    with pytest.raises(ValueError, match="fraction"):
        plots.accuracy_curves(h)


def test_history_must_be_a_dict():
    with pytest.raises(TypeError, match="dict"):
        plots.loss_curves([1, 2, 3])


# --------------------------------------------------------------------------- confusion


def test_confusion_matrix_counts_annotated():
    cm = make_cm()
    fig = plots.confusion_matrix(cm)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100
    assert texts[0] == "90"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    acc = np.trace(cm) / cm.sum()
    assert f"{100 * acc:.2f}%" in ax.get_title()
    assert len(fig.axes) == 2  # matrix + colour bar


def test_confusion_matrix_normalized_rows_and_names():
    cm = make_cm(3).tolist()  # the JSON form: list of lists
    cm[2] = [0, 0, 0]  # a class with no samples stays zero, no division warning
    names = ["cat", "dog", "bird"]
    fig = plots.confusion_matrix(cm, names, normalize=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image.sum(axis=1), [1.0, 1.0, 0.0])
    assert "row-normalised" in ax.get_title()
    assert [t.get_text() for t in ax.texts][-3:] == ["0", "0", "0"]


def test_confusion_matrix_large_k_skips_annotations():
    fig = plots.confusion_matrix(np.eye(30, dtype=int))
    assert len(fig.axes[0].texts) == 0


@pytest.mark.parametrize(
    ("cm", "error", "match"),
    [
        (np.ones((3, 4), int), ValueError, "square"),
        (np.ones((0, 0), int), ValueError, "square"),
        (np.ones(3, int), ValueError, "square"),
        (-np.ones((2, 2), int), ValueError, ">= 0"),
        (np.full((2, 2), 0.5), ValueError, "whole-number"),
        (np.array([[1.0, np.nan], [0, 1]]), ValueError, "whole-number"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "int counts"),
    ],
)
def test_confusion_matrix_bad_input(cm, error, match):
    with pytest.raises(error, match=match):
        plots.confusion_matrix(cm)


def test_confusion_matrix_wrong_number_of_names():
    with pytest.raises(ValueError, match="all 3 classes"):
        plots.confusion_matrix(make_cm(3), ["a", "b"])


# --------------------------------------------------------------------------- samples


def test_misclassified_grid_images():
    x, t, p = image_samples(5)
    fig = plots.misclassified_grid(x, t, p, max_samples=4)
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == 4
    assert axes[0].get_images()[0].get_array().shape == (28, 28)
    assert axes[0].get_title() == "0 → 3"
    assert "first 4 of 5" in fig.get_suptitle()


def test_misclassified_grid_images_3d_and_class_names():
    x, t, p = image_samples(3, shape=(8, 6))
    names = [f"c{i}" for i in range(10)]
    fig = plots.misclassified_grid(x.reshape(3, 8, 6), t, p, image_shape=None, class_names=names)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["c0 → c3", "c1 → c4", "c2 → c5"]


def test_misclassified_grid_pendigits_draws_strokes():
    x, t, p = pendigits_samples(5)
    fig = plots.misclassified_grid(x, t, p, kind="pendigits")
    drawn = [ax for ax in fig.axes if ax.get_lines()]
    assert len(drawn) == 5
    stroke = drawn[0].get_lines()[0]
    np.testing.assert_array_equal(stroke.get_xdata(), x[0, 0::2])
    np.testing.assert_array_equal(stroke.get_ydata(), x[0, 1::2])
    start = drawn[0].get_lines()[2]  # the start marker
    assert list(start.get_xdata()) == [x[0, 0]] and list(start.get_ydata()) == [x[0, 1]]
    assert drawn[0].get_ylim()[1] > drawn[0].get_ylim()[0]  # y grows upward: no flip


def test_misclassified_grid_empty_says_so():
    fig = plots.misclassified_grid(
        np.zeros((0, 16)), np.zeros(0, int), np.zeros(0, int), kind="pendigits"
    )
    assert "No misclassified" in fig.axes[0].texts[0].get_text()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "audio"}, ValueError, "kind"),
        ({"x": np.zeros((5, 15))}, ValueError, r"\(m, 16\)"),
        ({"x": np.full((5, 16), 200)}, ValueError, "0..100"),
        ({"x": np.full((5, 16), np.nan)}, ValueError, "NaN"),
        ({"y_true": np.zeros(4, int)}, ValueError, r"shape \(5,\)"),
        ({"y_pred": np.zeros(5)}, TypeError, "int class"),
        ({"y_true": -np.ones(5, int)}, ValueError, ">= 0"),
        ({"class_names": ["a", "b"]}, ValueError, "class_names"),
        ({"max_samples": 0}, ValueError, "positive"),
        ({"x": [[0] * 16] * 5}, TypeError, "numpy array"),
    ],
)
def test_misclassified_grid_bad_pendigits_input(kwargs, error, match):
    x, t, p = pendigits_samples(5)
    args = {"x": x, "y_true": t, "y_pred": p, "kind": "pendigits", **kwargs}
    with pytest.raises(error, match=match):
        plots.misclassified_grid(**args)


def test_misclassified_grid_bad_image_shape():
    x, t, p = image_samples(2)
    with pytest.raises(ValueError, match="image_shape"):
        plots.misclassified_grid(x, t, p, image_shape=(20, 20))
    with pytest.raises(ValueError, match="infer"):
        plots.misclassified_grid(x[:, :780], t, p, image_shape=None)


def test_inputs_are_not_modified():
    x, t, p = pendigits_samples(4)
    for a in (x, t, p):
        a.flags.writeable = False
    plots.misclassified_grid(x, t, p, kind="pendigits")
    cm = make_cm(4)
    cm.flags.writeable = False
    plots.confusion_matrix(cm, normalize=True)


# --------------------------------------------------------------------------- files


def test_save_figure_writes_png_atomically(tmp_path):
    out = plots.save_figure(plots.loss_curves(make_history()), tmp_path / "sub" / "loss.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert [f.name for f in out.parent.iterdir()] == ["loss.png"]  # no temp file left


def test_save_figure_bad_arguments(tmp_path):
    fig = plots.loss_curves(make_history())
    with pytest.raises(ValueError, match=r"\.png"):
        plots.save_figure(fig, tmp_path / "loss.jpg")
    with pytest.raises(TypeError, match="Figure"):
        plots.save_figure("fig", tmp_path / "loss.png")


def test_loss_curves_animation_frames(tmp_path):
    out = plots.loss_curves_animation(make_history(6), tmp_path / "loss.gif", fps=10)
    assert out.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    with Image.open(out) as im:
        # One frame per epoch; Pillow merges the identical held frames into the last.
        assert im.n_frames == 6
        first = im.info["duration"]
        im.seek(5)
        assert im.info["duration"] > first  # the last frame is held
    assert [f.name for f in tmp_path.iterdir()] == ["loss.gif"]


def test_loss_curves_animation_thins_long_runs(tmp_path):
    out = plots.loss_curves_animation(
        make_history(40, best=None), tmp_path / "loss.gif", max_frames=8, hold_seconds=0
    )
    with Image.open(out) as im:
        assert im.n_frames == 8


def test_loss_curves_animation_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"\.gif"):
        plots.loss_curves_animation(make_history(), tmp_path / "loss.png")
    with pytest.raises(ValueError, match="fps"):
        plots.loss_curves_animation(make_history(), tmp_path / "loss.gif", fps=0)
    with pytest.raises(ValueError, match="hold_seconds"):
        plots.loss_curves_animation(make_history(), tmp_path / "loss.gif", hold_seconds=-1)
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_misclassified_round_trip(tmp_path):
    x, t, p = image_samples(6)
    p[::2] = t[::2]  # half are right: only the wrong ones are kept
    path = plots.save_misclassified(tmp_path / "misclassified.npz", x, t, p, kind="image")
    loaded = plots.load_misclassified(path)
    wrong = t != p
    np.testing.assert_array_equal(loaded["x"], x[wrong])
    np.testing.assert_array_equal(loaded["y_true"], t[wrong])
    np.testing.assert_array_equal(loaded["y_pred"], p[wrong])
    assert loaded["kind"] == "image" and loaded["image_shape"] == (28, 28)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["image_shape", "kind", "x", "y_pred", "y_true"]


def test_load_misclassified_rejects_bad_files(tmp_path):
    bad = tmp_path / "misclassified.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="readable"):
        plots.load_misclassified(bad)
    np.savez(bad, x=np.zeros((1, 16)), y_true=np.zeros(1, int))
    with pytest.raises(ValueError, match="y_pred"):
        plots.load_misclassified(bad)
    np.savez(bad, x=np.zeros((1, 16)), y_true=[1], y_pred=[2], kind=np.array([1, 2], object))
    with pytest.raises(ValueError, match="readable"):  # object arrays need pickle: refused
        plots.load_misclassified(bad)


# --------------------------------------------------------------------------- run folders


def write_run(run: Path, kind: str = "pendigits") -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "history.json").write_text(json.dumps(make_history(5)))
    metrics = {"test_accuracy": 0.9, "confusion_matrix": make_cm(10).tolist()}
    if kind == "image":
        metrics["class_names"] = [f"class {i}" for i in range(10)]
    (run / "metrics.json").write_text(json.dumps(metrics))
    x, t, p = pendigits_samples(4) if kind == "pendigits" else image_samples(4)
    plots.save_misclassified(run / "misclassified.npz", x, t, p, kind=kind)


@pytest.mark.parametrize("kind", ["pendigits", "image"])
def test_plot_run_writes_every_figure(tmp_path, kind):
    write_run(tmp_path / "run", kind)
    written = plots.plot_run(tmp_path / "run", tmp_path / "figs")
    assert [p.name for p in written] == list(plots.FIGURE_NAMES)
    for path in written:
        assert path.parent == tmp_path / "figs"
        with Image.open(path) as im:
            assert im.format == ("GIF" if path.suffix == ".gif" else "PNG")


def test_plot_run_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder"):
        plots.plot_run(tmp_path / "nope")
    run = tmp_path / "run"
    write_run(run)
    (run / "misclassified.npz").unlink()
    with pytest.raises(FileNotFoundError, match="save_misclassified"):
        plots.plot_run(run)
    write_run(run)
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9}))
    with pytest.raises(ValueError, match="confusion_matrix"):
        plots.plot_run(run)
    (run / "history.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"history\.json"):
        plots.plot_run(run)


def load_script():
    spec = importlib.util.spec_from_file_location("plot_run_script", ROOT / "scripts/plot_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_run_script(tmp_path, capsys):
    write_run(tmp_path / "run")
    script = load_script()
    assert script.main([str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == list(plots.FIGURE_NAMES)
    assert all((tmp_path / "run" / name).is_file() for name in plots.FIGURE_NAMES)


def test_plot_run_script_reports_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script().main([str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_import_purenn_does_not_import_matplotlib():
    code = "import sys, purenn; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_import_plots_does_not_import_pyplot():
    code = "import sys; from purenn import plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
