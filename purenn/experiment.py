"""The per-run pipeline behind ``scripts/train_*.py``: options, model, fit, evaluate, write.

A training script only loads and preprocesses its data set and names its
defaults (a *recipe* per model); everything else happens here, once::

    RECIPES = {"mlp": {"hidden": [256, 128], "lr": 2e-3, ...}}
    parser = experiment.build_parser("pendigits", "Train an MLP on pendigits.", RECIPES)
    args = experiment.parse_args(parser, RECIPES, argv)
    ...load, split with experiment.split_train_val, preprocess -> experiment.Data...
    experiment.run(args, data)

A run writes one folder (``--out``, default ``runs/<dataset>-<timestamp>/``),
laid out as :mod:`purenn.plots` expects it:

``metrics.json``
    ``test_accuracy``, ``test_loss`` (the test set is evaluated once, after
    training), ``val_accuracy`` and ``val_loss`` at the best epoch,
    ``best_epoch``, ``epochs_run``, ``train_seconds``, ``config`` (every option's
    value, as resolved), ``versions``, ``confusion_matrix`` (test, rows = true
    class), ``class_names``, plus ``dataset``, ``model``, ``parameters``,
    ``n_train``/``n_val``/``n_test``, ``test_errors``, ``stopped_early`` and
    ``seconds_per_epoch``. Two runs of the same command with the same seed give
    the same file except for the timings (``train_seconds``, ``seconds_per_epoch``).
``history.json``
    The history ``purenn.fit`` returns.
``model.npz``
    The checkpoint (:func:`purenn.save`): the returned params with ``config``,
    ``history`` and ``preprocessing`` (the arrays needed to prepare new inputs,
    e.g. the standardiser's ``mean`` and ``std``).
``misclassified.npz``
    The misclassified test samples in raw units (:func:`purenn.plots.save_misclassified`).
figures (unless ``--no-figures``)
    ``loss.png``, ``accuracy.png``, ``confusion.png``, ``confusion_normalized.png``,
    ``misclassified.png``, ``loss.gif``, drawn from the files above by
    :func:`purenn.plots.plot_run`.

Every file is written atomically (a temporary file in the same folder, then a
rename). Randomness comes from ``--seed`` only: one ``SeedSequence`` is split
into independent streams for the validation split, the initial weights, and
training (shuffling, dropout, augmentation).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import numbers
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from purenn import optim, parallel, schedules
from purenn._checks import (
    as_array,
    as_seed,
    check_callable,
    check_flag,
    nonnegative_float,
    positive_int,
    show,
)
from purenn.activations import activation_names, get_activation
from purenn.augment import augment_images, crop_images, flip_images
from purenn.checkpoint import save, storable
from purenn.containers import Residual
from purenn.conv import Conv2D, Flatten, GlobalAvgPool2D, MaxPool2D
from purenn.core import init, predict
from purenn.fileio import write_json
from purenn.layers import Dense, Dropout
from purenn.metrics import evaluate
from purenn.network import Network
from purenn.norm import BatchNorm
from purenn.preprocessing import Standardizer, scale_images, train_val_split
from purenn.training import fit
from purenn.tree import tree_leaves

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "TIMING_KEYS",
    "WITH_AUGMENT",
    "Data",
    "build_cnn",
    "build_mlp",
    "build_resnet",
    "build_parser",
    "config_of",
    "in_raw_units",
    "limit_samples",
    "load_data",
    "make_optimizer",
    "parse_args",
    "prepare_images",
    "rng_streams",
    "run",
    "script_main",
    "split_train_val",
]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup-cosine", "step")
TIMING_KEYS = ("train_seconds", "seconds_per_epoch")
"""The ``metrics.json`` keys that differ between two runs of the same command."""
WITH_AUGMENT = "with_augment"
"""Recipe key for defaults that apply when augmentation is on, e.g. ``{"epochs": 50}``."""


def _activation_name(text: str) -> str:
    """argparse type: a registered activation name, looked up when parsing (so
    activations registered after import are accepted)."""
    try:
        get_activation(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# option -> (argparse keyword arguments, help text); the default comes from the recipe
_OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "hidden": (
        {"type": int, "nargs": "+", "metavar": "UNITS"},
        "units per hidden Dense layer, e.g. --hidden 64 32 (for cnn: the Dense layers "
        "after the convolutions; for resnet: the channels of each stage of residual blocks, "
        "every stage after the first halving the image)",
    ),
    "activation": (
        {"type": _activation_name, "metavar": "NAME"},
        "hidden-layer activation: any registered name (built-in: "
        + ", ".join(name for name in activation_names() if name != "softmax")
        + "; your own after purenn.register_activation)",
    ),
    "dropout": ({"type": float, "metavar": "RATE"}, "dropout rate after each hidden Dense layer"),
    "optimizer": (
        {"choices": OPTIMIZERS},
        "momentum is Nesterov SGD with momentum 0.9; adamw is Adam with decoupled weight decay",
    ),
    "lr": ({"type": float}, "peak learning rate"),
    "schedule": (
        {"choices": SCHEDULES},
        "learning-rate schedule over all steps: cosine decays to 0; warmup-cosine ramps up "
        "over the first epoch first; step divides by 10 after each third",
    ),
    "weight_decay": (
        {"type": float, "metavar": "WD"},
        "weight decay: decoupled (p -= lr*wd*p) for adamw, L2 added to the gradient otherwise",
    ),
    "epochs": ({"type": int}, "epochs to train"),
    "batch_size": ({"type": int}, "samples per step"),
    "val_fraction": (
        {"type": float, "metavar": "F"},
        "share of the training data held out for validation (model selection); 0: none",
    ),
    "monitor": (
        {"choices": ("val_loss", "val_accuracy")},
        "the validation number that picks the epoch whose parameters are kept (and that "
        "--patience watches)",
    ),
    "patience": (
        {"type": int},
        "stop after this many epochs without a better --monitor value; 0: never",
    ),
    "augment": (
        {"action": argparse.BooleanOptionalAction},
        "random distortions of every training batch",
    ),
    "dtype": ({"choices": ("float32", "float64")}, "floating-point precision"),
    "seed": ({"type": int}, "seed for the split, the initial weights and training"),
}

_COMMON_DEFAULTS = {
    "activation": "relu",
    "dropout": 0.0,
    "optimizer": "adamw",
    "schedule": "cosine",
    "weight_decay": 0.0,
    "val_fraction": 0.1,
    "monitor": "val_loss",
    "patience": 0,
    "augment": False,
    "dtype": "float32",
    "seed": 0,
}
# the options build_parser adds besides _OPTIONS (no recipe defaults)
_SCRIPT_OPTIONS = ("dataset", "model", "data_dir", "out", "limit", "figures", "quiet", "workers")


# --------------------------------------------------------------------------- checks


def _check_args(args: object, fn: str, names: Sequence[str] = ()) -> argparse.Namespace:
    """``args`` as :func:`parse_args` returns it, holding the options ``fn`` reads
    (every option of the parser when ``names`` is empty)."""
    if not isinstance(args, argparse.Namespace):
        raise TypeError(
            f"{fn}: args must be the argparse.Namespace that parse_args returns; got "
            f"{type(args).__name__} {show(args, 40)}"
        )
    wanted = names or (*_OPTIONS, *_SCRIPT_OPTIONS)
    missing = [name for name in wanted if not hasattr(args, name)]
    if missing:
        raise ValueError(
            f"{fn}: args lacks the option(s) {missing}; pass the Namespace that "
            "parse_args(build_parser(...), recipes, argv) returns"
        )
    return args


def _check_parser(parser: object, fn: str) -> argparse.ArgumentParser:
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(
            f"{fn}: parser must be the argparse.ArgumentParser that build_parser returns; got "
            f"{type(parser).__name__} {show(parser, 40)}"
        )
    return parser


def _units(value: object, name: str, allow_empty: bool) -> list[int]:
    """A list or tuple of positive ints (layer widths) as a list of Python ints."""
    if not isinstance(value, list | tuple):
        raise TypeError(
            f"{name} must be a list or tuple of positive ints, e.g. [64, 32]; got "
            f"{type(value).__name__} {show(value, 40)}"
        )
    if not value and not allow_empty:
        raise ValueError(f"{name} must hold at least one positive int, e.g. [64, 32]; got []")
    return [positive_int(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _dropout(value: object) -> float:
    """A dropout rate in [0, 1) (0: no Dropout layers)."""
    rate = nonnegative_float(value, "dropout")
    if rate >= 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1) (0: none); got {rate}")
    return rate


def _class_names(value: object, name: str) -> tuple[str, ...]:
    """A non-empty list or tuple of distinct str as a tuple."""
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise TypeError(
            f"{name} must be a non-empty list or tuple of str, one name per class, e.g. "
            f"('0', '1', ...); got {type(value).__name__} {show(value, 40)}"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"{name} must name each class once; got {show(value, 60)}")
    return tuple(value)


def _xy(x: object, y: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as arrays with the same number n >= 1 of rows."""
    xa, ya = as_array(x, f"{name}: x"), as_array(y, f"{name}: y")
    if xa.ndim < 1 or ya.ndim < 1 or len(xa) != len(ya) or not len(xa):
        raise ValueError(
            f"{name} needs x (n, ...) and y (n, ...) with the same n >= 1 samples; got shapes "
            f"{xa.shape} and {ya.shape}"
        )
    return xa, ya


