"""The pure functions of the design card: init, forward, grads, sgd_step, and friends.

Nothing here keeps state or writes into a caller's array. Inputs are checked
once, here at the public boundary, with cheap shape, dtype and range checks;
the layers assume valid input. What each layer returns is checked as it
comes (shape and dtype), so a layer that breaks its own ``output_shape`` is
named at once, not met as a broadcast error three layers later.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from purenn._checks import as_generator, check_flag, check_lr, float_dtype
from purenn.activations import get_activation
from purenn.base import Context
from purenn.losses import describe
from purenn.network import Network
from purenn.tree import SPEC_KEY, STATE_KEY, tree_check_like
from purenn.workspace import FRESH, Workspace

Params = dict[str, Any]


def init(spec: Network, rng: np.random.Generator | int, dtype: Any = np.float32) -> Params:
    """Create a network's parameters.

    Args:
        spec: the network to initialise.
        rng: a ``numpy.random.Generator`` or an int seed.
        dtype: ``np.float32`` (default) or ``np.float64``.

    Returns:
        ``{"spec": spec, "dense_0": {"w": (d_in, d_out), "b": (d_out,)}, ...}``:
        one entry per layer that has parameters, keyed by :meth:`Network.layer_names`
        (a container's entry nests its children's, ``{"residual_0": {"conv2d_0":
        {...}}}``), and, for a network with stateful layers (BatchNorm), their
        initial state under ``"state"`` (:data:`purenn.STATE_KEY`).

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
    state: Params = {}
    shapes = spec.shapes()
    expected = spec._layout.param_shapes
    for layer, name, in_shape in zip(spec.layers, spec.layer_names(), shapes, strict=False):
        if layer.has_params:
            p = _checked_init(layer, name, layer.init_params(rng, in_shape, dtype), dtype)
            if _leaves_match(p, expected[name], dtype) is None:
                raise _promise_broken(layer, name, "init_params", "param_shapes", p, expected[name])
            params[name] = p
        if layer.has_state:
            s = _checked_tree(
                layer, name, "init_state", layer.init_state(in_shape, dtype), dtype, True
            )
            if not _state_matches(s, expected[STATE_KEY][name], dtype):
                raise _promise_broken(
                    layer, name, "init_state", "state_shapes", s, expected[STATE_KEY][name]
                )
            state[name] = s
    if state:
        params[STATE_KEY] = state
    return params


def _promise_broken(
    layer: Any, name: str, made_by: str, shapes_by: str, made: dict, shapes: dict
) -> ValueError:
    """A layer whose ``init_params`` (``init_state``) and ``param_shapes``
    (``state_shapes``) disagree: say both."""

    def described(tree: Any) -> Any:
        if type(tree) is dict:
            return {k: described(v) for k, v in tree.items()}
        if isinstance(tree, np.ndarray):
            return f"{tree.shape} {tree.dtype}"
        return tree

    return ValueError(
        f"{name} ({type(layer).__name__}).{made_by} made {described(made)} but its "
        f"{shapes_by} gives {described(shapes)}; make the two agree"
    )


_RESERVED = (SPEC_KEY, STATE_KEY)


def _tree_ok(p: Any, dtype: np.dtype, counters: bool) -> bool:
    """A non-empty dict (nested dicts allowed) of arrays of ``dtype`` (and int64
    counters when ``counters``), keyed by names without '/' that are not reserved."""
    if type(p) is not dict or not p:
        return False
    for k, v in p.items():
        if not isinstance(k, str) or "/" in k or k in _RESERVED:
            return False
        if type(v) is dict:
            if not _tree_ok(v, dtype, counters):
                return False
        elif type(v) is not np.ndarray or not (
            v.dtype == dtype or (counters and v.dtype == np.int64)
        ):
            return False
    return True


def _dtypes_of(p: Any) -> Any:
    if isinstance(p, dict):
        return {k: _dtypes_of(v) for k, v in p.items()}
    return str(getattr(p, "dtype", type(p).__name__))


