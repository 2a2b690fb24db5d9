"""The fuzz cases of tests/test_fuzz.py and scripts/fuzz.py: every public
function of purenn, called with hostile arguments, and the verdict on each call.

A case is one call: the function's required arguments take well-formed values
chosen by argument name (``params`` a small network's params, ``x`` its
inputs, ...), then one argument, required or optional, is replaced by a hostile
value from :data:`HOSTILE` (wrong type, shape or dtype, NaN/inf, empty, huge,
a params tree that disagrees with its spec). Every array handed over is
read-only, so a function that writes into its inputs fails loudly instead of
corrupting them. Cases are made from an integer seed, so hypothesis (which
draws the seeds) and the long run (which counts them) see the same cases.

Verdicts:

* ``ok``: the call returned (and, for a hostile value that must be refused,
  that is ``silent``: a silently wrong result);
* ``clean``: a ``ValueError``/``TypeError`` (or a documented subclass, or
  ``FileNotFoundError`` for a missing file, or ``ImportError`` for a missing
  optional dependency such as mpi4py) raised by purenn's own code with a
  message;
* ``unhelpful``: any other exception, one raised inside NumPy's, attrs' or
  another library's frames, or one whose message is an internal one;
* ``crash``/``hang`` are seen by the runner (a dead worker, a timeout).

Nothing a case does leaves its scratch folder: there is no network
(:func:`offline`), no process is started (:func:`no_processes`: a call that
gets as far as starting one stops there, which for a hostile value not known
to be well formed is ``silent``), and ``sys.argv`` is a program name alone.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import purenn
import purenn.experiment
import purenn.parallel

PURENN_DIR = str(Path(purenn.__file__).resolve().parent)
TESTS_DIR = str(Path(__file__).resolve().parent)

#: The submodules whose ``__all__`` is public (plus ``purenn.__all__`` itself).
SUBMODULES = (
    "core",
    "tree",
    "optim",
    "schedules",
    "losses",
    "metrics",
    "preprocessing",
    "augment",
    "datasets",
    "checkpoint",
    "callbacks",
    "plots",
    "gradcheck",
    "sklearn",
    "experiment",
    "parallel",
)

# exception classes, not functions to call; their construction is trivial
_NOT_CALLED = {
    "CheckpointWriteError",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "CorruptFileError",
    "DataNotFoundError",
    "GradientCheckError",
}

# messages that come from NumPy or Python internals even when the innermost
# Python frame is purenn's (the raise happened in C, called from purenn)
INTERNAL_MESSAGES = (
    "could not convert",
    "setting an array element with a sequence",
    "operands could not be broadcast",
    "matmul: Input operand",
    "invalid literal for int()",
    "only integer scalar arrays",
    "arrays used as indices",
    "assignment destination is read-only",
    "cannot reshape array",
    "object of type",
    "unsupported operand type",
    "not supported between instances",
    "is not subscriptable",
    "object is not iterable",
    "object is not callable",
    "has no len()",
    "unhashable type",
    "Cannot cast ufunc",
    "ufunc '",
    "must be real number, not",
    "argument must be a string or a number",
    "missing 1 required positional argument",
    "got an unexpected keyword argument",
    "takes from",
    "positional argument",
    "cannot convert float NaN to integer",
    "cannot convert float infinity to integer",
    "values to unpack",
    "cannot unpack non-iterable",
    "slice indices must be integers",
)


class Deadline(BaseException):
    """Raised by the long run's alarm in a case that runs too long; run_case lets
    it through (it is a hang, not an error of the function)."""


class ProcessStart(BaseException):
    """Raised by :func:`no_processes` where a case would start a process; not
    an Exception, so nothing in purenn can swallow it."""


def catalog() -> list[tuple[str, str, Callable]]:
    """``(area, name, function)`` for every public callable, each once."""
    seen: set[int] = set()
    out = []
    for area in ("purenn", *SUBMODULES):
        module = purenn if area == "purenn" else importlib.import_module(f"purenn.{area}")
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if not callable(value) or name in _NOT_CALLED or id(value) in seen:
                continue
            seen.add(id(value))
            out.append((area, name, value))
    return out


# --------------------------------------------------------------------------- values


def read_only(value: Any, depth: int = 0) -> Any:
    """``value`` with every array in it (nested dicts, lists, tuples) marked
    read-only; below 50 levels (the deep-tree case) it is left as it is."""
    if depth > 50:
        return value
    if isinstance(value, np.ndarray):
        value = value.copy() if value.flags.writeable else value
        value.flags.writeable = False
        return value
    if isinstance(value, dict):
        return {k: read_only(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [read_only(v, depth + 1) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(read_only(v, depth + 1) for v in value)
    return value


def _spec() -> purenn.Network:
    return purenn.Network(4, [purenn.Dense(5), purenn.Dense(3, "softmax")])


def _params() -> dict:
    return purenn.init(_spec(), rng=0)


def _x(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)


def _y(n: int = 6) -> np.ndarray:
    return np.arange(n) % 3


def _history() -> dict:
    history = purenn.training.new_history()
    for key, value in zip(
        purenn.training.HISTORY_KEYS, (1, 1.0, 0.5, 1.1, 0.4, 0.1, 0.2), strict=True
    ):
        history[key].append(value)
    return history


def _with_leaf(params: dict, layer: str, leaf: str, value: Any) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()}
    if value is _DROP:
        del out[layer][leaf]
    else:
        out[layer][leaf] = value
    return out


_DROP = object()


def _deep(depth: int) -> dict:
    tree: dict = {"w": np.zeros(1)}
    for _ in range(depth):
        tree = {"a": tree}
    return tree


def _deep_list(depth: int) -> list:
    """``[[[...]]]``: NumPy's seeding crashes the interpreter on it, repr and
    ``==`` raise RecursionError."""
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def _images(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style ``uint8 (n, 8, 8)`` images and their labels."""
    return np.random.default_rng(2).integers(0, 256, (n, 8, 8), dtype=np.uint8), _y(n)