def _pair(value: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: a tuple or list of two arrays with one row per sample each."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"{name} must be a pair (x, y) of inputs and labels; got {type(value).__name__} "
            f"{show(value, 40)}"
        )
    return _xy(value[0], value[1], name)


# --------------------------------------------------------------------------- options


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _show_default(recipe: Mapping[str, Any], name: str) -> str:
    """An option's default for ``--help``, with its value under augmentation if that differs."""
    text = _show(recipe[name])
    if name in recipe[WITH_AUGMENT]:
        text += f", or {_show(recipe[WITH_AUGMENT][name])} with --augment"
    return text


def _recipes(recipes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each model's full defaults: the common ones overridden by its recipe.

    A recipe may hold ``"with_augment": {option: default}``: defaults that take
    over when augmentation is on (say, more epochs); each full recipe carries
    that mapping, possibly empty, under the same key.
    """
    if not isinstance(recipes, Mapping):
        raise TypeError(
            "recipes must be a dict {model: {option: default}}, e.g. {'mlp': {'hidden': [64], "
            f"...}}; got {type(recipes).__name__} {show(recipes, 40)}"
        )
    if not recipes:
        raise ValueError("give at least one recipe, e.g. {'mlp': {...}}")
    out = {}
    for model, recipe in recipes.items():
        if not isinstance(model, str) or not model:
            raise TypeError(f"recipes' keys must be model names (non-empty str); got {show(model)}")
        if not isinstance(recipe, Mapping) or not isinstance(recipe.get(WITH_AUGMENT, {}), Mapping):
            raise TypeError(
                f"recipe {model!r} must be a dict {{option: default}} (its {WITH_AUGMENT!r} one "
                f"too); got {show(recipe, 60)}"
            )
        augmented = dict(recipe.get(WITH_AUGMENT, {}))
        own = {k: v for k, v in recipe.items() if k != WITH_AUGMENT}
        unknown = (set(own) | set(augmented)) - set(_OPTIONS)
        if unknown:
            raise ValueError(f"recipe {model!r} sets unknown options {sorted(unknown)}")
        if "augment" in augmented:
            raise ValueError(f"recipe {model!r}: {WITH_AUGMENT!r} cannot set 'augment' itself")
        full = {**_COMMON_DEFAULTS, **own, WITH_AUGMENT: augmented}
        missing = set(_OPTIONS) - set(full)
        if missing:
            raise ValueError(f"recipe {model!r} lacks defaults for {sorted(missing)}")
        for where, values in ((model, own), (f"{model}/{WITH_AUGMENT}", augmented)):
            for name, value in values.items():
                _check_default(where, name, value)
        out[model] = full
    return out


def _check_default(where: str, name: str, value: Any) -> None:
    """A recipe's default for option ``name`` is of the kind the command line
    gives (an int for ``--epochs``, a list of ints for ``--hidden``, one of the
    choices, ...); its range is checked with the command line's, by parse_args."""
    kwargs = _OPTIONS[name][0]
    if "choices" in kwargs:
        ok = isinstance(value, str) and value in kwargs["choices"]  # the choices are str
        want = f"one of {kwargs['choices']}"
    elif kwargs.get("action") is argparse.BooleanOptionalAction:
        ok, want = isinstance(value, bool), "True or False"
    elif kwargs["type"] is _activation_name:
        ok, want = isinstance(value, str), "an activation's name"
    else:
        integral = kwargs["type"] is int
        kind = numbers.Integral if integral else numbers.Real

        def fits(v: Any) -> bool:
            return isinstance(v, kind) and not isinstance(v, bool)

        if "nargs" in kwargs:  # --hidden 64 32 (a recipe may leave it empty: no hidden layer)
            ok = isinstance(value, list | tuple) and all(map(fits, value))
            want = f"a list of {'ints' if integral else 'numbers'}"
        else:
            ok, want = fits(value), "an int" if integral else "a number"
    if not ok:
        raise TypeError(
            f"recipe {where!r}: {name!r} must be {want}, as --{name.replace('_', '-')} gives; "
            f"got {show(value, 40)} ({type(value).__name__})"
        )


def build_parser(
    dataset: str, description: str, recipes: Mapping[str, Mapping[str, Any]]
) -> argparse.ArgumentParser:
    """The command line every training script shares.

    Every option defaults to None in argparse; :func:`parse_args` fills in the
    chosen model's recipe, so an option given on the command line always wins
    and ``--help`` shows each default (per model where they differ).

    Args:
        dataset: the data set's name, used in the default ``--out`` folder.
        description: the script's one-line summary.
        recipes: ``{model: {option: default}}`` (option names with underscores);
            options a recipe leaves out take the common defaults. A recipe's
            ``"with_augment": {option: default}`` names defaults that apply
            when augmentation is on (``--help`` shows both). The first model
            is the default ``--model``; with several, ``--model`` is offered.

    Returns:
        An :class:`argparse.ArgumentParser`.

    Raises:
        TypeError, ValueError: for a bad argument or recipe.
    """
    if not isinstance(dataset, str) or not dataset:
        raise (ValueError if isinstance(dataset, str) else TypeError)(
            "dataset must be the data set's name, a non-empty str (it names the default "
            f"--out folder); got {show(dataset, 40)} ({type(dataset).__name__})"
        )
    if description is not None and not isinstance(description, str):
        raise TypeError(
            f"description must be a str (or None); got {type(description).__name__} "
            f"{show(description, 40)}"
        )
    full = _recipes(recipes)
    models = list(full)
    parser = argparse.ArgumentParser(description=description)
    parser.set_defaults(dataset=dataset)
    if len(models) > 1:
        parser.add_argument(
            "--model",
            choices=models,
            default=models[0],
            help=f"network family (default: {models[0]})",
        )
    else:
        parser.set_defaults(model=models[0])
    for name, (kwargs, text) in _OPTIONS.items():
        values = {m: _show_default(full[m], name) for m in models}
        if len(set(values.values())) == 1:
            shown = values[models[0]]
        else:
            shown = "; ".join(f"{m}: {v}" for m, v in values.items())
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, default=None, help=f"{text} (default: {shown})", **kwargs)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder searched first for the data files (default: $PURENN_DATA, then the "
        "user cache; downloaded there if missing)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"run folder to write (default: runs/{dataset}-<timestamp>/)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N training and N test samples, for quick smoke runs "
        "(default: all)",
    )
    parser.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the figures after training; --no-figures skips them (redraw later with "
        "scripts/plot_run.py RUN_DIR) (default: on)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing (default: off)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="train data-parallel in N local processes: starts this command again as N MPI "
        "ranks (mpiexec -n N, one BLAS thread per core share; needs pip install -e "
        "'.[mpi]'). Under mpiexec itself leave it out (default: one process)",
    )
    return parser