def _checked_tree(
    layer: Any, name: str, method: str, p: Any, dtype: np.dtype, counters: bool
) -> dict:
    if not _tree_ok(p, dtype, counters):
        got = _dtypes_of(p) if isinstance(p, dict) else type(p).__name__
        kinds = f"{dtype} (or int64 counter)" if counters else str(dtype)
        raise ValueError(
            f"{name} ({type(layer).__name__}).{method} must return a non-empty dict of "
            f"{kinds} NumPy arrays (or nested dicts of them) keyed by names without '/' "
            f"other than {list(_RESERVED)}; got {got}. A layer without "
            f"{'params' if method == 'init_params' else 'state'} does not define {method}"
        )
    return p


def _checked_init(layer: Any, name: str, p: Any, dtype: np.dtype) -> dict:
    """A layer's fresh params, if they are a dict of arrays of ``dtype``."""
    return _checked_tree(layer, name, "init_params", p, dtype, False)


def _spec_of(params: Any) -> Network:
    if not isinstance(params, dict) or not isinstance(params.get(SPEC_KEY), Network):
        raise TypeError(
            f"params must be a dict made by purenn.init, with its Network under {SPEC_KEY!r}; "
            f"got {type(params).__name__}"
            + (f" with keys {sorted(params)}" if isinstance(params, dict) else "")
        )
    return params[SPEC_KEY]


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# leaves are plain arrays; a memmap is one backed by a file (scikit-learn's and joblib's
# read-only copies of an estimator): other subclasses change what operators mean
_ARRAYS = (np.ndarray, np.memmap)


# Checking params against their spec runs on every public call (every training
# step), so it is two walks: a fast one that only says yes or no, and, only when
# it says no, a slower one that finds the first difference and names it.


def _params_dtype(params: Params, spec: Network) -> np.dtype:
    """The dtype of the params, checked against the spec's ``param_shapes``: an
    entry for each layer with parameters and no other, each a dict with exactly
    the keys and shapes the layer states, every leaf a NumPy array of one float
    dtype (float32 or float64), and the state of the stateful layers, if any
    (float arrays of that dtype, int64 counters)."""
    expected = spec._layout.param_shapes
    if len(params) == len(expected) + 1:
        dtype = None
        for name, shapes in expected.items():
            if name != STATE_KEY:
                dtype = _leaves_match(params.get(name), shapes, dtype)
                if dtype is None:
                    break
        else:
            dtype = np.dtype(np.float32) if dtype is None else dtype
            if STATE_KEY not in expected or _state_matches(
                params.get(STATE_KEY), expected[STATE_KEY], dtype
            ):
                return dtype
    raise _params_problem(params, spec)


def _leaves_match(tree: Any, shapes: dict, dtype: np.dtype | None) -> np.dtype | None:
    """The leaves' one float dtype if ``tree`` has exactly ``shapes``' keys and
    shapes (and ``dtype``, unless None); None at the first difference."""
    if type(tree) is not dict or len(tree) != len(shapes):
        return None
    for key, shape in shapes.items():
        leaf = tree.get(key)
        if type(shape) is dict:
            dtype = _leaves_match(leaf, shape, dtype)
            if dtype is None:
                return None
        elif type(leaf) not in _ARRAYS or leaf.shape != shape:
            return None
        elif dtype is None:
            if leaf.dtype not in _FLOATS:
                return None
            dtype = leaf.dtype
        elif leaf.dtype != dtype:
            return None
    return dtype


def _state_matches(tree: Any, specs: dict, dtype: np.dtype) -> bool:
    if type(tree) is not dict or len(tree) != len(specs):
        return False
    for key, spec in specs.items():
        leaf = tree.get(key)
        if type(spec) is dict:
            if not _state_matches(leaf, spec, dtype):
                return False
        elif (
            type(leaf) not in _ARRAYS
            or leaf.shape != spec.shape
            or leaf.dtype != (dtype if spec.dtype is None else spec.dtype)
        ):
            return False
    return True


