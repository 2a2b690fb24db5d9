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
import math
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
    "option, value, message",
    [
        ("lr", "0.1", r"recipe 'mlp': 'lr' must be a number, as --lr gives; got '0.1' \(str\)"),
        ("hidden", 64, r"'hidden' must be a list of ints, as --hidden gives; got 64"),
        ("hidden", [64, "a"], r"'hidden' must be a list of ints"),
        ("epochs", 2.5, r"'epochs' must be an int, as --epochs gives; got 2.5 \(float\)"),
        ("epochs", True, r"'epochs' must be an int"),
        ("optimizer", "adagrad", r"'optimizer' must be one of \('sgd', "),
        ("augment", 1, r"'augment' must be True or False"),
        ("activation", 3, r"'activation' must be an activation's name"),
        (experiment.WITH_AUGMENT, {"epochs": "50"}, r"recipe 'mlp/with_augment': 'epochs'"),
    ],
)
def test_a_recipe_default_of_the_wrong_kind_is_refused_when_the_parser_is_built(
    option, value, message
):
    """A recipe's values used to go unchecked, so ``"lr": "0.1"`` failed later,
    inside math.isfinite, with Python's message."""
    recipe = {**_RECIPES["mlp"], option: value}
    with pytest.raises(TypeError, match=message):
        experiment.build_parser("x", "x", {"mlp": recipe})


def test_a_recipe_may_leave_hidden_empty_and_its_activation_is_checked_by_name(capsys):
    """``"hidden": []`` is softmax regression (build_mlp takes it); a misspelled
    recipe activation is a usage error at parse time, not a failure in run()."""
    empty = {"mlp": {**_RECIPES["mlp"], "hidden": []}}
    args = experiment.parse_args(experiment.build_parser("x", "x", empty), empty, [])
    assert args.hidden == []
    assert experiment.build_mlp(4, args.hidden, args.activation, 0.0, 3).layer_names() == (
        "dense_0",
    )
    typo = {"mlp": {**_RECIPES["mlp"], "activation": "rleu"}}
    with pytest.raises(SystemExit) as exc:
        experiment.parse_args(experiment.build_parser("x", "x", typo), typo, [])
    assert exc.value.code == 2
    assert "--activation: unknown activation 'rleu'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dropout", "1.5"], "--dropout"),
        (["--epochs", "0"], "--epochs"),
        (["--val-fraction", "0", "--patience", "3"], "--patience needs validation"),
        (["--optimizer", "lbfgs"], "invalid choice"),
        (["--seed", "-1"], "--seed must be >= 0; got -1"),
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


# --------------------------------------------------------------------------- bad arguments
# Found by the fuzz sweep (tests/_fuzz.py) once purenn.experiment joined its
# catalog: each "was" is what the call did before it checked its arguments.

_RECIPES = {"mlp": {"hidden": [4], "lr": 0.1, "epochs": 1, "batch_size": 2}}


def _parsed(argv=("--quiet", "--no-figures")):
    parser = experiment.build_parser("x", "x", _RECIPES)
    return parser, experiment.parse_args(parser, _RECIPES, list(argv))


def _data(**change):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.arange(6) % 3
    fields = dict(train=(x, y), val=None, test=(x, y), test_raw=np.zeros((6, 4), np.uint8),
                  kind="image", class_names=("a", "b", "c"))  # fmt: skip
    return experiment.Data(**{**fields, **change})


def _images():
    return np.zeros((6, 8, 8), np.uint8), np.arange(6) % 3


def _prepare(**change):
    kwargs = dict(train=_images(), val=None, test=_images(), args=_parsed()[1],
                  class_names=("a", "b", "c"))  # fmt: skip
    return experiment.prepare_images(**{**kwargs, **change})