def parse_args(
    parser: argparse.ArgumentParser,
    recipes: Mapping[str, Mapping[str, Any]],
    argv: Sequence[str] | None,
) -> argparse.Namespace:
    """Parse ``argv``, fill unset options from the model's recipe, and check values.

    Errors in ``argv`` go through ``parser.error`` (usage message, exit status 2).

    Args:
        parser: from :func:`build_parser` with the same ``recipes``.
        recipes: as for :func:`build_parser`.
        argv: the command line's arguments, a list or tuple of str (None: ``sys.argv[1:]``).

    Raises:
        TypeError, ValueError: for a bad ``parser``, ``recipes`` or ``argv`` (not a
            command-line mistake: a value of the wrong kind from the calling code).
    """
    _check_parser(parser, "parse_args")
    full = _recipes(recipes)
    if argv is not None and (
        not isinstance(argv, list | tuple) or not all(isinstance(a, str) for a in argv)
    ):
        raise TypeError(
            "argv must be a list or tuple of str, the command line's arguments (None: "
            f"sys.argv[1:]); got {type(argv).__name__} {show(argv, 40)}"
        )
    args = parser.parse_args(argv)
    _check_args(args, "parse_args: parser")
    if args.model not in full:
        raise ValueError(
            f"parse_args: the parser offers model {args.model!r}, which recipes lacks (it has "
            f"{sorted(full)}): build the parser from the same recipes"
        )
    if args.workers is not None:
        _start_workers(parser, args, sys.argv[1:] if argv is None else list(argv))
    recipe = full[args.model]
    if args.augment is None:
        args.augment = recipe["augment"]
    defaults = {**recipe, **recipe[WITH_AUGMENT]} if args.augment else recipe
    for name in _OPTIONS:
        if getattr(args, name) is None:
            value = defaults[name]
            setattr(args, name, list(value) if isinstance(value, list | tuple) else value)
    problems = []
    if any(h < 1 for h in args.hidden):
        problems.append(f"--hidden needs positive unit counts; got {args.hidden}")
    if not 0.0 <= args.dropout < 1.0:
        problems.append(f"--dropout must be in [0, 1); got {args.dropout}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        problems.append(f"--lr must be a positive number; got {args.lr}")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        problems.append(f"--weight-decay must be >= 0; got {args.weight_decay}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if not 0.0 <= args.val_fraction < 1.0:
        problems.append(f"--val-fraction must be in [0, 1); got {args.val_fraction}")
    if args.patience < 0:
        problems.append(f"--patience must be >= 0 (0: never stop early); got {args.patience}")
    if args.patience and not args.val_fraction:
        problems.append("--patience needs validation data: set --val-fraction above 0")
    if args.limit is not None and args.limit < 2:
        problems.append(f"--limit must be at least 2; got {args.limit}")
    if args.seed < 0:
        problems.append(f"--seed must be >= 0; got {args.seed}")
    try:  # the command line's --activation is checked by argparse; a recipe's is not
        get_activation(args.activation)
    except ValueError as err:
        problems.append(f"--activation: {err}")
    if problems:
        parser.error("; ".join(problems))
    return args


_MPI_HINT = 'pip install -e ".[mpi]" (mpi4py and the mpich wheel, which brings mpiexec)'


def _start_workers(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list) -> None:
    """``--workers N``: run this script again as N MPI ranks and exit with their status."""
    if not 1 <= args.workers <= parallel.MAX_WORKERS:
        parser.error(f"--workers must be in 1..{parallel.MAX_WORKERS}; got {args.workers}")
    if parallel.under_mpi():
        parser.error("--workers starts its own MPI ranks; under mpiexec leave it out")
    if args.workers == 1:
        return
    if importlib.util.find_spec("mpi4py") is None:
        parser.exit(1, f"{parser.prog}: error: --workers needs mpi4py and an MPI: {_MPI_HINT}\n")
    rest, skip = [], False
    for item in argv:  # the same command without --workers
        if skip:
            skip = False
        elif item == "--workers":
            skip = True
        elif not item.startswith("--workers="):
            rest.append(item)
    try:
        status = parallel.launch(args.workers, [sys.executable, sys.argv[0], *rest])
    except FileNotFoundError:
        parser.exit(1, f"{parser.prog}: error: --workers found no mpiexec: {_MPI_HINT}\n")
    parser.exit(status)


def script_main(main: Callable[[], Any]) -> None:
    """Run a training script's ``main()``; under ``mpiexec``, a rank that fails
    (an exception or a non-zero exit) ends the whole job instead of leaving the
    other ranks waiting (:func:`purenn.parallel.abort_on_error`)."""
    check_callable(main, "script_main: main", "a function main() taking no arguments")
    if not parallel.under_mpi():
        main()
        return
    with parallel.abort_on_error():
        main()


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """Every option's value as JSON-able data (``--out`` as given: None by default)."""
    _check_args(args, "config_of")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vars(args).items())}