_FIX = (
    "Pass the dict made by purenn.init (or by sgd_step, an optimizer or purenn.load) "
    "for this very spec"
)


def _params_problem(params: Params, spec: Network) -> Exception:
    """The first way ``params`` differ from what ``spec`` makes, as an exception
    naming the entry or leaf, what the spec expects and what came."""
    layout = spec._layout
    expected = layout.param_shapes
    with_params, with_state = layout.with_params, layout.with_state
    state = params.get(STATE_KEY)
    known = {SPEC_KEY, *with_params, *([STATE_KEY] if with_state else [])}
    extra = [key for key in params if key not in known]
    missing = [name for name in with_params if type(params.get(name)) is not dict]
    state_keys_wrong = with_state and (type(state) is not dict or state.keys() != set(with_state))
    if extra or missing or state_keys_wrong:
        problems = []
        if extra:
            problems.append(f"entries {extra} that no layer of the network has")
        if missing:
            problems.append(f"no dict of arrays for {missing}")
        if state_keys_wrong:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            problems.append(f"under {STATE_KEY!r} {got} instead of the state of {list(with_state)}")
        also = f" and {STATE_KEY!r} (the state of {list(with_state)})" if with_state else ""
        return ValueError(
            f"params has {' and '.join(problems)}; expected {SPEC_KEY!r} and "
            f"{list(with_params)}{also}. {_FIX}"
        )
    found: list[np.dtype] = []  # the params' dtype, once a leaf has set it
    for name in with_params:
        problem = _leaf_problem(params[name], expected[name], name, found)
        if problem is not None:
            return problem
    dtype = found[0] if found else np.dtype(np.float32)
    if with_state:
        for name in with_state:
            problem = _state_problem(state[name], expected[STATE_KEY][name], name, dtype)
            if problem is not None:
                return problem
    return ValueError(f"params do not match their spec's param_shapes. {_FIX}")


def _keys_problem(tree: dict, shapes: dict, where: str) -> Exception | None:
    if tree.keys() == shapes.keys():
        return None
    lacks = sorted(shapes.keys() - tree.keys())
    extra = sorted(tree.keys() - shapes.keys(), key=str)
    return ValueError(
        f"{where} has the keys {sorted(map(str, tree))} but the spec gives "
        f"{sorted(shapes)} (missing {lacks}, unexpected {extra}). {_FIX}"
    )


def _leaf_problem(tree: Any, shapes: dict, name: str, found: list) -> Exception | None:
    """What is wrong with layer ``name``'s params subtree (nested dicts of a
    container walked, their names joined by '/'), or None."""
    where = f"params[{name!r}]"
    if type(tree) is not dict:
        return TypeError(f"{where} must be a dict of arrays; got {type(tree).__name__}. {_FIX}")
    problem = _keys_problem(tree, shapes, where)
    if problem is not None:
        return problem
    for key, shape in shapes.items():
        leaf = tree[key]
        if type(shape) is dict:
            problem = _leaf_problem(leaf, shape, f"{name}/{key}", found)
            if problem is not None:
                return problem
            continue
        at = f"{where}[{key!r}]"
        if type(leaf) not in _ARRAYS:
            return TypeError(
                f"{at} must be a NumPy array; got {type(leaf).__name__}"
                + (" (a subclass: convert with np.asarray)" if isinstance(leaf, np.ndarray) else "")
            )
        if not found:
            if leaf.dtype not in _FLOATS:
                return TypeError(
                    f"{at} has dtype {leaf.dtype}; params must be float32 or float64 "
                    "(init(spec, rng, dtype=np.float64) makes float64 ones)"
                )
            found.append(leaf.dtype)
        elif leaf.dtype != found[0]:
            return ValueError(
                f"params mix dtypes: {name!r} holds {leaf.dtype}, earlier leaves {found[0]}; "
                "make all leaves one dtype"
            )
        if leaf.shape != shape:
            return ValueError(
                f"{at} has shape {leaf.shape} but the spec gives {shape} for {name}: "
                f"these arrays do not belong to this network. {_FIX}"
            )
    return None


