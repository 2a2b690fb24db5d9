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
  ``FileNotFoundError`` for a missing file) raised by purenn's own code with a
  message;
* ``unhelpful``: any other exception, one raised inside NumPy's, attrs' or
  another library's frames, or one whose message is an internal one;
* ``crash``/``hang`` are seen by the runner (a dead worker, a timeout).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import purenn

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
)


class Deadline(BaseException):
    """Raised by the long run's alarm in a case that runs too long; run_case lets
    it through (it is a hang, not an error of the function)."""


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
}

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
MUST_REFUSE_TREE = {
    "tree: missing leaf",
    "tree: extra leaf",
    "tree: bias (1,)",
    "tree: wrong width",
    "tree: float16 leaf",
    "tree: complex leaf",
    "tree: int leaf",
}


def arguments(fn: Callable) -> list[inspect.Parameter]:
    """The named parameters of ``fn`` (no ``*args``/``**kwargs``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
    ]


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
            factory = VALID.get(p.name)
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
        err, ValueError | TypeError | FloatingPointError | FileNotFoundError
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
    try:
        with offline(), np.errstate(all="ignore"):
            result = _call(fn, kwargs)
    except (KeyboardInterrupt, SystemExit, Deadline):
        raise
    except BaseException as err:  # classifying every escape is the point
        verdict, why = classify(err)
        case.update(verdict=verdict, why=why, message=str(err)[:300])
    else:
        case.update(verdict="ok", why="")
        if name in STRICT_PARAMS and target in ("params", "a", "tree") and tag in MUST_REFUSE_TREE:
            case.update(verdict="silent", why=f"accepted a params tree with {tag[6:]}")
        del result
    finally:
        plt.close("all")
    return case
