"""The pure functions of the design card: init, forward, grads, sgd_step, and friends.

Nothing here keeps state or writes into a caller's array. Inputs are checked
once, here at the public boundary, with cheap shape, dtype and range checks;
the layer math below assumes valid input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from purenn._checks import as_generator, float_dtype
from purenn.losses import LOSSES
from purenn.network import Network
from purenn.scratch import FRESH, OWNED, Allocator, training_pass
from purenn.tree import SPEC_KEY, tree_check_like

Params = dict[str, Any]


def init(spec: Network, rng: np.random.Generator | int, dtype: Any = np.float32) -> Params:
    """Create a network's parameters.

    Args:
        spec: the network to initialise.
        rng: a ``numpy.random.Generator`` or an int seed.
        dtype: ``np.float32`` (default) or ``np.float64``.

    Returns:
        ``{"spec": spec, "dense_0": {"w": (d_in, d_out), "b": (d_out,)}, ...}``:
        one entry per layer that has parameters, keyed by :meth:`Network.layer_names`.

    Raises:
        TypeError: if ``spec`` is not a Network or ``rng`` is neither a Generator
            nor an int.
        ValueError: for a dtype other than float32 or float64.
    """
    if not isinstance(spec, Network):
        raise TypeError(f"init expects a purenn.Network spec; got {type(spec).__name__}")
    rng = as_generator(rng)
    dtype = float_dtype(dtype)
    params: Params = {SPEC_KEY: spec}
    shapes = spec.shapes()
    for layer, name, in_shape in zip(spec.layers, spec.layer_names(), shapes, strict=False):
        p = layer.init_params(rng, in_shape, dtype)
        if p is not None:
            params[name] = p
    return params


def _spec_of(params: Any) -> Network:
    if not isinstance(params, dict) or not isinstance(params.get(SPEC_KEY), Network):
        raise TypeError(
            f"params must be a dict made by purenn.init, with its Network under {SPEC_KEY!r}; "
            f"got {type(params).__name__}"
            + (f" with keys {sorted(params)}" if isinstance(params, dict) else "")
        )
    return params[SPEC_KEY]


def _params_dtype(params: Params, spec: Network) -> np.dtype:
    """The dtype of the params, checked: an entry for each layer with parameters
    and no other, its leaves NumPy arrays of one float dtype."""
    with_params = spec._layout.with_params
    if len(params) > len(with_params) + 1:  # + the spec
        known = {SPEC_KEY, *(name for name, _ in with_params)}
        raise ValueError(
            f"params has entries {[key for key in params if key not in known]} that no layer "
            f"of the network has; expected {SPEC_KEY!r} and {[n for n, _ in with_params]}: "
            "pass the dict made by purenn.init (or by sgd_step or an optimizer)"
        )
    dtype = None
    for name, layer in with_params:
        p = params.get(name)
        if not isinstance(p, dict):
            raise ValueError(f"params has no entry {name!r} for {type(layer).__name__} layer")
        for leaf in p.values():
            if not isinstance(leaf, np.ndarray):
                raise TypeError(
                    f"params[{name!r}] must hold NumPy arrays; got {type(leaf).__name__}"
                )
            if dtype is None:
                dtype = leaf.dtype
            elif leaf.dtype != dtype:
                raise ValueError(
                    f"params mix dtypes: {name!r} holds {leaf.dtype}, earlier leaves {dtype}; "
                    "make all leaves one dtype"
                )
    return dtype if dtype is not None else np.dtype(np.float32)


def _check_x(spec: Network, x: Any, dtype: np.dtype) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"x must be a NumPy array of shape (batch, *{spec.input_shape}); got {type(x).__name__}"
        )
    want = spec.input_shape
    if x.shape[1:] != want or x.ndim != len(want) + 1:
        raise ValueError(
            f"{spec.layer_names()[0]} expects x of shape (batch, {', '.join(map(str, want))}); "
            f"got {x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (0 samples); pass at least one sample")
    if x.dtype != dtype:
        raise TypeError(
            f"x has dtype {x.dtype} but the params are {dtype}; convert with "
            f"x.astype(np.{dtype}) (no silent casts), or init the network with dtype=np.{x.dtype}"
            if x.dtype.kind == "f"
            else f"x has dtype {x.dtype} but the params are {dtype}; scale the data to floats "
            f"first, e.g. x.astype(np.{dtype}) / 255"
        )
    return x


_UNSIGNED = {np.dtype(f"i{size}"): np.dtype(f"u{size}") for size in (1, 2, 4, 8)}
"""Native signed int dtypes -> the unsigned dtype of the same size (see _check_y)."""


def _check_y(spec: Network, y: Any, n: int, dtype: np.dtype) -> np.ndarray:
    """Check targets against the loss; return int labels (n,) or dense targets (n, k)."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a NumPy array; got {type(y).__name__}")
    k = spec.layers[-1].units  # the last layer is a Dense (Network checks it)
    if spec.loss == "cross_entropy" and y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(
                f"cross-entropy labels of shape (n,) must be int class indices; got dtype "
                f"{y.dtype}. Use y.astype(np.int64), or pass one-hot targets of shape (n, {k})"
            )
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels but x has {n} samples")
        if y.dtype in _UNSIGNED:  # one reduction: seen as unsigned, a negative label is huge
            out_of_range = np.maximum.reduce(y.view(_UNSIGNED[y.dtype])) >= k
        else:  # unsigned, or a non-native byte order
            out_of_range = y.min() < 0 or y.max() >= k
        if out_of_range:
            lo, hi = y.min(), y.max()
            raise ValueError(
                f"labels must be class indices in [0, {k - 1}] for a {k}-way output; "
                f"got values from {lo} to {hi}"
            )
        return y
    if y.shape != (n, k):
        if spec.loss == "cross_entropy":
            expected = f"int labels of shape ({n},) or one-hot targets of shape ({n}, {k})"
        else:
            expected = f"targets of shape ({n}, {k})"
        raise ValueError(f"loss {spec.loss!r} expects {expected}; got y of shape {y.shape}")
    if y.dtype.kind in "biu":
        return y.astype(dtype)
    if y.dtype != dtype:
        raise TypeError(
            f"targets have dtype {y.dtype} but the params are {dtype}; convert with "
            f"y.astype(np.{dtype}) (no silent casts)"
        )
    return y