_NOT_ARGS = r"args must be the argparse.Namespace that parse_args returns; got ndarray"
_BAD_ARGUMENTS = {
    # was: AttributeError "'numpy.float16' object has no attribute 'items'"
    "build_parser.recipes": (
        lambda: experiment.build_parser("x", "x", np.float16(1)),
        TypeError, r"recipes must be a dict \{model: \{option: default\}\}.*got float16",
    ),
    # was: AttributeError "'int' object has no attribute 'get'"
    "build_parser.recipes a model's recipe": (
        lambda: experiment.build_parser("x", "x", {"mlp": 1}),
        TypeError, r"recipe 'mlp' must be a dict \{option: default\}.*got 1",
    ),
    # was: accepted, naming the default run folder runs/None-<stamp>
    "build_parser.dataset": (
        lambda: experiment.build_parser(None, "x", _RECIPES),
        TypeError, r"dataset must be the data set's name, a non-empty str .*got None",
    ),
    # was: AttributeError "'int' object has no attribute 'parse_args'"
    "parse_args.parser": (
        lambda: experiment.parse_args(10**12, _RECIPES, []),
        TypeError, r"parser must be the argparse.ArgumentParser that build_parser returns",
    ),
    # was: the letters parsed as arguments, and the caller's process ended (SystemExit 2)
    "parse_args.argv a str": (
        lambda: experiment.parse_args(_parsed()[0], _RECIPES, "--quiet"),
        TypeError, r"argv must be a list or tuple of str.*got str '--quiet'",
    ),
    # was: TypeError "'int' object is not subscriptable" from inside argparse
    "parse_args.argv ints": (
        lambda: experiment.parse_args(_parsed()[0], _RECIPES, [1, 2]),
        TypeError, r"argv must be a list or tuple of str.*got list \[1, 2\]",
    ),
    # was: AttributeError "'Dense' object has no attribute 'get'"
    "parse_args.recipes": (
        lambda: experiment.parse_args(_parsed()[0], {"mlp": purenn.Dense(3)}, []),
        TypeError, r"recipe 'mlp' must be a dict",
    ),
    # was: TypeError "'numpy.ndarray' object is not callable"
    "load_data.loader": (
        lambda: experiment.load_data(_parsed()[0], np.zeros(3), _parsed()[1]),
        TypeError, r"loader must be a function loader\(data_dir\).*got ndarray",
    ),
    # was: TypeError "cannot unpack non-iterable NoneType object"
    "load_data.loader returning None": (
        lambda: experiment.load_data(_parsed()[0], lambda data_dir: None, _parsed()[1]),
        TypeError, r"loader must return \(\(x, y\), \(x_test, y_test\)\).*got NoneType",
    ),
    # was: AttributeError "'numpy.ndarray' object has no attribute 'data_dir'"
    "load_data.args": (
        lambda: experiment.load_data(_parsed()[0], lambda d: None, np.zeros(2)),
        TypeError, _NOT_ARGS,
    ),
    # was: the last sample silently dropped (x[:-1])
    "limit_samples.limit negative": (
        lambda: experiment.limit_samples(np.zeros((6, 4)), np.zeros(6), -1),
        ValueError, r"limit must be a positive int; got -1",
    ),
    # was: NumPy's "only integer scalar arrays can be converted to a scalar index"
    "limit_samples.limit an array": (
        lambda: experiment.limit_samples(np.zeros((6, 4)), np.zeros(6), np.ones((6, 5))),
        TypeError, r"limit must be a positive int; got array",
    ),
    # was: returned 6 inputs with 5 labels
    "limit_samples.y of another length": (
        lambda: experiment.limit_samples(np.zeros((6, 4)), np.zeros(5), 4),
        ValueError, r"limit_samples needs x \(n, ...\) and y \(n, ...\) with the same n.*"
        r"\(6, 4\) and \(5,\)",
    ),
    # was: TypeError "'int' object is not subscriptable"
    "limit_samples.x": (
        lambda: experiment.limit_samples(10**12, np.zeros(6), 4),
        ValueError, r"limit_samples needs x \(n, ...\).*got shapes \(\) and \(6,\)",
    ),
    # was: AttributeError "'numpy.ndarray' object has no attribute 'val_fraction'"
    "split_train_val.args": (
        lambda: experiment.split_train_val(np.zeros((6, 4)), np.zeros(6, int), np.zeros(2)),
        TypeError, _NOT_ARGS,
    ),
    # was: accepted; the returned hook failed inside fit
    "in_raw_units.augment": (
        lambda: experiment.in_raw_units(5, None),
        TypeError, r"in_raw_units: augment must be a function augment\(raw, rng\).*got int 5",
    ),
    "in_raw_units.scaler": (
        lambda: experiment.in_raw_units(lambda raw, rng: raw, None),
        TypeError, r"scaler must be the purenn.preprocessing.Standardizer.*got NoneType",
    ),
    # was: IndexError "invalid index to scalar variable."
    "prepare_images.train": (
        lambda: _prepare(train=np.int64(2)),
        TypeError, r"prepare_images: train must be a pair \(x, y\).*got int64",
    ),
    # was: TypeError "'complex' object is not subscriptable"
    "prepare_images.test": (
        lambda: _prepare(test=1 + 1j),
        TypeError, r"prepare_images: test must be a pair \(x, y\).*got complex",
    ),
    # was: TypeError "'numpy.float16' object is not iterable"
    "prepare_images.class_names": (
        lambda: _prepare(class_names=np.float16(1)),
        TypeError, r"class_names must be a non-empty list or tuple of str.*got float16",
    ),
    # was: three classes named 'a', 'b' and 'c'
    "prepare_images.class_names a str": (
        lambda: _prepare(class_names="abc"),
        TypeError, r"class_names must be a non-empty list or tuple of str.*got str 'abc'",
    ),
    # was: accepted without --augment (the crop runs only in training)
    "prepare_images.crop": (
        lambda: _prepare(crop="abc"),
        TypeError, r"prepare_images: crop must be an int >= 0 \(0: none\); got 'abc'",
    ),
    "prepare_images.crop too large": (
        lambda: _prepare(crop=10**12),
        ValueError, r"crop must be in \[0, 8\] .*got 1000000000000",
    ),
    # was: AttributeError "'numpy.ndarray' object has no attribute 'model'"
    "prepare_images.args": (lambda: _prepare(args=np.zeros(2)), TypeError, _NOT_ARGS),
    # was: TypeError "'float' object is not iterable"
    "build_mlp.hidden": (
        lambda: experiment.build_mlp(4, math.inf, "relu", 0.0, 3),
        TypeError, r"hidden must be a list or tuple of positive ints, e.g. \[64, 32\]; got float",
    ),
    # was: accepted as no dropout
    "build_mlp.dropout": (
        lambda: experiment.build_mlp(4, [5], "relu", None, 3),
        TypeError, r"dropout must be a float >= 0; got None",
    ),
    # was: TypeError "'complex' object is not iterable"
    "build_cnn.hidden": (
        lambda: experiment.build_cnn((1, 12, 12), 1 + 1j, "relu", 0.0, 3),
        TypeError, r"hidden must be a list or tuple of positive ints.*got complex",
    ),
    # was: KeyError 0
    "build_resnet.widths": (
        lambda: experiment.build_resnet((1, 8, 8), {"a": 1}, 0.0, 3),
        TypeError, r"widths must be a list or tuple of positive ints.*got dict",
    ),
    "build_resnet.widths empty": (
        lambda: experiment.build_resnet((1, 8, 8), [], 0.0, 3),
        ValueError, r"widths must hold at least one positive int, e.g. \[64, 32\]; got \[\]",
    ),
    "build_parser.dataset empty": (
        lambda: experiment.build_parser("", "x", _RECIPES),
        ValueError, r"dataset must be the data set's name, a non-empty str .*got ''",
    ),
    # was: AttributeError "'numpy.ndarray' object has no attribute 'epochs'"
    "make_optimizer.args": (
        lambda: experiment.make_optimizer(np.zeros(2), 3), TypeError, _NOT_ARGS,
    ),
    # was: TypeError "unsupported operand type(s) for *: 'int' and 'dict'"; -1 was
    # accepted as a schedule of one step
    "make_optimizer.steps_per_epoch": (
        lambda: experiment.make_optimizer(_parsed()[1], {"a": 1}),
        TypeError, r"steps_per_epoch must be a positive int; got \{'a': 1\} \(dict\)",
    ),
    "make_optimizer.steps_per_epoch negative": (
        lambda: experiment.make_optimizer(_parsed()[1], -1),
        ValueError, r"steps_per_epoch must be a positive int; got -1",
    ),
    # was: AttributeError "'numpy.float16' object has no attribute 'class_names'"
    "run.data": (
        lambda: experiment.run(_parsed()[1], np.float16(1)),
        TypeError, r"run: data must be a purenn.experiment.Data; got float16",
    ),
    # was: TypeError "'int' object is not callable"
    "script_main.main": (
        lambda: experiment.script_main(0),
        TypeError, r"script_main: main must be a function main\(\) taking no arguments; got int",
    ),
    # Data accepted every value below; run() failed on it, some after training
    "Data.train": (
        lambda: _data(train=None),
        TypeError, r"Data.train must be a pair \(x, y\) of inputs and labels; got NoneType",
    ),
    "Data.test labels out of range": (
        lambda: _data(test=(np.zeros((6, 4), np.float32), np.arange(6))),
        ValueError, r"Data.test: y must hold class indices 0..2, one per class name; got "
        r"labels 0..5",
    ),
    "Data.val of other samples": (
        lambda: _data(val=(np.zeros((6, 5), np.float32), np.zeros(6, int))),
        ValueError, r"Data.val: x must match Data.train's samples \(4,\) float32; got \(5,\)",
    ),
    "Data.kind": (
        lambda: _data(kind=math.nan),
        ValueError, r"Data.kind must be one of \('image', 'pendigits'\); got nan",
    ),
    "Data.class_names": (
        lambda: _data(class_names=2**63),
        TypeError, r"Data.class_names must be a non-empty list or tuple of str.*got int",
    ),
    "Data.test_raw": (
        lambda: _data(test_raw=np.full((6, 4), np.inf)),
        ValueError, r"Data.test_raw \(the test samples for purenn.plots.save_misclassified\): "
        r"x contains NaN or inf",
    ),
    "Data.test_raw not square": (
        lambda: _data(test_raw=np.zeros((6, 5))),
        ValueError, r"Data.test_raw .*cannot infer image_shape from x of shape \(6, 5\)",
    ),
    "Data.augment": (
        lambda: _data(augment=-1),
        TypeError, r"Data.augment must be a function augment\(xb, rng\) -> xb \(or None\); got int",
    ),
    "Data.preprocessing": (
        lambda: _data(preprocessing=np.zeros(3)),
        TypeError, r"Data.preprocessing must be a dict that purenn.save can store.*got ndarray",
    ),
}  # fmt: skip


