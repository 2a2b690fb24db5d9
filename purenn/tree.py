"""Small helpers for parameter trees: nested dicts of NumPy arrays.

A params tree made by :func:`purenn.init` looks like::

    {"spec": Network(...),
     "dense_0": {"w": array (16, 64), "b": array (64,)},
     "dense_1": {"w": array (64, 10), "b": array (10,)}}

The entry under :data:`SPEC_KEY` is *static*: the helpers pass it through
unchanged and, when several trees are combined, check that they carry the same
spec. Every other non-dict value is a *leaf* (an array an optimizer updates).
Gradient trees and optimizer moments have exactly the same structure, spec
included, so any of them can be mapped together with its params.

A network with stateful layers (BatchNorm) also carries, under
:data:`STATE_KEY`, the layers' state: arrays a training pass computes (running
statistics), not weights. The state is no leaf: :func:`tree_map`,
:func:`tree_items` and :func:`tree_leaves` (and so every optimizer, norm,
clipping and weight decay) never see it. ``tree_map`` passes the first tree's
state through unchanged and does not compare states (a gradient tree carries
the state *after* its pass, params the one before); trees may differ in
having one (optimizer moments have none). :func:`tree_with_state` moves a
state from one tree to another; :func:`tree_equal`, :func:`tree_allclose` and
:func:`tree_check_like` compare states too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from purenn._checks import TooDeepError, nonnegative_float, too_deep

SPEC_KEY = "spec"
"""The reserved key under which a params tree carries its network spec."""
STATE_KEY = "state"
"""The reserved key under which a params tree carries its layers' state
(``{"batchnorm_0": {"mean": ..., "var": ..., "count": ...}, ...}``), when it has any."""
_STATIC = (SPEC_KEY, STATE_KEY)
MAX_TREE_DEPTH = 64
"""The deepest a params, gradient or state tree may nest: levels of dicts, the
top-level dict being level 1 (``{"dense_0": {"w": w}}`` is 2 deep; a network of
residual or parallel containers a few more). Deeper trees are refused with a
``ValueError`` naming the argument, the path and this limit, by every function
that walks a tree (the helpers here, and so every optimizer, norm, clipping,
gradient check and checkpoint), instead of a ``RecursionError`` from Python's
recursion limit (1000 frames by default; 64 leaves room for the caller's own
frames and for what a walk calls)."""

Tree = dict[str, Any]


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf by leaf to one or more trees of the same structure.

    Args:
        fn: called as ``fn(leaf, *other_leaves)`` for every array leaf.
        tree: the tree whose structure the result takes.
        *rest: further trees with exactly the same keys (and the same spec).

    Returns:
        A new tree; the spec entry, if any, is passed through, and so is
        ``tree``'s state entry (never mapped, never compared; see the module
        docstring). No input is changed.

    Raises:
        TypeError: if ``fn`` is not callable or a tree is not a dict.
        ValueError: if the trees differ in keys (the state entry aside) or in
            their spec, or nest deeper than :data:`MAX_TREE_DEPTH`.
    """
    if not callable(fn):
        raise TypeError(f"tree_map expects a callable fn(leaf, ...); got {type(fn).__name__}")
    if not isinstance(tree, dict):
        raise TypeError(f"tree_map expects a dict tree; got {type(tree).__name__}")
    return _map(fn, tree, rest, "", 1)


def _map(fn: Callable[..., Any], tree: Tree, rest: tuple[Tree, ...], path: str, depth: int) -> Tree:
    if depth > MAX_TREE_DEPTH:
        raise too_deep("tree", path, MAX_TREE_DEPTH)
    keys = tree.keys()
    for other in rest:
        if type(other) is not dict or (
            other.keys() != keys and _without_state(other.keys()) != _without_state(keys)
        ):
            raise ValueError(_mismatch(tree, other, path))
    out = {}
    # This runs on every optimizer step: no per-leaf string work on the happy path.
    for key, value in tree.items():
        if key == STATE_KEY:
            out[key] = value
        elif key == SPEC_KEY:
            for other in rest:
                spec = other[key]
                if spec is not value and spec != value:
                    raise ValueError(
                        f"trees carry different network specs at {_join(path, key)!r}: "
                        f"{value!r} vs {spec!r}; combine only trees of the same network"
                    )
            out[key] = value
        elif type(value) is dict:
            out[key] = _map(
                fn, value, tuple(other[key] for other in rest), _join(path, key), depth + 1
            )
        elif rest:
            out[key] = fn(value, *[other[key] for other in rest])
        else:
            out[key] = fn(value)
    return out