def _prepare(params: Any, x: Any) -> tuple[Network, np.dtype, np.ndarray]:
    spec = _spec_of(params)
    dtype = _params_dtype(params, spec)
    return spec, dtype, _check_x(spec, x, dtype)


def _check_rng(spec: Network, rng: Any, train: bool) -> np.random.Generator | None:
    """A Generator when the pass needs randomness; raise if it needs one and has none.

    An evaluation pass draws nothing, but a wrong kind of rng is refused there too.
    """
    if rng is not None:
        rng = as_generator(rng)
        return rng if train else None
    if train and spec._layout.random:
        raise ValueError(
            f"training-mode pass through {', '.join(spec._layout.random)} needs randomness: "
            "pass rng=np.random.default_rng(seed) (or an int seed), or remove the dropout"
        )
    return None


def _forward(
    spec: Network,
    params: Params,
    x: np.ndarray,
    train: bool,
    rng: Any,
    activate_last: bool,
    scopes: Sequence[Allocator] | None = None,
) -> tuple[np.ndarray, list]:
    """Run every layer; return the output and the per-layer caches.

    ``scopes`` holds each layer's allocator in a training pass (default: fresh arrays).
    """
    caches = []
    names = spec._layout.names
    last = len(names) - 1
    for i, layer in enumerate(spec.layers):
        p, scratch = params.get(names[i]), FRESH if scopes is None else scopes[i]
        if i == last and not activate_last:
            x, cache = layer.forward(p, x, train=train, rng=rng, activate=False, scratch=scratch)
        else:
            x, cache = layer.forward(p, x, train=train, rng=rng, scratch=scratch)
        caches.append(cache)
    return x, caches