#: A training script's recipes (purenn.experiment.build_parser): one small MLP.
_RECIPE = {"hidden": [5], "lr": 0.1, "epochs": 1, "batch_size": 4, "val_fraction": 0.5}
_ARGV = ["--quiet", "--no-figures"]


def _recipes() -> dict:
    return {"mlp": dict(_RECIPE)}


def _parser() -> Any:
    return purenn.experiment.build_parser("fuzz", "a fuzz run", _recipes())


def _args() -> Any:
    return purenn.experiment.parse_args(_parser(), _recipes(), list(_ARGV))


def _data() -> Any:
    return purenn.experiment.Data(
        train=(_x(), _y()),
        val=(_x(), _y()),
        test=(_x(), _y()),
        test_raw=np.arange(24, dtype=np.uint8).reshape(6, 4),
        kind="image",
        class_names=("a", "b", "c"),
    )


#: Well-formed values by argument name (factories: every case gets fresh ones).
VALID: dict[str, Callable[[], Any]] = {
    "params": _params,
    "params_before": _params,
    "best_params": _params,
    "tree": _params,
    "a": _params,
    "b": _params,
    "reference": _params,
    "grads": lambda: purenn.grads(_params(), _x(), _y()),
    "x": _x,
    "data": _x,
    "y": _y,
    "y_true": _y,
    "y_pred": lambda: _y()[::-1].copy(),
    "train": lambda: (_x(), _y()),
    "rng": lambda: 0,
    "seed": lambda: 0,
    "spec": _spec,
    "layers": lambda: [purenn.Dense(3)],
    "input_shape": lambda: 4,
    "units": lambda: 3,
    "filters": lambda: 2,
    "kernel_size": lambda: 3,
    "pool_size": lambda: 2,
    "rate": lambda: 0.5,
    "shape": lambda: (2, 2),
    "n": lambda: 12,
    "k": lambda: 2,
    "lr": lambda: 0.1,
    "value": lambda: 0.1,
    "init_value": lambda: 0.1,
    "decay_steps": lambda: 10,
    "decay_rate": lambda: 0.5,
    "warmup_steps": lambda: 2,
    "step_size": lambda: 2,
    "max_norm": lambda: 1.0,
    "scale": lambda: 0.5,
    "after": lambda: 2,
    "count": lambda: 1,
    "epoch": lambda: 1,
    "epochs": lambda: 1,
    "step": lambda: 1,
    "batch_size": lambda: 4,
    "val_fraction": lambda: 0.25,
    "history": _history,
    "optimizer": lambda: purenn.optim.sgd(0.1),
    "opt_state": lambda: purenn.optim.sgd(0.1).init(_params()),
    "state": lambda: purenn.optim.sgd(0.1).init(_params()),
    "schedule": lambda: purenn.schedules.Constant(0.1),
    "loss": lambda: "cross_entropy",
    "activation": lambda: "relu",
    "layer": lambda: purenn.Dense(3),
    "name": lambda: "fuzz_name",
    "message": lambda: "a message",
    "path": lambda: "case.npz",
    "folder": lambda: "folder",
    "run_dir": lambda: "run",
    "data_dir": lambda: "data",
    "cm": lambda: np.array([[2, 1], [0, 3]]),
    "confusion": lambda: np.array([[2, 1], [0, 3]]),
    "mean": lambda: np.zeros(4, np.float32),
    "std": lambda: np.ones(4, np.float32),
    "data_min": lambda: np.zeros(4, np.float32),
    "data_max": lambda: np.ones(4, np.float32),
    "output": lambda: purenn.forward(_params(), _x()),
    "snapshots": lambda: [],
    "callbacks": lambda: [],
    "branches": lambda: [[purenn.Dense(4)], [purenn.Dense(4)]],
    "fn": lambda: lambda v: float(np.sum(v**2)),
    # purenn.experiment
    "dataset": lambda: "fuzz",
    "description": lambda: "a fuzz run",
    "recipes": _recipes,
    "parser": _parser,
    "argv": lambda: list(_ARGV),
    "args": _args,
    "loader": lambda: lambda data_dir: ((_x(), _y()), (_x(), _y())),
    "limit": lambda: 4,
    "augment": lambda: lambda xb, rng: xb,
    "scaler": lambda: purenn.preprocessing.standardize_fit(_x()),
    "val": lambda: (_x(), _y()),
    "test": lambda: (_x(), _y()),
    "test_raw": lambda: np.arange(24, dtype=np.uint8).reshape(6, 4),
    "kind": lambda: "image",
    "class_names": lambda: ("a", "b", "c"),
    "input_dim": lambda: 4,
    "hidden": lambda: [5],
    "dropout": lambda: 0.25,
    "classes": lambda: 3,
    "widths": lambda: [2, 4],
    "steps_per_epoch": lambda: 3,
    "main": lambda: lambda: None,
    # purenn.parallel
    "local_ranks": lambda: 2,
    "workers": lambda: 2,
    "command": lambda: [sys.executable, "-c", "pass"],
}