def _without_state(keys: Any) -> set:
    return set(keys) - {STATE_KEY}


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _mismatch(tree: Tree, other: Any, path: str) -> str:
    where = repr(path) if path else "the top level"
    if not isinstance(other, dict):
        return f"tree structures differ at {where}: expected a dict, got {type(other).__name__}"
    missing = sorted(_without_state(tree.keys()) - other.keys())
    extra = sorted(_without_state(other.keys()) - tree.keys())
    return (
        f"tree structures differ at {where}: missing keys {missing}, unexpected keys {extra}; "
        "combine only trees made from the same params"
    )


def tree_items(tree: Tree) -> list[tuple[str, Any]]:
    """Return ``(path, leaf)`` pairs, sorted by path, e.g. ``("dense_0/w", array)``.

    The spec and state entries are skipped. Sorting makes reductions over
    leaves (norms, sums) add up in the same order whatever order the dict was
    built in. :func:`state_items` lists the state's arrays the same way.

    Raises:
        TypeError: if ``tree`` is not a dict.
        ValueError: if it nests deeper than :data:`MAX_TREE_DEPTH`.
    """
    if not isinstance(tree, dict):
        raise TypeError(
            f"tree must be a dict tree (nested dicts of arrays, like params); "
            f"got {type(tree).__name__}"
        )
    items: list[tuple[str, Any]] = []
    _collect(tree, "", items, 1)
    return items


def _collect(tree: Tree, path: str, items: list[tuple[str, Any]], depth: int) -> None:
    if depth > MAX_TREE_DEPTH:
        raise too_deep("tree", path, MAX_TREE_DEPTH)
    for key in sorted(tree):
        if key in _STATIC:
            continue
        where = f"{path}/{key}" if path else key
        value = tree[key]
        if isinstance(value, dict):
            _collect(value, where, items, depth + 1)
        else:
            items.append((where, value))


def tree_leaves(tree: Tree) -> list[Any]:
    """Return the array leaves in :func:`tree_items` order (spec and state excluded)."""
    return [leaf for _, leaf in tree_items(tree)]


def state_items(tree: Tree) -> list[tuple[str, Any]]:
    """``(path, array)`` pairs of the tree's state, sorted by path, e.g.
    ``("batchnorm_0/mean", array)``; empty for a tree without state."""
    state = tree.get(STATE_KEY) if isinstance(tree, dict) else None
    items: list[tuple[str, Any]] = []
    if isinstance(state, dict):
        _collect(state, "", items, 2)  # the state sits one level down
    return items


def tree_with_state(tree: Tree, source: Tree) -> Tree:
    """``tree`` carrying ``source``'s state: a shallow copy with ``source``'s
    :data:`STATE_KEY` entry, or ``tree`` itself when ``source`` has none.

    ``sgd_step``, every optimizer and ``fit`` end a step with it, so that the
    new params carry the state of the training pass whose gradients they applied
    (``tree_with_state(new_params, grads)``). An optimizer of your own may do
    the same; ``fit`` does it whatever the optimizer returns.
    """
    if not isinstance(source, dict) or STATE_KEY not in source:
        return tree
    if tree.get(STATE_KEY) is source[STATE_KEY]:
        return tree
    return {**tree, STATE_KEY: source[STATE_KEY]}


def tree_zeros_like(tree: Tree) -> Tree:
    """A tree of zero arrays with each leaf's shape and dtype (spec kept, no state:
    optimizer moments are made this way, and state is no leaf)."""
    out = tree_map(np.zeros_like, tree)
    out.pop(STATE_KEY, None)
    return out


def _states_agree(a: Tree, b: Tree, same: Callable[[Any, Any], bool]) -> bool:
    sa, sb = state_items(a), state_items(b)
    if (STATE_KEY in a) != (STATE_KEY in b) or [p for p, _ in sa] != [p for p, _ in sb]:
        return False
    return all(
        isinstance(x, np.ndarray)
        and isinstance(y, np.ndarray)
        and x.shape == y.shape
        and same(x, y)
        for (_, x), (_, y) in zip(sa, sb, strict=True)
    )