def forward(params: Params, x: np.ndarray, *, train: bool = False, rng: Any = None) -> np.ndarray:
    """Run the network on a batch.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        train: training mode (dropout active); then ``rng`` is needed if the
            network has dropout.
        rng: a Generator or int seed for dropout masks.

    Returns:
        The output layer's activations, shape ``(n, k)``: probabilities for a
        softmax or sigmoid output.

    Raises:
        TypeError, ValueError: for malformed params, x or rng.
    """
    spec, _, x = _prepare(params, x)
    rng = _check_rng(spec, rng, train)
    out, _ = _forward(spec, params, x, train, rng, activate_last=True)
    return out


def _backprop(
    spec: Network,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    rng: Any,
    train: bool,
    need_grad: bool,
) -> tuple[float, Params | None, np.ndarray]:
    """Loss, gradients and output on already-checked inputs.

    The output is the last layer's logits for the fused losses (its activations
    for MSE): ``fit`` reads training accuracy from it at no extra cost.

    A training step (``need_grad``) through convolution or pooling layers takes
    their work arrays from the thread's scratch (:mod:`purenn.scratch`); one
    through Dense and Dropout layers only needs none. The loss, gradients and
    output returned are fresh arrays either way.
    """
    if not need_grad:
        fused, loss_fn = LOSSES[spec.loss]
        out, _ = _forward(spec, params, x, train, rng, fused is None)
        return loss_fn(out, y, False)[0], None, out
    if spec._layout.dense_only:  # no layer takes work arrays: skip the scratch
        return _train_pass(spec, params, x, y, rng, train, OWNED)
    with training_pass() as scratch:
        return _train_pass(spec, params, x, y, rng, train, scratch)


def _train_pass(
    spec: Network,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    rng: Any,
    train: bool,
    scratch: Allocator,
) -> tuple[float, Params, np.ndarray]:
    """:func:`_backprop`'s forward and backward pass, each layer's work arrays
    from ``scratch`` (scoped by layer name)."""
    fused, loss_fn = LOSSES[spec.loss]
    names = spec._layout.names
    scopes = [scratch.scoped(name) for name in names]
    out, caches = _forward(spec, params, x, train, rng, fused is None, scopes)
    value, dy = loss_fn(out, y, True)
    # params' keys first (checked to be the spec and one per layer with parameters),
    # so the two trees print and iterate alike; the backward pass fills in the leaves
    grads: Params = dict.fromkeys(params)
    grads[SPEC_KEY] = spec
    last = len(names) - 1
    for i in range(last, -1, -1):
        layer, name, p = spec.layers[i], names[i], params.get(names[i])
        if i == last and fused:  # dy is already dL/dz of the fused output activation
            dy, g = layer.backward(
                p, caches[i], dy, need_dx=i > 0, activated=False, scratch=scopes[i]
            )
        else:
            dy, g = layer.backward(p, caches[i], dy, need_dx=i > 0, scratch=scopes[i])
        if g is not None:
            grads[name] = g
    return value, grads, out


def _loss_and_grads(
    params: Params, x: np.ndarray, y: np.ndarray, rng: Any, need_grad: bool, train: bool
) -> tuple[float, Params | None]:
    spec, dtype, x = _prepare(params, x)
    y = _check_y(spec, y, x.shape[0], dtype)
    rng = _check_rng(spec, rng, train)
    value, g, _ = _backprop(spec, params, x, y, rng, train, need_grad)
    return value, g


def loss(
    params: Params, x: np.ndarray, y: np.ndarray, *, train: bool = False, rng: Any = None
) -> float:
    """The mean loss on a batch.

    Evaluation mode by default (dropout off). With ``train=True`` and a Generator
    seeded like the one given to :func:`grads`, it is exactly the loss those
    gradients are of.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)``.
        y: targets: int labels ``(n,)`` or ``(n, k)`` targets, as the loss needs.
        train: training mode (dropout active).
        rng: a Generator or int seed, needed with ``train=True`` and dropout.

    Returns:
        The mean loss as a Python float.
    """
    return _loss_and_grads(params, x, y, rng, need_grad=False, train=train)[0]