@pytest.mark.parametrize("finding", sorted(_BAD_ARGUMENTS))
def test_experiment_refuses_bad_arguments_with_its_own_message(scratch_dir, finding):
    call, error, message = _BAD_ARGUMENTS[finding]
    with pytest.raises(error, match=message):
        call()


@pytest.fixture
def scratch_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run() writes runs/ here if a case gets that far
    return tmp_path


def test_run_refuses_data_prepared_for_another_model(scratch_dir):
    """Was: "too many values to unpack (expected 1)" from inside run()."""
    x, y = np.zeros((6, 1, 2, 2), np.float32), np.arange(6) % 3
    data = _data(train=(x, y), test=(x, y))
    with pytest.raises(ValueError, match=r"--model mlp takes inputs of shape \(n, features\); "
                       r"data.train holds \(6, 1, 2, 2\)"):  # fmt: skip
        experiment.run(_parsed()[1], data)
    assert not (scratch_dir / "runs").exists()


def test_workers_beyond_the_cap_is_a_usage_error(capsys):
    parser = experiment.build_parser("x", "x", _RECIPES)
    with pytest.raises(SystemExit) as exc:
        experiment.parse_args(parser, _RECIPES, ["--workers", str(10**12)])
    assert exc.value.code == 2
    assert "--workers must be in 1..1024; got 1000000000000" in capsys.readouterr().err
