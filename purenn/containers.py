"""Containers: layers made of layers.

* :class:`Residual` ``(layers, shortcut=None)``: ``y = act(f(x) + shortcut(x))``,
  ``f`` the layers in order, the shortcut the identity or its own layers (a
  strided 1x1 ``Conv2D``, say, when ``f`` changes the shape).
* :class:`Parallel` ``(branches, join="sum")``: every branch sees ``x``; their
  outputs are summed, or concatenated along the feature (channel) axis.

A container is a registered :class:`purenn.Layer` like any other: a network
checks its shape when it is built, and the JSON form, checkpoints, optimizers
and ``purenn.gradcheck`` handle it. Its children are named the way a network
names its layers (``conv2d_0``, ``batchnorm_0``, ``conv2d_1``, ...), and its
params and state nest under its own name::

    params["residual_0"]["conv2d_0"]["w"]
    params["residual_0"]["shortcut"]["conv2d_0"]["w"]      # a shortcut's layers
    params["parallel_0"]["branch_1"]["dense_0"]["b"]
    params["state"]["residual_0"]["batchnorm_1"]["mean"]

Children run with the container's context: the same ``train`` flag and rng
(dropout inside a branch draws from the pass's Generator, in order), the
workspace scoped to each child's name, each child's own state. What a child
returns is checked as the network checks its own layers.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import attrs
import numpy as np

from purenn._checks import one_of, show
from purenn.activations import activation_validator, get_activation
from purenn.base import (
    Context,
    Layer,
    Shape,
    Sublayer,
    check_layer_sequence,
    layer_names,
    register_layer,
)
from purenn.workspace import FRESH, empty_like

__all__ = ["Parallel", "Residual"]


# --------------------------------------------------------------------------- chains


def _as_chain(value: Any, what: str) -> tuple:
    """A layer, a sequence of layers, or None (the identity) as a tuple of layers."""
    if value is None:
        return ()
    if isinstance(value, Layer):
        return (value,)
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a layer or a sequence of layers; got {show(value)}")
    return check_layer_sequence(tuple(value), what)


class _Chain(NamedTuple):
    """Layers run one after the other, named as a network names its layers."""

    layers: tuple
    names: tuple[str, ...]
    label: str  # how messages name the chain's children: "" or "shortcut/"

    def shapes(self, in_shape: Shape) -> list[Shape]:
        shapes = [in_shape]
        for layer, name in zip(self.layers, self.names, strict=True):
            try:
                out = layer.output_shape(shapes[-1])
            except ValueError as err:
                raise ValueError(f"{self.label}{name} ({type(layer).__name__}): {err}") from None
            ok = isinstance(out, tuple) and all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in out
            )
            if not ok or not out:
                raise TypeError(
                    f"{self.label}{name} ({type(layer).__name__}).output_shape({shapes[-1]}) "
                    f"must return a tuple of positive ints; got {show(out)}"
                )
            shapes.append(out)
        return shapes

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        out = {}
        for layer, name, shape in zip(self.layers, self.names, self.shapes(in_shape), strict=False):
            if layer.has_params:
                out[name] = layer.init_params(rng, shape, dtype)
        return out

    def init_state(self, in_shape: Shape, dtype: np.dtype) -> dict:
        out = {}
        for layer, name, shape in zip(self.layers, self.names, self.shapes(in_shape), strict=False):
            if layer.has_state:
                out[name] = layer.init_state(shape, dtype)
        return out

    def param_shapes(self, in_shape: Shape) -> dict:
        out = {}
        for layer, name, shape in zip(self.layers, self.names, self.shapes(in_shape), strict=False):
            if layer.has_params:
                out[name] = layer.param_shapes(shape)
        return out

    def state_shapes(self, in_shape: Shape) -> dict:
        out = {}
        for layer, name, shape in zip(self.layers, self.names, self.shapes(in_shape), strict=False):
            if layer.has_state:
                out[name] = layer.state_shapes(shape)
        return out

    def forward(
        self, params: dict | None, state: dict | None, x: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray, list]:
        """Each child forward in turn; the output and each child's ``(cache, ctx, x shape)``."""
        caches = []
        for i, (layer, name) in enumerate(zip(self.layers, self.names, strict=True)):
            scratch = None
            if layer.uses_workspace:
                scratch = FRESH if ctx.workspace is None else ctx.workspace.scoped(name)
            own = state.get(name) if state and layer.has_state else None
            child = Context(ctx.train, ctx.rng, ctx.need_dx if i == 0 else True, scratch, own)
            p = params.get(name) if params else None
            try:
                y, cache = layer.forward(p, x, child)
            except ValueError as err:
                raise ValueError(f"{self.label}{name} ({type(layer).__name__}): {err}") from err
            if type(y) is not np.ndarray or len(y) != len(x) or y.dtype != x.dtype:
                got = f"{y.shape} {y.dtype}" if isinstance(y, np.ndarray) else type(y).__name__
                raise ValueError(
                    f"{self.label}{name} ({type(layer).__name__}).forward returned {got} for "
                    f"an input {x.shape} {x.dtype}; expected {len(x)} samples of its dtype"
                )
            caches.append((cache, child, x.shape))
            x = y
        return x, caches

    def backward(
        self, params: dict | None, caches: list, dy: np.ndarray
    ) -> tuple[np.ndarray | None, dict]:
        """Each child backward from ``dy``, last to first; ``(dx, grads)``."""
        grads: dict = {}
        for layer, name, (cache, ctx, in_shape) in zip(
            reversed(self.layers), reversed(self.names), reversed(caches), strict=True
        ):
            p = params.get(name) if params else None
            dx, g = layer.backward(p, cache, dy, ctx)
            if p is not None:
                if type(g) is not dict or g.keys() != p.keys():
                    got = sorted(g) if isinstance(g, dict) else type(g).__name__
                    raise ValueError(
                        f"{self.label}{name} ({type(layer).__name__}).backward returned "
                        f"gradients {got}; expected a dict with the keys {sorted(p)} of its params"
                    )
                grads[name] = g
            if ctx.need_dx and (
                type(dx) is not np.ndarray or dx.shape != in_shape or dx.dtype != dy.dtype
            ):
                got = f"shape {dx.shape}" if isinstance(dx, np.ndarray) else type(dx).__name__
                raise ValueError(
                    f"{self.label}{name} ({type(layer).__name__}).backward returned dx of "
                    f"{got}; expected an array of shape {in_shape} and dtype {dy.dtype}"
                )
            dy = dx
        # in the params' order (the children's), so the two trees print and iterate alike
        return dy, {name: grads[name] for name in self.names if name in grads}

    def next_state(self, state: dict, caches: list) -> dict:
        return {
            name: layer.next_state(state[name], cache, ctx)
            for layer, name, (cache, ctx, _) in zip(self.layers, self.names, caches, strict=True)
            if layer.has_state
        }