def loss_and_grads(
    params: Params, x: np.ndarray, y: np.ndarray, *, rng: Any = None
) -> tuple[float, Params]:
    """The training-mode loss and its gradients in one forward and backward pass.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        y: int labels ``(n,)`` or one-hot ``(n, k)`` for cross-entropy; ``(n, k)``
            targets for MSE and binary cross-entropy.
        rng: a Generator or int seed; required when the network has dropout.

    Returns:
        ``(loss, grads)``: the mean loss as a float, and a tree with exactly the
        structure, shapes and dtype of ``params``.

    Raises:
        ValueError: for shape or label errors, or dropout without an rng.
        TypeError: for inputs of the wrong kind or dtype.
    """
    value, g = _loss_and_grads(params, x, y, rng, need_grad=True, train=True)
    return value, g  # type: ignore[return-value]


def grads(params: Params, x: np.ndarray, y: np.ndarray, *, rng: Any = None) -> Params:
    """Gradients of the mean training-mode loss; see :func:`loss_and_grads`."""
    return loss_and_grads(params, x, y, rng=rng)[1]


def predict(params: Params, x: np.ndarray) -> np.ndarray:
    """Predicted labels (evaluation mode).

    Returns:
        For cross-entropy, the argmax class, int64 of shape ``(n,)``. For binary
        cross-entropy, 1 where the probability exceeds 0.5: shape ``(n,)`` for a
        single output, ``(n, k)`` for several.

    Raises:
        ValueError: for an MSE (regression) network; use :func:`forward` there.
    """
    spec = _spec_of(params)
    if spec.loss == "mse":
        raise ValueError(
            "predict gives class labels; an 'mse' network is a regressor: "
            "use forward(params, x) for its outputs"
        )
    out = forward(params, x)
    if spec.loss == "cross_entropy":
        return out.argmax(axis=1)
    labels = (out > 0.5).astype(np.int64)
    return labels[:, 0] if labels.shape[1] == 1 else labels


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """One plain gradient-descent step, ``p - lr * g`` leaf by leaf.

    Args:
        params: a tree from :func:`init`.
        grads: gradients of that very network (same spec, shapes and dtype).
        lr: learning rate, a finite float >= 0.

    Returns:
        New params; ``params`` and ``grads`` are left untouched.

    Raises:
        ValueError: if ``grads`` belong to another network or ``lr`` is invalid.
    """
    _spec_of(params)
    lr = _check_lr(lr)
    # One walk checks and updates; only on failure does the slower, path-naming
    # tree_check_like run to say which leaf is wrong.
    try:
        return _descend_tree(params, grads, lr)
    except (ValueError, TypeError, KeyError):
        tree_check_like(grads, params, "grads")
        raise


def _descend_tree(params: dict, grads: Any, lr: float) -> dict:
    """:func:`descend` leaf by leaf (spec passed through), raising a bare
    ValueError at the first difference in structure, spec, shape or dtype.

    ``tree_map`` with the checks inlined: this runs on every training step.
    """
    if type(grads) is not dict or grads.keys() != params.keys():
        raise ValueError
    out = {}
    for key, p in params.items():
        g = grads[key]
        if key == SPEC_KEY:
            if g is not p and g != p:
                raise ValueError
            out[key] = p
        elif type(p) is dict:
            out[key] = _descend_tree(p, g, lr)
        elif not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError
        else:
            out[key] = descend(p, g, lr)
    return out


def descend(p: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    """``p - lr * g`` as a new array, bit for bit, with one allocation instead of two.

    Large temporaries are expensive (each fresh block of memory is page-faulted
    in), so the product is formed in the result's own buffer: ``(-lr) * g`` is
    exactly ``-(lr * g)``, and adding ``p`` to it rounds like ``p - lr * g``.
    """
    out = np.multiply(g, -lr)
    out += p
    return out


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.integer | np.floating):
        raise TypeError(f"lr must be a float; got {lr!r} ({type(lr).__name__})")
    lr = float(lr)  # a Python float: weak scalar, keeps float32 params float32
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be finite and >= 0; got {lr}")
    return lr
