"""Pure optimizers: each one a small immutable value with ``init`` and ``update``.

The contract follows optax, with one deliberate difference::

    opt = purenn.optim.adam(1e-3)
    state = opt.init(params)                              # moments + count
    params, state = opt.update(grads, state, params)      # one step

``update`` returns the *new params* rather than optax's "updates to add":
params here are plain dicts of arrays, and applying the step inside the
optimizer saves one pass over the tree per step and one way to get it wrong.

Nothing is mutated: ``params``, ``grads`` and ``state`` may be read-only and are
left exactly as they were. A state is a frozen record holding ``count`` (how
many updates have been applied, a Python int) and, where the method needs them,
moment trees with exactly the structure, shapes and dtype of ``params`` (spec
entry included; the network's own state left out). A network's own state
(BatchNorm's running statistics, under ``params["state"]``) is no leaf: no
optimizer moment, weight decay or clipping touches it, and ``update`` returns
params carrying the state the gradients carry (the state after their pass).
float32 stays float32: every hyperparameter is a Python float, which NumPy
treats as a "weak" scalar that takes the array's dtype.

Every optimizer takes:

* ``lr``: a float, or a schedule (any callable ``step -> float``; see
  :mod:`purenn.schedules`), evaluated at ``state.count`` (0 for the first step).
* ``weight_decay``: L2 regularisation, ``g <- g + weight_decay * p``, on every
  leaf (biases included). For Adam, ``decoupled_weight_decay=True`` (what
  :func:`adamw` builds) applies it to the params directly instead.
* ``clip_norm``: when set, gradients whose global L2 norm (over all leaves)
  exceeds it are scaled down to that norm, *before* weight decay is added.

The update equations are written out in ``docs/training.md``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

import purenn.schedules  # noqa: F401  (registers the schedules as checkpoint records)
from purenn._checks import (
    bool_field,
    field_name,
    float_field,
    float_validator,
    plain_float,
    positive_float,
    show,
)
from purenn.checkpoint import register_record
from purenn.core import check_params
from purenn.network import Network
from purenn.tree import (
    SPEC_KEY,
    STATE_KEY,
    tree_check_like,
    tree_items,
    tree_map,
    tree_with_state,
    tree_zeros_like,
)

Tree = dict[str, Any]
Schedule = Callable[[int], float]

__all__ = [
    "SGD",
    "Adam",
    "AdamState",
    "RMSprop",
    "RMSpropState",
    "SGDState",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "global_norm",
    "rmsprop",
    "sgd",
]


# --------------------------------------------------------------------------- validators


def _lr_or_schedule(value: Any) -> Any:
    """Converter: a schedule (a callable) is kept; a number becomes a Python float."""
    if callable(value) and not isinstance(value, numbers.Number):
        return value
    return plain_float(value)


def _check_lr_field(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if callable(value):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{field_name(instance, attribute)} must be a float or a schedule (a callable "
            "step -> lr, e.g. purenn.schedules.CosineDecay(0.1, 1000)); got "
            f"{show(value)} ({type(value).__name__})"
        )
    float_validator(0.0)(instance, attribute, value)


def _unit_field(default: float) -> Any:
    """A decay rate or momentum in [0, 1)."""
    return float_field(default=default, low=0.0, high=1.0, high_open=True)


def _eps_field() -> Any:
    """eps > 0: it keeps ``g / (sqrt(nu) + eps)`` finite where a gradient and its
    running mean are both zero."""
    return float_field(default=1e-8, low=0.0, low_open=True)


def _weight_decay_field() -> Any:
    return float_field(default=0.0, low=0.0)


def _clip_norm_field() -> Any:
    return float_field(default=None, low=0.0, low_open=True, allow_none=True)


# --------------------------------------------------------------------------- tree helpers


def _multimap(fn: Callable[..., tuple], n_out: int, tree: Tree, *rest: Tree) -> tuple[Tree, ...]:
    """Like ``tree_map`` but ``fn`` returns ``n_out`` leaves: build ``n_out`` trees.

    Structures are assumed equal (checked at the public boundary); the spec entry
    of ``tree`` is copied into every output, a state entry into none (the
    optimizer's ``update`` gives the new params the gradients' state).
    """
    outs: tuple[Tree, ...] = tuple({} for _ in range(n_out))
    for key, value in tree.items():
        if key == STATE_KEY:
            continue
        if key == SPEC_KEY:
            for out in outs:
                out[key] = value
        elif isinstance(value, dict):
            subs = _multimap(fn, n_out, value, *(other[key] for other in rest))
            for out, sub in zip(outs, subs, strict=True):
                out[key] = sub
        else:
            leaves = fn(value, *(other[key] for other in rest))
            for out, leaf in zip(outs, leaves, strict=True):
                out[key] = leaf
    return outs


def _float_leaves(tree: Tree, name: str) -> list[np.ndarray]:
    """The leaves of ``tree``, each checked to be a real float array (a norm of
    ints, complex numbers or Python scalars is not what the caller meant)."""
    leaves = []
    for path, leaf in tree_items(tree):
        if not isinstance(leaf, np.ndarray) or leaf.dtype.kind != "f":
            what = f"dtype {leaf.dtype}" if isinstance(leaf, np.ndarray) else type(leaf).__name__
            raise TypeError(f"{name} must hold float arrays; leaf {path!r} is {what}")
        leaves.append(leaf)
    return leaves


def _sum_of_squares(leaves: list) -> float:
    """``sum_i sum(leaf_i ** 2)`` in the leaves' own dtype (inf if that overflows)."""
    total = 0.0
    with np.errstate(over="ignore"):  # an overflow is handled by the callers
        for leaf in leaves:
            flat = leaf.ravel()
            total += float(np.dot(flat, flat))
    return total