#: Well-formed values for an argument whose name means something else in one
#: function: ``{(module.function, argument): factory}``, before :data:`VALID`.
VALID_IN: dict[tuple[str, str], Callable[[], Any]] = {
    ("purenn.experiment.prepare_images", "train"): _images,
    ("purenn.experiment.prepare_images", "val"): _images,
    ("purenn.experiment.prepare_images", "test"): _images,
    ("purenn.experiment.build_cnn", "input_shape"): lambda: (1, 12, 12),
    ("purenn.experiment.build_resnet", "input_shape"): lambda: (1, 8, 8),
    ("purenn.experiment.run", "data"): _data,
}


def valid_factory(fn: Callable, name: str) -> Callable[[], Any] | None:
    """The factory of a well-formed value for ``fn``'s argument ``name``, or None."""
    where = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
    return VALID_IN.get((where, name), VALID.get(name))


#: Hostile values: ``(tag, factory)``. Tags starting with ``tree:`` are params
#: trees that disagree with their spec.
HOSTILE: list[tuple[str, Callable[[], Any]]] = [
    ("none", lambda: None),
    ("bool", lambda: True),
    ("str", lambda: "abc"),
    ("empty str", lambda: ""),
    ("negative int", lambda: -1),
    ("zero", lambda: 0),
    ("huge int", lambda: 2**63),
    ("big int", lambda: 10**12),
    ("float", lambda: 1.5),
    ("nan", lambda: math.nan),
    ("inf", lambda: math.inf),
    ("-inf", lambda: -math.inf),
    ("complex", lambda: 1 + 1j),
    ("np.int64", lambda: np.int64(2)),
    ("np.float16", lambda: np.float16(1)),
    ("empty list", lambda: []),
    ("list", lambda: [1, 2]),
    ("ragged list", lambda: [[1.0, 2.0], [3.0]]),
    ("empty dict", lambda: {}),
    ("dict", lambda: {"a": 1}),
    ("object", object),
    ("bytes", lambda: b"\x00\xff"),
    ("function", lambda: lambda *a, **k: None),
    ("0-d array", lambda: np.array(1.0, np.float32)),
    ("empty array", lambda: np.zeros((0,), np.float32)),
    ("empty batch", lambda: np.zeros((0, 4), np.float32)),
    ("nan array", lambda: np.full((6, 4), np.nan, np.float32)),
    ("inf array", lambda: np.full((6, 4), np.inf, np.float32)),
    ("float16 array", lambda: _x().astype(np.float16)),
    ("float64 array", lambda: _x().astype(np.float64)),
    ("int array", lambda: np.ones((6, 4), np.int64)),
    ("complex array", lambda: _x().astype(np.complex64)),
    ("bool array", lambda: np.ones((6, 4), bool)),
    ("str array", lambda: np.array([["a"] * 4] * 6)),
    ("object array", lambda: np.array([[None] * 4] * 6, dtype=object)),
    ("wrong width", lambda: np.ones((6, 5), np.float32)),
    ("extra axis", lambda: np.ones((6, 4, 1), np.float32)),
    ("huge batch", lambda: np.broadcast_to(np.float32(0.5), (2**20, 4))),
    ("uint64 labels", lambda: _y().astype(np.uint64)),
    ("negative labels", lambda: -_y() - 1),
    ("label out of range", lambda: _y() + 7),
    ("float labels", lambda: _y().astype(np.float32) + 0.5),
    ("labels of another length", lambda: _y(5)),
    ("column labels", lambda: _y()[:, None]),
    ("tree: missing leaf", lambda: _with_leaf(_params(), "dense_0", "b", _DROP)),
    (
        "tree: extra leaf",
        lambda: _with_leaf(_params(), "dense_0", "extra", np.zeros(5, np.float32)),
    ),
    ("tree: bias (1,)", lambda: _with_leaf(_params(), "dense_0", "b", np.zeros(1, np.float32))),
    (
        "tree: wrong width",
        lambda: _with_leaf(_params(), "dense_0", "w", np.zeros((4, 7), np.float32)),
    ),
    (
        "tree: float16 leaf",
        lambda: _with_leaf(_params(), "dense_1", "w", np.zeros((5, 3), np.float16)),
    ),
    (
        "tree: complex leaf",
        lambda: _with_leaf(_params(), "dense_1", "w", np.zeros((5, 3), np.complex64)),
    ),
    ("tree: int leaf", lambda: _with_leaf(_params(), "dense_1", "b", np.zeros(3, np.int64))),
    ("tree: no spec", lambda: {k: v for k, v in _params().items() if k != purenn.SPEC_KEY}),
    ("tree: spec a string", lambda: {**_params(), purenn.SPEC_KEY: "Network"}),
    ("tree: 2000 deep", lambda: _deep(2000)),
    ("list: 100,000 deep", lambda: _deep_list(100_000)),
    ("a path that does not exist", lambda: "no/such/dir/file.npz"),
]
HOSTILE_TAGS = [tag for tag, _ in HOSTILE]