def tree_allclose(a: Tree, b: Tree, *, rtol: float = 1e-7, atol: float = 0.0) -> bool:
    """True when the trees have the same structure and all leaves (and state
    arrays) have the same shapes and are close: ``|a - b| <= atol + rtol * |b|``.

    Shapes must match exactly: a ``(3,)`` leaf is not close to a ``(1,)`` one,
    although NumPy would broadcast them.

    Raises:
        TypeError, ValueError: for an ``rtol`` or ``atol`` that is not a finite float >= 0.
        ValueError: for trees nested deeper than :data:`MAX_TREE_DEPTH`.
    """
    rtol, atol = nonnegative_float(rtol, "rtol"), nonnegative_float(atol, "atol")

    def close(x: np.ndarray, y: np.ndarray) -> bool:
        return np.shape(x) == np.shape(y) and bool(np.allclose(x, y, rtol=rtol, atol=atol))

    try:
        closes = tree_leaves(tree_map(close, a, b))
    except TooDeepError:
        raise
    except ValueError:
        return False
    return all(closes) and _states_agree(a, b, close)


def tree_equal(a: Tree, b: Tree) -> bool:
    """True when the trees have the same structure, spec, state and bit-identical
    leaves.

    Raises:
        ValueError: for trees nested deeper than :data:`MAX_TREE_DEPTH`.
    """

    def same(x: np.ndarray, y: np.ndarray) -> bool:
        return x.dtype == y.dtype and np.array_equal(x, y)

    try:
        equal = tree_leaves(tree_map(same, a, b))
    except TooDeepError:
        raise
    except ValueError:
        return False
    return all(equal) and _states_agree(a, b, same)


def tree_check_like(tree: Tree, reference: Tree, what: str) -> None:
    """Raise unless ``tree`` has the keys, spec, shapes and dtypes of ``reference``.

    Args:
        tree: the tree to check (for example gradients).
        reference: the tree it must match (for example params).
        what: how to call ``tree`` in the message, e.g. ``"grads"``.

    When both trees carry a state, their states are checked alike (keys, shapes,
    dtypes); a tree without one (optimizer moments) matches either way.

    Raises:
        TypeError: if ``tree`` or ``reference`` is not a dict, or ``what`` not a str.
        ValueError: naming the first leaf whose shape or dtype differs, or for
            trees nested deeper than :data:`MAX_TREE_DEPTH`.
    """
    if not isinstance(what, str):
        raise TypeError(f"what must be a str naming the tree; got {type(what).__name__}")
    if not isinstance(tree, dict):
        raise TypeError(f"{what} must be a dict tree like params; got {type(tree).__name__}")
    if not isinstance(reference, dict):
        raise TypeError(
            f"reference must be a dict tree (such as params); got {type(reference).__name__}"
        )
    if STATE_KEY in tree and STATE_KEY in reference:
        _check_like(reference[STATE_KEY], tree[STATE_KEY], what, STATE_KEY, 2)
    _check_like(
        {k: v for k, v in reference.items() if k != STATE_KEY},
        {k: v for k, v in tree.items() if k != STATE_KEY},
        what,
        "",
        1,
    )
    if STATE_KEY in tree and STATE_KEY not in reference:
        raise ValueError(
            f"{what} carries a state ({STATE_KEY!r}) but params have none; combine only "
            "trees of the same network"
        )


def _check_like(ref: Tree, tree: Any, what: str, path: str, depth: int) -> None:
    if depth > MAX_TREE_DEPTH:
        raise too_deep(what, path, MAX_TREE_DEPTH)
    if isinstance(tree, dict) and SPEC_KEY in ref and SPEC_KEY in tree:
        mine, theirs = ref[SPEC_KEY], tree[SPEC_KEY]
        if theirs is not mine and theirs != mine:  # say so before listing key differences
            raise ValueError(
                f"{what} belong to another network: its spec {theirs!r} differs from "
                f"params' spec {mine!r}"
            )
    if not isinstance(tree, dict) or tree.keys() != ref.keys():
        raise ValueError(f"{what} does not match params: {_mismatch(ref, tree, path)}")
    for key, value in ref.items():
        where = f"{path}/{key}" if path else key
        other = tree[key]
        if key == SPEC_KEY:
            if other is not value and other != value:
                raise ValueError(
                    f"{what} belong to another network: its spec {other!r} differs from "
                    f"params' spec {value!r}"
                )
        elif isinstance(value, dict):
            _check_like(value, other, what, where, depth + 1)
        else:
            shape, dtype = getattr(other, "shape", None), getattr(other, "dtype", None)
            if shape != value.shape or dtype != value.dtype:
                raise ValueError(
                    f"{what}[{where!r}] should have shape {value.shape} and dtype {value.dtype} "
                    f"like params; got shape {shape} and dtype {dtype}"
                )
