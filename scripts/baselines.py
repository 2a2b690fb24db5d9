"""Measure the alternatives purenn is compared with, on this machine, in one run.

Every baseline is trained on the official training split and scored once on the
official test split. Where a hyperparameter is tuned (pendigits), it is chosen by
stratified K-fold cross-validation on the training split only; the test split
plays no part in the choice. Results go to ``OUT/baselines.json`` (written
atomically after every baseline, so an interrupted run keeps what it measured),
a markdown table goes to stdout and progress lines to stderr.

    python scripts/baselines.py --out runs/baselines
    python scripts/baselines.py --quick --datasets pendigits --out /tmp/b

scikit-learn and PyTorch are optional extras (``pip install -e ".[bench]"``).
They are imported only when a baseline needs them; a missing one is reported
in the JSON and the table as skipped, with the pip command that installs it.

Baselines (test accuracy, seconds to train, exact configuration for each):

- pendigits: scikit-learn MLPClassifier, k-nearest neighbours and an RBF SVM,
  each chosen from a small grid by 5-fold CV on the standardised training set.
- MNIST: PyTorch 784-512-512-10 with dropout and Adam, 20 epochs; scikit-learn
  MLPClassifier(256, 128), bounded by max_iter and early stopping.
- Fashion-MNIST: PyTorch MLPs 256-128 and 256-128-64 with Adam.
- MNIST and Fashion-MNIST, ``torch_resnet``: the residual network of
  ``scripts/train_*.py --model resnet`` trained again with PyTorch, as a twin of
  that run: torch modules built from the very purenn spec and started from its
  very initial weights, trained on the same split, the same batches in the same
  order with the same augmentation (drawn by the same Generator), the same
  optimizer, schedule and epochs; the epoch with the best validation loss is
  kept and the test split scored once. Select it alone with
  ``--baselines torch_resnet``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import importlib
import importlib.util
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purenn.datasets import (
    CorruptFileError,
    DataNotFoundError,
    load_fashion_mnist,
    load_mnist,
    load_pendigits,
)
from purenn.fileio import write_json
from purenn.preprocessing import (
    flatten_images,
    scale_images,
    standardize_apply,
    standardize_fit,
)

DATASETS = ("pendigits", "mnist", "fashion_mnist")

# The pip command that installs each optional peer. PyTorch is pinned to the CPU
# build that lies on this kind of machine; an unpinned install pulls a CUDA build.
INSTALL = {
    "sklearn": "pip install 'scikit-learn>=1.3'",
    "torch": "pip install torch==2.13.0",
}
PEER_NAMES = {"sklearn": "scikit-learn", "torch": "PyTorch"}

# Figures the issue quotes for each baseline, shown beside what this run measures.
QUOTED = {
    ("pendigits", "sklearn_mlp"): 0.976,
    ("pendigits", "sklearn_knn"): 0.978,
    ("pendigits", "sklearn_rbf_svm"): 0.984,
    ("mnist", "torch_mlp_512_512_dropout"): 0.983,
    ("mnist", "sklearn_mlp_256_128"): 0.980,
    ("fashion_mnist", "torch_mlp_256_128"): 0.890,
    ("fashion_mnist", "torch_mlp_256_128_64"): 0.900,
}

# Rows kept from each split in --quick mode (a random subset, fixed by --seed).
QUICK_ROWS = {"pendigits": (1500, 500), "mnist": (3000, 1000), "fashion_mnist": (3000, 1000)}
QUICK_EPOCHS = 2

CV_FOLDS = 5
CV_FOLDS_QUICK = 2


class MissingPeer(Exception):
    """An optional library a baseline needs is not installed."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        super().__init__(f"{PEER_NAMES[peer]} is not installed; install it with: {INSTALL[peer]}")