#: Functions that take a params tree and must refuse one that disagrees with its spec.
STRICT_PARAMS = {
    "forward",
    "grads",
    "loss",
    "logits",
    "predict",
    "loss_and_grads",
    "train_pass",
    "sgd_step",
    "layer_outputs",
    "check_inputs",
    "save",
    "fit",
    "evaluate",
}
# 6-row arrays of any dtype: samples (or labels) enough for a function that only selects rows
_ROWS = {
    "nan array", "inf array", "float16 array", "float64 array", "int array", "complex array",
    "bool array", "str array", "object array", "wrong width", "extra axis", "uint64 labels",
    "negative labels", "label out of range", "float labels", "column labels",
}  # fmt: skip
_TREES = {tag for tag, _ in HOSTILE if tag.startswith("tree:")} - {"tree: 2000 deep"}
_COUNTS = {"np.int64", "huge int", "big int"}

#: For each argument listed, the hostile values that are in fact well formed
#: there: a call that returns (or, for ``launch``, gets as far as starting a
#: process) with any other is ``silent``. ``{"area.function": {argument: tags}}``.
WELL_FORMED: dict[str, dict[str, set[str]]] = {
    "experiment.build_parser": {
        "dataset": {"str", "a path that does not exist"},
        "description": {"str", "empty str", "a path that does not exist", "none"},
        "recipes": set(),
    },
    "experiment.parse_args": {"parser": set(), "recipes": set(), "argv": {"none", "empty list"}},
    "experiment.load_data": {"parser": set(), "loader": set(), "args": set()},
    "experiment.limit_samples": {"x": _ROWS, "y": _ROWS, "limit": {"none", *_COUNTS}},
    "experiment.split_train_val": {"args": set()},
    "experiment.in_raw_units": {"augment": {"function"}, "scaler": set()},
    "experiment.prepare_images": {
        "train": set(),
        "val": {"none"},
        "test": set(),
        "args": set(),
        "class_names": set(),
        "flip": {"bool"},
        "distort": {"bool"},
        "crop": {"zero", "np.int64"},
    },
    "experiment.build_mlp": {
        "input_dim": {"np.int64"},
        "hidden": {"empty list", "list"},
        "activation": set(),
        "dropout": {"zero"},
        "classes": {"np.int64"},
    },
    "experiment.build_cnn": {
        "input_shape": set(),
        "hidden": {"empty list", "list"},
        "activation": set(),
        "dropout": {"zero"},
        "classes": {"np.int64"},
    },
    "experiment.build_resnet": {
        "input_shape": set(),
        "widths": {"list"},
        "dropout": {"zero"},
        "classes": {"np.int64"},
    },
    "experiment.make_optimizer": {"args": set(), "steps_per_epoch": _COUNTS},
    "experiment.run": {"args": set(), "data": set()},
    "experiment.script_main": {"main": {"function"}},
    "experiment.rng_streams": {"seed": {"zero", *_COUNTS}},
    "experiment.Data": {
        "train": set(),
        "val": {"none"},
        "test": set(),
        # numbers in 6 rows the grid draws: (6, 4) as 2x2 images, (6, 4, 1) as 4x1, (6, 1) 1x1
        "test_raw": {"float16 array", "float64 array", "int array", "extra axis", "column labels"},
        "kind": set(),
        "class_names": set(),
        "augment": {"none", "function"},
        "preprocessing": {"empty dict", "dict", *_TREES},
    },
    "parallel.MPIGroup": {"comm": {"none"}},
    "parallel.fit": {"comm": {"none"}},
    "parallel.abort_on_error": {"group": {"none"}},
    "parallel.limit_blas_threads": {"group": {"none"}},
    "parallel.blas_threads": {"local_ranks": _COUNTS, "cores": {"none", *_COUNTS}},
    "parallel.launch": {"workers": {"np.int64"}, "command": set(), "env": {"none", "empty dict"}},
}
MUST_REFUSE_TREE = {
    "tree: missing leaf",
    "tree: extra leaf",
    "tree: bias (1,)",
    "tree: wrong width",
    "tree: float16 leaf",
    "tree: complex leaf",
    "tree: int leaf",
}


