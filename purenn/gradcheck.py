"""Gradient checks in float64 for layers, activations, losses and whole networks.

Anyone who writes a layer, an activation or a loss has to show that its
backward is the derivative of its forward. This module is the checker
purenn's own tests use on every built-in::

    import purenn.gradcheck as gc

    gc.check_layer(Scale(), (5,))             # one layer on its own
    gc.check_activation("mish")               # a registered activation
    gc.check_loss(LogCosh(), (3,))            # a loss
    gc.check_grads(params, x, y, rng=0)       # a whole float64 network

Each returns the worst error it saw per leaf (a dict); each failure raises
:class:`GradientCheckError`, an ``AssertionError`` naming the layer, the check
that failed, the leaf path and index, and both values. Below them,
:func:`numeric_grads`, :func:`check_function_grads` and :func:`check_input_grad`
check any scalar function of a params tree or of one array.

**The error measure.** Analytic and numeric derivatives are compared entry by
entry with

    err = |analytic - numeric| / max(|analytic|, |numeric|, floor)

a relative error for every component bigger than ``floor`` and an absolute
error of ``rtol * floor`` below it (where the relative error of a numerically
zero component would be round-off noise). A check fails when ``err > rtol``.

**The derivative.** The fourth-order central stencil with step ``eps = 1e-4``::

    f'(x) ~ (-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)) / 12h

Truncation error ``O(eps**4)`` and round-off ``O(1e-16 / eps)`` are both near
1e-12 for functions of order one, far below ``rtol = 1e-6``; the plain
two-point stencil cannot do better than about 1e-10 at its best step, too
coarse for 1e-6 relative on gradients of 1e-4.

**Kinks.** Central differences are wrong within ``2 * eps`` of a kink (ReLU
at 0, a max-pool tie, ``|d|`` of MAE at 0). The same four values also tell
whether the function is smooth there: for a smooth ``f`` the two-point slopes
with steps ``h`` and ``2h`` agree to ``O(h**2)`` and the second differences
scale exactly as ``h**2``; a kink breaks one or the other by about the size
of the slope's jump. A failure whose every failing entry is explained that way
is flagged (``GradientCheckError.at_kink``, and a line in the message);
:func:`check_layer`, :func:`check_activation` and :func:`check_loss`, which
draw their own inputs, then try fresh inputs (up to :data:`REDRAWS` draws)
before failing, since the analytic gradient cannot be judged at a kink. The
inputs they draw already avoid kinks where they can: values at least 0.5 from
0 and pairwise at least 1e-3 apart (no pooling ties).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from purenn._checks import as_seed, as_shape, check_callable, positive_float, positive_int, show
from purenn.activations import Activation, get_activation
from purenn.base import Context, Layer, Sublayer
from purenn.core import loss as network_loss
from purenn.core import loss_and_grads, params_dtype
from purenn.losses import Loss, as_loss
from purenn.tree import SPEC_KEY, tree_items
from purenn.workspace import Workspace

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_FLOOR",
    "DEFAULT_RTOL",
    "GradientCheckError",
    "check_activation",
    "check_function_grads",
    "check_grads",
    "check_input_grad",
    "check_layer",
    "check_loss",
    "numeric_grads",
]

DEFAULT_EPS = 1e-4
"""Finite-difference step."""
DEFAULT_RTOL = 1e-6
"""Largest allowed error (see the module docstring for the measure)."""
DEFAULT_FLOOR = 1e-4
"""Magnitude below which errors are measured absolutely."""
REDRAWS = 3
"""Input draws :func:`check_layer` and friends try when every failure sits at a kink."""
KINK_RATIO = 0.5
"""A failing entry counts as "at a kink" when the stencil's own inconsistency is at
least this fraction of the analytic-numeric gap (a kink within ``2 * eps`` makes the
two about equal; a wrong but smooth gradient makes the inconsistency ~1e-8 of it)."""
FLOAT32_TOL = 1e-4
"""How far float32 results may stray from float64 ones, relative to the array's largest
magnitude (for ``dx`` and gradients: the largest magnitude among the pass's ``dx`` and
gradients); float32 round-off on small layers is ~1e-7."""

_KINK_HINT = (
    "Every failing entry looks like a kink (the central differences at steps eps and "
    "2*eps disagree): a ReLU pre-activation or a max-pool tie within 2*eps of the point. "
    "Move the inputs away from it (e.g. nonzero biases, distinct values), or check at "
    "another point."
)


class GradientCheckError(AssertionError):
    """A gradient check failed.

    The message says it all; the attributes are for tests and tools.

    Attributes:
        layer: what was checked (``"Dense(units=4, ...)"``, ``"dense_1 (Dense)"``,
            ``"activation 'gelu'"``), or None.
        check: which check failed, e.g. ``"gradient (training pass)"``,
            ``"read-only inputs"``, ``"float32"``.
        path: the leaf (``"x"``, ``"w"``, ``"dense_1/b"``), or None.
        index: the entry of that leaf, or None.
        analytic: the analytic (or actual) value there, or None.
        numeric: the numeric (or expected) value there, or None.
        at_kink: every failing entry looked like a kink (see the module docstring).
    """

    def __init__(
        self,
        message: str,
        *,
        layer: str | None = None,
        check: str = "",
        path: str | None = None,
        index: tuple[int, ...] | None = None,
        analytic: float | None = None,
        numeric: float | None = None,
        at_kink: bool = False,
    ) -> None:
        super().__init__(message)
        self.layer = layer
        self.check = check
        self.path = path
        self.index = index
        self.analytic = analytic
        self.numeric = numeric
        self.at_kink = at_kink
        self._writer: str | None = None  # the call NumPy refused a read-only write in


def _fail(check: str, detail: str, layer: str | None = None, **fields: Any) -> GradientCheckError:
    """A GradientCheckError whose message starts with the layer and the check."""
    where = f"{layer}: " if layer else ""
    return GradientCheckError(
        f"{where}{check} failed: {detail}", layer=layer, check=check, **fields
    )


# --------------------------------------------------------------------------- differences


def _differences(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    eps: float,
    indices: list[tuple[int, ...]],
    f0: float,
) -> tuple[np.ndarray, np.ndarray]:
    """d f / d x at the entries ``indices``, and a kink measure for each.

    ``f`` gets one private float64 copy of ``x``, moved one entry at a time and
    put back (``x`` itself is never written); ``f0 = f(x)``.

    Returns:
        ``(grad, kink)``, float64 arrays of ``len(indices)``: the fourth-order
        estimate, and how far the four values are from those of a smooth function
        (in units of the derivative; ~1e-9 for smooth ``f``).
    """
    moved = np.array(x, dtype=np.float64, copy=True)
    grad = np.empty(len(indices))
    kink = np.empty(len(indices))
    for k, idx in enumerate(indices):
        centre = moved[idx]
        values = []
        for step in (2 * eps, eps, -eps, -2 * eps):
            moved[idx] = centre + step
            values.append(float(f(moved)))
        moved[idx] = centre
        f2p, f1p, f1m, f2m = values
        grad[k] = (-f2p + 8 * f1p - 8 * f1m + f2m) / (12 * eps)
        # smooth f: slope(h) - slope(2h) = -h^2 f'''/2 and S(2h) - 4 S(h) = h^4 f'''' with
        # S(h) = f(x+h) - 2 f(x) + f(x-h); a kink within 2h breaks one of them by O(jump)
        slope_gap = abs((f1p - f1m) / (2 * eps) - (f2p - f2m) / (4 * eps))
        curve_gap = abs((f2p - 2 * f0 + f2m) - 4 * (f1p - 2 * f0 + f1m)) / eps
        kink[k] = max(slope_gap, curve_gap)
    return grad, kink


def _entries(
    shape: tuple[int, ...], max_entries: int | None, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """Every index of ``shape``, or a seeded sample of ``max_entries`` of them (sorted)."""
    size = math.prod(shape)
    if max_entries is None or size <= max_entries:
        return list(np.ndindex(shape))
    flat = np.sort(rng.choice(size, size=max_entries, replace=False))
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in flat]


class _Leaf(NamedTuple):
    """The comparison of one leaf: its worst entry and how many failed."""

    path: str
    worst: float
    index: tuple[int, ...] | None
    analytic: float | None
    numeric: float | None
    failing: int
    checked: int
    at_kink: bool
    problem: str | None = None  # a structural problem (shape, type) instead of values

    def line(self, owner: str | None = None) -> str:
        of = f" in {owner}" if owner else ""
        if self.problem is not None:
            return f"  {self.path}{of}: {self.problem}"
        index = ", ".join(map(str, self.index))
        return (
            f"  {self.path}[{index}]{of}: error {self.worst:.3g} ({self.failing} of {self.checked} "
            f"checked entries fail); analytic {self.analytic:.12g} vs numeric {self.numeric:.12g}"
        )


def _compare(
    path: str,
    analytic: Any,
    shape: tuple[int, ...],
    indices: list[tuple[int, ...]],
    numeric: np.ndarray,
    kink: np.ndarray,
    rtol: float,
    floor: float,
) -> _Leaf:
    """Compare ``analytic`` (an array of ``shape``) with ``numeric`` at ``indices``."""
    if not isinstance(analytic, np.ndarray) or analytic.shape != shape:
        got = f"shape {analytic.shape}" if isinstance(analytic, np.ndarray) else repr(analytic)
        return _Leaf(path, math.inf, None, None, None, 1, 1, False, f"gradient is {got}; "
                     f"expected an array of shape {shape}")  # fmt: skip
    if not indices:
        return _Leaf(path, 0.0, None, None, None, 0, 0, False)
    picked = np.array([analytic[idx] for idx in indices], dtype=np.float64)
    gap = np.abs(picked - numeric)
    err = gap / np.maximum(np.maximum(np.abs(picked), np.abs(numeric)), floor)
    err = np.where(np.isnan(err), np.inf, err)
    failing = err > rtol
    k = int(np.argmax(err))
    # every failing entry explained by the stencil's own inconsistency (NaN gaps are not)
    at_kink = bool(failing.any() and np.all(kink[failing] >= KINK_RATIO * gap[failing]))
    return _Leaf(
        path,
        float(err[k]),
        indices[k],
        float(picked[k]),
        float(numeric[k]),
        int(failing.sum()),
        len(indices),
        at_kink,
    )


def _verdict(
    leaves: list[_Leaf],
    check: str,
    rtol: float,
    eps: float,
    subject: str,
    layer: str | None = None,
    owner: Callable[[str], str | None] = lambda path: None,
) -> dict[str, float]:
    """``{path: worst error}``, or a GradientCheckError listing every failing leaf."""
    failures = sorted((leaf for leaf in leaves if leaf.worst > rtol), key=lambda r: -r.worst)
    if not failures:
        return {leaf.path: leaf.worst for leaf in leaves}
    worst = failures[0]
    at_kink = all(leaf.at_kink for leaf in failures)
    lines = [
        f"{subject} differs from central differences (rtol={rtol:g}, eps={eps:g}); "
        "worst leaf first:",
        *(leaf.line(owner(leaf.path)) for leaf in failures),
    ]
    if at_kink:
        lines.append(_KINK_HINT)
    raise _fail(
        check,
        "\n".join(lines),
        layer if layer is not None else owner(worst.path),
        path=worst.path,
        index=worst.index,
        analytic=worst.analytic,
        numeric=worst.numeric,
        at_kink=at_kink,
    )


def _require_float64(a: Any, path: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        raise TypeError(
            f"gradient checks run in float64; {show(path)} is "
            f"{getattr(a, 'dtype', type(a).__name__)}. Use arrays of dtype np.float64 "
            "(purenn.init(spec, rng, dtype=np.float64) for a network)"
        )


def _replace_leaf(tree: dict, path: str, leaf: np.ndarray) -> dict:
    """A shallow copy of ``tree`` with the leaf at ``path`` ("a/b/w") swapped."""
    head, _, rest = path.partition("/")
    out = dict(tree)
    out[head] = _replace_leaf(tree[head], rest, leaf) if rest else leaf
    return out


# --------------------------------------------------------------------------- functions


def _tolerances(eps: Any, rtol: Any, floor: Any) -> tuple[float, float, float]:
    """The finite-difference step and the error measure's settings, as Python
    floats: each finite and > 0 (a zero step divides by zero; a NaN tolerance
    would pass every check)."""
    return positive_float(eps, "eps"), positive_float(rtol, "rtol"), positive_float(floor, "floor")


def _check_max_entries(max_entries: Any) -> int | None:
    return None if max_entries is None else positive_int(max_entries, "max_entries")


def numeric_grads(
    fn: Callable[[dict], float], params: dict, *, eps: float = DEFAULT_EPS
) -> dict[str, np.ndarray]:
    """Central-difference gradients of ``fn`` at ``params``, every entry of every leaf.

    Args:
        fn: a scalar function of a params tree; it must be deterministic (give it
            a fresh, identically seeded Generator on every call if it draws).
        params: a nested dict of float64 arrays (a network's spec entry is static).
        eps: the step.

    Returns:
        ``{"dense_0/w": array, ...}`` in :func:`purenn.tree_items` order.

    Raises:
        TypeError: for a leaf that is not a float64 array.
    """
    check_callable(fn, "fn", "a function of a params tree returning a float")
    eps = positive_float(eps, "eps")
    f0 = float(fn(params))
    out = {}
    for path, leaf in tree_items(params):
        _require_float64(leaf, path)
        indices = list(np.ndindex(leaf.shape))
        values, _ = _differences(
            lambda v, path=path: fn(_replace_leaf(params, path, v)), leaf, eps, indices, f0
        )
        out[path] = values.reshape(leaf.shape)
    return out


def check_function_grads(
    fn: Callable[[dict], float],
    params: dict,
    analytic: dict,
    *,
    max_entries: int | None = None,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Check an analytic gradient tree against central differences of ``fn``.

    Args:
        fn: a scalar function of a params tree (see :func:`numeric_grads`).
        params: the point, a nested dict of float64 arrays (a network's spec
            entry is static).
        analytic: a tree with exactly the leaves (and shapes) of ``params``.
        max_entries: check at most this many entries of each leaf, a random
            sample seeded by ``seed`` (None: every entry).
        seed: seeds that sample.
        eps: finite-difference step.
        rtol: largest allowed error (see the module docstring).
        floor: magnitude below which the error is measured absolutely.

    Returns:
        ``{leaf path: worst error}``.

    Raises:
        GradientCheckError: naming the leaf path, index, error and both values
            (and the layer, for a network's params).
        TypeError: for a leaf that is not a float64 array.
    """
    check_callable(fn, "fn", "a function of a params tree returning a float")
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    max_entries, seed = _check_max_entries(max_entries), as_seed(seed)
    owner = _owner_in(params)
    want = dict(tree_items(params))
    got = dict(tree_items(analytic)) if isinstance(analytic, dict) else {}
    if not isinstance(analytic, dict) or got.keys() != want.keys():
        missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
        raise _fail(
            "gradient structure",
            f"the gradient tree misses leaves {missing} and has unexpected leaves {extra}; "
            "it must have exactly the leaves of params",
        )
    if SPEC_KEY in params and analytic.get(SPEC_KEY) is not params[SPEC_KEY]:
        if analytic.get(SPEC_KEY) != params[SPEC_KEY]:
            raise _fail("gradient structure", "the gradient tree carries another network spec")
    for path, leaf in want.items():
        _require_float64(leaf, path)
    rng = np.random.default_rng(seed)
    f0 = float(fn(params))
    leaves = []
    for path, leaf in want.items():
        indices = _entries(leaf.shape, max_entries, rng)
        numeric, kink = _differences(
            lambda v, path=path: fn(_replace_leaf(params, path, v)), leaf, eps, indices, f0
        )
        leaves.append(_compare(path, got[path], leaf.shape, indices, numeric, kink, rtol, floor))
    return _verdict(leaves, "gradient", rtol, eps, "the analytic gradient", owner=owner)


def check_input_grad(
    fn: Callable[[np.ndarray], float],
    x: np.ndarray,
    analytic: np.ndarray,
    *,
    name: str = "x",
    max_entries: int | None = None,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> float:
    """Check ``analytic`` against central differences of ``fn`` at ``x``.

    Args:
        fn: a scalar function of one array.
        x: the point, float64 of any shape (never written to).
        analytic: the gradient to check, an array of ``x``'s shape.
        name: what to call ``x`` in the failure message.
        max_entries, seed, eps, rtol, floor: as for :func:`check_function_grads`.

    Returns:
        The worst error.

    Raises:
        GradientCheckError: naming the index, error and both values.
        TypeError: if ``x`` is not a float64 array.
    """
    check_callable(fn, "fn", "a function of one array returning a float")
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    max_entries, seed = _check_max_entries(max_entries), as_seed(seed)
    _require_float64(x, name)
    indices = _entries(x.shape, max_entries, np.random.default_rng(seed))
    numeric, kink = _differences(fn, x, eps, indices, float(fn(x)))
    leaf = _compare(name, analytic, x.shape, indices, numeric, kink, rtol, floor)
    return _verdict([leaf], "gradient", rtol, eps, "the analytic gradient")[name]


def _owner_in(params: dict) -> Callable[[str], str | None]:
    """For a network's params: leaf path -> ``"dense_1 (Dense)"``; else always None."""
    spec = params.get(SPEC_KEY) if isinstance(params, dict) else None
    layout = getattr(spec, "layout", None)
    if layout is None:
        return lambda path: None
    kinds = {
        name: type(layer).__name__ for name, layer in zip(layout.names, spec.layers, strict=True)
    }

    def owner(path: str) -> str | None:
        head = path.partition("/")[0]
        return f"{head} ({kinds[head]})" if head in kinds else None

    return owner


# --------------------------------------------------------------------------- networks


def _rng_source(rng: Any) -> Callable[[], np.random.Generator | None]:
    """A maker of identically seeded Generators (the caller's is never advanced)."""
    if rng is None:
        return lambda: None
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        seed = int(rng)
        return lambda: np.random.default_rng(seed)
    if isinstance(rng, np.random.Generator):
        snapshot = copy.deepcopy(rng)  # the state now; later draws by the caller do not matter
        return lambda: copy.deepcopy(snapshot)
    raise TypeError(
        f"rng must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}"
    )


def check_grads(
    params: dict,
    x: np.ndarray,
    y: Any,
    *,
    rng: Any = None,
    max_entries: int | None = 64,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Check a whole network's gradients: :func:`purenn.loss_and_grads` against
    central differences of the training-mode :func:`purenn.loss`.

    Every call of either gets its own Generator seeded identically from ``rng``,
    so dropout draws the same masks each time and the loss is a deterministic
    function of the params. The inputs must keep every ReLU pre-activation and
    max-pool window more than ``2 * eps`` from a kink (the message says so when
    a failure looks like one).

    Args:
        params: a float64 params tree from ``purenn.init(spec, rng, dtype=np.float64)``.
        x: float64 inputs ``(n, *input_shape)``.
        y: targets for the network's loss.
        rng: None (a network without dropout), an int seed, or a Generator whose
            current state is copied for every call (it is not advanced).
        max_entries: check at most this many entries of each leaf, a random sample
            seeded by ``seed`` (None: every entry). Every leaf is checked.
        seed: seeds that sample.
        eps, rtol, floor: as for :func:`check_function_grads`.

    Returns:
        ``{leaf path: worst error}``, e.g. ``{"dense_0/b": 3e-11, ...}``.

    Raises:
        GradientCheckError: naming the layer, leaf path, index and both values.
        TypeError: for params that are not float64, or an rng of the wrong kind.
        ValueError, TypeError: from purenn for malformed inputs (dropout without an rng).
    """
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    max_entries, seed = _check_max_entries(max_entries), as_seed(seed)
    dtype = params_dtype(params)
    if dtype != np.float64:
        raise TypeError(
            f"check_grads runs in float64; the params are {dtype}. Make them with "
            "purenn.init(spec, rng, dtype=np.float64) (or purenn.tree_map(lambda a: "
            "a.astype(np.float64), params)) and pass float64 x"
        )
    fresh = _rng_source(rng)
    value, analytic = loss_and_grads(params, x, y, rng=fresh())
    again = network_loss(params, x, y, train=True, rng=fresh())
    if not math.isclose(value, again, rel_tol=rtol, abs_tol=rtol * floor):
        raise _fail(
            "loss value",
            f"loss_and_grads gave loss {value!r} but loss(train=True) gave {again!r} for the "
            "same params, batch and rng; the network's loss is not deterministic (does a "
            "layer draw randomness without declaring draws_randomness?)",
            analytic=value,
            numeric=again,
        )

    def fn(p: dict) -> float:
        return network_loss(p, x, y, train=True, rng=fresh())

    return check_function_grads(
        fn, params, analytic, max_entries=max_entries, seed=seed, eps=eps, rtol=rtol, floor=floor
    )


# --------------------------------------------------------------------------- inputs


def _spread(
    rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.5, width: float = 1.0
) -> np.ndarray:
    """Random-signed values of magnitude >= ``low`` that are pairwise >= 1e-3 apart.

    Why: away from 0 (ReLU, |x|) and from each other (no max-pool ties), by far
    more than the ``2 * eps = 2e-4`` a central difference moves an entry.
    Magnitudes fill ``[low, low + width]`` (wider for more than ``500 * width`` entries).
    """
    size = math.prod(shape)
    gap = max(width / size, 2e-3)  # slot width; values sit in the middle half of their slot
    magnitudes = low + gap * (rng.permutation(size) + rng.uniform(0.25, 0.75, size))
    signs = rng.choice(np.array([-1.0, 1.0]), size)
    return (signs * magnitudes).reshape(shape)


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a``."""
    b = np.array(a, copy=True)
    b.flags.writeable = False
    return b


def _invoke(label: str, what: str, fn: Callable, *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """``fn(*args)``, any exception re-raised as a GradientCheckError naming ``what``.

    NumPy's own "assignment destination is read-only" / "output array is
    read-only" ValueError means the code wrote into an array it was lent.
    """
    try:
        return fn(*args, **kwargs)
    except GradientCheckError:
        raise
    except Exception as err:  # the layer's own failure is a failed check, chained
        if isinstance(err, ValueError) and "read-only" in str(err):
            failure = _fail(
                "read-only inputs",
                f"{what} writes into a read-only array it was given (NumPy: {err}); it "
                "must return new arrays, e.g. y = x * s rather than x *= s",
                label,
            )
            failure._writer = what
            raise failure from err
        raise _fail(what, f"it raised {type(err).__name__}: {err}{hint}", label) from err


def _mismatch(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, ...], float, float]:
    """The first index where ``a`` and ``b`` (same shape) differ, and both values."""
    differs = np.argwhere(~((a == b) | (np.isnan(a) & np.isnan(b))))
    idx = tuple(int(i) for i in differs[0]) if len(differs) else (0,) * a.ndim  # dtypes differ
    return idx, float(a[idx]), float(b[idx])


def _same(a: Any, b: Any) -> bool:
    """Bit-for-bit equal arrays (NaNs in the same places), or both None."""
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _fmt(idx: tuple[int, ...]) -> str:
    return ", ".join(map(str, idx))


# --------------------------------------------------------------------------- layers


class _LayerCheck:
    """The state of one :func:`check_layer` call: the layer, its params, the point.

    The random linear functional ``L(x, params) = sum(forward(params, x) * r)``
    with ``r`` drawn once turns the layer into a scalar function, and
    ``backward(params, cache, dy=r)`` is then exactly its gradient. ``x``, the
    params and ``r`` are kept read-only, so every call the check makes also
    checks that the layer writes into none of them.
    """

    def __init__(
        self,
        layer: Layer,
        in_shape: tuple[int, ...],
        seed: int,
        x: np.ndarray,
        max_entries: int | None,
        eps: float,
        rtol: float,
        floor: float,
    ) -> None:
        self.layer = layer
        self.label = repr(layer)
        self.in_shape = in_shape
        self.seed = seed
        self.max_entries, self.eps, self.rtol, self.floor = max_entries, eps, rtol, floor
        self.eval_backward = True  # cleared by probe_eval_backward (MaxPool2D)
        self.out_shape = self._output_shape()
        params = self._init(np.float64)
        r = np.random.default_rng([seed, 1]).normal(size=(x.shape[0], *self.out_shape))
        self.pristine = (x.copy(), _copy_params(params), r.copy())
        self.x, self.r = _frozen(x), _frozen(r)
        self.params = _tree_apply(_frozen, params)
        # {dtype: (state for training passes, state for evaluation passes)}; see states()
        self.states: dict[np.dtype, tuple[Any, Any]] = {}

    # ------------------------------------------------------------ calling the layer

    def ctx(
        self,
        train: bool,
        need_dx: bool = True,
        workspace: Any = None,
        dtype: Any = np.float64,
    ) -> Context:
        """The pass's context. Only a layer that declares ``draws_randomness`` gets an
        rng, a fresh one seeded alike on every call so that the layer is a function.
        A layer with state gets it (read-only): in training passes ``init_state``'s,
        in evaluation passes the state after one training pass (see :meth:`states`)."""
        rng = None
        if train and self.layer.draws_randomness:
            rng = np.random.default_rng([self.seed, 2])
        state = None
        if self.layer.has_state:
            state = self.states[np.dtype(dtype)][0 if train else 1]
        return Context(train, rng, need_dx, workspace, state)

    def make_states(self, dtype: Any) -> None:
        """For a layer with state: ``init_state`` in ``dtype`` (checked), and the state
        ``next_state`` gives after a training pass on ``x`` (checked to be like it,
        and the same when asked twice), both read-only."""
        if not self.layer.has_state:
            return
        dtype = np.dtype(dtype)
        what = f"init_state({self.in_shape}, np.{dtype})"
        init = _invoke(self.label, "init_state", self.layer.init_state, self.in_shape, dtype)
        bad = _tree_problem(init, dtype, counters=True)
        if bad:
            check = "float32" if dtype == np.float32 and "dtype" in bad else "init_state"
            raise _fail(check, f"{what} returned {bad}", self.label)
        init = _tree_apply(_frozen, init)
        self.states[dtype] = (init, None)
        params = self.params
        if dtype != np.float64 and params is not None:
            params = _tree_apply(lambda v: _frozen(v.astype(dtype)), params)
        x = _frozen(self.x.astype(dtype))
        ctx = self.ctx(True, dtype=dtype)
        results = []
        for _ in range(2):
            _, cache = self.forward(params, x, ctx)
            new = _invoke(self.label, "next_state", self.layer.next_state, init, cache, ctx)
            problem = _state_mismatch(new, init)
            if problem:
                raise _fail(
                    "next_state",
                    f"next_state returned a state unlike init_state's: {problem}",
                    self.label,
                )
            results.append(new)
        for path, a in _flat(results[0]).items():
            if not _same(a, _flat(results[1])[path]):
                raise _fail(
                    "repeatability",
                    f"two identical training passes gave different next_state {path!r}",
                    self.label,
                    path=path,
                )
        self.states[dtype] = (init, _tree_apply(_frozen, results[0]))

    @staticmethod
    def mode(train: bool) -> str:
        return "training pass" if train else "evaluation pass"

    def forward(self, params: Any, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        what = f"forward ({self.mode(ctx.train)})"
        hint = ""
        if ctx.rng is None:
            hint = (
                "; ctx.rng is None here: a layer that draws randomness in a training pass "
                "must declare draws_randomness = True"
                if ctx.train
                else "; ctx.rng is None in evaluation passes: draw only when ctx.train"
            )
        out = _invoke(self.label, what, self.layer.forward, params, x, ctx, hint=hint)
        if not isinstance(out, tuple) or len(out) != 2:
            raise _fail(what, f"it returned {type(out).__name__}; expected (y, cache)", self.label)
        y = out[0]
        want = (x.shape[0], *self.out_shape)
        if type(y) is not np.ndarray or y.shape != want or y.dtype != x.dtype:
            got = f"shape {y.shape}, dtype {y.dtype}" if isinstance(y, np.ndarray) else repr(y)
            check = "output_shape"
            if isinstance(y, np.ndarray) and y.shape == want:
                check = "float32" if x.dtype == np.float32 else "dtype"
            raise _fail(
                check,
                f"{what} returned y of {got} for x of shape {x.shape}, dtype {x.dtype}; "
                f"output_shape({self.in_shape}) = {self.out_shape} promises shape {want}, "
                "and y must have the input's dtype",
                self.label,
            )
        return out

    def backward(
        self, params: Any, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, Any]:
        what = f"backward ({self.mode(ctx.train)})"
        out = _invoke(self.label, what, self.layer.backward, params, cache, dy, ctx)
        if not isinstance(out, tuple) or len(out) != 2:
            raise _fail(what, f"it returned {type(out).__name__}; expected (dx, grads)", self.label)
        dx, grads = out
        want = (dy.shape[0], *self.in_shape)
        if (ctx.need_dx or dx is not None) and (
            type(dx) is not np.ndarray or dx.shape != want or dx.dtype != dy.dtype
        ):
            got = f"shape {dx.shape}, dtype {dx.dtype}" if isinstance(dx, np.ndarray) else dx
            check = what
            if isinstance(dx, np.ndarray) and dx.shape == want:
                check = "float32" if dy.dtype == np.float32 else "dtype"
            raise _fail(
                check,
                f"{what} returned dx of {got}; expected an array of the input's shape {want} "
                f"and dy's dtype {dy.dtype}"
                + ("" if ctx.need_dx else " (or None, since ctx.need_dx is False)"),
                self.label,
                path="x",
            )
        self._check_grads_like(grads, params, what)
        return dx, grads

    def _check_grads_like(self, grads: Any, params: Any, what: str) -> None:
        if params is None:
            if grads is not None:
                raise _fail(
                    what,
                    f"the layer has no params but backward returned grads "
                    f"{type(grads).__name__}; return (dx, None)",
                    self.label,
                )
            return
        flat = _flat(params)
        got_flat = _flat(grads) if type(grads) is dict else None
        if got_flat is None or got_flat.keys() != flat.keys():
            got = sorted(got_flat) if got_flat is not None else type(grads).__name__
            raise _fail(
                what,
                f"it returned grads {got}; expected a dict with the keys of the params "
                f"{sorted(flat)}",
                self.label,
            )
        for key, p in flat.items():
            g = got_flat[key]
            if type(g) is not np.ndarray or g.shape != p.shape or g.dtype != p.dtype:
                got = f"shape {g.shape}, dtype {g.dtype}" if isinstance(g, np.ndarray) else g
                check = what
                if isinstance(g, np.ndarray) and g.shape == p.shape:
                    check = "float32" if p.dtype == np.float32 else "dtype"
                raise _fail(
                    check,
                    f"{what} returned grads[{key!r}] of {got}; expected the param's shape "
                    f"{p.shape} and dtype {p.dtype}",
                    self.label,
                    path=key,
                )

    def run(
        self, params: Any, x: np.ndarray, dy: np.ndarray, train: bool, backward: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """One pass: ``(y, dx, grads)`` (the last two None without ``backward``)."""
        ctx = self.ctx(train, dtype=x.dtype)
        y, cache = self.forward(params, x, ctx)
        if not backward:
            return y, None, None
        dx, grads = self.backward(params, cache, dy, ctx)
        return y, dx, grads

    def runs(self, params: Any, x: np.ndarray, dy: np.ndarray) -> None:
        """A training pass and an evaluation pass (its backward too, if supported)."""
        self.run(params, x, dy, True)
        self.run(params, x, dy, False, self.eval_backward)

    # ------------------------------------------------------------ setting up

    def _output_shape(self) -> tuple[int, ...]:
        out = self.layer.output_shape(self.in_shape)  # ValueError: the caller's input_shape
        ok = isinstance(out, tuple) and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in out
        )
        if not ok:
            raise _fail(
                "output_shape",
                f"output_shape({self.in_shape}) returned {out!r}; expected a tuple of "
                "positive ints (the per-sample shape, without the batch axis)",
                self.label,
            )
        return out

    def _init(self, dtype: type) -> dict | None:
        if not self.layer.has_params:
            return None
        rng = np.random.default_rng(self.seed)
        what = f"init_params(rng, {self.in_shape}, np.{np.dtype(dtype)})"
        params = _invoke(
            self.label, "init_params", self.layer.init_params, rng, self.in_shape, np.dtype(dtype)
        )
        ok = type(params) is dict and params and _keys_ok(params)
        if not ok:
            raise _fail(
                "init_params",
                f"{what} returned {params!r}; expected a non-empty dict of arrays (or of "
                "nested dicts of them, for a container) keyed by names without '/'",
                self.label,
            )
        for key, leaf in _flat(params).items():
            if type(leaf) is not np.ndarray or leaf.dtype != dtype:
                got = getattr(leaf, "dtype", type(leaf).__name__)
                raise _fail(
                    "float32" if dtype == np.float32 else "init_params",
                    f"{what} returned {key!r} of dtype {got}; expected {np.dtype(dtype)}",
                    self.label,
                    path=key,
                )
        return params

    # ------------------------------------------------------------ the checks

    def shapes(self) -> None:
        """forward's y is ``(batch, *output_shape)`` of x's dtype, dx is x-shaped and
        the grads are params-shaped (checked inside every call); eval backward probed."""
        self.make_states(np.float64)
        self.run(self.params, self.x, self.r, True)
        ctx = self.ctx(False)
        _, cache = self.forward(self.params, self.x, ctx)
        # Networks run backward only after training passes. A layer whose backward
        # needs what only those keep (MaxPool2D's argmax) refuses an evaluation cache
        # with a ValueError: its evaluation-pass backward checks are then skipped.
        try:
            self.layer.backward(self.params, cache, self.r, ctx)
        except ValueError as err:
            if "read-only" in str(err):
                raise _fail("read-only inputs", str(err), self.label) from err
            self.eval_backward = False
            return
        self.run(self.params, self.x, self.r, False)

    def sublayers(self) -> None:
        """A container's ``sublayers``: :class:`purenn.Sublayer` records, each child
        taking its ``in_shape``, and each child with params named by a ``path`` to
        an entry of the container's params holding arrays of its ``param_shapes``."""
        subs = self.layer.sublayers(self.in_shape)
        if not isinstance(subs, tuple | list):
            raise _fail("sublayers", f"sublayers must return a tuple; got {show(subs)}", self.label)
        for i, item in enumerate(subs):
            if not isinstance(item, Sublayer):
                raise _fail(
                    "sublayers",
                    f"item {i} must be a purenn.Sublayer(path, layer, in_shape); got {show(item)}",
                    self.label,
                )
            where = "/".join(map(str, item.path))
            try:
                item.layer.output_shape(item.in_shape)
            except ValueError as err:
                raise _fail(
                    "sublayers", f"{where} refuses its in_shape {item.in_shape}: {err}", self.label
                ) from err
            if not item.layer.has_params:
                continue
            entry: Any = self.params
            for key in item.path:
                entry = entry.get(key) if isinstance(entry, dict) else None
            want = item.layer.param_shapes(item.in_shape)
            got = _tree_apply(np.shape, entry) if isinstance(entry, dict) else None
            if got != want:
                raise _fail(
                    "sublayers",
                    f"the path {where!r} names {show(got)} in the params init_params made, but "
                    f"its layer's param_shapes({item.in_shape}) are {show(want)}; a path is the "
                    "keys from the container's params down to the child's own dict",
                    self.label,
                    path=where,
                )

    def purity(self) -> None:
        """Nothing lent is changed. Every call gets read-only x, params and dy, so
        NumPy refuses a write (see :meth:`name_the_written`); a layer may also have
        flipped the writeable flag back, so the values are compared too."""
        self.runs(self.params, self.x, self.r)
        x0, params0, r0 = self.pristine
        pairs = [("x", self.x, x0), ("dy", self.r, r0)]
        before_flat = _flat(params0)
        pairs += [(f"params[{k!r}]", v, before_flat[k]) for k, v in _flat(self.params).items()]
        for name, now, before in pairs:
            if not _same(now, before):
                idx, new, old = _mismatch(now, before)
                raise _fail(
                    "read-only inputs",
                    f"a call changed {name}[{_fmt(idx)}] from {old!r} to {new!r}; a layer must "
                    "not write into what it is given",
                    self.label,
                    path=name,
                    index=idx,
                    analytic=new,
                    numeric=old,
                )

    def name_the_written(self, err: GradientCheckError) -> None:
        """After NumPy refused a write: raise a message naming which of x,
        params[...] and dy was written (each lent read-only alone in turn)."""
        names = ["x", *(f"params[{k!r}]" for k in _flat(self.params)), "dy"]
        for name in names:
            x, params, dy = self._lent(only=name)
            for train in (True, False):
                try:
                    self.run(params, x, dy, train, train or self.eval_backward)
                except GradientCheckError as again:
                    if again._writer is None:
                        continue  # some other failure, reported by the check itself
                    raise _fail(
                        "read-only inputs",
                        f"{again._writer} writes into its input {name}, which it must never "
                        f"change (lent read-only; NumPy: {again.__cause__}). Return new "
                        "arrays, e.g. y = x * s rather than x *= s",
                        self.label,
                        path=name,
                    ) from again.__cause__  # NumPy's own ValueError

    def _lent(self, only: str) -> tuple:
        """Writeable copies of (x, params, dy), except ``only``, which is read-only."""

        def lend(name: str, a: np.ndarray) -> np.ndarray:
            return _frozen(a) if name == only else np.array(a, copy=True)

        params = _tree_apply(lambda v, path: lend(f"params[{path!r}]", v), self.params, paths=True)
        return lend("x", self.x), params, lend("dy", self.r)

    def repeatability(self) -> None:
        """Identical calls give identical results, and a later call does not
        overwrite what an earlier one returned (no buffers kept between calls)."""
        for train in (True, False):
            backward = train or self.eval_backward
            ctx1 = self.ctx(train)
            y1, cache1 = self.forward(self.params, self.x, ctx1)
            y1_copy = y1.copy()
            if backward:
                dx1, grads1 = self.backward(self.params, cache1, self.r, ctx1)
                dx1_copy = None if dx1 is None else dx1.copy()
                grads1 = _copy_params(grads1)
                # the same cache again: backward must neither consume nor change it
                dx1b, grads1b = self.backward(self.params, cache1, self.r, ctx1)
                self._same_results("backward twice on one cache", train, (dx1_copy, grads1),
                                   (dx1b, grads1b))  # fmt: skip
            y2, cache2 = self.forward(self.params, self.x, self.ctx(train))
            if _kept_between_calls(y1, y2, self.x, self.params):
                raise _fail(
                    "repeatability",
                    f"two forward calls ({self.mode(train)}) returned y in the same memory, "
                    "which is none of the inputs'; forward must return new arrays (or views "
                    "of its inputs), never buffers it keeps between calls",
                    self.label,
                )
            if not _same(y1, y1_copy):
                raise _fail(
                    "repeatability",
                    f"a second forward ({self.mode(train)}) overwrote the y the first one "
                    "returned; forward must return new arrays (or views of its inputs), "
                    "never buffers it keeps between calls",
                    self.label,
                )
            if not _same(y2, y1_copy):
                idx, new, old = _mismatch(y2, y1_copy)
                raise _fail(
                    "repeatability",
                    f"two identical forward calls ({self.mode(train)}) gave y[{_fmt(idx)}] = "
                    f"{old!r} and then {new!r}; a layer may draw randomness only from ctx.rng",
                    self.label,
                    path="y",
                    index=idx,
                    analytic=new,
                    numeric=old,
                )
            if backward:
                dx2, grads2 = self.backward(self.params, cache2, self.r, self.ctx(train))
                kept = dx1 is not None and _kept_between_calls(dx1, dx2, self.r, self.params)
                if kept or (dx1 is not None and not _same(dx1, dx1_copy)):
                    raise _fail(
                        "repeatability",
                        "a later backward overwrote the dx an earlier one returned; backward "
                        "must return new arrays, never buffers it keeps between calls",
                        self.label,
                        path="x",
                    )
                self._same_results("two identical passes", train, (dx1_copy, grads1),
                                   (dx2, grads2))  # fmt: skip

    def _same_results(self, how: str, train: bool, first: tuple, second: tuple) -> None:
        (dx1, grads1), (dx2, grads2) = first, second
        pairs = [("dx", dx1, dx2)]
        flat1, flat2 = _flat(grads1), _flat(grads2)
        pairs += [(f"grads[{k!r}]", flat1[k], flat2.get(k)) for k in flat1]
        for name, a, b in pairs:
            if _same(a, b):
                continue
            idx = new = old = None
            if a is None or b is None or a.shape != b.shape:
                shapes = [v if v is None else v.shape for v in (a, b)]
                detail = f"{name} was {shapes[0]}, then {shapes[1]}"
            else:
                idx, new, old = _mismatch(b, a)
                detail = f"{name}[{_fmt(idx)}] was {old!r}, then {new!r}"
            raise _fail(
                "repeatability",
                f"{how} ({self.mode(train)}) gave different results: {detail}",
                self.label,
                path=name,
                index=idx,
                analytic=new,
                numeric=old,
            )

    def need_dx(self) -> None:
        """With ``ctx.need_dx=False`` (in forward and backward, as a network's first
        layer gets it) the grads are the same; dx may be None, else it must be right."""
        _, dx, grads = self.run(self.params, self.x, self.r, True)
        ctx = self.ctx(True, need_dx=False)
        _, cache = self.forward(self.params, self.x, ctx)
        dx2, grads2 = self.backward(self.params, cache, self.r, ctx)
        if dx2 is not None and not _same(dx2, dx):
            raise _fail(
                "need_dx",
                "with ctx.need_dx=False backward returned a dx that differs from the one with "
                "need_dx=True; return None (nobody uses it) or the same dx",
                self.label,
                path="x",
            )
        flat, flat2 = _flat(grads), _flat(grads2)
        for key in flat:
            if not _same(flat[key], flat2[key]):
                idx, new, old = _mismatch(flat2[key], flat[key])
                raise _fail(
                    "need_dx",
                    f"with ctx.need_dx=False backward gave grads[{key!r}][{_fmt(idx)}] = {new!r}, "
                    f"with need_dx=True {old!r}; need_dx may only skip dx",
                    self.label,
                    path=key,
                    index=idx,
                    analytic=new,
                    numeric=old,
                )

    def gradient(self, train: bool, x: np.ndarray) -> dict[str, float]:
        """dx and every param gradient against central differences of L at ``x``."""
        params, r = self.params, self.r
        ctx = self.ctx(train)
        _, cache = self.forward(params, x, ctx)
        dx, grads = self.backward(params, cache, r, ctx)

        def functional(p: Any, v: np.ndarray) -> float:
            y, _ = self.forward(p, v, self.ctx(train))
            return float(np.sum(y * r))  # L = sum(y * r), so dL/dy = r

        targets = [("x", dx, x, lambda v: functional(params, v))]
        analytic = _flat(grads)
        for key, leaf in _flat(params).items():
            targets.append(
                (
                    key,
                    analytic.get(key),
                    leaf,
                    lambda v, key=key: functional(_replace_leaf(params, key, v), x),
                )
            )
        rng = np.random.default_rng([self.seed, 3])
        f0 = functional(params, x)
        leaves = []
        for path, analytic, point, f in targets:
            indices = _entries(point.shape, self.max_entries, rng)
            numeric, kink = _differences(f, point, self.eps, indices, f0)
            leaves.append(
                _compare(path, analytic, point.shape, indices, numeric, kink, self.rtol, self.floor)
            )
        subject = "backward's gradient of L = sum(forward(x) * r)"
        result = _verdict(
            leaves, f"gradient ({self.mode(train)})", self.rtol, self.eps, subject, self.label
        )
        prefix = "train" if train else "eval"
        return {f"{prefix}/{path}": err for path, err in result.items()}

    def float32(self) -> None:
        """float32 in, float32 out (y, dx, grads; dtypes are checked in every call),
        init_params honours float32, and, for a layer that draws nothing, the values
        are close to the float64 ones (float32 draws differ from float64 draws)."""
        self._init(np.float32)
        self.make_states(np.float32)
        params = _tree_apply(lambda v: _frozen(v.astype(np.float32)), self.params)
        x, dy = _frozen(self.x.astype(np.float32)), _frozen(self.r.astype(np.float32))
        for train in (True, False):
            backward = train or self.eval_backward
            ours = self.run(params, x, dy, train, backward)
            if self.layer.draws_randomness:
                continue
            ref = self.run(self.params, self.x, self.r, train, backward)
            paths = list(_flat(params))
            names = ["y", "dx", *(f"grads[{k!r}]" for k in paths)]
            got = [ours[0], ours[1], *(_flat(ours[2])[k] for k in paths)]
            want = [ref[0], ref[1], *(_flat(ref[2])[k] for k in paths)]
            # a gradient that cancels to ~0 in exact arithmetic (a bias before a
            # BatchNorm) keeps the float32 round-off of the terms it sums: measure the
            # gradients against the largest of them, y against itself
            pass_scale = max(
                (float(np.max(np.abs(b), initial=0.0)) for b in want[1:] if b is not None),
                default=0.0,
            )
            for name, a, b in zip(names, got, want, strict=True):
                if a is None or b is None:
                    continue
                scale = max(float(np.max(np.abs(b), initial=0.0)), self.floor)
                if name != "y":
                    scale = max(scale, pass_scale)
                gap = np.abs(a.astype(np.float64) - b)
                if not np.all(gap <= FLOAT32_TOL * scale):
                    idx = tuple(int(i) for i in np.unravel_index(np.argmax(gap), gap.shape))
                    raise _fail(
                        "float32",
                        f"in a {self.mode(train)} the float32 {name}[{_fmt(idx)}] is "
                        f"{float(a[idx])!r} but the float64 one {float(b[idx])!r} (allowed: "
                        f"{FLOAT32_TOL:g} of the largest magnitude, {scale:.3g})",
                        self.label,
                        path=name,
                        index=idx,
                        analytic=float(a[idx]),
                        numeric=float(b[idx]),
                    )

    def workspace(self) -> None:
        """A training pass lent a :class:`purenn.Workspace` gives the results of one
        without, twice: the second pass gets the first one's buffers back, dirty,
        which catches code that reads a work array before filling it."""
        y, dx, grads = self.run(self.params, self.x, self.r, True)
        ws = Workspace()
        for attempt in ("first", "second"):
            ws.begin_pass()
            try:
                ctx = self.ctx(True, workspace=ws.scoped("layer"))
                y2, cache = self.forward(self.params, self.x, ctx)
                dx2, grads2 = self.backward(self.params, cache, self.r, ctx)
                pairs = [("y", y, y2), ("dx", dx, dx2)]
                flat, flat2 = _flat(grads), _flat(grads2)
                pairs += [(f"grads[{k!r}]", flat[k], flat2[k]) for k in flat]
                for name, a, b in pairs:
                    if a is None or b is None:
                        continue
                    # bit-identical is the promise; allow summation-order round-off
                    scale = max(float(np.max(np.abs(a), initial=0.0)), self.floor)
                    gap = np.abs(b - a)
                    if not np.all(gap <= 1e-12 * scale):
                        idx = tuple(int(i) for i in np.unravel_index(np.argmax(gap), gap.shape))
                        raise _fail(
                            "workspace",
                            f"the {attempt} training pass with a purenn.Workspace gave "
                            f"{name}[{_fmt(idx)}] = {float(b[idx])!r}, one without "
                            f"{float(a[idx])!r}; arrays from ctx.workspace are uninitialised "
                            "and reused from pass to pass: fill every element you read",
                            self.label,
                            path=name,
                            index=idx,
                            analytic=float(b[idx]),
                            numeric=float(a[idx]),
                        )
            finally:
                ws.end_pass()


def _kept_between_calls(a: Any, b: Any, *inputs: Any) -> bool:
    """Whether two calls' results share memory that belongs to none of ``inputs``
    (views of the inputs, as Flatten and an evaluation-mode Dropout return, are fine)."""
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return False
    if not np.may_share_memory(a, b):
        return False
    lent = [
        v for item in inputs for v in (_flat(item).values() if isinstance(item, dict) else [item])
    ]
    return not any(isinstance(v, np.ndarray) and np.may_share_memory(a, v) for v in lent)


def _copy_params(params: dict | None) -> dict | None:
    return _tree_apply(lambda v: np.array(v, copy=True), params)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A layer's (possibly nested) params dict as ``{"conv2d_0/w": leaf, ...}`` ({} for None)."""
    out: dict[str, Any] = {}
    for key, value in (tree or {}).items():
        path = f"{prefix}{key}"
        if type(value) is dict:
            out.update(_flat(value, path + "/"))
        else:
            out[path] = value
    return out


def _tree_apply(fn: Callable, tree: Any, paths: bool = False, prefix: str = "") -> Any:
    """``fn`` on every leaf of a nested dict (``fn(leaf, path)`` with ``paths``); None stays."""
    if tree is None:
        return None
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if type(value) is dict:
            out[key] = _tree_apply(fn, value, paths, path + "/")
        else:
            out[key] = fn(value, path) if paths else fn(value)
    return out


def _keys_ok(tree: dict) -> bool:
    return all(
        isinstance(k, str) and "/" not in k and (type(v) is not dict or (v and _keys_ok(v)))
        for k, v in tree.items()
    )


def _tree_problem(tree: Any, dtype: np.dtype, counters: bool) -> str | None:
    """What is wrong with a state tree (a message), or None."""
    if type(tree) is not dict or not tree or not _keys_ok(tree):
        return (
            f"{tree!r}; expected a non-empty dict of arrays (or nested dicts of them) "
            "keyed by names without '/'"
        )
    for path, leaf in _flat(tree).items():
        ok = type(leaf) is np.ndarray and (
            leaf.dtype == dtype or (counters and leaf.dtype == np.int64)
        )
        if not ok:
            got = getattr(leaf, "dtype", type(leaf).__name__)
            return f"{path!r} of dtype {got}; expected {dtype} (or int64 for a counter)"
    return None


def _state_mismatch(state: Any, like: dict) -> str | None:
    if type(state) is not dict:
        return f"a {type(state).__name__}, not a dict"
    mine, theirs = _flat(state), _flat(like)
    if mine.keys() != theirs.keys():
        return f"keys {sorted(mine)} instead of {sorted(theirs)}"
    for path, ref in theirs.items():
        v = mine[path]
        if type(v) is not np.ndarray or v.shape != ref.shape or v.dtype != ref.dtype:
            got = f"{v.shape} {v.dtype}" if isinstance(v, np.ndarray) else type(v).__name__
            return f"{path!r} is {got} instead of {ref.shape} {ref.dtype}"
    return None


def check_layer(
    layer: Layer,
    input_shape: Any,
    *,
    seed: int = 0,
    batch: int = 3,
    x: np.ndarray | None = None,
    max_entries: int | None = 256,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Check a layer on its own, as a network would use it.

    With params from ``layer.init_params(np.random.default_rng(seed), input_shape,
    np.float64)`` and a random ``r`` of the output's shape, the layer becomes the
    scalar function ``L = sum(forward(params, x) * r)``, whose gradients are
    what ``backward(params, cache, dy=r)`` returns. In order, it checks that:

    1. ``forward`` returns ``(batch, *output_shape(input_shape))`` in the input's
       dtype, ``backward`` an input-shaped ``dx`` and params-shaped grads, in
       training and evaluation passes;
    2. nothing the layer is given is written: every call gets ``x``, the params
       and ``dy`` as read-only arrays (NumPy's refusal is reported naming the
       array), and their values are compared afterwards;
    3. repeated calls give identical results, and a later call does not
       overwrite an earlier call's arrays;
    4. ``ctx.need_dx=False`` leaves the grads alone (dx may then be None);
    5. ``dx`` and every param gradient match central differences of ``L`` in
       float64, in a training pass and in an evaluation pass;
    6. float32 params and inputs give float32 ``y``, ``dx`` and grads (close to
       the float64 values for a layer that draws no randomness), and
       ``init_params`` makes float32 params when asked;
    7. for a layer that ``uses_workspace``: a pass lent a :class:`purenn.Workspace`
       gives the results of one without, also when its buffers are reused;
    8. for a container (a layer whose ``sublayers`` is not empty): every item
       is a :class:`purenn.Sublayer` whose layer takes its ``in_shape``, and the
       ``path`` of each child with params leads to an entry of the params holding
       arrays of that child's ``param_shapes``.

    A container's (nested) params are checked leaf by leaf, with paths such as
    ``"train/conv2d_1/w"``. A layer with state (``init_state``) gets it as
    ``ctx.state``, read-only: ``init_state``'s in training passes, and in
    evaluation passes the state ``next_state`` gives after one training pass on
    ``x``; ``init_state`` is checked to return arrays of the asked dtype (float32
    too, int64 counters allowed) and ``next_state`` to return a state like it,
    the same when called twice.

    A layer that ``draws_randomness`` gets ``ctx.rng`` in training passes, a fresh
    Generator seeded alike for every call, so its training pass is a function;
    other layers get ``ctx.rng = None``. Every pass has ``ctx.workspace = None``
    except in check 7.

    A backward that refuses an evaluation-mode cache with a ``ValueError``, as
    :class:`purenn.MaxPool2D` does (it needs the argmax only a training pass
    records), skips the evaluation-pass backward checks: networks run backward
    only after training passes. Its evaluation forward is still checked.

    Inputs: unless ``x`` is given, values of magnitude at least 0.5 and pairwise
    at least 1e-3 apart, with random signs (no ReLU input at 0, no pooling ties);
    if every failing entry of a gradient check still looks like a kink (a hidden
    ReLU pre-activation near 0; see the module docstring), fresh inputs are
    drawn, up to :data:`REDRAWS` times.

    Args:
        layer: an instance of a :class:`purenn.Layer` subclass (it need not be
            registered).
        input_shape: the per-sample input shape, without the batch axis
            (``(5,)`` or ``5``, ``(2, 6, 6)`` for images).
        seed: seeds the params, the inputs, ``r``, the rng and the entry samples.
        batch: samples in the batch.
        x: float64 inputs of shape ``(batch, *input_shape)`` to check at instead
            of random ones (for a layer with a restricted domain).
        max_entries: check at most this many entries of each of ``x`` and the
            params, a seeded random sample (None: all).
        eps, rtol, floor: as for :func:`check_function_grads`.

    Returns:
        The worst error per checked gradient: ``{"train/x": ..., "train/w": ...,
        "eval/x": ..., ...}`` (no ``"eval/..."`` keys when the evaluation
        backward was skipped).

    Raises:
        GradientCheckError: for any failed check, naming the layer, the check,
            the array (and entry) and both values.
        TypeError: if ``layer`` is not a purenn.Layer, or for malformed arguments.
        ValueError: if the layer's ``output_shape`` refuses ``input_shape``.
    """
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    max_entries, seed = _check_max_entries(max_entries), as_seed(seed)
    if not isinstance(layer, Layer):
        raise TypeError(
            f"check_layer expects an instance of a purenn.Layer subclass; got "
            f"{type(layer).__name__}. Pass e.g. Dense(4), not the class"
        )
    in_shape = as_shape(input_shape, "input_shape")
    batch = positive_int(batch, "batch")
    given = x is not None
    if given:
        _require_float64(x, "x")
        if x.shape[1:] != in_shape or x.ndim != len(in_shape) + 1 or x.shape[0] < 1:
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, in_shape))}); got {x.shape}"
            )
    else:
        x = _spread(np.random.default_rng([seed, 0]), (batch, *in_shape))
    check = _LayerCheck(layer, in_shape, seed, x, max_entries, eps, rtol, floor)
    worst: dict[str, float] = {}
    try:
        check.shapes()  # 1
        check.purity()  # 2
        check.repeatability()  # 3
        check.need_dx()  # 4
        for train in (True, False):  # 5
            if train or check.eval_backward:
                worst.update(_redrawn(lambda v, t=train: check.gradient(t, v), x, given, seed))
        check.float32()  # 6
        if layer.uses_workspace:
            check.workspace()  # 7
        check.sublayers()  # 8
    except GradientCheckError as err:
        if err._writer is not None:
            check.name_the_written(err)
        raise
    return worst


def _redrawn(run: Callable[[np.ndarray], dict], x: np.ndarray, given: bool, seed: int) -> dict:
    """``run(x)``; while it fails only at kinks, ``run`` at fresh inputs (not for a given x)."""
    for attempt in range(REDRAWS):
        try:
            return run(x)
        except GradientCheckError as err:
            if given or not err.at_kink or attempt == REDRAWS - 1:
                raise
            x = _spread(np.random.default_rng([seed, 10 + attempt]), x.shape)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- activations


def check_activation(
    activation: str | Activation,
    shape: Any = (4, 5),
    *,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Check an activation's ``backward(z, a, da)`` against central differences.

    The scalar function is ``L(z) = sum(forward(z) * da)`` for a random ``da``,
    so ``backward(z, forward(z), da)`` must be its gradient. Also checked: both
    functions keep the shape and dtype (float32 too), write into none of their
    arguments (given read-only), and give identical results when called again;
    for one registered with ``in_place=True``, that ``out=`` gets (and is
    returned with) the same result, in float64 and float32.
    ``z`` is drawn as in :func:`check_layer`: at least 0.5 from 0 (ReLU, ELU),
    pairwise distinct; redrawn if every failure looks like a kink.

    Args:
        activation: a registered name, or an
            :class:`purenn.activations.Activation` ``(name, forward, backward)``
            (to check one before registering it).
        shape: the shape of ``z``, e.g. ``(batch, features)``; functions that work
            along the last axis (softmax) see rows of it.
        seed: seeds ``z`` and ``da``.
        eps, rtol, floor: as for :func:`check_function_grads`.

    Returns:
        ``{"z": worst error}``.

    Raises:
        GradientCheckError: naming the activation, the check and the values.
        ValueError: for an unregistered name.
    """
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    seed = as_seed(seed)
    act = activation if isinstance(activation, Activation) else get_activation(activation)
    label = f"activation {act.name!r}"
    shape = as_shape(shape, "shape")
    da = np.random.default_rng([seed, 1]).normal(size=shape)

    def fwd(z: np.ndarray, what: str) -> np.ndarray:
        a = _invoke(label, f"forward ({what})", act.forward, z)
        if type(a) is not np.ndarray or a.shape != z.shape or a.dtype != z.dtype:
            got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else repr(a)
            check = "float32" if isinstance(a, np.ndarray) and a.shape == z.shape else "forward"
            raise _fail(check, f"forward({what} z) returned {got}; expected z's shape "
                        f"{z.shape} and dtype {z.dtype}", label)  # fmt: skip
        return a

    def bwd(z: np.ndarray, a: np.ndarray, g: np.ndarray, what: str) -> np.ndarray:
        dz = _invoke(label, f"backward ({what})", act.backward, z, a, g)
        if type(dz) is not np.ndarray or dz.shape != z.shape or dz.dtype != z.dtype:
            got = f"shape {dz.shape}, dtype {dz.dtype}" if isinstance(dz, np.ndarray) else dz
            check = "float32" if isinstance(dz, np.ndarray) and dz.shape == z.shape else "backward"
            raise _fail(check, f"backward({what} z, a, da) returned {got}; expected z's "
                        f"shape {z.shape} and dtype {z.dtype}", label)  # fmt: skip
        return dz

    def run(z: np.ndarray) -> dict[str, float]:
        # read-only arguments, identical results on a second call
        zr, gr = _frozen(z), _frozen(da)
        a = fwd(zr, "float64")
        ar = _frozen(a)
        dz = bwd(zr, ar, gr, "float64")
        if not (_same(fwd(zr, "float64"), a) and _same(bwd(zr, ar, gr, "float64"), dz)):
            raise _fail("repeatability", "two identical calls gave different results", label)
        z32, g32 = _frozen(z.astype(np.float32)), _frozen(da.astype(np.float32))
        a32 = _frozen(fwd(z32, "float32"))
        dz32 = bwd(z32, a32, g32, "float32")
        if act.in_place:
            for zz, aa, gg, want_a, want_dz in ((zr, ar, gr, a, dz), (z32, a32, g32, a32, dz32)):
                _check_out(label, act.forward, (zz,), want_a, "forward")
                _check_out(label, act.forward, (zz,), want_a, "forward", over_input=True)
                _check_out(label, act.backward, (zz, aa, gg), want_dz, "backward")
                # reads only a and da: z may be a itself
                _check_out(label, act.backward, (aa, aa, gg), want_dz, "backward given z = a")

        def functional(v: np.ndarray) -> float:
            return float(np.sum(act.forward(v) * da))

        indices = list(np.ndindex(shape))
        numeric, kink = _differences(functional, z, eps, indices, functional(z))
        leaf = _compare("z", dz, shape, indices, numeric, kink, rtol, floor)
        subject = "backward(z, a, da) as the gradient of L = sum(forward(z) * da)"
        return _verdict([leaf], "gradient", rtol, eps, subject, label)

    z = _spread(np.random.default_rng([seed, 0]), shape)
    return _redrawn(run, z, False, seed)


def _check_out(
    label: str,
    fn: Callable,
    args: tuple,
    want: np.ndarray,
    what: str,
    over_input: bool = False,
) -> None:
    """For ``in_place``: ``fn(*args, out=buf)`` fills and returns ``buf`` with the
    result of ``fn(*args)`` (``buf`` starts as NaN, so an element left unwritten
    shows); with ``over_input``, ``buf`` is a copy of the first argument, passed
    as that argument too (``forward(z, out=z)``)."""
    if over_input:
        buf = np.array(args[0], dtype=want.dtype)
        args = (buf, *args[1:])
        what = f"{what} over its own input"
    else:
        buf = np.full(want.shape, np.nan, want.dtype)
    got = _invoke(label, f"{what}(..., out=)", fn, *args, out=buf)
    scale = max(float(np.max(np.abs(want), initial=0.0)), DEFAULT_FLOOR)
    gap = np.abs(buf.astype(np.float64) - want)
    gap = np.where(np.isnan(gap), np.inf, gap)
    if got is not buf or not np.all(gap <= 4 * np.finfo(want.dtype).eps * scale):
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(gap), gap.shape))
        detail = (
            f"it returned {type(got).__name__}, not the out array"
            if got is not buf
            else f"out[{_fmt(idx)}] is {float(buf[idx])!r}, without out= {float(want[idx])!r}"
        )
        raise _fail(
            "out=",
            f"{what} is registered with in_place=True, but with a {want.dtype} out= {detail}; "
            "it must write its result into out and return out, read only a and da in "
            "backward, and work elementwise in forward",
            label,
            index=idx,
            analytic=float(buf[idx]),
            numeric=float(want[idx]),
        )


# --------------------------------------------------------------------------- losses


def _default_targets(loss: Loss, n: int, out_shape: tuple, rng: np.random.Generator) -> Any:
    """The first of (int labels in [0, k), floats in [0, 1] of the output's shape)
    that ``loss.check_targets`` accepts; as it returns them."""
    candidates = []
    if len(out_shape) == 1:
        candidates.append(rng.integers(0, out_shape[0], size=n))
    candidates.append(rng.uniform(0.0, 1.0, size=(n, *out_shape)))
    refusals = []
    for y in candidates:
        try:
            return loss.check_targets(y, n, out_shape, np.dtype(np.float64))
        except (TypeError, ValueError) as err:
            refusals.append(f"{y.dtype} {y.shape}: {err}")
    raise ValueError(
        f"check_loss could not make targets {loss!r} accepts ({'; '.join(refusals)}); pass y=..."
    )


def check_loss(
    loss: str | Loss,
    out_shape: Any,
    y: Any = None,
    *,
    n: int = 4,
    out: np.ndarray | None = None,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    floor: float = DEFAULT_FLOOR,
) -> dict[str, float]:
    """Check a loss's ``value_and_grad(out, y)`` gradient against central
    differences of its value.

    Also checked: the gradient has ``out``'s shape and dtype (float32 too), the
    value is a finite number and ``value`` agrees with ``value_and_grad``,
    neither ``out`` nor ``y`` is written (they are read-only), and a second call
    gives identical results.

    Args:
        loss: a built-in's name (``"huber"``) or a :class:`purenn.Loss` instance.
        out_shape: the per-sample output shape (``(k,)``), as the network's.
        y: targets for a batch of ``n``; checked with ``loss.check_targets``.
            Default: the first of int labels in ``[0, k)`` of shape ``(n,)`` and
            floats in ``[0, 1]`` of shape ``(n, *out_shape)`` that the loss accepts.
        n: batch size (``y``'s, if given, must agree).
        out: float64 outputs (logits for a fused loss) to check at; default:
            random values of magnitude 0.25 to 2.75, added to ``y`` when it has
            the output's shape (so ``out - y`` is away from 0 and covers both
            sides of Huber's ``delta = 1``).
        seed: seeds the default ``y`` and ``out``.
        eps, rtol, floor: as for :func:`check_function_grads`.

    Returns:
        ``{"out": worst error}``.

    Raises:
        GradientCheckError: naming the loss, the check and the values.
        TypeError, ValueError: for an unknown loss name or targets it refuses.
    """
    eps, rtol, floor = _tolerances(eps, rtol, floor)
    seed = as_seed(seed)
    loss = loss if isinstance(loss, Loss) else as_loss(loss)
    label = f"loss {loss!r}"
    out_shape = as_shape(out_shape, "out_shape")
    n = positive_int(n, "n")
    rng = np.random.default_rng([seed, 0])
    if y is None:
        y = _default_targets(loss, n, out_shape, rng)
    else:
        y = loss.check_targets(y, n, out_shape, np.dtype(np.float64))
    given = out is not None
    if given:
        _require_float64(out, "out")
        if out.shape != (n, *out_shape):
            raise ValueError(f"out must have shape {(n, *out_shape)}; got {out.shape}")

    def draw(attempt_rng: np.random.Generator) -> np.ndarray:
        offsets = _spread(attempt_rng, (n, *out_shape), low=0.25, width=2.5)
        if isinstance(y, np.ndarray) and y.shape == offsets.shape:
            return y + offsets
        return offsets

    def value_and_grad(o: np.ndarray, t: Any, what: str) -> tuple[float, np.ndarray]:
        result = _invoke(label, f"value_and_grad ({what})", loss.value_and_grad, o, t)
        if not isinstance(result, tuple) or len(result) != 2:
            raise _fail("value_and_grad", f"it returned {type(result).__name__}; expected "
                        "(loss, dout)", label)  # fmt: skip
        value, dout = result
        if type(dout) is not np.ndarray or dout.shape != o.shape or dout.dtype != o.dtype:
            got = (
                f"shape {dout.shape}, dtype {dout.dtype}" if isinstance(dout, np.ndarray) else dout
            )
            check = "value_and_grad"
            if isinstance(dout, np.ndarray) and dout.shape == o.shape:
                check = "float32" if o.dtype == np.float32 else "dtype"
            raise _fail(check, f"value_and_grad ({what}) returned dL/dout of {got}; expected "
                        f"out's shape {o.shape} and dtype {o.dtype}", label)  # fmt: skip
        try:
            value = float(value)
        except (TypeError, ValueError) as err:
            raise _fail(
                "value_and_grad", f"the loss value {value!r} is not a number", label
            ) from err
        if not math.isfinite(value):
            raise _fail("value_and_grad", f"the loss value is {value} at finite outputs", label)
        return value, dout

    def frozen_targets(t: Any) -> Any:
        return _frozen(t) if isinstance(t, np.ndarray) else t

    def run(o: np.ndarray) -> dict[str, float]:
        o_ro, y_ro = _frozen(o), frozen_targets(y)
        value, dout = value_and_grad(o_ro, y_ro, "float64")
        value2, dout2 = value_and_grad(o_ro, y_ro, "float64")
        if value2 != value or not _same(dout, dout2):
            raise _fail("repeatability", "two identical calls gave different results", label)
        alone = float(_invoke(label, "value", loss.value, o_ro, y_ro))
        if not math.isclose(alone, value, rel_tol=rtol, abs_tol=rtol * floor):
            raise _fail(
                "value",
                f"value(out, y) = {alone!r} but value_and_grad(out, y) gave {value!r}",
                label,
                analytic=value,
                numeric=alone,
            )
        y32 = y.astype(np.float32) if isinstance(y, np.ndarray) and y.dtype.kind == "f" else y
        y32 = loss.check_targets(y32, n, out_shape, np.dtype(np.float32))
        value_and_grad(_frozen(o.astype(np.float32)), frozen_targets(y32), "float32")

        def functional(v: np.ndarray) -> float:
            return float(loss.value(v, y))

        indices = list(np.ndindex(o.shape))
        numeric, kink = _differences(functional, o, eps, indices, functional(o))
        leaf = _compare("out", dout, o.shape, indices, numeric, kink, rtol, floor)
        subject = "value_and_grad's dL/dout"
        return _verdict([leaf], "gradient", rtol, eps, subject, label)

    if given:
        return run(out)
    for attempt in range(REDRAWS):
        try:
            return run(draw(np.random.default_rng([seed, 1, attempt])))
        except GradientCheckError as err:
            if not err.at_kink or attempt == REDRAWS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
