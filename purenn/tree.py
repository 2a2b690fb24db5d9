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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SPEC_KEY = "spec"
"""The reserved key under which a params tree carries its network spec."""

Tree = dict[str, Any]


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf by leaf to one or more trees of the same structure.

    Args:
        fn: called as ``fn(leaf, *other_leaves)`` for every array leaf.
        tree: the tree whose structure the result takes.
        *rest: further trees with exactly the same keys (and the same spec).

    Returns:
        A new tree; the spec entry, if any, is passed through. No input is changed.

    Raises:
        TypeError: if a tree is not a dict.
        ValueError: if the trees differ in keys or in their spec.
    """
    if not isinstance(tree, dict):
        raise TypeError(f"tree_map expects a dict tree; got {type(tree).__name__}")
    return _map(fn, tree, rest, "")


def _map(fn: Callable[..., Any], tree: Tree, rest: tuple[Tree, ...], path: str) -> Tree:
    keys = tree.keys()
    for other in rest:
        if type(other) is not dict or other.keys() != keys:
            raise ValueError(_mismatch(tree, other, path))
    out = {}
    # This runs on every optimizer step: no per-leaf string work on the happy path.
    for key, value in tree.items():
        if key == SPEC_KEY:
            for other in rest:
                spec = other[key]
                if spec is not value and spec != value:
                    raise ValueError(
                        f"trees carry different network specs at {_join(path, key)!r}: "
                        f"{value!r} vs {spec!r}; combine only trees of the same network"
                    )
            out[key] = value
        elif type(value) is dict:
            out[key] = _map(fn, value, tuple(other[key] for other in rest), _join(path, key))
        elif rest:
            out[key] = fn(value, *[other[key] for other in rest])
        else:
            out[key] = fn(value)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _mismatch(tree: Tree, other: Any, path: str) -> str:
    where = repr(path) if path else "the top level"
    if not isinstance(other, dict):
        return f"tree structures differ at {where}: expected a dict, got {type(other).__name__}"
    missing = sorted(tree.keys() - other.keys())
    extra = sorted(other.keys() - tree.keys())
    return (
        f"tree structures differ at {where}: missing keys {missing}, unexpected keys {extra}; "
        "combine only trees made from the same params"
    )


def tree_items(tree: Tree) -> list[tuple[str, Any]]:
    """Return ``(path, leaf)`` pairs, sorted by path, e.g. ``("dense_0/w", array)``.

    The spec entry is skipped. Sorting makes reductions over leaves (norms, sums)
    add up in the same order whatever order the dict was built in.
    """
    items: list[tuple[str, Any]] = []
    _collect(tree, "", items)
    return items


def _collect(tree: Tree, path: str, items: list[tuple[str, Any]]) -> None:
    for key in sorted(tree):
        if key == SPEC_KEY:
            continue
        where = f"{path}/{key}" if path else key
        value = tree[key]
        if isinstance(value, dict):
            _collect(value, where, items)
        else:
            items.append((where, value))


def tree_leaves(tree: Tree) -> list[Any]:
    """Return the array leaves in :func:`tree_items` order (spec excluded)."""
    return [leaf for _, leaf in tree_items(tree)]


def tree_zeros_like(tree: Tree) -> Tree:
    """A tree of zero arrays with each leaf's shape and dtype (spec kept)."""
    return tree_map(np.zeros_like, tree)


def tree_allclose(a: Tree, b: Tree, *, rtol: float = 1e-7, atol: float = 0.0) -> bool:
    """True when the trees have the same structure and all leaves are close."""
    try:
        closes = tree_leaves(tree_map(lambda x, y: np.allclose(x, y, rtol=rtol, atol=atol), a, b))
    except ValueError:
        return False
    return all(closes)


def tree_equal(a: Tree, b: Tree) -> bool:
    """True when the trees have the same structure, spec and bit-identical leaves."""
    try:
        same = tree_leaves(tree_map(lambda x, y: x.dtype == y.dtype and np.array_equal(x, y), a, b))
    except ValueError:
        return False
    return all(same)


def tree_check_like(tree: Tree, reference: Tree, what: str) -> None:
    """Raise unless ``tree`` has the keys, spec, shapes and dtypes of ``reference``.

    Args:
        tree: the tree to check (for example gradients).
        reference: the tree it must match (for example params).
        what: how to call ``tree`` in the message, e.g. ``"grads"``.

    Raises:
        TypeError: if ``tree`` is not a dict.
        ValueError: naming the first leaf whose shape or dtype differs.
    """
    if not isinstance(tree, dict):
        raise TypeError(f"{what} must be a dict tree like params; got {type(tree).__name__}")

    _check_like(reference, tree, what, "")


def _check_like(ref: Tree, tree: Any, what: str, path: str) -> None:
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
            _check_like(value, other, what, where)
        else:
            shape, dtype = getattr(other, "shape", None), getattr(other, "dtype", None)
            if shape != value.shape or dtype != value.dtype:
                raise ValueError(
                    f"{what}[{where!r}] should have shape {value.shape} and dtype {value.dtype} "
                    f"like params; got shape {shape} and dtype {dtype}"
                )