#: Functions whose ``**kwargs`` are another's keyword arguments: ``fn ->
#: (the other, names left out)``; their cases fill and corrupt those too.
PASSES_ON: dict[Callable, tuple[Callable, set[str]]] = {
    purenn.parallel.fit: (purenn.training.fit, {"group"}),
}


def arguments(fn: Callable) -> list[inspect.Parameter]:
    """The named parameters of ``fn`` (no ``*args``/``**kwargs``), with those
    its ``**kwargs`` pass on (:data:`PASSES_ON`) as keyword-only ones."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    own = [
        p
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
    ]
    if fn in PASSES_ON:
        other, left_out = PASSES_ON[fn]
        names = {p.name for p in own} | left_out
        own += [p.replace(kind=p.KEYWORD_ONLY) for p in arguments(other) if p.name not in names]
    return own


def make_case(
    fn: Callable, seed: int, target: str | None = None, tag: str | None = None
) -> tuple[dict, str | None, str]:
    """``(kwargs, corrupted argument or None, hostile tag)`` for case ``seed``.

    Seed 0 mod 8 keeps every argument well formed (the baseline call); the
    others corrupt one argument with one hostile value. ``target`` and ``tag``
    given together pick the corrupted argument and hostile value (one exact
    case, as the KNOWN table of tests/test_fuzz.py names them).
    """
    rng = np.random.default_rng(seed)
    params = arguments(fn)
    kwargs: dict[str, Any] = {}
    for p in params:
        if p.default is p.empty:
            factory = valid_factory(fn, p.name)
            if factory is None:  # no well-formed value known: a hostile one stands in
                factory = HOSTILE[int(rng.integers(len(HOSTILE)))][1]
            kwargs[p.name] = factory()
    if target is not None and tag is not None:
        kwargs[target] = dict(HOSTILE)[tag]()
        return read_only(kwargs), target, tag
    target, tag = None, "baseline"
    if params and seed % 8:
        target = params[int(rng.integers(len(params)))].name
        tag, factory = HOSTILE[int(rng.integers(len(HOSTILE)))]
        kwargs[target] = factory()
    return read_only(kwargs), target, tag


def _call(fn: Callable, kwargs: dict) -> Any:
    positional, named = [], {}
    for p in arguments(fn):
        if p.name not in kwargs:
            continue
        if p.kind == p.POSITIONAL_ONLY:
            positional.append(kwargs[p.name])
        else:
            named[p.name] = kwargs[p.name]
    return fn(*positional, **named)


def raising_file(err: BaseException) -> str:
    """The file of the innermost Python frame of ``err``'s traceback."""
    frames = traceback.extract_tb(err.__traceback__)
    return frames[-1].filename if frames else ""