# --------------------------------------------------------------------------- data


@attrs.frozen(eq=False)
class Data:
    """A data set ready for the network, plus what the outputs need.

    Attributes:
        train: ``(x, y)``: inputs ``(n, *input_shape)`` in the run's dtype, int labels ``(n,)``.
        val: the same for validation, or None.
        test: the same for the official test split.
        test_raw: the test inputs in raw units (for the misclassified grid).
        kind: ``"image"`` or ``"pendigits"`` (how :mod:`purenn.plots` draws samples).
        class_names: ``k`` strings.
        augment: ``augment(xb, rng) -> xb`` for ``fit``, or None.
        preprocessing: arrays and values stored with the checkpoint so new inputs
            can be prepared the same way (e.g. ``{"mean": ..., "std": ...}``).
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    test_raw: np.ndarray
    kind: str
    class_names: tuple[str, ...] = attrs.field(
        converter=lambda names: _class_names(names, "Data.class_names")
    )
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    preprocessing: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        """Check everything :func:`run` uses, so a bad field fails here, not after training."""
        k = len(self.class_names)
        first = None
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if value is None and name == "val":
                continue
            x, y = _pair(value, f"Data.{name}")
            if not isinstance(value[0], np.ndarray) or not isinstance(value[1], np.ndarray):
                raise TypeError(
                    f"Data.{name} must hold NumPy arrays (x, y); got {type(value[0]).__name__} "
                    f"and {type(value[1]).__name__}: pass np.asarray(x), np.asarray(y)"
                )
            if x.ndim < 2 or x.dtype.kind != "f":
                raise TypeError(
                    f"Data.{name}: x must be float inputs (n, *input_shape), as the network "
                    f"takes them; got {x.dtype} of shape {x.shape}"
                )
            if first is None:
                first = (name, x)
            elif x.shape[1:] != first[1].shape[1:] or x.dtype != first[1].dtype:
                raise ValueError(
                    f"Data.{name}: x must match Data.{first[0]}'s samples {first[1].shape[1:]} "
                    f"{first[1].dtype}; got {x.shape[1:]} {x.dtype}"
                )
            if y.ndim != 1 or y.dtype.kind not in "iu":
                raise TypeError(
                    f"Data.{name}: y must be int class indices of shape (n,); got {y.dtype} of "
                    f"shape {y.shape}"
                )
            if y.min() < 0 or y.max() >= k:
                raise ValueError(
                    f"Data.{name}: y must hold class indices 0..{k - 1}, one per class name; "
                    f"got labels {y.min()}..{y.max()}"
                )
        # the misclassified grid's own checks, run here rather than after training
        # (purenn.plots imports matplotlib: only when a Data is made, as run() draws)
        from purenn.plots import SAMPLE_KINDS, check_samples

        if self.kind not in SAMPLE_KINDS:
            raise ValueError(f"Data.kind must be one of {SAMPLE_KINDS}; got {show(self.kind, 40)}")
        raw, y_test = self.test_raw, self.test[1]
        if not isinstance(raw, np.ndarray):
            raise TypeError(
                "Data.test_raw must be a NumPy array of the test samples in raw units; got "
                f"{type(raw).__name__} {show(raw, 40)}"
            )
        if raw.ndim < 1 or len(raw) != len(y_test):
            raise ValueError(
                f"Data.test_raw must hold the {len(y_test)} test samples in raw units; got shape "
                f"{raw.shape}"
            )
        try:
            check_samples(raw, y_test, y_test, self.kind, None)
        except (TypeError, ValueError) as err:
            raise type(err)(
                f"Data.test_raw (the test samples for purenn.plots.save_misclassified): {err}"
            ) from None
        if self.augment is not None:
            check_callable(
                self.augment, "Data.augment", "a function augment(xb, rng) -> xb (or None)"
            )
        if not isinstance(self.preprocessing, dict) or not storable(self.preprocessing):
            raise TypeError(
                "Data.preprocessing must be a dict that purenn.save can store with the "
                "checkpoint (numbers, str, lists, dicts, arrays); got "
                f"{type(self.preprocessing).__name__} {show(self.preprocessing, 40)}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


def rng_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """The three independent Generators a run of ``--seed seed`` draws from:
    ``(split, initial weights, training)`` (``scripts/baselines.py`` gives its
    PyTorch twin of a run the same split, initial weights and batches).

    Raises:
        TypeError, ValueError: unless ``seed`` is an int >= 0.
    """
    split, weights, training = np.random.SeedSequence(as_seed(seed)).spawn(3)
    return (
        np.random.default_rng(split),
        np.random.default_rng(weights),
        np.random.default_rng(training),
    )


def load_data(
    parser: argparse.ArgumentParser, loader: Callable[..., Any], args: argparse.Namespace
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Call a ``purenn.datasets`` loader with ``--data-dir`` and apply ``--limit``.

    A missing or corrupt data file ends the program with the loader's message
    (which says where it looked and how to fix it), not a traceback.
    """
    from purenn.datasets import CorruptFileError, DataNotFoundError

    _check_parser(parser, "load_data")
    check_callable(
        loader, "load_data: loader", "a function loader(data_dir) -> ((x, y), (x_test, y_test))"
    )
    _check_args(args, "load_data", ("data_dir", "limit"))
    try:
        loaded = loader(args.data_dir)
    except (DataNotFoundError, CorruptFileError) as err:
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    if not isinstance(loaded, tuple | list) or len(loaded) != 2:
        raise TypeError(
            "load_data: loader must return ((x, y), (x_test, y_test)), as the purenn.datasets "
            f"loaders do; got {type(loaded).__name__} {show(loaded, 40)}"
        )
    x, y = _pair(loaded[0], "load_data: the loader's training split")
    xt, yt = _pair(loaded[1], "load_data: the loader's test split")
    return limit_samples(x, y, args.limit), limit_samples(xt, yt, args.limit)


