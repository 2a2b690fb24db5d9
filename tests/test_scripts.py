"""Smoke runs of the training scripts on small slices, and ``augment_strokes``.

Each script runs on ``--limit`` samples for a couple of epochs: every file of
the run folder must exist and parse, the figures must be real PNG/GIF files
drawn headless, and the same command must give the same ``metrics.json``
apart from the timings. Accuracy targets are not tested here: they are
measured by running the scripts and recorded in ``docs/results.md``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import purenn
from purenn import experiment
from purenn.augment import augment_strokes
from purenn.datasets import DataNotFoundError, load_fashion_mnist, load_mnist, load_pendigits

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGIC = (b"GIF87a", b"GIF89a")
FIGURES = (
    "loss.png",
    "accuracy.png",
    "confusion.png",
    "confusion_normalized.png",
    "misclassified.png",
)
METRIC_KEYS = {
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "config",
    "versions",
    "confusion_matrix",
    "class_names",
}


def _script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need(loader) -> None:
    try:
        loader(download=False)
    except DataNotFoundError as err:
        if os.environ.get("PURENN_REQUIRE_DATA") == "1":
            pytest.fail(f"data missing and PURENN_REQUIRE_DATA=1: {err}")
        pytest.skip(f"data not available ({type(err).__name__}); set PURENN_DATA")


def _check_run(run: Path, kind: str, k: int = 10, figures: bool = True) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    history = json.loads((run / "history.json").read_text())
    assert len(history["epoch"]) == metrics["epochs_run"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (k, k) and cm.sum() == metrics["n_test"]
    assert len(metrics["class_names"]) == k
    with np.load(run / "misclassified.npz", allow_pickle=False) as npz:
        assert str(npz["kind"]) == kind
        assert npz["x"].shape[0] == npz["y_true"].shape[0] == metrics["test_errors"]
        assert (npz["y_true"] != npz["y_pred"]).all()
    ck = purenn.load(run / "model.npz")
    assert ck.extra["config"] == metrics["config"]
    if not figures:
        assert not any((run / name).exists() for name in (*FIGURES, "loss.gif"))
        return metrics
    for name in FIGURES:
        assert (run / name).read_bytes()[:8] == PNG_MAGIC, name
    assert (run / "loss.gif").read_bytes()[:6] in GIF_MAGIC
    return metrics


def _timeless(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in experiment.TIMING_KEYS}


# --------------------------------------------------------------------------- scripts


def test_pendigits_same_command_same_metrics(tmp_path):
    _need(load_pendigits)
    main = _script("train_pendigits").main
    out = tmp_path / "run"
    argv = ["--limit", "200", "--epochs", "2", "--quiet", "--no-figures", "--out", str(out)]
    first = main(argv)
    metrics = _check_run(out, "pendigits", figures=False)
    assert metrics["config"]["augment"] is True  # the default recipe augments
    assert metrics["n_train"] + metrics["n_val"] == 200
    second = main(argv)  # the same command again, into the same folder
    assert _timeless(second) == _timeless(first)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert _timeless(on_disk) == _timeless({k: v for k, v in first.items() if k != "run_dir"})
    other = main([*argv, "--seed", "1"])
    assert other["test_loss"] != first["test_loss"]


@pytest.mark.slow
def test_pendigits_smoke_with_figures(tmp_path):
    _need(load_pendigits)
    main = _script("train_pendigits").main
    main(["--limit", "300", "--epochs", "3", "--quiet", "--out", str(tmp_path / "run")])
    _check_run(tmp_path / "run", "pendigits")


def test_monitor_picks_the_kept_epoch(tmp_path):
    _need(load_pendigits)
    main = _script("train_pendigits").main
    argv = ["--limit", "300", "--epochs", "4", "--quiet", "--no-figures", "--no-augment"]
    metrics = main([*argv, "--monitor", "val_accuracy", "--out", str(tmp_path / "run")])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert metrics["config"]["monitor"] == "val_accuracy"
    assert metrics["val_accuracy"] == max(history["val_accuracy"])
    assert history["val_accuracy"][history["best_epoch"] - 1] == max(history["val_accuracy"])


@pytest.mark.slow
def test_mnist_smoke_mlp_and_cnn(tmp_path):
    _need(load_mnist)
    main = _script("train_mnist").main
    base = ["--limit", "200", "--epochs", "1", "--quiet"]
    main([*base, "--augment", "--out", str(tmp_path / "mlp")])
    metrics = _check_run(tmp_path / "mlp", "image")
    assert metrics["config"]["hidden"] == [512, 256]
    main([*base, "--model", "cnn", "--out", str(tmp_path / "cnn")])
    metrics = _check_run(tmp_path / "cnn", "image")
    assert metrics["model"] == "cnn" and metrics["config"]["hidden"] == [128]


@pytest.mark.slow
def test_resnet_smoke_for_both_image_scripts(tmp_path):
    """--model resnet: a run folder like the others (figures drawn from it), the
    BatchNorm state in the checkpoint, and the same command giving the same metrics."""
    widths = {"train_fashion_mnist": [24, 48, 96], "train_mnist": [16, 32, 64]}
    for name, loader in (("train_fashion_mnist", load_fashion_mnist), ("train_mnist", load_mnist)):
        _need(loader)
        main = _script(name).main
        argv = ["--model", "resnet", "--limit", "120", "--epochs", "1", "--quiet"]
        first = main([*argv, "--out", str(tmp_path / name)])
        metrics = _check_run(tmp_path / name, "image")
        assert metrics["model"] == "resnet" and metrics["config"]["hidden"] == widths[name]
        assert metrics["config"]["optimizer"] == "momentum" and metrics["config"]["augment"]
        ck = purenn.load(tmp_path / name / "model.npz")
        spec = ck.params[purenn.SPEC_KEY]
        assert [type(layer).__name__ for layer in spec.layers] == [
            "Conv2D",
            "BatchNorm",
            "Residual",
            "Residual",
            "Residual",
            "GlobalAvgPool2D",
            "Dense",
        ]
        state = ck.params[purenn.STATE_KEY]["residual_2"]["shortcut"]["batchnorm_0"]
        assert int(state["count"]) == 1  # 108 training images: one batch of 128
        if name == "train_fashion_mnist":
            again = main([*argv, "--no-figures", "--out", str(tmp_path / f"{name}-again")])
            same = {k: v for k, v in _timeless(first).items() if k not in ("config", "run_dir")}
            assert {k: again[k] for k in same} == same


@pytest.mark.slow
def test_fashion_smoke_repeat(tmp_path):
    _need(load_fashion_mnist)
    main = _script("train_fashion_mnist").main
    argv = ["--limit", "200", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    first = main(argv)
    metrics = _check_run(tmp_path / "run", "image")
    assert metrics["class_names"][0] == "T-shirt/top"
    assert _timeless(main(argv)) == _timeless(first)


@pytest.mark.slow
def test_script_runs_headless_from_the_command_line(tmp_path):
    """As a user runs it: a fresh process, Agg backend, default-style output."""
    _need(load_pendigits)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = tmp_path / "cli"
    cmd = [sys.executable, str(SCRIPTS / "train_pendigits.py"), "--limit", "200"]
    done = subprocess.run(
        [*cmd, "--epochs", "1", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "epoch 1/1" in done.stderr
    _check_run(out, "pendigits")


def test_help_shows_every_option_with_its_default(capsys):
    main = _script("train_mnist").main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--hidden",
        "--activation",
        "--dropout",
        "--optimizer",
        "--lr",
        "--schedule",
        "--weight-decay",
        "--epochs",
        "--batch-size",
        "--val-fraction",
        "--patience",
        "--augment",
        "--dtype",
        "--seed",
        "--data-dir",
        "--out",
        "--quiet",
        "--model",
    ):
        assert flag in text, flag
    assert text.count("(default:") >= 19
    assert "mlp: 512 256; cnn: 128" in text
    assert "mlp: 30, or 50 with --augment; cnn: 12" in text
    assert "mlp: val_accuracy; cnn: val_loss" in text


def test_recipe_defaults_under_augmentation():
    recipes = {
        "mlp": {
            "hidden": [4],
            "lr": 0.1,
            "epochs": 3,
            "batch_size": 2,
            experiment.WITH_AUGMENT: {"epochs": 9, "lr": 0.05},
        },
        "cnn": {"hidden": [4], "lr": 0.1, "epochs": 2, "batch_size": 2},
    }
    parser = experiment.build_parser("x", "x", recipes)
    cases = {
        (): (3, 0.1, False),
        ("--augment",): (9, 0.05, True),
        ("--augment", "--epochs", "5"): (5, 0.05, True),
        ("--no-augment",): (3, 0.1, False),
        ("--model", "cnn", "--augment"): (2, 0.1, True),
    }
    for argv, expected in cases.items():
        args = experiment.parse_args(parser, recipes, list(argv))
        assert (args.epochs, args.lr, args.augment) == expected, argv
        assert experiment.WITH_AUGMENT not in experiment.config_of(args)
    on = {"mlp": {**recipes["mlp"], "augment": True}}
    args = experiment.parse_args(experiment.build_parser("x", "x", on), on, [])
    assert (args.epochs, args.augment) == (9, True)
    for bad, message in (
        ({"epoch": 9}, "unknown options"),
        ({"augment": False}, "cannot set 'augment'"),
    ):
        with pytest.raises(ValueError, match=message):
            experiment.build_parser("x", "x", {"mlp": {**recipes["mlp"], "with_augment": bad}})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dropout", "1.5"], "--dropout"),
        (["--epochs", "0"], "--epochs"),
        (["--val-fraction", "0", "--patience", "3"], "--patience needs validation"),
        (["--optimizer", "lbfgs"], "invalid choice"),
    ],
)
def test_bad_options_are_refused_with_a_usage_error(argv, message, capsys):
    main = _script("train_pendigits").main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PURENN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parser = experiment.build_parser(
        "x", "x", {"mlp": {"hidden": [4], "lr": 0.1, "epochs": 1, "batch_size": 2}}
    )
    args = experiment.parse_args(
        parser, {"mlp": {"hidden": [4], "lr": 0.1, "epochs": 1, "batch_size": 2}}, []
    )

    def loader(data_dir):  # MNIST: pendigits is bundled, so it is never missing
        return load_mnist(data_dir, download=False)

    with pytest.raises(SystemExit) as exc:
        experiment.load_data(parser, loader, args)
    assert exc.value.code == 1
    assert "MNIST not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- augment_strokes


def _strokes(n: int = 50, seed: int = 0) -> np.ndarray:
    """Random pendigits-like samples: each axis min-max normalised to 0..100."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 8, 2))
    lo, hi = pts.min(axis=1, keepdims=True), pts.max(axis=1, keepdims=True)
    return np.rint((pts - lo) / (hi - lo) * 100).astype(np.int64).reshape(n, 16)