def _largest_magnitude(leaves: list) -> float:
    """``max_i max(|leaf_i|)`` as a Python float (NaN if a leaf holds NaN)."""
    biggest = 0.0
    for leaf in leaves:
        if leaf.size:
            m = float(np.max(np.abs(leaf)))
            if math.isnan(m):
                return m
            biggest = max(biggest, m)
    return biggest


def _scaled_sum_of_squares(leaves: list, m: float) -> float:
    """``sum_i sum((leaf_i / m) ** 2)`` for ``m`` the largest magnitude (finite, > 0):
    every term is at most 1, so the sum cannot overflow."""
    total = 0.0
    with np.errstate(under="ignore"):  # values far below m vanish: they do not count
        for leaf in leaves:
            flat = leaf.ravel() / m
            total += float(np.dot(flat, flat))
    return total


def global_norm(tree: Tree) -> float:
    """The L2 norm of all leaves taken together, ``sqrt(sum_i sum(leaf_i ** 2))``.

    Summed in the leaves' dtype; when the sum of squares overflows it (float32
    gradients with entries above about 1.8e19), the sum is taken again of the
    leaves divided by their largest magnitude ``m``, and the norm is ``m`` times
    its square root, so a finite tree always has its true norm.

    Args:
        tree: a tree of float arrays (e.g. gradients); the spec entry is skipped.

    Returns:
        The norm as a Python float (leaves summed in sorted-path order, so the
        result does not depend on dict order): inf if a leaf holds inf, NaN if
        one holds NaN.
    """
    leaves = _float_leaves(tree, "tree")
    total = _sum_of_squares(leaves)
    if math.isfinite(total):
        return math.sqrt(total)
    m = _largest_magnitude(leaves)
    if not math.isfinite(m):
        return m
    return m * math.sqrt(_scaled_sum_of_squares(leaves, m))


def clip_by_global_norm(grads: Tree, max_norm: float | None) -> Tree:
    """Scale ``grads`` by ``max_norm / global_norm(grads)`` when that norm is larger.

    Gradients within the bound are returned unchanged (the same tree object), so
    clipping never perturbs a step that did not need it. A norm too big for the
    gradients' dtype (every entry finite, the sum of squares overflowing) is
    still clipped: the leaves are first divided by their largest magnitude.

    Gradients that hold NaN or inf have no direction to keep; they are returned
    unchanged, and the NaN/inf then shows in the loss (``fit`` stops with a
    :class:`purenn.NonFiniteLossError` carrying the last good params).

    Args:
        grads: a gradient tree.
        max_norm: the largest allowed global norm, > 0 (None: no clipping).

    Returns:
        A tree like ``grads`` (same dtypes) with global norm at most ``max_norm``.

    Raises:
        TypeError, ValueError: for a ``max_norm`` that is not a positive finite float.
    """
    if max_norm is None:
        return grads
    max_norm = positive_float(max_norm, "max_norm")
    leaves = _float_leaves(grads, "grads")
    total = _sum_of_squares(leaves)
    if math.isfinite(total):
        norm = math.sqrt(total)
        if norm <= max_norm:
            return grads
        scale = max_norm / norm  # a Python float: keeps float32 leaves float32
        return tree_map(lambda g: g * scale, grads)
    m = _largest_magnitude(leaves)
    if not math.isfinite(m):
        return grads
    root = math.sqrt(_scaled_sum_of_squares(leaves, m))  # norm = m * root
    if m * root <= max_norm:
        return grads
    factor = max_norm / root
    # g * max_norm / norm = (g / m) * (max_norm / root): both steps stay in range
    with np.errstate(under="ignore"):
        return tree_map(lambda g: (g / m) * factor, grads)