def _state_problem(tree: Any, specs: dict, name: str, dtype: np.dtype) -> Exception | None:
    where = f"params[{STATE_KEY!r}][{name!r}]"
    if type(tree) is not dict:
        return TypeError(f"{where} must be a dict of arrays; got {type(tree).__name__}. {_FIX}")
    problem = _keys_problem(tree, specs, where)
    if problem is not None:
        return problem
    for key, spec in specs.items():
        leaf = tree[key]
        if type(spec) is dict:
            problem = _state_problem(leaf, spec, f"{name}/{key}", dtype)
            if problem is not None:
                return problem
            continue
        at = f"{where}[{key!r}]"
        want = dtype if spec.dtype is None else spec.dtype
        if type(leaf) not in _ARRAYS or leaf.dtype != want:
            got = getattr(leaf, "dtype", type(leaf).__name__)
            rule = (
                f"state arrays must have the params' dtype {want} (counters int64)"
                if spec.dtype is None
                else f"it is a counter, and counters are NumPy arrays of {want}"
            )
            return TypeError(
                f"{at} has dtype {got}; {rule}. Convert the state with the params, e.g. "
                "from purenn.init(spec, rng, dtype=...)"
            )
        if leaf.shape != spec.shape:
            return ValueError(
                f"{at} has shape {leaf.shape} but the spec gives {spec.shape} for {name}: "
                f"this state does not belong to this network. {_FIX}"
            )
    return None


def check_params(params: Any) -> np.dtype:
    """Check a params tree against its own spec; return its float dtype.

    Every public function that takes params runs this check (``init``'s output
    is trusted): the tree must have an entry for each layer with parameters
    and no other, each with exactly the keys and shapes the layer's
    ``param_shapes`` gives, every leaf a NumPy array of one dtype, float32 or
    float64; for a network with stateful layers, ``params["state"]`` likewise
    against ``state_shapes`` (float arrays of the params' dtype, int64
    counters). It compares shapes and dtypes only, never values, and costs a
    few microseconds for a small network.

    Args:
        params: a tree from :func:`init`, :func:`sgd_step`, an optimizer or
            :func:`purenn.load`.

    Returns:
        The params' dtype, ``float32`` or ``float64``.

    Raises:
        TypeError: for something that is not a params tree, a leaf that is not
            a NumPy array, or a dtype other than float32/float64.
        ValueError: for missing or extra entries or keys, mixed dtypes, or a
            leaf whose shape differs from the spec's; the message names the
            leaf, the expected and the actual shape.
    """
    return _params_dtype(params, _spec_of(params))


def params_dtype(params: Any) -> np.dtype:
    """The float dtype of a params tree, after :func:`check_params` (its other name)."""
    return check_params(params)


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


def check_inputs(params: Params, x: Any, y: Any = None) -> tuple[np.ndarray, Any]:
    """Check a batch against a network, as every function here does on entry.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        y: targets for the network's loss, or None.

    Returns:
        ``(x, y)`` as the passes take them: ``y`` as the loss's ``check_targets``
        returns it (int labels as ``intp``, int targets as floats), or None.

    Raises:
        TypeError, ValueError: for malformed params, inputs or targets.
    """
    spec, dtype, x = _prepare(params, x)
    if y is not None:
        y = spec.loss.check_targets(y, x.shape[0], spec.output_shape, dtype)
    return x, y


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


def _check_workspace(workspace: Any) -> Workspace | None:
    if workspace is not None and not isinstance(workspace, Workspace):
        raise TypeError(
            f"workspace must be a purenn.Workspace or None; got {type(workspace).__name__}"
        )
    return workspace