def test_augment_strokes_keeps_each_axis_on_0_to_100():
    x = _strokes()
    out = augment_strokes(x, 0)
    pts = out.reshape(-1, 8, 2)
    np.testing.assert_allclose(pts.min(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(pts.max(axis=1), 100.0, atol=1e-4)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(out, x)


def test_augment_strokes_dtypes():
    x = _strokes()
    assert augment_strokes(x.astype(np.float64), 0).dtype == np.float64
    assert augment_strokes(x.astype(np.float32), 0).dtype == np.float32
    np.testing.assert_allclose(
        augment_strokes(x.astype(np.float64), 3), augment_strokes(x, 3), atol=1e-3
    )


def test_augment_strokes_is_seeded_and_pure():
    x = _strokes()
    x.flags.writeable = False
    before = x.copy()
    a = augment_strokes(x, np.random.default_rng(5))
    b = augment_strokes(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment_strokes(x, np.random.default_rng(6)))
    np.testing.assert_array_equal(x, before)


def test_augment_strokes_identity_without_distortion():
    x = _strokes()
    out = augment_strokes(x, 0, max_rotation=0.0, max_shear=0.0, noise=0.0)
    np.testing.assert_allclose(out, x, atol=1e-4)


def test_augment_strokes_rotation_alone_moves_points():
    # a square's corners plus inner points: re-normalising cannot undo a rotation
    x = np.array([[0, 0, 100, 0, 100, 100, 0, 100, 50, 10, 50, 90, 10, 50, 90, 50]] * 20)
    out = augment_strokes(x, 0, max_rotation=10.0, max_shear=0.0, noise=0.0)
    assert np.abs(out - x).max() > 2.0


def test_augment_strokes_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\(n, 2 \* points\)"):
        augment_strokes(np.zeros((4, 15)), 0)
    with pytest.raises(ValueError, match="finite"):
        augment_strokes(np.full((2, 16), np.nan), 0)
    with pytest.raises(TypeError, match="numeric"):
        augment_strokes(np.zeros((2, 16), dtype=bool), 0)
    with pytest.raises(ValueError, match="max_shear"):
        augment_strokes(_strokes(), 0, max_shear=-0.1)
    with pytest.raises(ValueError, match="noise"):
        augment_strokes(_strokes(), 0, noise=float("inf"))


def test_in_raw_units_round_trips_through_the_standardiser():
    from purenn.preprocessing import standardize_fit

    x = _strokes(200)
    scaler = standardize_fit(x)
    xs = scaler.apply(x, np.float32)
    xs.flags.writeable = False
    same = experiment.in_raw_units(lambda raw, rng: raw, scaler)(xs, np.random.default_rng(0))
    np.testing.assert_allclose(same, xs, atol=1e-5)
    assert same.dtype == np.float32
    hook = experiment.in_raw_units(augment_strokes, scaler)
    out = hook(xs, np.random.default_rng(0))
    raw = out.astype(np.float64) * scaler.std + scaler.mean
    np.testing.assert_allclose(raw.reshape(-1, 8, 2).min(axis=1), 0.0, atol=1e-3)
    np.testing.assert_allclose(raw.reshape(-1, 8, 2).max(axis=1), 100.0, atol=1e-3)


def test_prepare_images_flip_mirrors_before_distorting():
    import argparse

    from purenn.augment import augment_images, flip_images

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    y = np.arange(8)
    args = argparse.Namespace(model="cnn", dtype="float32", augment=True)
    names = [str(k) for k in range(10)]
    plain = experiment.prepare_images((x, y), None, (x, y), args, names)
    mirrored = experiment.prepare_images((x, y), None, (x, y), args, names, flip=True)
    xb = plain.train[0]
    xb.flags.writeable = False
    g = np.random.default_rng(1)
    expected = augment_images(flip_images(xb, g, image_shape=(28, 28)), g, image_shape=(28, 28))
    out = mirrored.augment(xb, np.random.default_rng(1))
    assert out.shape == xb.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, plain.augment(xb, np.random.default_rng(1)))
    only = experiment.prepare_images((x, y), None, (x, y), args, names, flip=True, distort=False)
    out = only.augment(xb, np.random.default_rng(2))
    np.testing.assert_array_equal(out, flip_images(xb, 2, image_shape=(28, 28)))


def test_scripts_print_the_network_summary_at_start(tmp_path, capsys):
    main = _script("train_pendigits").main
    argv = ["--limit", "100", "--epochs", "1", "--no-figures", "--no-augment", "--hidden", "8",
            "--dropout", "0"]  # fmt: skip
    main([*argv, "--out", str(tmp_path / "run")])
    printed = capsys.readouterr().out
    summary = purenn.Network(16, [purenn.Dense(8), purenn.Dense(10, "softmax")]).summary()
    assert summary in printed
    assert printed.index(summary) < printed.index("test accuracy")  # printed before training