def _peer(name: str) -> Any:
    """Import ``name`` (``"sklearn"`` or ``"torch"``) on first use, or raise MissingPeer."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingPeer(name) from err


def _log(msg: str) -> None:
    print(f"[baselines {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _jsonable(v: Any) -> Any:
    """Hyperparameter values as JSON: tuples become lists, NumPy scalars plain numbers."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


# --------------------------------------------------------------------------- data


def _subset(
    x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    idx = np.sort(rng.permutation(x.shape[0])[:n])
    return x[idx], y[idx]


def load_data(
    name: str, data_dir: str | None, quick: bool, rng: np.random.Generator, keep_raw: bool = False
) -> Any:
    """One data set, preprocessed the way its baselines expect.

    pendigits: features standardised with statistics of the training split,
    float64 of shape (n, 16). MNIST / Fashion-MNIST: pixels scaled to [0, 1]
    and flattened, float32 of shape (n, 784). Labels int64 of shape (n,).
    With ``keep_raw``, ``(data, raw)``: ``raw`` the same rows as loaded
    (``(x_train, y_train, x_test, y_test)``, uint8 images), for the residual twin.
    """
    loader = {"pendigits": load_pendigits, "mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
    (x_train, y_train), (x_test, y_test) = loader[name](data_dir)
    if quick:
        n_train, n_test = QUICK_ROWS[name]
        x_train, y_train = _subset(x_train, y_train, n_train, rng)
        x_test, y_test = _subset(x_test, y_test, n_test, rng)
    raw = (x_train, y_train, x_test, y_test)
    if name == "pendigits":
        scaler = standardize_fit(x_train)
        x_train = standardize_apply(scaler, x_train, dtype=np.float64)
        x_test = standardize_apply(scaler, x_test, dtype=np.float64)
    else:
        x_train = flatten_images(scale_images(x_train))
        x_test = flatten_images(scale_images(x_test))
    data = x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)
    return (data, raw) if keep_raw else data


# ------------------------------------------------------------------ scikit-learn

# pendigits' matrices are tiny (16 features, <= 128 units): two BLAS threads on a
# busy 2-core machine spend their time waiting for each other (an MLPClassifier
# fit measured 7x slower here than with one), so those fits use one thread.
PENDIGITS_BLAS_THREADS = 1


def _blas_threads(n: int) -> Any:
    """A context that caps BLAS threads at ``n`` (threadpoolctl comes with scikit-learn)."""
    threadpoolctl = importlib.import_module("threadpoolctl")
    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def _grid_search(
    estimator: Any,
    grid: dict[str, list[Any]],
    data: tuple[np.ndarray, ...],
    seed: int,
    quick: bool,
) -> dict[str, Any]:
    """Choose ``grid``'s best point by stratified K-fold CV on the training set, refit, test."""
    _peer("sklearn")
    ms = importlib.import_module("sklearn.model_selection")
    convergence = importlib.import_module("sklearn.exceptions").ConvergenceWarning
    x_train, y_train, x_test, y_test = data
    folds = CV_FOLDS_QUICK if quick else CV_FOLDS
    cv = ms.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = ms.GridSearchCV(estimator, grid, cv=cv, scoring="accuracy", n_jobs=1, refit=True)
    t0 = time.perf_counter()
    with _blas_threads(PENDIGITS_BLAS_THREADS), warnings.catch_warnings():
        # MLPClassifier warns when a CV fit hits max_iter; the bound is recorded in config.
        warnings.simplefilter("ignore", category=convergence)
        search.fit(x_train, y_train)
    tune_seconds = time.perf_counter() - t0
    acc = float((search.predict(x_test) == y_test).mean())
    results = search.cv_results_
    return {
        "test_accuracy": acc,
        "train_seconds": float(search.refit_time_),
        "tune_seconds": tune_seconds,
        "blas_threads": PENDIGITS_BLAS_THREADS,
        "config": _jsonable(search.best_estimator_.get_params()),
        "cv": {
            "folds": folds,
            "splitter": f"StratifiedKFold(shuffle=True, random_state={seed})",
            "grid": _jsonable(grid),
            "best_params": _jsonable(search.best_params_),
            "best_cv_accuracy": float(search.best_score_),
            "scores": [
                {"params": _jsonable(p), "mean": float(m), "std": float(s)}
                for p, m, s in zip(
                    results["params"],
                    results["mean_test_score"],
                    results["std_test_score"],
                    strict=True,
                )
            ],
        },
    }


def pendigits_mlp(
    data: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int
) -> dict[str, Any]:
    _peer("sklearn")
    from sklearn.neural_network import MLPClassifier

    grid = {
        "hidden_layer_sizes": [(64,), (128,), (128, 64)],
        "alpha": [1e-4, 1e-2],
    }
    if quick:
        grid = {"hidden_layer_sizes": [(32,)], "alpha": [1e-4, 1e-2]}
    est = MLPClassifier(solver="adam", max_iter=50 if quick else 300, random_state=seed)
    out = _grid_search(est, grid, data, seed, quick)
    best = out["cv"]["best_params"]
    out["summary"] = (
        f"MLPClassifier{tuple(best['hidden_layer_sizes'])}, relu, adam, "
        f"alpha={best['alpha']:g}, max_iter={est.max_iter}; chosen by {out['cv']['folds']}-fold CV"
    )
    return out


def pendigits_knn(
    data: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int
) -> dict[str, Any]:
    _peer("sklearn")
    from sklearn.neighbors import KNeighborsClassifier

    grid = {"n_neighbors": [1, 3, 5, 7, 9, 11, 15], "weights": ["uniform", "distance"]}
    if quick:
        grid = {"n_neighbors": [1, 3], "weights": ["uniform"]}
    out = _grid_search(KNeighborsClassifier(), grid, data, seed, quick)
    best = out["cv"]["best_params"]
    out["summary"] = (
        f"kNN k={best['n_neighbors']}, weights={best['weights']}, euclidean, "
        f"standardised features; chosen by {out['cv']['folds']}-fold CV"
    )
    return out


def pendigits_svm(
    data: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int
) -> dict[str, Any]:
    _peer("sklearn")
    from sklearn.svm import SVC

    grid = {"C": [1.0, 10.0, 100.0, 1000.0], "gamma": [0.01, 0.03, 0.1, 0.3]}
    if quick:
        grid = {"C": [1.0, 10.0], "gamma": [0.1]}
    out = _grid_search(SVC(kernel="rbf"), grid, data, seed, quick)
    best = out["cv"]["best_params"]
    out["summary"] = (
        f"SVC(kernel='rbf', C={best['C']:g}, gamma={best['gamma']:g}), standardised features; "
        f"C and gamma by {out['cv']['folds']}-fold CV"
    )
    return out


def sklearn_mlp_images(
    data: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int
) -> dict[str, Any]:
    """MLPClassifier(256, 128) on [0, 1] pixels, bounded by max_iter and early stopping."""
    _peer("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, y_test = data
    max_iter = QUICK_EPOCHS if quick else 30
    est = MLPClassifier(
        hidden_layer_sizes=(256, 128),
        solver="adam",
        max_iter=max_iter,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=5,
        random_state=seed,
    )
    t0 = time.perf_counter()
    with _blas_threads(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        est.fit(x_train, y_train)
    seconds = time.perf_counter() - t0
    acc = float((est.predict(x_test) == y_test).mean())
    return {
        "test_accuracy": acc,
        "train_seconds": seconds,
        "blas_threads": threads,
        "config": _jsonable(est.get_params()),
        "epochs_run": int(est.n_iter_),
        "best_validation_accuracy": float(est.best_validation_score_),
        "summary": (
            f"MLPClassifier(256, 128), relu, adam lr={est.learning_rate_init:g}, "
            f"batch {min(200, x_train.shape[0])}, alpha={est.alpha:g}, max_iter={max_iter}, "
            f"early_stopping on 10% of train (patience 5); ran {est.n_iter_} epochs"
        ),
    }


# ------------------------------------------------------------------------ PyTorch


def torch_mlp(
    data: tuple[np.ndarray, ...],
    seed: int,
    *,
    threads: int,
    hidden: tuple[int, ...],
    dropout: float,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> dict[str, Any]:
    """A ReLU MLP trained with Adam and cross-entropy for a fixed number of epochs.

    Minibatches follow a permutation per epoch drawn from a NumPy Generator
    seeded with ``seed``; weights and dropout masks come from
    ``torch.manual_seed(seed)``. The test split is scored once, after training.
    """
    torch = _peer("torch")
    nn = torch.nn
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    x_train, y_train, x_test, y_test = data
    layers: list[Any] = []
    d_in = x_train.shape[1]
    for width in hidden:
        layers += [nn.Linear(d_in, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d_in = width
    layers.append(nn.Linear(d_in, int(y_train.max()) + 1))
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(y_train)
    n = xt.shape[0]
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().item() * idx.shape[0]
        history.append(total / n)
        _log(f"  epoch {epoch + 1}/{epochs}: train loss {history[-1]:.4f}")
    seconds = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)))
        acc = float((logits.argmax(dim=1).numpy() == y_test).mean())
    arch = "-".join(str(w) for w in (x_train.shape[1], *hidden, int(y_train.max()) + 1))
    return {
        "test_accuracy": acc,
        "train_seconds": seconds,
        "train_loss_per_epoch": history,
        "config": {
            "layers": arch,
            "activation": "relu",
            "dropout": dropout,
            "optimizer": "Adam",
            "lr": lr,
            "betas": [0.9, 0.999],
            "weight_decay": 0.0,
            "batch_size": batch_size,
            "epochs": epochs,
            "loss": "cross_entropy",
            "init": "torch default (kaiming_uniform a=sqrt(5))",
            "input": "pixels / 255, flattened",
            "dtype": "float32",
            "threads": torch.get_num_threads(),
            "seed": seed,
        },
        "summary": (
            f"PyTorch {arch} relu"
            + (f", dropout {dropout:g}" if dropout > 0 else "")
            + f", Adam lr={lr:g}, batch {batch_size}, {epochs} epochs"
        ),
    }


# ------------------------------------------------------------ the residual twin

SCRIPTS = {"mnist": "train_mnist", "fashion_mnist": "train_fashion_mnist"}


def _script(dataset: str) -> Any:
    """``scripts/train_<dataset>.py`` imported as a module (its RECIPES and prepare)."""
    name = SCRIPTS[dataset]
    spec = importlib.util.spec_from_file_location(
        f"_purenn_{name}", Path(__file__).resolve().with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_module(spec: Any, params: dict) -> Any:
    """A ``torch.nn.Module`` computing the purenn network ``spec`` (up to its logits),
    holding float32 copies of ``params``: the layers ``build_resnet`` uses (Conv2D with
    TensorFlow's "same" padding, BatchNorm, Residual, GlobalAvgPool2D, Dropout, Dense)."""
    torch = _peer("torch")
    from purenn import BatchNorm, Conv2D, Dense, Dropout, GlobalAvgPool2D, Residual
    from purenn.base import layer_names

    nn = torch.nn
    F = nn.functional
    acts = {"linear": lambda z: z, "relu": F.relu}

    def tensor(a: np.ndarray) -> Any:
        return nn.Parameter(torch.tensor(np.asarray(a, dtype=np.float32)))

    class Conv(nn.Module):
        def __init__(self, layer: Any, p: dict, in_shape: tuple) -> None:
            super().__init__()
            self.weight, self.bias = tensor(p["w"]), tensor(p["b"])
            t, b, l, r = layer.pads(in_shape)
            self.pads, self.stride, self.act = (l, r, t, b), layer.stride, acts[layer.activation]

        def forward(self, x: Any) -> Any:
            x = F.pad(x, self.pads) if any(self.pads) else x
            return self.act(F.conv2d(x, self.weight, self.bias, stride=self.stride))

    class Norm(nn.Module):
        def __init__(self, layer: Any, p: dict, in_shape: tuple) -> None:
            super().__init__()
            kind = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
            self.bn = kind(in_shape[0], eps=layer.eps, momentum=layer.momentum)
            with torch.no_grad():
                self.bn.weight.copy_(tensor(p["gamma"]))
                self.bn.bias.copy_(tensor(p["beta"]))
            self.act = acts[layer.activation]

        def forward(self, x: Any) -> Any:
            return self.act(self.bn(x))

    class Block(nn.Module):
        def __init__(self, layer: Any, p: dict, in_shape: tuple) -> None:
            super().__init__()
            self.main = chain(layer.layers, p, in_shape)
            short = p.get("shortcut", {})
            self.shortcut = chain(layer.shortcut, short, in_shape) if layer.shortcut else None
            self.act = acts[layer.activation]

        def forward(self, x: Any) -> Any:
            s = x if self.shortcut is None else self.shortcut(x)
            return self.act(self.main(x) + s)

    class Pool(nn.Module):
        def forward(self, x: Any) -> Any:
            return x.mean(dim=(2, 3))

    class Linear(nn.Module):
        def __init__(self, layer: Any, p: dict, last: bool) -> None:
            super().__init__()
            self.weight, self.bias = tensor(p["w"]), tensor(p["b"])  # w is (d_in, d_out)
            self.act = (lambda z: z) if last else acts[layer.activation]

        def forward(self, x: Any) -> Any:
            return self.act(x @ self.weight + self.bias)

    def chain(layers: tuple, p: dict, in_shape: tuple, top: bool = False) -> Any:
        modules, shape = [], in_shape
        for i, (layer, name) in enumerate(zip(layers, layer_names(layers), strict=True)):
            if isinstance(layer, Conv2D):
                modules.append(Conv(layer, p[name], shape))
            elif isinstance(layer, BatchNorm):
                modules.append(Norm(layer, p[name], shape))
            elif isinstance(layer, Residual):
                modules.append(Block(layer, p[name], shape))
            elif isinstance(layer, GlobalAvgPool2D):
                modules.append(Pool())
            elif isinstance(layer, Dropout):
                modules.append(nn.Dropout(layer.rate))
            elif isinstance(layer, Dense):
                modules.append(Linear(layer, p[name], top and i == len(layers) - 1))
            else:
                raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
            shape = layer.output_shape(shape)
        return nn.Sequential(*modules)

    return chain(spec.layers, params, spec.input_shape, top=True)


def torch_resnet(
    dataset: str, raw: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int
) -> dict[str, Any]:
    """The PyTorch twin of ``scripts/train_<dataset>.py --model resnet --seed seed``.

    Everything but the arithmetic is shared with the purenn run: the recipe
    (from the script's ``RECIPES``), the split and inputs (the script's
    ``prepare``), the network and its initial weights (``build_resnet`` and
    ``purenn.init`` from the run's own weight stream), and the batches: each
    epoch's permutation and augmentation come from the run's training stream in
    the order ``purenn.fit`` draws them. The optimizer is ``torch.optim.SGD`` with
    the recipe's Nesterov momentum and L2 weight decay on every parameter (what
    purenn's ``momentum`` optimizer does), its learning rate set before each step
    from purenn's own schedule. After every epoch the validation loss is measured
    in evaluation mode; the weights (and running statistics) of the best epoch
    score the test split once.
    """
    torch = _peer("torch")
    from purenn import experiment
    from purenn.core import init
    from purenn.preprocessing import batches

    torch.set_num_threads(threads)
    torch.manual_seed(seed)  # nothing in the twin draws from torch; set for completeness
    script = _script(dataset)
    argv = ["--model", "resnet", "--seed", str(seed)]
    if quick:
        argv += ["--epochs", str(QUICK_EPOCHS)]
    args = experiment.parse_args(
        experiment.build_parser(dataset, "", script.RECIPES), script.RECIPES, argv
    )
    x_raw, y_raw, xt_raw, yt_raw = raw
    data = script.prepare(x_raw, y_raw, (xt_raw, yt_raw), args)
    _, weights_rng, train_rng = experiment.rng_streams(args.seed)
    spec = experiment.build_resnet(
        data.input_shape, args.hidden, args.dropout, len(data.class_names)
    )
    model = torch_module(spec, init(spec, weights_rng, dtype=np.float32))
    x, y = data.train
    steps = math.ceil(x.shape[0] / args.batch_size)
    schedule = experiment.make_optimizer(args, steps)  # purenn's, for its learning rates
    opt = torch.optim.SGD(
        model.parameters(),
        lr=schedule.learning_rate(0),
        momentum=0.9,
        nesterov=True,
        weight_decay=args.weight_decay,
    )
    loss_fn = torch.nn.CrossEntropyLoss()

    def evaluate(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
        model.eval()
        total, hits = 0.0, 0
        with torch.no_grad():
            for start in range(0, xs.shape[0], 1024):
                logits = model(torch.from_numpy(np.ascontiguousarray(xs[start : start + 1024])))
                target = torch.from_numpy(ys[start : start + 1024].astype(np.int64))
                total += float(loss_fn(logits, target)) * target.shape[0]
                hits += int((logits.argmax(dim=1) == target).sum())
        return total / xs.shape[0], hits / xs.shape[0]

    history: dict[str, list] = {"train_loss": [], "val_loss": [], "val_accuracy": [], "seconds": []}
    best = (math.inf, None, None)
    count = 0
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        total = 0.0
        for xb, yb in batches(x, y, args.batch_size, train_rng, False):
            xb = data.augment(xb, train_rng)
            for group in opt.param_groups:
                group["lr"] = schedule.learning_rate(count)
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb.astype(np.int64)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            count += 1
            total += loss.detach().item() * xb.shape[0]
        val_loss, val_acc = evaluate(*data.val)
        history["train_loss"].append(total / x.shape[0])
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
        history["seconds"].append(time.perf_counter() - t_epoch)
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
        _log(
            f"  epoch {epoch}/{args.epochs}: train loss {history['train_loss'][-1]:.4f}, val loss "
            f"{val_loss:.4f} acc {val_acc:.4f}, {history['seconds'][-1]:.1f} s"
        )
    seconds = time.perf_counter() - t0
    model.load_state_dict(best[2])
    test_loss, test_acc = evaluate(*data.test)
    return {
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_errors": data.test[0].shape[0] - round(test_acc * data.test[0].shape[0]),
        "best_epoch": best[1],
        "val_accuracy": history["val_accuracy"][best[1] - 1],
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / args.epochs,
        "history": history,
        "config": {
            "network": spec.to_dict(),
            "recipe": {k: v for k, v in experiment.config_of(args).items() if k != "out"},
            "optimizer": "torch.optim.SGD(momentum=0.9, nesterov=True, weight_decay=wd), "
            "lr set each step from purenn's schedule",
            "init": "purenn.init of the run (the same initial weights)",
            "batches": "purenn.preprocessing.batches and the script's augmentation, drawn from "
            "the run's training Generator",
            "dtype": "float32",
            "threads": torch.get_num_threads(),
            "seed": seed,
        },
        "summary": (
            f"PyTorch twin of train_{dataset}.py --model resnet: {args.epochs} epochs, "
            f"batch {args.batch_size}, SGD Nesterov lr {args.lr:g} {args.schedule}, wd "
            f"{args.weight_decay:g}, best val loss epoch {best[1]}"
        ),
    }


def _resnet_runner(dataset: str) -> Runner:
    def run(raw: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int) -> dict[str, Any]:
        return torch_resnet(dataset, raw, seed, quick, threads)

    run.raw_data = True  # type: ignore[attr-defined]  # takes the images as loaded
    return run


# ---------------------------------------------------------------------- the plan

Runner = Callable[[tuple[np.ndarray, ...], int, bool, int], dict[str, Any]]


def _torch_runner(hidden: tuple[int, ...], dropout: float, epochs: int) -> Runner:
    def run(data: tuple[np.ndarray, ...], seed: int, quick: bool, threads: int) -> dict[str, Any]:
        n_epochs = QUICK_EPOCHS if quick else epochs
        return torch_mlp(
            data, seed, threads=threads, hidden=hidden, dropout=dropout, epochs=n_epochs
        )

    return run


# (dataset, key, title, peer, runner), in the order they run.
PLAN: tuple[tuple[str, str, str, str, Runner], ...] = (
    ("pendigits", "sklearn_mlp", "scikit-learn MLPClassifier (CV grid)", "sklearn", pendigits_mlp),
    ("pendigits", "sklearn_knn", "scikit-learn kNN (k by CV)", "sklearn", pendigits_knn),
    (
        "pendigits",
        "sklearn_rbf_svm",
        "scikit-learn RBF SVM (C, gamma by CV)",
        "sklearn",
        pendigits_svm,
    ),
    (
        "mnist",
        "torch_mlp_512_512_dropout",
        "PyTorch MLP 512-512, dropout, Adam",
        "torch",
        _torch_runner((512, 512), 0.2, 20),
    ),
    (
        "mnist",
        "sklearn_mlp_256_128",
        "scikit-learn MLPClassifier(256, 128)",
        "sklearn",
        sklearn_mlp_images,
    ),
    (
        "fashion_mnist",
        "torch_mlp_256_128",
        "PyTorch MLP 256-128, Adam",
        "torch",
        _torch_runner((256, 128), 0.0, 20),
    ),
    (
        "fashion_mnist",
        "torch_mlp_256_128_64",
        "PyTorch MLP 256-128-64, Adam",
        "torch",
        _torch_runner((256, 128, 64), 0.0, 20),
    ),
    (
        "mnist",
        "torch_resnet",
        "PyTorch twin of train_mnist.py --model resnet",
        "torch",
        _resnet_runner("mnist"),
    ),
    (
        "fashion_mnist",
        "torch_resnet",
        "PyTorch twin of train_fashion_mnist.py --model resnet",
        "torch",
        _resnet_runner("fashion_mnist"),
    ),
)
BASELINE_KEYS = tuple(dict.fromkeys(key for _, key, _, _, _ in PLAN))


def _version(name: str) -> str | None:
    try:
        return importlib.import_module(name).__version__
    except ImportError:
        return None


def machine_facts() -> dict[str, Any]:
    """What this run ran on: CPU, cores, memory, OS, library versions, load."""
    cpu = platform.processor() or None
    mem_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit_learn": _version("sklearn"),
        "torch": _version("torch"),
        "purenn_commit": commit,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| data set | baseline | test accuracy | issue quoted | train s | tune s | configuration |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        quoted = f"{r['quoted']:.1%}" if r.get("quoted") is not None else ""
        if r["status"] == "ok":
            acc = f"{r['test_accuracy']:.2%}"
            train = f"{r['train_seconds']:.1f}"
            tune = f"{r['tune_seconds']:.1f}" if "tune_seconds" in r else ""
            config = r["summary"]
        else:
            acc, train, tune = "skipped", "", ""
            config = f"{r['reason']}"
        rows.append(
            f"| {r['dataset']} | {r['title']} | {acc} | {quoted} | {train} | {tune} | {config} |"
        )
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baselines.py",
        description=(
            "Measure scikit-learn and PyTorch baselines on the official test splits and "
            "write OUT/baselines.json plus a markdown table on stdout."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(DATASETS),
        metavar="NAME",
        help=f"data sets to run, any of: {' '.join(DATASETS)}",
    )
    p.add_argument(
        "--out",
        default="runs/baselines",
        help="folder for baselines.json (created if missing)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smoke run: random slices of each split, tiny grids, "
            f"{CV_FOLDS_QUICK}-fold CV, {QUICK_EPOCHS} epochs; numbers mean nothing"
        ),
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        choices=BASELINE_KEYS,
        default=None,
        metavar="KEY",
        help=f"run only these baselines (default: all), any of: {' '.join(BASELINE_KEYS)}",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for CV splits, weights, batches")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help=(
            "threads for PyTorch and for the BLAS under scikit-learn's MNIST MLP "
            "(pendigits' tiny fits always use 1); lower it when the machine is shared"
        ),
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder searched first for data files (then $PURENN_DATA, then the cache)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the baselines; return 0 on success, 2 on a usage or data error."""
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    if args.seed < 0:
        print(f"baselines.py: error: --seed must be >= 0; got {args.seed}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"baselines.py: error: --threads must be >= 1; got {args.threads}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(
            f"baselines.py: error: --out {out_dir} is a file; give a folder for baselines.json",
            file=sys.stderr,
        )
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / "baselines.json"

    datasets = [d for d in DATASETS if d in args.datasets]  # canonical order, no repeats
    report: dict[str, Any] = {
        "command": "python scripts/baselines.py " + shlex.join(argv_list),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "seed": args.seed,
        "threads": args.threads,
        "datasets": datasets,
        "protocol": (
            "Official train/test splits. Hyperparameters chosen by stratified K-fold CV on "
            "the training split only; the test split is scored once per baseline. "
            "train_seconds is wall time to fit the final model (for CV baselines: the refit "
            "of the best point on the whole training split); tune_seconds is the whole search."
        ),
        "machine": machine_facts(),
        "complete": False,
        "results": [],
    }
    if args.quick:
        report["quick_rows"] = {d: QUICK_ROWS[d] for d in datasets}

    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    wanted = set(args.baselines or BASELINE_KEYS)
    report["baselines"] = sorted(wanted)
    for name in datasets:
        if not any(d == name and key in wanted for d, key, _, _, _ in PLAN):
            continue
        _log(f"loading {name}" + (" (quick slice)" if args.quick else ""))
        try:
            data, raw = load_data(name, args.data_dir, args.quick, rng, keep_raw=True)
        except (DataNotFoundError, CorruptFileError) as err:
            print(f"baselines.py: error: cannot load {name}: {err}", file=sys.stderr)
            return 2
        _log(f"{name}: train {data[0].shape}, test {data[2].shape}")
        for dataset, key, title, peer, runner in PLAN:
            if dataset != name or key not in wanted:
                continue
            entry: dict[str, Any] = {
                "dataset": dataset,
                "key": key,
                "title": title,
                "library": PEER_NAMES[peer],
                "quoted": QUOTED.get((dataset, key)),
            }
            _log(f"{dataset}: {title} ...")
            try:
                given = raw if getattr(runner, "raw_data", False) else data
                entry.update(runner(given, args.seed, args.quick, args.threads))
                entry["status"] = "ok"
                _log(
                    f"{dataset}: {title}: test accuracy {entry['test_accuracy']:.2%}, "
                    f"train {entry['train_seconds']:.1f} s"
                )
            except MissingPeer as err:
                entry.update(status="skipped", reason=str(err), install=INSTALL[err.peer])
                _log(f"{dataset}: {title}: skipped ({err})")
            report["results"].append(entry)
            write_json(out_path, report)

    report["complete"] = True
    report["total_seconds"] = time.perf_counter() - t_start
    report["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    write_json(out_path, report)
    _log(f"wrote {out_path}")
    print(markdown_table(report["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