def classify(err: BaseException) -> tuple[str, str]:
    """``("clean" | "unhelpful", why)`` for an exception a public function raised."""
    where = os.path.realpath(raising_file(err))
    message = str(err)
    kind = type(err).__name__
    if where.startswith(TESTS_DIR):
        # raised by a function of ours that the case handed over (a callback,
        # an fn to differentiate): purenn is right to let it through
        return "clean", f"{kind} from the caller's own function"
    documented = isinstance(
        err, ValueError | TypeError | FloatingPointError | FileNotFoundError | ImportError
    ) or type(err).__module__.startswith("purenn")
    if not documented:
        return "unhelpful", f"{kind} (not a documented error)"
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        # the OS's own error for a missing file names the file, wherever the
        # open call sits (np.load, open, os.stat): the documented contract
        return "clean", kind
    if not where.startswith(PURENN_DIR):
        return "unhelpful", f"{kind} raised in {Path(where).name}"
    if not message.strip():
        return "unhelpful", f"{kind} without a message"
    for internal in INTERNAL_MESSAGES:
        if internal in message:
            return "unhelpful", f"{kind} with an internal message: {message[:80]}"
    return "clean", kind


@contextlib.contextmanager
def no_processes() -> Any:
    """No process is started: where one would be (``subprocess``, ``os.fork``,
    ``os.posix_spawn``, ``os.system``), :class:`ProcessStart` is raised instead,
    after ``subprocess`` has checked its arguments and environment."""
    import subprocess

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ProcessStart

    targets = [(subprocess, "_fork_exec")] + [
        (os, name) for name in ("fork", "posix_spawn", "posix_spawnp", "system")
    ]
    with contextlib.suppress(ImportError):  # POSIX: Python 3.10 calls its fork_exec directly
        import _posixsubprocess

        targets.append((_posixsubprocess, "fork_exec"))
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets if hasattr(owner, name)]
    for owner, name, _ in saved:
        setattr(owner, name, refuse)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@contextlib.contextmanager
