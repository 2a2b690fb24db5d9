"""Train a small network on a toy problem and draw what it learned, in seconds.

    python scripts/train_toy.py --dataset spiral       # also moons, circles, xor, sine
    python scripts/train_toy.py --dataset moons --hidden 8 --epochs 40 --out runs/moons

Three independent draws of the chosen problem (``purenn.datasets.make_*``) make
the training, validation and test sets; the test set is evaluated once, after
training. During training a :class:`purenn.callbacks.Snapshots` callback saves
the params about 30 times, and :class:`purenn.callbacks.LayerDiagnostics`
records per-layer gradient norms, update ratios and dead units. The run folder
(``--out``, default ``runs/toy-<dataset>-<timestamp>/``) then holds:

``metrics.json``
    ``dataset``, ``task`` (``classification`` or ``regression``),
    ``test_loss``, ``test_accuracy`` (None for sine), ``train_loss``,
    ``train_accuracy`` (evaluation mode, final params), ``epochs_run``,
    ``train_seconds``, ``parameters``, ``n_train``/``n_val``/``n_test``,
    ``config`` (every option), ``versions``.
``history.json``, ``model.npz``
    The history ``fit`` returned, and the final params (:func:`purenn.save`).
``snapshots/snapshot_NNNN.npz``
    The params at epoch 0 and every ``--snapshot-every`` epochs.
figures (unless ``--no-figures``)
    ``boundary.png`` (decision boundary, or the fitted curve for sine),
    ``boundary.gif`` (the same over training, from the snapshots),
    ``loss.png``, ``accuracy.png`` (classification), ``diagnostics.png``.

Two runs of the same command give the same ``metrics.json`` except for
``train_seconds``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

import purenn
from purenn import callbacks, datasets
from purenn.activations import activation_names
from purenn.fileio import write_json
from purenn.metrics import evaluate

MAKERS = {
    "spiral": datasets.make_spiral,
    "moons": datasets.make_moons,
    "circles": datasets.make_circles,
    "xor": datasets.make_xor,
    "sine": datasets.make_sine,
}

# Defaults per problem, chosen by looking at the validation loss of a few runs.
RECIPES: dict[str, dict[str, Any]] = {
    "spiral": {"n": 600, "noise": 0.2, "hidden": [64, 64], "activation": "relu", "epochs": 150},
    "moons": {"n": 400, "noise": 0.15, "hidden": [32, 32], "activation": "relu", "epochs": 60},
    "circles": {"n": 400, "noise": 0.08, "hidden": [32, 32], "activation": "relu", "epochs": 60},
    "xor": {"n": 200, "noise": 0.3, "hidden": [8], "activation": "tanh", "epochs": 60},
    "sine": {"n": 300, "noise": 0.1, "hidden": [64, 64], "activation": "tanh", "epochs": 300},
}
FRAMES = 30  # snapshots per run by default (GIF frames)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a small network on a toy problem; write metrics and pictures."
    )
    parser.add_argument(
        "--dataset",
        choices=tuple(MAKERS),
        default="spiral",
        help="the toy problem (default: spiral)",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="training samples; validation and test get n/2 each "
        "(default: per problem, e.g. 600 for spiral)",
    )
    parser.add_argument(
        "--noise", type=float, default=None, help="the problem's noise (default: per problem)"
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        metavar="UNITS",
        help="units per hidden Dense layer (default: per problem)",
    )
    parser.add_argument(
        "--activation",
        choices=activation_names(),
        default=None,
        help="hidden-layer activation (default: per problem)",
    )
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default: 0.01)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: per problem)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per step (default: 32)")
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        metavar="E",
        help=f"epochs between snapshots (default: epochs / {FRAMES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for the data, the weights and training (default: 0)",
    )
    parser.add_argument(
        "--out", default=None, help="run folder (default: runs/toy-<dataset>-<timestamp>/)"
    )
    parser.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the figures (default: on)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing (default: off)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in RECIPES[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    if args.snapshot_every is None:
        args.snapshot_every = max(1, args.epochs // FRAMES)
    problems = []
    if args.n < 8:
        problems.append(f"--n must be at least 8; got {args.n}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        problems.append(f"--noise must be >= 0; got {args.noise}")
    if any(h < 1 for h in args.hidden):
        problems.append(f"--hidden needs positive unit counts; got {args.hidden}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        problems.append(f"--lr must be a positive number; got {args.lr}")
    for name in ("epochs", "batch_size", "snapshot_every"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if problems:
        parser.error("; ".join(problems))
    return args


def _run_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return out
    base = Path("runs") / f"toy-{args.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for i in range(1000):
        out = base if i == 0 else Path(f"{base}-{i}")
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free run folder next to {base}; pass --out")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, flush=True)


def build_network(args: argparse.Namespace) -> purenn.Network:
    """An MLP for the problem: softmax over the classes, or one linear output for sine."""
    hidden = [purenn.Dense(units, args.activation) for units in args.hidden]
    if args.dataset == "sine":
        return purenn.Network(1, [*hidden, purenn.Dense(1, "linear")], loss="mse")
    classes = 3 if args.dataset == "spiral" else 2
    return purenn.Network(2, [*hidden, purenn.Dense(classes, "softmax")])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, evaluate on the test draw once, write the run folder."""
    args = parse_args(argv)
    data_rng, weights_rng, train_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(3)
    )
    make = MAKERS[args.dataset]
    n_other = max(4, args.n // 2)
    train = make(args.n, noise=args.noise, rng=data_rng)
    val = make(n_other, noise=args.noise, rng=data_rng)
    test = make(n_other, noise=args.noise, rng=data_rng)
    spec = build_network(args)
    params = purenn.init(spec, weights_rng)
    out = _run_dir(args)
    _say(args, f"{args.dataset}: {args.n} train / {n_other} val / {n_other} test; writing to {out}")
    _say(args, spec.summary())

    snapshots = callbacks.Snapshots(out / "snapshots", every=args.snapshot_every)
    snapshots.record(0, params)
    hooks = [snapshots, callbacks.LayerDiagnostics(probe=train[0][:256])]
    t0 = time.perf_counter()
    params, history = purenn.fit(
        params,
        train,
        optimizer=purenn.optim.adam(args.lr),
        epochs=args.epochs,
        batch_size=args.batch_size,
        rng=train_rng,
        val=val,
        restore_best=False,
        callbacks=hooks,
        verbose=0 if args.quiet else 1,
    )
    train_seconds = time.perf_counter() - t0
    if history["epoch"][-1] % args.snapshot_every:
        snapshots.record(history["epoch"][-1], params)  # the GIF ends on the final params

    classify = args.dataset != "sine"
    on_test = evaluate(params, *test, confusion=False)
    on_train = evaluate(params, *train, confusion=False)
    import matplotlib

    metrics = {
        "dataset": args.dataset,
        "task": "classification" if classify else "regression",
        "test_loss": on_test["loss"],
        "test_accuracy": on_test["accuracy"],
        "train_loss": on_train["loss"],
        "train_accuracy": on_train["accuracy"],
        "epochs_run": len(history["epoch"]),
        "train_seconds": train_seconds,
        "parameters": sum(spec.param_counts().values()),
        "n_train": args.n,
        "n_val": n_other,
        "n_test": n_other,
        "config": {k: v for k, v in sorted(vars(args).items())},
        "versions": {
            "purenn": purenn.__version__,
            "numpy": np.__version__,
            "matplotlib": matplotlib.__version__,
            "python": platform.python_version(),
        },
    }
    purenn.save(out / "model.npz", params, config=metrics["config"], history=history)
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)
    if args.figures:
        draw(out, test)
    score = (
        f"test accuracy {metrics['test_accuracy']:.4f}"
        if classify
        else f"test MSE {metrics['test_loss']:.4f}"
    )
    _say(
        args,
        f"{score} after {metrics['epochs_run']} epochs in {train_seconds:.1f}s. "
        f"{'Files and figures' if args.figures else 'Files'} in {out}",
    )
    return {**metrics, "run_dir": str(out)}


def draw(out: Path, test: tuple[np.ndarray, np.ndarray]) -> list[Path]:
    """Every figure of a run folder, from its files (nothing is retrained)."""
    import json

    from purenn import plots

    history = json.loads((out / "history.json").read_text())
    params = purenn.load(out / "model.npz").params
    x, y = test
    written = [
        plots.save_figure(plots.decision_boundary(params, x, y), out / "boundary.png"),
        plots.boundary_animation(
            callbacks.load_snapshots(out / "snapshots"), x, y, out / "boundary.gif"
        ),
        plots.save_figure(plots.loss_curves(history), out / "loss.png"),
        plots.save_figure(plots.layer_diagnostics(history), out / "diagnostics.png"),
    ]
    if history["train_accuracy"][0] is not None:
        written.append(plots.save_figure(plots.accuracy_curves(history), out / "accuracy.png"))
    return written


if __name__ == "__main__":
    main()