def _check_count(count: Any, cls: str) -> int:
    """``count`` (how many updates were applied) as a Python int >= 0."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(
            f"{cls}.count must be an int >= 0 (the number of updates applied); got "
            f"{show(count)} ({type(count).__name__})"
        )
    if count < 0:
        raise ValueError(f"{cls}.count must be an int >= 0; got {count}")
    return int(count)


# Validators of the state records: they run whenever a state is made (by init,
# update, attrs.evolve or purenn.load), so a state that could not have come from
# an optimizer is refused where it is made, naming the field.


def _as_count(value: Any) -> Any:
    """Converter: NumPy ints (from a checkpoint, say) become Python ints."""
    return int(value) if isinstance(value, np.integer) else value


def _count_field(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    _check_count(value, type(instance).__name__)


def _moments_field(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A moment tree (a dict like params) or None; the shapes and dtypes are
    checked against params where they meet (``update``, ``purenn.load``)."""
    if value is not None and not isinstance(value, dict):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be a tree like params (a dict) "
            f"or None; got {type(value).__name__}. Make the state with optimizer.init(params)"
        )


def _second_moments_field(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Like :func:`_moments_field`, and every float leaf >= 0 (NaN refused): a
    running mean of squared gradients is never negative, and a negative one
    would turn the step's ``sqrt`` into NaN."""
    _moments_field(instance, attribute, value)
    if value is None:
        return
    for path, leaf in tree_items(value):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f" and leaf.size:
            low = leaf.min()
            if not low >= 0:
                raise ValueError(
                    f"{type(instance).__name__}.{attribute.name}[{path!r}] holds {low}; a "
                    "running mean of squared gradients is >= 0 and never NaN. From update, "
                    "the gradients held NaN (lower the learning rate, or find the NaN in "
                    "the data or the loss); otherwise the state is corrupt: make a new one "
                    "with optimizer.init(params)"
                )


def _check_tree_or_none(tree: Any, params: Tree, what: str, needed: bool) -> None:
    if needed:
        if tree is None:
            raise ValueError(
                f"{what} is None but this optimizer needs it; make the state with "
                "optimizer.init(params) using the same optimizer"
            )
        tree_check_like(tree, params, what)
    elif tree is not None:
        raise ValueError(
            f"{what} is set but this optimizer does not use it; the state was made by a "
            "different optimizer configuration: make it with optimizer.init(params)"
        )


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_params(params: Any) -> None:
    """Params of a network are checked against its spec (:func:`purenn.check_params`);
    a plain tree of one's own must hold NumPy arrays of one dtype, float32 or float64."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict tree from purenn.init; got {type(params).__name__}")
    if isinstance(params.get(SPEC_KEY), Network):
        check_params(params)
        return
    dtype = None
    for path, leaf in tree_items(params):
        if type(leaf) is not np.ndarray or leaf.dtype not in _FLOATS:
            got = f"{type(leaf).__name__} of dtype {getattr(leaf, 'dtype', None)}"
            raise TypeError(
                f"params[{path!r}] must be a float NumPy array (float32 or float64); got {got}"
            )
        if dtype is not None and leaf.dtype != dtype:
            raise ValueError(
                f"params mix dtypes: {path!r} holds {leaf.dtype}, earlier leaves {dtype}; "
                "make all leaves one dtype"
            )
        dtype = leaf.dtype


# --------------------------------------------------------------------------- base


class _Optimizer:
    """Shared plumbing: learning rate lookup, boundary checks, clipping and L2."""

    _state_type: type
    _needs: tuple[str, ...] = ()

    def learning_rate(self, count: int) -> float:
        """The learning rate used by the update with ``state.count == count``."""
        lr = self.lr  # type: ignore[attr-defined]
        if isinstance(lr, float):
            return lr
        value = lr(count)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"the lr schedule returned {value!r} at step {count}; expected a float")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"the lr schedule returned {value} at step {count}; it must be finite and >= 0"
            )
        return value

    def update(self, grads: Tree, state: Any, params: Tree) -> tuple[Tree, Any]:
        """Apply one optimization step.

        Args:
            grads: gradients, a tree with the structure, shapes and dtype of ``params``.
            state: this optimizer's state, from :meth:`init` or an earlier update.
            params: the current parameters.

        Returns:
            ``(new_params, new_state)``; ``new_state.count == state.count + 1``.
            ``new_params`` carry the network state ``grads`` carry, if any
            (``purenn.tree_with_state``). No input is modified.

        Raises:
            TypeError: for a state of another optimizer, or non-float leaves.
            ValueError: if grads or the state's moments do not match ``params``.
        """
        _check_params(params)
        tree_check_like(grads, params, "grads")
        if not isinstance(state, self._state_type):
            raise TypeError(
                f"{type(self).__name__}.update expects a {self._state_type.__name__} from "
                f"{type(self).__name__}.init(params); got {type(state).__name__}"
            )
        _check_count(state.count, type(state).__name__)
        for name in self._moment_fields():
            _check_tree_or_none(
                getattr(state, name),
                params,
                f"state.{name}",
                needed=name in self._needs_now(),
            )
        new, new_state = self._update(grads, state, params)
        # the pass's state if the gradients carry one, else the params' own
        return tree_with_state(tree_with_state(new, params), grads), new_state

    def _moment_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in attrs.fields(self._state_type) if f.name != "count")

    def _needs_now(self) -> tuple[str, ...]:
        return self._needs

    def _zeros_or_none(self, params: Tree, name: str) -> Tree | None:
        return tree_zeros_like(params) if name in self._needs_now() else None

    def init(self, params: Tree) -> Any:
        """A fresh state for ``params``: ``count`` 0 and zero moments like ``params``.

        Args:
            params: a tree from :func:`purenn.init` (float arrays).

        Returns:
            This optimizer's state record.
        """
        _check_params(params)
        moments = {name: self._zeros_or_none(params, name) for name in self._moment_fields()}
        return self._state_type(count=0, **moments)

    def _prepare_grads(self, grads: Tree, params: Tree) -> Tree:
        """Clip by global norm, then add the L2 term ``weight_decay * p``."""
        if self.clip_norm is not None:  # type: ignore[attr-defined]
            grads = clip_by_global_norm(grads, self.clip_norm)  # type: ignore[attr-defined]
        wd = self.weight_decay  # type: ignore[attr-defined]
        if wd and not getattr(self, "decoupled_weight_decay", False):
            # d/dp (wd/2 * |p|^2) = wd * p
            grads = tree_map(lambda g, p: g + wd * p, grads, params)
        return grads


# --------------------------------------------------------------------------- SGD


@attrs.frozen
class SGDState:
    """State of :class:`SGD`.

    Attributes:
        count: number of updates applied so far.
        momentum: the velocity tree ``v`` (like params), or None without momentum.
    """

    count: int = attrs.field(converter=_as_count, validator=_count_field)
    momentum: Tree | None = attrs.field(default=None, validator=_moments_field)


@attrs.frozen
class SGD(_Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    With ``g`` the (clipped, L2-augmented) gradient and ``mu = momentum``::

        v <- mu * v + g                       (when mu > 0)
        p <- p - lr * v                        (classical)
        p <- p - lr * (g + mu * v)             (nesterov=True)
        p <- p - lr * g                        (mu == 0: exactly purenn.sgd_step)

    This is PyTorch's formulation (no dampening). Build with :func:`sgd`.
    """

    _state_type = SGDState

    lr: float | Schedule = attrs.field(converter=_lr_or_schedule, validator=_check_lr_field)
    momentum: float = _unit_field(0.0)
    nesterov: bool = bool_field(default=False)
    weight_decay: float = _weight_decay_field()
    clip_norm: float | None = _clip_norm_field()

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0, e.g. sgd(lr, momentum=0.9)")

    def _needs_now(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum > 0.0 else ()

    def _update(self, grads: Tree, state: SGDState, params: Tree) -> tuple[Tree, SGDState]:
        lr = self.learning_rate(state.count)
        g = self._prepare_grads(grads, params)
        if self.momentum == 0.0:
            # the same arithmetic as purenn.sgd_step, so the result is bit-identical
            new = tree_map(lambda p, g: p - lr * g, params, g)
            return new, SGDState(count=state.count + 1, momentum=None)
        mu, nesterov = self.momentum, self.nesterov

        def step(p: np.ndarray, g: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v_new = mu * v + g
            d = g + mu * v_new if nesterov else v_new
            return p - lr * d, v_new

        new, velocity = _multimap(step, 2, params, g, state.momentum)
        return new, SGDState(count=state.count + 1, momentum=velocity)


def sgd(
    lr: float | Schedule,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> SGD:
    """Stochastic gradient descent; see :class:`SGD` for the update.

    Args:
        lr: learning rate (float >= 0) or schedule ``step -> lr``.
        momentum: ``mu`` in ``[0, 1)``; 0 disables the velocity state.
        nesterov: use Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 coefficient, added to the gradient as ``wd * p``.
        clip_norm: clip the global gradient norm to this value (None: no clipping).

    Returns:
        An immutable :class:`SGD` optimizer.
    """
    return SGD(lr, momentum, nesterov, weight_decay, clip_norm)


# --------------------------------------------------------------------------- RMSprop


@attrs.frozen
class RMSpropState:
    """State of :class:`RMSprop`.

    Attributes:
        count: number of updates applied so far.
        nu: running mean of squared gradients (like params).
        momentum: momentum buffer (like params), or None without momentum.
    """

    count: int = attrs.field(converter=_as_count, validator=_count_field)
    nu: Tree | None = attrs.field(default=None, validator=_second_moments_field)
    momentum: Tree | None = attrs.field(default=None, validator=_moments_field)


@attrs.frozen
class RMSprop(_Optimizer):
    """RMSprop (Hinton's lecture 6e), PyTorch's formulation::

        nu <- rho * nu + (1 - rho) * g**2
        d   = g / (sqrt(nu) + eps)
        b  <- momentum * b + d                 (when momentum > 0; then d = b)
        p  <- p - lr * d

    Build with :func:`rmsprop`.
    """

    _state_type = RMSpropState

    lr: float | Schedule = attrs.field(converter=_lr_or_schedule, validator=_check_lr_field)
    rho: float = _unit_field(0.9)
    eps: float = _eps_field()
    momentum: float = _unit_field(0.0)
    weight_decay: float = _weight_decay_field()
    clip_norm: float | None = _clip_norm_field()

    def _needs_now(self) -> tuple[str, ...]:
        return ("nu", "momentum") if self.momentum > 0.0 else ("nu",)

    def _update(self, grads: Tree, state: RMSpropState, params: Tree) -> tuple[Tree, RMSpropState]:
        lr = self.learning_rate(state.count)
        g = self._prepare_grads(grads, params)
        rho, eps, mu = self.rho, self.eps, self.momentum
        one_minus_rho = 1.0 - rho

        if mu == 0.0:

            def step(p: np.ndarray, g: np.ndarray, nu: np.ndarray) -> tuple:
                nu_new = rho * nu + one_minus_rho * (g * g)
                return p - lr * (g / (np.sqrt(nu_new) + eps)), nu_new

            new, nu = _multimap(step, 2, params, g, state.nu)
            return new, RMSpropState(count=state.count + 1, nu=nu, momentum=None)

        def step_m(p: np.ndarray, g: np.ndarray, nu: np.ndarray, b: np.ndarray) -> tuple:
            nu_new = rho * nu + one_minus_rho * (g * g)
            b_new = g / (np.sqrt(nu_new) + eps) + mu * b
            return p - lr * b_new, nu_new, b_new

        new, nu, buf = _multimap(step_m, 3, params, g, state.nu, state.momentum)
        return new, RMSpropState(count=state.count + 1, nu=nu, momentum=buf)


def rmsprop(
    lr: float | Schedule = 1e-3,
    rho: float = 0.9,
    eps: float = 1e-8,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> RMSprop:
    """RMSprop; see :class:`RMSprop` for the update.

    Args:
        lr: learning rate or schedule.
        rho: decay of the squared-gradient average, in ``[0, 1)``.
        eps: added to ``sqrt(nu)`` so the step stays finite.
        momentum: momentum on the scaled step, in ``[0, 1)``.
        weight_decay: L2 coefficient added to the gradient.
        clip_norm: global-norm gradient clipping (None: off).

    Returns:
        An immutable :class:`RMSprop` optimizer.
    """
    return RMSprop(lr, rho, eps, momentum, weight_decay, clip_norm)


# --------------------------------------------------------------------------- Adam / AdamW


@attrs.frozen
class AdamState:
    """State of :class:`Adam`.

    Attributes:
        count: number of updates applied so far (``t - 1`` in the paper's notation).
        mu: first-moment estimate (like params).
        nu: second-moment estimate (like params).
    """

    count: int = attrs.field(converter=_as_count, validator=_count_field)
    mu: Tree | None = attrs.field(default=None, validator=_moments_field)
    nu: Tree | None = attrs.field(default=None, validator=_second_moments_field)


@attrs.frozen
class Adam(_Optimizer):
    """Adam (Kingma and Ba, 2015), and AdamW (Loshchilov and Hutter, 2019).

    With ``t = count + 1``::

        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t),   v_hat = v / (1 - b2**t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    ``weight_decay`` is L2 (added to ``g``) unless ``decoupled_weight_decay`` is
    True (AdamW): then ``p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)``.
    Build with :func:`adam` or :func:`adamw`.
    """

    _state_type = AdamState
    _needs = ("mu", "nu")

    lr: float | Schedule = attrs.field(converter=_lr_or_schedule, validator=_check_lr_field)
    b1: float = _unit_field(0.9)
    b2: float = _unit_field(0.999)
    eps: float = _eps_field()
    weight_decay: float = _weight_decay_field()
    decoupled_weight_decay: bool = bool_field(default=False)
    clip_norm: float | None = _clip_norm_field()

    def _update(self, grads: Tree, state: AdamState, params: Tree) -> tuple[Tree, AdamState]:
        lr = self.learning_rate(state.count)
        g = self._prepare_grads(grads, params)
        b1, b2, eps = self.b1, self.b2, self.eps
        t = state.count + 1
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t  # bias corrections, Python floats
        wd = self.weight_decay if self.decoupled_weight_decay else 0.0

        def step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple:
            m_new = b1 * m + (1.0 - b1) * g
            v_new = b2 * v + (1.0 - b2) * (g * g)
            d = (m_new / bc1) / (np.sqrt(v_new / bc2) + eps)  # m_hat / (sqrt(v_hat) + eps)
            if wd:
                d = d + wd * p  # decoupled weight decay
            return p - lr * d, m_new, v_new

        new, mu, nu = _multimap(step, 3, params, g, state.mu, state.nu)
        return new, AdamState(count=t, mu=mu, nu=nu)


def adam(
    lr: float | Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> Adam:
    """Adam with optional L2 weight decay; see :class:`Adam`.

    Args:
        lr: learning rate or schedule.
        b1: first-moment decay, in ``[0, 1)``.
        b2: second-moment decay, in ``[0, 1)``.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: L2 coefficient added to the gradient (coupled; see :func:`adamw`).
        clip_norm: global-norm gradient clipping (None: off).

    Returns:
        An immutable :class:`Adam` optimizer.
    """
    return Adam(lr, b1, b2, eps, weight_decay, False, clip_norm)


def adamw(
    lr: float | Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    clip_norm: float | None = None,
) -> Adam:
    """AdamW: Adam with decoupled weight decay ``p <- p - lr * wd * p``; see :class:`Adam`.

    Args:
        lr: learning rate or schedule (it also scales the decay, as in PyTorch).
        b1: first-moment decay, in ``[0, 1)``.
        b2: second-moment decay, in ``[0, 1)``.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: decoupled decay coefficient (PyTorch's default 0.01).
        clip_norm: global-norm gradient clipping (None: off).

    Returns:
        An immutable :class:`Adam` optimizer with ``decoupled_weight_decay=True``.
    """
    return Adam(lr, b1, b2, eps, weight_decay, True, clip_norm)


for _cls in (SGD, RMSprop, Adam, SGDState, RMSpropState, AdamState):
    register_record(_cls)
del _cls
