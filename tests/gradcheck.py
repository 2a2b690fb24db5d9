"""Central-difference gradient checks in float64, shared by the test modules.

Two checks, both generic (nothing here knows about particular layers):

* :func:`check_grads` compares an analytic gradient *tree* with central
  differences of a scalar function of a params tree (any nested dict of float64
  arrays; the spec entry under :data:`purenn.SPEC_KEY` is left alone).
* :func:`check_input_grad` does the same for one array argument, e.g. the
  ``dx`` a layer's backward returns.

Both compare element by element with the error measure

    err = |analytic - numeric| / max(|analytic|, |numeric|, floor)

which is a relative error for every component bigger than ``floor`` and an
absolute error of ``rtol * floor`` below it (where a relative error of a
numerically zero component would be round-off noise). A failure raises an
``AssertionError`` naming the leaf path, the index, the worst error and both
values, plus a line per other failing leaf.

Derivatives use the fourth-order central stencil with step ``eps = 1e-4``:
truncation error ``O(eps**4)`` and round-off ``O(1e-16 / eps)`` are both near
1e-12 for losses of order one, far below ``rtol = 1e-6`` (the plain two-point
stencil cannot do better than about 1e-10 at its best step, too coarse for
1e-6 relative on gradients of 1e-4). Tests of kinked functions (ReLU) must keep
inputs more than ``2 * eps * |x|`` away from the kink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from purenn import SPEC_KEY, tree_items

DEFAULT_EPS = 1e-4
DEFAULT_RTOL = 1e-6
DEFAULT_FLOOR = 1e-4


def _replace_leaf(tree: dict, path: str, leaf: np.ndarray) -> dict:
    """A shallow copy of ``tree`` with the leaf at ``path`` ("a/b/w") swapped."""
    head, _, rest = path.partition("/")
    out = dict(tree)
    out[head] = _replace_leaf(tree[head], rest, leaf) if rest else leaf
    return out


def _central_difference(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float) -> np.ndarray:
    """d f / d x by fourth-order central differences; ``x`` is never written to.

    ``(-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)) / 12h``: truncation error
    O(h**4), so a step of 1e-4 leaves both truncation and round-off near 1e-12.
    """
    grad = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        values = []
        for step in (2 * eps, eps, -eps, -2 * eps):
            moved = x.copy()
            moved[idx] += step
            values.append(float(f(moved)))
        grad[idx] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
    return grad


def numeric_grads(
    loss_fn: Callable[[dict], float], params: dict, *, eps: float = DEFAULT_EPS
) -> dict[str, np.ndarray]:
    """Central-difference gradients of ``loss_fn`` at ``params``, keyed by leaf path.

    Args:
        loss_fn: a scalar function of a params tree; must be deterministic (give
            it a fresh, identically seeded Generator on every call if it draws).
        params: a tree of float64 arrays (the spec entry, if any, is static).
        eps: the step.

    Returns:
        ``{"dense_0/w": array, ...}`` in :func:`purenn.tree_items` order.
    """
    out = {}
    for path, leaf in tree_items(params):
        _require_float64(leaf, path)
        out[path] = _central_difference(
            lambda v, path=path: loss_fn(_replace_leaf(params, path, v)), leaf, eps
        )
    return out


def check_grads(
    loss_fn: Callable[[dict], float],
    params: dict,
    analytic_grads: dict,
    *,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> float:
    """Assert that ``analytic_grads`` matches central differences of ``loss_fn``.

    Args:
        loss_fn: scalar function of a params tree (see :func:`numeric_grads`).
        params: the point, a tree of float64 arrays.
        analytic_grads: a tree with exactly the leaves of ``params``.
        eps: finite-difference step.
        rtol: largest allowed error (see the module docstring).
        floor: magnitude below which the error is measured absolutely.

    Returns:
        The worst error over all leaves (for tests that want to report it).

    Raises:
        AssertionError: naming the leaf path, index, error and both values.
    """
    analytic = dict(tree_items(analytic_grads))
    numeric = numeric_grads(loss_fn, params, eps=eps)
    if analytic.keys() != numeric.keys():
        raise AssertionError(
            f"gradient tree has leaves {sorted(analytic)}, params have {sorted(numeric)}"
        )
    if SPEC_KEY in params and analytic_grads.get(SPEC_KEY) is not params[SPEC_KEY]:
        if analytic_grads.get(SPEC_KEY) != params[SPEC_KEY]:
            raise AssertionError("gradient tree carries a different spec from params")
    failures, worst = [], 0.0
    for path, num in numeric.items():
        report = _compare(path, analytic[path], num, rtol, floor)
        worst = max(worst, report[0])
        if report[0] > rtol:
            failures.append(report)
    if failures:
        failures.sort(key=lambda r: -r[0])
        raise AssertionError(_failure_message(failures, rtol, eps))
    return worst


def check_input_grad(
    fn: Callable[[np.ndarray], float],
    x: np.ndarray,
    analytic: np.ndarray,
    *,
    name: str = "x",
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> float:
    """Assert that ``analytic`` is d fn / d x at ``x`` (float64), as :func:`check_grads`.

    Args:
        fn: scalar function of one array.
        x: the point, float64 of any shape (not written to).
        analytic: the gradient to check, same shape as ``x``.
        name: how to call ``x`` in the failure message.

    Returns:
        The worst error.
    """
    _require_float64(x, name)
    numeric = _central_difference(fn, x, eps)
    report = _compare(name, analytic, numeric, rtol, floor)
    if report[0] > rtol:
        raise AssertionError(_failure_message([report], rtol, eps))
    return report[0]


def _require_float64(a: Any, path: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        raise TypeError(
            f"gradient checks run in float64; {path!r} is "
            f"{getattr(a, 'dtype', type(a).__name__)}. Init with dtype=np.float64"
        )


def _compare(
    path: str, analytic: Any, numeric: np.ndarray, rtol: float, floor: float
) -> tuple[float, str]:
    """(worst error, one report line) for one leaf."""
    analytic = np.asarray(analytic)
    if analytic.shape != numeric.shape:
        return np.inf, f"  {path}: analytic shape {analytic.shape}, expected {numeric.shape}"
    if numeric.size == 0:
        return 0.0, f"  {path}: empty"
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    err = np.abs(analytic - numeric) / scale
    err = np.where(np.isnan(err), np.inf, err)
    idx = np.unravel_index(int(np.argmax(err)), err.shape)
    worst = float(err[idx])
    line = (
        f"  {path}{list(map(int, idx))}: error {worst:.3g}; "
        f"analytic {float(analytic[idx]):.12g} vs numeric {float(numeric[idx]):.12g}"
    )
    return worst, line


def _failure_message(failures: list[tuple[float, str]], rtol: float, eps: float) -> str:
    lines = [f"gradient check failed (rtol={rtol:g}, eps={eps:g}), worst leaf first:"]
    lines += [line for _, line in failures]
    return "\n".join(lines)