def offline() -> Any:
    """No network: a download attempt fails like an unreachable server."""
    import socket
    import urllib.request

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network disabled during fuzzing")

    saved = (socket.create_connection, urllib.request.urlopen)
    socket.create_connection = refuse
    urllib.request.urlopen = refuse
    try:
        yield
    finally:
        socket.create_connection, urllib.request.urlopen = saved


def _judge_accepted(case: dict) -> None:
    """Turn an ``ok`` case ``silent`` if its hostile value had to be refused."""
    name, target, tag = case["function"], case["argument"], case["value"]
    if name in STRICT_PARAMS and target in ("params", "a", "tree") and tag in MUST_REFUSE_TREE:
        case.update(verdict="silent", why=f"accepted a params tree with {tag[6:]}")
    well_formed = WELL_FORMED.get(f"{case['area']}.{name}", {}).get(target)
    if well_formed is not None and tag not in well_formed:
        case.update(verdict="silent", why=f"{case['why'] or 'returned'} with {target}=<{tag}>")


def run_case(
    area: str,
    name: str,
    fn: Callable,
    seed: int,
    target: str | None = None,
    tag: str | None = None,
) -> dict:
    """Make and run one case in the current folder; its verdict as a dict.

    Call it with the current folder a scratch folder (functions write files).
    """
    import matplotlib.pyplot as plt

    kwargs, target, tag = make_case(fn, seed, target, tag)
    case = {"area": area, "function": name, "seed": seed, "argument": target, "value": tag}
    argv = sys.argv
    try:
        sys.argv = ["fuzz"]  # parse_args(argv=None) reads it: a command line of no options
        with offline(), no_processes(), np.errstate(all="ignore"):
            result = _call(fn, kwargs)
    except (KeyboardInterrupt, SystemExit, Deadline):
        raise
    except ProcessStart:  # the arguments got through: judged as a call that returned
        case.update(verdict="ok", why="stopped where it would start a process")
        _judge_accepted(case)
    except BaseException as err:  # classifying every escape is the point
        verdict, why = classify(err)
        case.update(verdict=verdict, why=why, message=str(err)[:300])
    else:
        case.update(verdict="ok", why="")
        _judge_accepted(case)
        del result
    finally:
        sys.argv = argv
        plt.close("all")
    return case