def _bad_output(name: str, layer: Any, y: Any, x: np.ndarray, shape: tuple) -> ValueError:
    got = f"shape {y.shape} and dtype {y.dtype}" if isinstance(y, np.ndarray) else type(y).__name__
    return ValueError(
        f"{name} ({type(layer).__name__}).forward returned {got} for an input of shape "
        f"{x.shape} and dtype {x.dtype}; its output_shape promises "
        f"({x.shape[0]}, {', '.join(map(str, shape))}) of the input's dtype"
    )


def _run_forward(
    spec: Network,
    params: Params,
    x: np.ndarray,
    train: bool,
    rng: Any,
    ws: Workspace | None,
    outputs: list | None = None,
) -> tuple[np.ndarray, list]:
    """Every layer forward; the last layer's output (logits for a fused loss) and
    each layer's ``(cache, ctx, input shape)``. Each output is checked against
    the layer's promise (shape, dtype) as it comes; with ``outputs``, each
    layer's ``(name, output)`` is appended to it."""
    layout = spec._layout
    first, rest = Context(train, rng, False), Context(train, rng, True)
    state = params.get(STATE_KEY) if layout.with_state else None
    caches = []
    for i, (name, layer, shape) in enumerate(
        zip(layout.names, layout.run_layers, layout.shapes[1:], strict=True)
    ):
        if layer.uses_workspace or (state is not None and name in state):
            scratch = (FRESH if ws is None else ws.scoped(name)) if layer.uses_workspace else None
            own = state.get(name) if state is not None else None
            ctx = Context(train, rng, i > 0, scratch, own)
        else:
            ctx = rest if i else first
        try:
            y, cache = layer.forward(params.get(name), x, ctx)
        except ValueError as err:  # name the layer: "batchnorm_1 (BatchNorm): ..."
            raise ValueError(f"{name} ({type(layer).__name__}): {err}") from err
        if (
            type(y) is not np.ndarray
            or y.shape[1:] != shape
            or len(y) != len(x)
            or y.dtype != x.dtype
        ):
            raise _bad_output(name, layer, y, x, shape)
        caches.append((cache, ctx, x.shape))
        if outputs is not None:
            outputs.append((name, y))
        x = y
    return x, caches


def _run_backward(spec: Network, params: Params, caches: list, dy: np.ndarray) -> Params:
    """Every layer backward from ``dy = dL/dout``; the gradient tree.

    Each layer's ``dx`` is checked against its input (shape, dtype) and its
    gradients against its params' keys; the leaves' shapes and dtypes are
    checked where they are used (``sgd_step`` and the optimizers name the leaf).
    """
    layout = spec._layout
    # params' keys first, so the two trees print and iterate alike
    grads: Params = dict.fromkeys(params)
    grads[SPEC_KEY] = spec
    grads.pop(STATE_KEY, None)  # the pass's new state goes there (see _train_pass)
    for name, layer, (cache, ctx, in_shape) in zip(
        reversed(layout.names), reversed(layout.run_layers), reversed(caches), strict=True
    ):
        p = params.get(name)
        dx, g = layer.backward(p, cache, dy, ctx)
        if p is not None and type(g) is dict and g.keys() == p.keys():
            grads[name] = g
        elif p is not None or g is not None:
            want = f"a dict with the keys {sorted(p)} of its params" if p else "None (no params)"
            raise ValueError(
                f"{name} ({type(layer).__name__}).backward returned gradients "
                f"{sorted(g) if isinstance(g, dict) else type(g).__name__}; expected {want}"
            )
        if ctx.need_dx and (
            type(dx) is not np.ndarray or dx.shape != in_shape or dx.dtype != dy.dtype
        ):
            got = f"shape {dx.shape}" if isinstance(dx, np.ndarray) else type(dx).__name__
            raise ValueError(
                f"{name} ({type(layer).__name__}).backward returned dx of {got}; expected "
                f"an array of shape {in_shape} (its input's) and dtype {dy.dtype}"
            )
        dy = dx
    return grads