def _chain(layers: tuple, label: str) -> _Chain:
    return _Chain(layers, layer_names(layers), label)


# --------------------------------------------------------------------------- branches


class _Branches(Layer):
    """What Residual and Parallel share: chains that each see ``x``, joined.

    A subclass gives ``_branches()``: ``(key, chain)`` pairs, where ``key`` is
    the entry of the container's params and state holding that chain's (None:
    the chain's children sit at the top of the container's own dict).
    """

    activation: str

    def _branches(self) -> list[tuple[str | None, _Chain]]:
        raise NotImplementedError

    def _join_shape(self, shapes: list[Shape], in_shape: Shape) -> Shape:
        raise NotImplementedError

    def _all(self) -> list:
        return [layer for _, chain in self._branches() for layer in chain.layers]

    @property
    def has_params(self) -> bool:  # type: ignore[override]
        return any(layer.has_params for layer in self._all())

    @property
    def has_state(self) -> bool:  # type: ignore[override]
        return any(layer.has_state for layer in self._all())

    @property
    def draws_randomness(self) -> bool:  # type: ignore[override]
        return any(layer.draws_randomness for layer in self._all())

    @property
    def uses_workspace(self) -> bool:  # type: ignore[override]
        return any(layer.uses_workspace for layer in self._all())

    def sublayers(self, in_shape: Shape) -> tuple[Sublayer, ...]:
        out = []
        for key, chain in self._branches():
            above = () if key is None else (key,)
            shapes = chain.shapes(in_shape)[:-1]  # what each child is given
            for name, layer, shape in zip(chain.names, chain.layers, shapes, strict=True):
                out.append(Sublayer((*above, name), layer, shape))
        return tuple(out)

    def output_shape(self, in_shape: Shape) -> Shape:
        ends = [chain.shapes(in_shape)[-1] for _, chain in self._branches()]
        return self._join_shape(ends, in_shape)

    @staticmethod
    def _part(tree: dict | None, key: str | None, keys: list) -> dict | None:
        if tree is None:
            return None
        if key is None:
            return {k: v for k, v in tree.items() if k not in keys}
        return tree.get(key)

    def _merge(self, parts: list[tuple[str | None, dict]]) -> dict:
        out: dict = {}
        for key, part in parts:
            if not part:
                continue
            if key is None:
                out.update(part)
            else:
                out[key] = part
        return out

    def _keys(self) -> list:
        return [key for key, _ in self._branches() if key is not None]

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> dict:
        parts = [(key, c.init_params(rng, in_shape, dtype)) for key, c in self._branches()]
        return self._merge(parts)

    def init_state(self, in_shape: Shape, dtype: np.dtype) -> dict:
        return self._merge([(key, c.init_state(in_shape, dtype)) for key, c in self._branches()])

    def param_shapes(self, in_shape: Shape) -> dict | None:
        if not self.has_params:
            return None
        return self._merge([(key, c.param_shapes(in_shape)) for key, c in self._branches()])

    def state_shapes(self, in_shape: Shape) -> dict | None:
        if not self.has_state:
            return None
        return self._merge([(key, c.state_shapes(in_shape)) for key, c in self._branches()])

    def _branch_ctx(self, ctx: Context, key: str | None) -> Context:
        if key is None or ctx.workspace is None:
            return ctx
        return ctx._replace(workspace=ctx.workspace.scoped(key))

    def forward(self, params: Any, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        keys = self._keys()
        outs, caches = [], []
        for key, chain in self._branches():
            y, cache = chain.forward(
                self._part(params, key, keys),
                self._part(ctx.state, key, keys),
                x,
                self._branch_ctx(ctx, key),
            )
            outs.append(y)
            caches.append(cache)
        scratch = FRESH if ctx.workspace is None else ctx.workspace
        z = self._join(outs, scratch)
        act = get_activation(self.activation)
        # z is this pass's own array (a sum or concatenation): a can take its place
        a = act.forward(z, out=z) if act.in_place else act.forward(z)
        return a, (caches, [y.shape[1:] for y in outs], z, a)

    def backward(self, params: Any, cache: Any, dy: np.ndarray, ctx: Context) -> tuple:
        caches, out_shapes, z, a = cache
        keys = self._keys()
        scratch = FRESH if ctx.workspace is None else ctx.workspace
        act = get_activation(self.activation)
        if act.in_place:  # dL/dz = dL/da * da/dz, into a work array
            dz = act.backward(z, a, dy, out=empty_like(scratch, "dz", a))
        else:
            dz = act.backward(z, a, dy)
        parts, dxs = [], []
        for (key, chain), c, dzb in zip(
            self._branches(), caches, self._split(dz, out_shapes), strict=True
        ):
            dxb, g = chain.backward(self._part(params, key, keys), c, dzb)
            parts.append((key, g))
            dxs.append(dxb)
        dx = None
        if ctx.need_dx:  # x feeds every branch: dL/dx is the sum of theirs, in our own array
            dx = np.add(dxs[0], dxs[1], out=empty_like(scratch, "dx", dxs[0]))
            for d in dxs[2:]:
                dx += d
        return dx, (self._merge(parts) if self.has_params else None)

    def next_state(self, state: Any, cache: Any, ctx: Context) -> dict:
        keys = self._keys()
        parts = [
            (key, chain.next_state(self._part(state, key, keys), c))
            for (key, chain), c in zip(self._branches(), cache[0], strict=True)
        ]
        return self._merge(parts)

    def _join(self, outs: list[np.ndarray], scratch: Any) -> np.ndarray:
        z = np.add(outs[0], outs[1], out=empty_like(scratch, "z", outs[0]))
        for y in outs[2:]:
            z += y
        return z

    def _split(self, dz: np.ndarray, out_shapes: list) -> list[np.ndarray]:
        return [dz] * len(out_shapes)


def _sum_shapes(shapes: list[Shape], names: list[str], what: str) -> Shape:
    if any(s != shapes[0] for s in shapes):
        listed = ", ".join(f"{n} gives {s}" for n, s in zip(names, shapes, strict=True))
        raise ValueError(f"{listed}; {what}")
    return shapes[0]


@register_layer
@attrs.frozen
class Residual(_Branches):
    """A residual block: ``y = act(f(x) + shortcut(x))``.

    Args:
        layers: ``f``, one layer or a sequence of layers run in order (at least one).
        shortcut: None for the identity, or a layer or sequence of layers that
            maps ``x`` to ``f``'s output shape, e.g. ``Conv2D(c, 1, stride=2)``
            (with a ``BatchNorm()`` after it, as in ResNet) when ``f`` halves the
            image and changes the channels. Stored as a tuple (``()``: identity).
        activation: applied to the sum (``"linear"``: none; ResNet uses ``"relu"``).

    Params: ``f``'s children's under their own names, the shortcut's under
    ``"shortcut"``: ``{"conv2d_0": {...}, "batchnorm_0": {...}, "shortcut":
    {"conv2d_0": {...}}}``; the same nesting for state. ``Network`` checks when it
    is built that ``f`` and the shortcut give the same shape.
    """

    layers: tuple = attrs.field(converter=lambda v: _as_chain(v, "Residual.layers"))
    shortcut: tuple = attrs.field(
        default=None, converter=lambda v: _as_chain(v, "Residual.shortcut")
    )
    activation: str = attrs.field(default="linear", validator=activation_validator)

    @layers.validator
    def _some(self, attribute: attrs.Attribute, value: tuple) -> None:
        if not value:
            raise ValueError("Residual.layers is empty; give at least one layer, e.g. [Dense(16)]")

    def _branches(self) -> list[tuple[str | None, _Chain]]:
        return [(None, _chain(self.layers, "")), ("shortcut", _chain(self.shortcut, "shortcut/"))]

    def _join_shape(self, shapes: list[Shape], in_shape: Shape) -> Shape:
        main, short = shapes
        if main != short:
            what = "the shortcut (identity)" if not self.shortcut else "the shortcut"
            hint = (
                f"; give a shortcut that maps {in_shape} to {main}"
                + (
                    f", e.g. shortcut=Conv2D({main[0]}, 1, stride=...)"
                    if len(main) == 3 and len(in_shape) == 3
                    else ", e.g. shortcut=Dense(...)"
                )
                if not self.shortcut
                else ""
            )
            raise ValueError(
                f"the layers give {main} but {what} gives {short}; they are added, so they "
                f"must agree{hint}"
            )
        return main


@register_layer
@attrs.frozen
class Parallel(_Branches):
    """Branches that each see ``x``, joined: ``y = act(join(b_1(x), ..., b_k(x)))``.

    Args:
        branches: a sequence of branches, each one layer or a sequence of layers
            (an empty sequence is the identity); at least two.
        join: ``"sum"`` (every branch gives the same shape) or ``"concat"``
            (concatenated along the first per-sample axis, the features of
            ``(d,)`` or the channels of ``(c, h, w)``; the other axes must agree).
        activation: applied to the joined output (``"linear"``: none).

    Params: branch ``i``'s under ``"branch_<i>"`` (branches without params get
    no entry): ``params["parallel_0"]["branch_0"]["conv2d_0"]["w"]``.
    """

    branches: tuple = attrs.field(converter=lambda v: _as_branches(v))
    join: str = attrs.field(default="sum", validator=one_of({"sum": 0, "concat": 1}))
    activation: str = attrs.field(default="linear", validator=activation_validator)

    def _branches(self) -> list[tuple[str | None, _Chain]]:
        return [(f"branch_{i}", _chain(b, f"branch_{i}/")) for i, b in enumerate(self.branches)]

    def _join_shape(self, shapes: list[Shape], in_shape: Shape) -> Shape:
        names = [f"branch_{i}" for i in range(len(shapes))]
        if self.join == "sum":
            return _sum_shapes(shapes, names, "they are summed, so they must agree")
        rests = [s[1:] for s in shapes]
        if any(len(s) != len(shapes[0]) for s in shapes) or any(r != rests[0] for r in rests):
            listed = ", ".join(f"{n} gives {s}" for n, s in zip(names, shapes, strict=True))
            raise ValueError(
                f"{listed}; they are concatenated along the first axis, so the others must agree"
            )
        return (sum(s[0] for s in shapes), *rests[0])

    def _join(self, outs: list[np.ndarray], scratch: Any) -> np.ndarray:
        if self.join == "sum":
            return super()._join(outs, scratch)
        return np.concatenate(outs, axis=1)

    def _split(self, dz: np.ndarray, out_shapes: list) -> list[np.ndarray]:
        if self.join == "sum":
            return super()._split(dz, out_shapes)
        bounds = np.cumsum([0, *(s[0] for s in out_shapes)])
        return [dz[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]


def _as_branches(value: Any) -> tuple:
    if isinstance(value, str) or isinstance(value, Layer) or not hasattr(value, "__iter__"):
        raise TypeError(
            "Parallel.branches must be a sequence of branches (each a layer or a sequence "
            f"of layers), e.g. [[Dense(8)], Dense(8)]; got {show(value)}"
        )
    branches = tuple(_as_chain(b, f"Parallel.branches[{i}]") for i, b in enumerate(value))
    if len(branches) < 2:
        raise ValueError(
            f"Parallel needs at least two branches; got {len(branches)} (a single branch "
            "is just its layers)"
        )
    return branches