def limit_samples(x: np.ndarray, y: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` samples (all when None): ``--limit`` for smoke runs.

    Raises:
        TypeError, ValueError: unless ``x`` and ``y`` are arrays with the same number
            of rows and ``limit`` is None or an int >= 1.
    """
    x, y = _xy(x, y, "limit_samples")
    if limit is None:
        return x, y
    limit = positive_int(limit, "limit")
    return x[:limit], y[:limit]


def split_train_val(
    x: np.ndarray, y: np.ndarray, args: argparse.Namespace
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Carve the stratified validation split (``--val-fraction``) out of the training data.

    The split is drawn from ``--seed``'s own stream, so it does not change when
    other options (model, optimizer, epochs) do.
    """
    _check_args(args, "split_train_val", ("val_fraction", "seed"))
    if not args.val_fraction:
        return (x, y), None
    rng = rng_streams(args.seed)[0]
    return train_val_split(x, y, args.val_fraction, rng)


def in_raw_units(
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray], scaler: Standardizer
) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Wrap an augmentation of raw data for a network that sees standardised data.

    ``fit``'s ``augment`` hook receives batches as the network sees them
    (standardised floats); the returned function undoes the standardisation
    (``x * std + mean``), applies ``augment`` in raw units, and standardises
    again, returning the batch's dtype. Pure: the batch is not written.

    Raises:
        TypeError: for an ``augment`` that is not callable or a ``scaler`` that is
            not a :class:`purenn.preprocessing.Standardizer`.
    """
    check_callable(augment, "in_raw_units: augment", "a function augment(raw, rng) -> raw")
    if not isinstance(scaler, Standardizer):
        raise TypeError(
            "in_raw_units: scaler must be the purenn.preprocessing.Standardizer the network's "
            f"inputs were standardised with (standardize_fit); got {type(scaler).__name__} "
            f"{show(scaler, 40)}"
        )

    def wrapped(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raw = xb.astype(np.float64) * scaler.std + scaler.mean
        return scaler.apply(augment(raw, rng), xb.dtype)

    return wrapped


def prepare_images(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray],
    args: argparse.Namespace,
    class_names: Sequence[str],
    *,
    flip: bool = False,
    distort: bool = True,
    crop: int = 0,
) -> Data:
    """MNIST-style images ``uint8 (n, 28, 28)`` -> :class:`Data` for ``args.model``.

    Pixels are scaled to [0, 1] (``scale_images``); the MLP gets flat vectors
    ``(n, h*w)``, the CNN channels-first images ``(n, 1, h, w)``. ``--augment``
    adds ``augment_images`` (shifts up to 2 px, rotations up to 10 degrees,
    zoom up to 10%) to each training batch, in whichever layout the network uses.
    With ``flip`` (for left-right symmetric classes, such as Fashion-MNIST's
    clothes; never for digits) ``--augment`` first mirrors a random half of the
    batch left to right (``flip_images``); with ``distort=False`` it leaves out
    the shifts, rotations and zooms. With ``crop > 0`` it also cuts a random
    ``h x w`` window out of each image padded with ``crop`` zero pixels on every
    side (``crop_images``; after the mirroring, before any distortion).
    """
    flip, distort = check_flag(flip, "flip"), check_flag(distort, "distort")
    _check_args(args, "prepare_images", ("model", "dtype", "augment"))
    class_names = _class_names(class_names, "prepare_images: class_names")
    splits = {"test": _pair(test, "prepare_images: test")}
    if splits["test"][0].ndim != 3:
        raise ValueError(
            f"prepare_images expects images (n, h, w); test holds x of shape "
            f"{splits['test'][0].shape}"
        )
    h, w = splits["test"][0].shape[1:]
    splits["train"] = _pair(train, "prepare_images: train")
    if val is not None:
        splits["val"] = _pair(val, "prepare_images: val")
    for name, (x, _) in splits.items():
        if x.shape[1:] != (h, w):
            raise ValueError(
                f"prepare_images expects {name} images of test's size {h}x{w}, (n, {h}, {w}); "
                f"got {x.shape}"
            )
    if isinstance(crop, bool) or not isinstance(crop, numbers.Integral):
        raise TypeError(f"prepare_images: crop must be an int >= 0 (0: none); got {show(crop)}")
    if not 0 <= crop <= max(h, w):
        raise ValueError(
            f"prepare_images: crop must be in [0, {max(h, w)}] (the zero pixels padded on each "
            f"side before a random {h}x{w} window is cut; 0: none); got {show(crop)}"
        )
    crop = int(crop)
    shape = (h * w,) if args.model == "mlp" else (1, h, w)

    def prep(x: np.ndarray) -> np.ndarray:
        return scale_images(x, args.dtype).reshape(x.shape[0], *shape)

    augment = None
    if args.augment:

        def augment(xb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if flip:
                xb = flip_images(xb, rng, image_shape=(h, w))
            if crop:
                xb = crop_images(xb, rng, crop, image_shape=(h, w))
            return augment_images(xb, rng, image_shape=(h, w)) if distort else xb

    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    return Data(
        train=(prep(x_train), y_train),
        val=None if val is None else (prep(splits["val"][0]), splits["val"][1]),
        test=(prep(x_test), y_test),
        test_raw=x_test,
        kind="image",
        class_names=tuple(class_names),
        augment=augment,
        preprocessing={"scale": 1 / 255, "input_shape": list(shape)},
    )


# --------------------------------------------------------------------------- model


def _head(hidden: Sequence[int], activation: str, dropout: float, classes: int) -> list:
    layers: list = []
    for units in hidden:
        layers.append(Dense(units, activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(classes, "softmax"))
    return layers


def build_mlp(
    input_dim: int, hidden: Sequence[int], activation: str, dropout: float, classes: int
) -> Network:
    """``input -> [Dense(h, activation) -> Dropout]* -> Dense(classes, softmax)``.

    ``hidden`` is a list of unit counts (possibly empty), ``dropout`` a rate in
    [0, 1) (0: no Dropout layers), ``classes`` an int >= 1.
    """
    hidden, dropout = _units(hidden, "hidden", allow_empty=True), _dropout(dropout)
    classes = positive_int(classes, "classes")
    return Network(input_dim, _head(hidden, activation, dropout, classes))


def build_cnn(
    input_shape: tuple[int, int, int],
    hidden: Sequence[int],
    activation: str,
    dropout: float,
    classes: int,
) -> Network:
    """``conv32(3x3) -> pool2 -> conv64(3x3) -> pool2 -> flatten -> MLP head``
    (the head as :func:`build_mlp`'s)."""
    hidden, dropout = _units(hidden, "hidden", allow_empty=True), _dropout(dropout)
    classes = positive_int(classes, "classes")
    layers = [
        Conv2D(32, 3, activation=activation),
        MaxPool2D(2),
        Conv2D(64, 3, activation=activation),
        MaxPool2D(2),
        Flatten(),
        *_head(hidden, activation, dropout, classes),
    ]
    return Network(input_shape, layers)


def build_resnet(
    input_shape: tuple[int, int, int],
    widths: Sequence[int],
    dropout: float,
    classes: int,
) -> Network:
    """A small residual CNN with BatchNorm, for 28x28 images::

        stem:     Conv2D(widths[0], 3x3, same) -> BatchNorm -> ReLU
        stage i:  Residual([Conv2D(widths[i], 3x3, stride s, same) -> BatchNorm -> ReLU
                            -> Conv2D(widths[i], 3x3, same) -> BatchNorm],
                           shortcut = identity, or Conv2D(widths[i], 1x1, stride s)
                                      -> BatchNorm when the shape changes) -> ReLU
                  with s = 2 for every stage but the first (s = 1)
        head:     GlobalAvgPool2D -> [Dropout] -> Dense(classes, softmax)

    The convolutions before a BatchNorm are linear (the BatchNorm carries the
    ReLU, in one pass). ``docs/results.md`` writes the runs' networks out.
    ``widths`` is a non-empty list of channel counts.
    """
    widths, dropout = _units(widths, "widths", allow_empty=False), _dropout(dropout)
    classes = positive_int(classes, "classes")
    layers: list = [
        Conv2D(widths[0], 3, padding="same", activation="linear"),
        BatchNorm(activation="relu"),
    ]
    channels = widths[0]
    for i, width in enumerate(widths):
        stride = 1 if i == 0 else 2
        shortcut = None
        if stride != 1 or width != channels:
            shortcut = [Conv2D(width, 1, stride=stride, activation="linear"), BatchNorm()]
        main = [
            Conv2D(width, 3, stride=stride, padding="same", activation="linear"),
            BatchNorm(activation="relu"),
            Conv2D(width, 3, padding="same", activation="linear"),
            BatchNorm(),
        ]
        layers.append(Residual(main, shortcut, activation="relu"))
        channels = width
    layers.append(GlobalAvgPool2D())
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(classes, "softmax"))
    return Network(input_shape, layers)


def make_optimizer(args: argparse.Namespace, steps_per_epoch: int) -> Any:
    """The optimizer of ``--optimizer`` with the ``--schedule`` of ``--lr`` over all steps
    (``args.epochs`` times ``steps_per_epoch``, an int >= 1)."""
    _check_args(args, "make_optimizer", ("optimizer", "schedule", "lr", "weight_decay", "epochs"))
    steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
    for name, options in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
        if getattr(args, name) not in options:
            raise ValueError(
                f"make_optimizer: args.{name} must be one of {options}; got "
                f"{show(getattr(args, name), 40)}"
            )
    total = max(1, args.epochs * steps_per_epoch)
    if args.schedule == "constant":
        lr: Any = schedules.Constant(args.lr)
    elif args.schedule == "cosine":
        lr = schedules.CosineDecay(args.lr, total)
    elif args.schedule == "warmup-cosine":
        warm = min(steps_per_epoch, max(1, total // 2))
        lr = schedules.LinearWarmup(schedules.CosineDecay(args.lr, max(1, total - warm)), warm)
    else:
        lr = schedules.StepDecay(args.lr, max(1, math.ceil(total / 3)), 0.1)
    wd = args.weight_decay
    if args.optimizer == "sgd":
        return optim.sgd(lr, weight_decay=wd)
    if args.optimizer == "momentum":
        return optim.sgd(lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if args.optimizer == "rmsprop":
        return optim.rmsprop(lr, weight_decay=wd)
    if args.optimizer == "adam":
        return optim.adam(lr, weight_decay=wd)
    return optim.adamw(lr, weight_decay=wd)


def _spec(args: argparse.Namespace, data: Data) -> Network:
    classes = len(data.class_names)
    image = args.model in ("cnn", "resnet")
    if len(data.input_shape) != (3 if image else 1):
        raise ValueError(
            f"--model {args.model} takes inputs of shape "
            f"{'(n, channels, h, w)' if image else '(n, features)'}; data.train holds "
            f"{data.train[0].shape}. Prepare the data for the model (prepare_images does, "
            "by args.model)"
        )
    if args.model == "cnn":
        return build_cnn(data.input_shape, args.hidden, args.activation, args.dropout, classes)
    if args.model == "resnet":
        return build_resnet(data.input_shape, args.hidden, args.dropout, classes)
    (dim,) = data.input_shape
    return build_mlp(dim, args.hidden, args.activation, args.dropout, classes)


# --------------------------------------------------------------------------- outputs


def _run_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{args.dataset}-{stamp}"
    for i in range(1000):
        out = base if i == 0 else Path(f"{base}-{i}")
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free run folder next to {base}; pass --out")


def _versions() -> dict[str, str]:
    import matplotlib

    from purenn import __version__

    return {
        "purenn": __version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
    }


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, flush=True)


def run(args: argparse.Namespace, data: Data) -> dict[str, Any]:
    """Train, evaluate on the test set once, and write the run folder.

    Under ``mpiexec`` (or ``--workers``) every rank trains its share of each
    batch (:func:`purenn.parallel.fit`); rank 0 alone prints, evaluates the
    test set and writes the run folder.

    Args:
        args: options from :func:`parse_args`.
        data: the prepared data set.

    Returns:
        The contents of ``metrics.json`` (with ``run_dir`` added, not stored);
        on the other ranks of a parallel run, ``{"rank": r, "run_dir": None}``.
    """
    from purenn.plots import plot_run, save_misclassified

    _check_args(args, "run")
    if not isinstance(data, Data):
        raise TypeError(
            f"run: data must be a purenn.experiment.Data; got {type(data).__name__} "
            f"{show(data, 40)}"
        )
    as_seed(args.seed, "args.seed")
    group = parallel.MPIGroup() if parallel.under_mpi() else None
    root = group is None or group.is_root
    args = argparse.Namespace(**vars(args))  # a copy: the caller's stays as parsed
    args.workers = 1 if group is None else group.size  # config records the ranks that trained
    args.quiet = args.quiet or not root
    _, weights_rng, train_rng = rng_streams(args.seed)
    spec = _spec(args, data)
    params = init(spec, weights_rng, dtype=args.dtype)
    n_train = data.train[0].shape[0]
    steps = math.ceil(n_train / args.batch_size)
    optimizer = make_optimizer(args, steps)
    out = _run_dir(args) if root else None
    n_params = sum(leaf.size for leaf in tree_leaves(params))
    n_val = 0 if data.val is None else data.val[0].shape[0]
    _say(
        args,
        f"{args.dataset}: {n_train} train / {n_val} val / {data.test[0].shape[0]} test; "
        f"{args.model} {' -> '.join(spec.layer_names())} ({n_params:,} parameters); "
        + ("" if group is None else f"{group.size} ranks (MPI); ")
        + f"writing to {out}",
    )
    _say(args, spec.summary())

    t0 = time.perf_counter()
    params, history = (fit if group is None else parallel.fit)(
        params,
        data.train,
        optimizer=optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        rng=train_rng,
        val=data.val,
        monitor=args.monitor,
        patience=args.patience or None,
        augment=data.augment,
        verbose=0 if args.quiet else 1,
    )
    train_seconds = time.perf_counter() - t0
    if out is None:  # another rank of a parallel run: rank 0 evaluates and writes
        return {"rank": group.rank, "run_dir": None}

    # The one look at the test set.
    x_test, y_test = data.test
    result = evaluate(params, x_test, y_test)
    y_pred = predict(params, x_test)

    best = history["best_epoch"]
    at_best = None if best is None else history["epoch"].index(best)
    config = config_of(args)
    metrics = {
        "dataset": args.dataset,
        "model": args.model,
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "test_errors": int(np.count_nonzero(y_pred != y_test)),
        "val_accuracy": None if at_best is None else history["val_accuracy"][at_best],
        "val_loss": None if at_best is None else history["val_loss"][at_best],
        "best_epoch": best,
        "epochs_run": len(history["epoch"]),
        "stopped_early": history["stopped_early"],
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(1, len(history["epoch"])),
        "n_train": n_train,
        "n_val": n_val,
        "n_test": int(x_test.shape[0]),
        "parameters": int(n_params),
        "config": config,
        "versions": _versions(),
        "confusion_matrix": result["confusion"].tolist(),
        "class_names": list(data.class_names),
    }

    save(
        out / "model.npz",
        params,
        config=config,
        history=history,
        preprocessing=data.preprocessing,
    )
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)
    save_misclassified(out / "misclassified.npz", data.test_raw, y_test, y_pred, kind=data.kind)
    if args.figures:
        plot_run(out)

    val_text = (
        ""
        if best is None
        else (f"; best val accuracy {metrics['val_accuracy']:.4f} at epoch {best}")
    )
    _say(
        args,
        f"test accuracy {metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.4f}, "
        f"{metrics['test_errors']} errors){val_text}; trained {len(history['epoch'])} epochs "
        f"in {train_seconds:.1f}s. {'Files and figures' if args.figures else 'Files'} in {out}",
    )
    return {**metrics, "run_dir": str(out)}