def _output(spec: Network, out: np.ndarray) -> np.ndarray:
    """The network's output from the last layer's: the fused activation applied."""
    fused = spec.loss.fused_activation
    return out if fused is None else get_activation(fused).forward(out)


def forward(params: Params, x: np.ndarray, *, train: bool = False, rng: Any = None) -> np.ndarray:
    """Run the network on a batch.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        train: training mode (dropout active); then ``rng`` is needed if the
            network has dropout.
        rng: a Generator or int seed for dropout masks.

    Returns:
        The network's output, shape ``(n, k)``: probabilities for a softmax or
        sigmoid output.

    Raises:
        TypeError, ValueError: for malformed params, x or rng.
    """
    train = check_flag(train, "train")
    spec, _, x = _prepare(params, x)
    rng = _check_rng(spec, rng, train)
    out, _ = _run_forward(spec, params, x, train, rng, None)
    return _output(spec, out)


def layer_outputs(params: Params, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every layer's output on a batch, in evaluation mode (as :func:`forward`
    runs them, BatchNorm with its running statistics).

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.

    Returns:
        ``[(layer name, output), ...]`` in layer order, one entry per layer of
        the network's ``layers`` (a container's output is its sum or join, not
        its inner layers'); the last is the last layer's output before the
        loss's fused activation, as :func:`logits` gives it.

    Raises:
        TypeError, ValueError: for malformed params or x.
    """
    spec, _, x = _prepare(params, x)
    outputs: list[tuple[str, np.ndarray]] = []
    _run_forward(spec, params, x, False, None, None, outputs)
    return outputs


def logits(params: Params, x: np.ndarray) -> np.ndarray:
    """The last layer's output before the loss (evaluation mode): logits for
    cross-entropy and binary cross-entropy, the output itself otherwise. This
    is what :meth:`purenn.Loss.predict` and ``value`` take."""
    spec, _, x = _prepare(params, x)
    return _run_forward(spec, params, x, False, None, None)[0]


class TrainPass(NamedTuple):
    """What :func:`train_pass` returns."""

    loss: float
    """The mean training-mode loss."""
    grads: Params
    """Its gradients, a tree with the structure, shapes and dtype of params; for a
    network with state, the state after this pass under ``"state"``."""
    output: np.ndarray
    """The last layer's output before the loss (logits for a fused loss),
    ``(n, k)``: training accuracy at no extra cost."""


def _value_and_grad(spec: Network, out: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    value, dout = spec.loss.value_and_grad(out, y)
    if type(dout) is not np.ndarray or dout.shape != out.shape or dout.dtype != out.dtype:
        got = f"{dout.shape} {dout.dtype}" if isinstance(dout, np.ndarray) else type(dout).__name__
        raise ValueError(
            f"loss {describe(spec.loss)}.value_and_grad returned a gradient of {got}; expected an "
            f"array of the output's shape {out.shape} and dtype {out.dtype}"
        )
    return float(value), dout


def _train_pass(
    spec: Network, params: Params, x: np.ndarray, y: np.ndarray, rng: Any, ws: Workspace | None
) -> TrainPass:
    if ws is not None:
        ws.begin_pass()
    try:
        out, caches = _run_forward(spec, params, x, True, rng, ws)
        state = _next_state(spec, params, caches) if spec._layout.with_state else None
        value, dout = _value_and_grad(spec, out, y)
        grads = _run_backward(spec, params, caches, dout)
        if state is not None:
            grads[STATE_KEY] = state
        if ws is not None and ws.nbytes:  # nothing returned may live in the workspace
            out = out.copy() if ws.holds(out) else out
            for name in (*spec._layout.with_params, *([STATE_KEY] if state else [])):
                if _held(ws, grads[name]):
                    grads[name] = _copied(grads[name])
    finally:
        if ws is not None:
            ws.end_pass()
    return TrainPass(value, grads, out)


def _held(ws: Workspace, tree: dict) -> bool:
    return any(_held(ws, v) if type(v) is dict else ws.holds(v) for v in tree.values())


def _copied(tree: dict) -> dict:
    return {k: _copied(v) if type(v) is dict else v.copy() for k, v in tree.items()}


def _next_state(spec: Network, params: Params, caches: list) -> Params:
    """Each stateful layer's state after this training pass (``next_state``),
    checked to have the keys, shapes and dtypes of the state before it."""
    layout = spec._layout
    old = params[STATE_KEY]
    new: Params = {}
    for name, layer, (cache, ctx, _) in zip(layout.names, layout.run_layers, caches, strict=True):
        if name in old:
            state = layer.next_state(old[name], cache, ctx)
            problem = state_mismatch(state, old[name])
            if problem:
                raise ValueError(
                    f"{name} ({type(layer).__name__}).next_state returned a state that does "
                    f"not match its init_state: {problem}"
                )
            new[name] = state
    return new


def state_mismatch(state: Any, like: Any, path: str = "") -> str | None:
    """What differs between ``state`` and ``like`` in keys, shapes or dtypes
    (a message), or None when they agree."""
    if type(like) is dict:
        if type(state) is not dict or state.keys() != like.keys():
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            return f"at {path or 'the top'} keys {got} instead of {sorted(like)}"
        for key, value in like.items():
            problem = state_mismatch(state[key], value, f"{path}/{key}" if path else key)
            if problem:
                return problem
        return None
    if type(state) is not np.ndarray or state.shape != like.shape or state.dtype != like.dtype:
        got = (
            f"shape {state.shape} and dtype {state.dtype}"
            if isinstance(state, np.ndarray)
            else type(state).__name__
        )
        return f"{path} is {got} instead of shape {like.shape} and dtype {like.dtype}"
    return None


def train_pass(
    params: Params, x: np.ndarray, y: np.ndarray, *, rng: Any = None, workspace: Any = None
) -> TrainPass:
    """One training-mode forward and backward pass: the loss, its gradients and
    the output.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        y: targets for the network's loss (int labels ``(n,)`` or one-hot
            ``(n, k)`` for cross-entropy; ``(n, k)`` targets for the others).
        rng: a Generator or int seed; required when a layer draws randomness
            (dropout).
        workspace: a :class:`purenn.Workspace` whose buffers the convolution
            and pooling layers reuse from pass to pass (None: fresh arrays; the
            results are the same).

    Returns:
        A :class:`TrainPass` ``(loss, grads, output)``. For a network with
        state, ``grads["state"]`` holds the state after this pass (BatchNorm's
        running statistics updated with this batch): :func:`sgd_step` and the
        optimizers put it into the params they return.

    Raises:
        ValueError: for shape or label errors, dropout without an rng, or a layer
            or loss that returns something other than it promised.
        TypeError: for inputs of the wrong kind or dtype.
    """
    spec, dtype, x = _prepare(params, x)
    y = spec.loss.check_targets(y, x.shape[0], spec.output_shape, dtype)
    rng = _check_rng(spec, rng, True)
    return _train_pass(spec, params, x, y, rng, _check_workspace(workspace))


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
    train = check_flag(train, "train")
    spec, dtype, x = _prepare(params, x)
    y = spec.loss.check_targets(y, x.shape[0], spec.output_shape, dtype)
    rng = _check_rng(spec, rng, train)
    out, _ = _run_forward(spec, params, x, train, rng, None)
    return float(spec.loss.value(out, y))


def loss_and_grads(
    params: Params, x: np.ndarray, y: np.ndarray, *, rng: Any = None, workspace: Any = None
) -> tuple[float, Params]:
    """The training-mode loss and its gradients in one forward and backward pass.

    Args:
        params: a tree from :func:`init`.
        x: inputs of shape ``(n, *input_shape)`` in the params' dtype.
        y: int labels ``(n,)`` or one-hot ``(n, k)`` for cross-entropy; ``(n, k)``
            targets for the other built-in losses.
        rng: a Generator or int seed; required when the network has dropout.
        workspace: a :class:`purenn.Workspace` to reuse work arrays in (see
            :func:`train_pass`).

    Returns:
        ``(loss, grads)``: the mean loss as a float, and a tree with exactly the
        structure, shapes and dtype of ``params``.

    Raises:
        ValueError: for shape or label errors, or dropout without an rng.
        TypeError: for inputs of the wrong kind or dtype.
    """
    result = train_pass(params, x, y, rng=rng, workspace=workspace)
    return result.loss, result.grads


def grads(
    params: Params, x: np.ndarray, y: np.ndarray, *, rng: Any = None, workspace: Any = None
) -> Params:
    """Gradients of the mean training-mode loss; see :func:`loss_and_grads`.

    For a network with state (BatchNorm) the tree also carries, under
    ``"state"``, the state after this pass, which :func:`sgd_step` puts into
    the new params: ``params = sgd_step(params, grads(params, x, y), lr)``
    keeps the running statistics up to date.
    """
    return train_pass(params, x, y, rng=rng, workspace=workspace).grads


def predict(params: Params, x: np.ndarray) -> np.ndarray:
    """Predicted labels (evaluation mode), as the network's loss defines them.

    Returns:
        For cross-entropy, the argmax class, int64 of shape ``(n,)``. For binary
        cross-entropy, 1 where the probability exceeds 0.5: shape ``(n,)`` for a
        single output, ``(n, k)`` for several.

    Raises:
        ValueError: for a regression loss (MSE, ...); use :func:`forward` there.
    """
    spec = _spec_of(params)
    if not spec.loss.has_accuracy:
        spec.loss.predict(None)  # raises the loss's own message
    return spec.loss.predict(logits(params, x))


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """One plain gradient-descent step, ``p - lr * g`` leaf by leaf.

    Args:
        params: a tree from :func:`init`.
        grads: gradients of that very network (same spec, shapes and dtype).
        lr: learning rate, a finite float >= 0.

    Returns:
        New params; ``params`` and ``grads`` are left untouched. The state (a
        network with BatchNorm) is not a leaf: the new params carry the state
        ``grads`` carry (the state after their pass), or ``params``' own if
        ``grads`` carry none.

    Raises:
        ValueError: if ``params`` do not match their spec (:func:`check_params`),
            ``grads`` belong to another network or ``lr`` is invalid.
    """
    _params_dtype(params, _spec_of(params))
    lr = check_lr(lr)
    # One walk checks and updates; only on failure does the slower, path-naming
    # tree_check_like run to say which leaf is wrong.
    try:
        return _descend_tree(params, grads, lr)
    except (ValueError, TypeError, KeyError):
        tree_check_like(grads, params, "grads")
        raise


def _descend_tree(params: dict, grads: Any, lr: float) -> dict:
    """``p - lr * g`` leaf by leaf (spec passed through), raising a bare
    ValueError at the first difference in structure, spec, shape or dtype.

    ``tree_map`` with the checks inlined: this runs on every training step.
    """
    if type(grads) is not dict or grads.keys() != params.keys():
        # grads without a state (made by hand, say) leave params' state as it is
        if type(grads) is not dict or grads.keys() | {STATE_KEY} != params.keys():
            raise ValueError
    out = {}
    for key, p in params.items():
        if key == STATE_KEY:
            g = grads.get(key, p)
            if g is not p and state_mismatch(g, p):
                raise ValueError
            out[key] = g
            continue
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
            out[key] = p - lr * g
    return out
