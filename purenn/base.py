"""The layer protocol: the :class:`Layer` base class, the pass :class:`Context`,
and the registry of layer classes.

A layer is a frozen ``attrs`` class of hyperparameters that knows, as pure
methods, how to work out its output shape, make its parameters, and run
forward and backward::

    @purenn.register_layer
    @attrs.frozen
    class Scale(purenn.Layer):
        '''y = x * s, one learned scale per feature.'''

        def output_shape(self, in_shape):
            return in_shape

        def init_params(self, rng, in_shape, dtype):
            return {"s": np.ones(in_shape, dtype)}

        def forward(self, params, x, ctx):
            return x * params["s"], x                 # (y, cache)

        def backward(self, params, cache, dy, ctx):
            x = cache
            dx = dy * params["s"] if ctx.need_dx else None   # dL/dx = dy * s
            return dx, {"s": (dy * x).sum(axis=0)}            # dL/ds = sum_n dy * x

Every built-in layer is written and registered exactly this way. Shapes are
per sample (no batch axis): ``output_shape((16,))`` is ``(16,)``; arrays are
batch-first, ``x`` of shape ``(n, *in_shape)``. A layer never writes into
``x``, ``dy``, its params, its state or its cache (they may be read-only); it
returns new arrays (or views of its inputs).

A layer may also keep *state*: arrays a training pass computes rather than
differentiates, such as :class:`purenn.BatchNorm`'s running statistics. It
defines ``init_state(in_shape, dtype)`` and ``next_state(state, cache, ctx)``;
the network hands the current state to ``forward`` as ``ctx.state`` and, after
every training forward, asks ``next_state`` for the state after that pass.

A layer can also state the shapes of its params (``param_shapes``) and state
(``state_shapes``) from shape arithmetic alone. The network uses them to check
params against their spec at every public function, and ``purenn.load`` to
refuse a checkpoint without drawing a single weight. A layer that does not
define them gets them from ``init_params`` and ``init_state`` (the slow path:
it makes the arrays once, when the ``Network`` is built)::

        def param_shapes(self, in_shape):
            return {"s": in_shape}

A layer made of other layers (a container, such as :class:`purenn.Residual`)
names them with ``sublayers(in_shape)``, so that ``Network.summary`` lists
them beneath it.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import attrs
import numpy as np

from purenn._checks import show
from purenn._registry import ClassRegistry

Shape = tuple[int, ...]

__all__ = [
    "ArraySpec",
    "Context",
    "Layer",
    "Shape",
    "Sublayer",
    "is_registered_layer",
    "layer_class",
    "layer_classes",
    "layer_from_dict",
    "layer_names",
    "layer_to_dict",
    "register_layer",
]


class Context(NamedTuple):
    """What a layer learns about the pass it is part of (read-only).

    Attributes:
        train: training mode (dropout active, caches kept for backward) or evaluation.
        rng: the pass's ``numpy.random.Generator`` in a training pass that has one;
            None otherwise. Only layers that declare ``draws_randomness`` may rely
            on it (the network refuses a training pass without one for them).
        need_dx: whether ``backward`` must return ``dL/dx`` (False for the first
            layer, whose input gradient nobody uses: return None then).
        workspace: for layers that declare ``uses_workspace``, the allocator of
            their work arrays (``empty(key, shape, dtype)``, ``zeros(...)``; see
            :class:`purenn.Workspace`); None for every other layer.
        state: for a layer with state (it defines ``init_state``), its current
            state, read-only: what ``init_state`` made, as the last training
            pass left it. None for every other layer.
    """

    train: bool
    rng: np.random.Generator | None = None
    need_dx: bool = True
    workspace: Any = None
    state: Any = None


class ArraySpec(NamedTuple):
    """The expected shape and dtype of one state array, for ``state_shapes``.

    A plain shape tuple stands for a float array of the params' dtype; an
    ``ArraySpec(shape, np.int64)`` for an int64 counter, e.g. BatchNorm's
    ``"count": ArraySpec((), np.int64)``.
    """

    shape: Shape
    dtype: Any = None
    """A NumPy dtype, or None for the params' float dtype."""


def _shapes_of(tree: Any, method: str, layer: Any) -> Any:
    """The shapes of what ``init_params`` or ``init_state`` made (the slow path of
    ``param_shapes`` and ``state_shapes``): float32 arrays as shape tuples (the
    params' dtype), other arrays as :class:`ArraySpec`."""
    if type(tree) is dict:
        return {k: _shapes_of(v, method, layer) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        if tree.dtype == np.float32:
            return tuple(int(d) for d in tree.shape)
        return ArraySpec(tuple(int(d) for d in tree.shape), tree.dtype)
    raise ValueError(
        f"{type(layer).__name__}.{method} must return a dict of NumPy arrays (nested dicts "
        f"allowed); got {type(tree).__name__}"
    )


class Sublayer(NamedTuple):
    """One of the layers a container is made of (see :meth:`Layer.sublayers`)."""

    path: tuple[str, ...]
    """The keys from the container's own params dict down to this layer's entry,
    ``("shortcut", "conv2d_0")``: ``params[container][path[0]][path[1]]``, the
    same for state. A layer without params is named as if it had them."""
    layer: Layer
    """The layer spec."""
    in_shape: Shape
    """The per-sample shape this layer is given when the container is given
    the ``in_shape`` that :meth:`Layer.sublayers` was called with."""


class Layer:
    """Base class of layer specs; subclass it with ``@attrs.frozen``.

    A subclass defines:

    * ``output_shape(in_shape) -> out_shape``: per-sample shapes. Raise
      ``ValueError`` for an input the layer cannot take; the network adds the
      layer's name to the message.
    * ``init_params(rng, in_shape, dtype) -> dict`` of arrays of ``dtype`` (leave
      it out for a layer without params).
    * ``forward(params, x, ctx) -> (y, cache)``: ``params`` is the layer's own
      dict (None without params); ``cache`` is anything ``backward`` needs.
    * ``backward(params, cache, dy, ctx) -> (dx, grads)``: ``dy = dL/dy``;
      ``dx = dL/dx`` (None when ``ctx.need_dx`` is False); ``grads`` a dict with
      exactly the keys, shapes and dtypes of ``params`` (None without params).

    A layer with state also defines:

    * ``init_state(in_shape, dtype) -> dict`` of arrays (float ones of
      ``dtype``; counters may be int64): the state before any training pass.
    * ``next_state(state, cache, ctx) -> dict``: the state after the training
      pass whose ``forward`` returned ``cache`` (``ctx`` is that forward's
      context), with the keys, shapes and dtypes of ``state``. Never called
      after an evaluation pass.

    State is not a parameter: no gradient flows into it and no optimizer
    changes it (see ``docs/design.md``, "State").

    A layer should also define, so that params and checkpoints are checked
    without making any array:

    * ``param_shapes(in_shape) -> dict`` of the shapes of ``init_params``'
      arrays, as tuples of ints, in the same (nested) dict structure:
      ``{"w": (d_in, d_out), "b": (d_out,)}``.
    * ``state_shapes(in_shape) -> dict`` likewise for ``init_state``: a shape
      tuple for a float array, an :class:`ArraySpec` ``(shape, np.int64)`` for a
      counter.

    Without them the defaults call ``init_params`` / ``init_state`` once, when
    the ``Network`` is built, and read the shapes off the arrays (the slow path:
    fine for small layers, costly for big ones and for ``purenn.load`` of a
    checkpoint naming one).

    A layer made of other layers also defines:

    * ``sublayers(in_shape) -> tuple`` of :class:`Sublayer`: each child with
      the path of its entry in the container's params and the shape it is
      given, in the order they run. ``Network.summary`` lists them beneath the
      container (nested containers beneath theirs).

    and may set these class attributes:

    * ``draws_randomness`` (default False): the training pass draws from
      ``ctx.rng`` (a property works too, e.g. ``Dropout``: only when ``rate > 0``).
    * ``uses_workspace`` (default False): ``ctx.workspace`` hands out reusable
      work arrays (convolution and pooling use it; nothing the layer returns to
      the network after the pass may live there except ``y`` and ``dx``).
    * ``param_prefix`` (default: the class name in lower case): the key prefix
      of the layer's entry in the params dict (``Scale`` -> ``scale_0``).
    """

    draws_randomness: ClassVar[bool] = False
    uses_workspace: ClassVar[bool] = False
    param_prefix: ClassVar[str | None] = None

    def output_shape(self, in_shape: Shape) -> Shape:
        raise NotImplementedError(f"{type(self).__name__} must define output_shape(in_shape)")

    def init_params(self, rng: np.random.Generator, in_shape: Shape, dtype: np.dtype) -> Any:
        """No params (the default): the layer gets no entry in the params dict."""
        return None

    def init_state(self, in_shape: Shape, dtype: np.dtype) -> Any:
        """No state (the default): the layer gets no entry in the params' state."""
        return None

    def param_shapes(self, in_shape: Shape) -> Any:
        """The shapes of ``init_params(rng, in_shape, dtype)``'s arrays; None
        without params. This default (the slow path) makes the params once
        with float32 and reads their shapes: define it from shape arithmetic."""
        if not self.has_params:
            return None
        made = self.init_params(np.random.default_rng(0), in_shape, np.dtype(np.float32))
        return _shapes_of(made, "init_params", self)

    def state_shapes(self, in_shape: Shape) -> Any:
        """The shapes of ``init_state(in_shape, dtype)``'s arrays (shape tuples
        for float arrays, :class:`ArraySpec` for counters); None without state.
        This default (the slow path) makes the state once and reads it."""
        if not self.has_state:
            return None
        return _shapes_of(self.init_state(in_shape, np.dtype(np.float32)), "init_state", self)

    def sublayers(self, in_shape: Shape) -> tuple[Sublayer, ...]:
        """The layers this one is made of; none (the default) for a plain layer."""
        return ()

    def next_state(self, state: Any, cache: Any, ctx: Context) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} defines init_state, so it must define "
            "next_state(state, cache, ctx)"
        )

    def forward(self, params: Any, x: np.ndarray, ctx: Context) -> tuple[np.ndarray, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define forward(params, x, ctx)")

    def backward(
        self, params: Any, cache: Any, dy: np.ndarray, ctx: Context
    ) -> tuple[np.ndarray | None, Any]:
        raise NotImplementedError(
            f"{type(self).__name__} must define backward(params, cache, dy, ctx)"
        )

    @property
    def has_params(self) -> bool:
        """Whether the layer has params: it defines its own ``init_params``."""
        return type(self).init_params is not Layer.init_params

    @property
    def has_state(self) -> bool:
        """Whether the layer has state: it defines its own ``init_state``."""
        return type(self).init_state is not Layer.init_state

    @property
    def name_prefix(self) -> str:
        """``param_prefix``, or the class name in lower case."""
        return type(self).param_prefix or type(self).__name__.lower()


_LAYERS = ClassRegistry("layer", "@purenn.register_layer")


def register_layer(cls: type) -> type:
    """Class decorator: make a :class:`Layer` subclass usable in a ``Network``.

    A registered layer works everywhere a built-in does: ``Network`` (its shape
    checked when the network is made), ``init``, ``forward``, ``grads``, ``fit``,
    the optimizers, ``Network.to_json``/``from_json`` and ``save``/``load`` (in a
    process that has imported the module defining it). Checkpoints and JSON
    specs store the class name, so it must be unique among registered layers.

    Args:
        cls: a subclass of :class:`purenn.Layer` made with ``@attrs.frozen``
            (put ``@register_layer`` above ``@attrs.frozen``).

    Returns:
        ``cls`` itself.

    Raises:
        TypeError: if ``cls`` is not a frozen attrs subclass of ``Layer``.
        ValueError: if another class of the same name is registered already.
    """
    return _LAYERS.add(cls, Layer)


def layer_class(name: str) -> type:
    """The registered layer class called ``name``.

    Raises:
        ValueError: for a name nobody registered, saying what to import.
    """
    return _LAYERS.get(name)


def is_registered_layer(cls: type) -> bool:
    """Whether ``cls`` is the class registered under its name."""
    return _LAYERS.holds(cls)


def layer_classes() -> tuple[type, ...]:
    """Every registered layer class, in registration order."""
    return _LAYERS.classes()


def check_layer_sequence(layers: tuple, what: str) -> tuple:
    """``layers`` if every item is a spec of a registered layer class; else a
    ``TypeError`` naming the item as ``what[i]`` (``"Network.layers[2]"``)."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{what}[{i}] must be a layer spec (an instance of a purenn.Layer subclass "
                f"such as Dense(10)); got {show(layer)} ({type(layer).__name__})"
            )
        if not is_registered_layer(type(layer)):
            raise TypeError(
                f"{what}[{i}] is a {type(layer).__name__}, which is not registered; "
                "decorate its class with @purenn.register_layer"
            )
    return layers


def layer_names(layers: Any) -> tuple[str, ...]:
    """The names of a sequence of layers, ``<prefix>_<index>`` counted per prefix:
    ``(Dense, Dropout, Dense)`` -> ``("dense_0", "dropout_0", "dense_1")``. A
    network names its layers this way, and so do containers their children."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        prefix = layer.name_prefix
        names.append(f"{prefix}_{counts.get(prefix, 0)}")
        counts[prefix] = counts.get(prefix, 0) + 1
    return tuple(names)


def layer_to_dict(layer: Layer) -> dict:
    """A layer as plain JSON-able data: ``{"type": class name, field: value, ...}``.

    Fields holding layers (a container's children) are written the same way,
    nested; tuples become lists. :func:`layer_from_dict` rebuilds the layer.
    """
    out: dict[str, Any] = {"type": type(layer).__name__}
    for field in attrs.fields(type(layer)):
        if field.init:
            out[field.name] = _to_json(getattr(layer, field.name))
    return out


def _to_json(value: Any) -> Any:
    if isinstance(value, Layer):
        return layer_to_dict(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


def layer_from_dict(data: Any) -> Layer:
    """Rebuild a layer from :func:`layer_to_dict`'s output (validators run again).

    Raises:
        ValueError: for an unregistered layer type, or data that is not a layer's.
        TypeError: for fields the layer class does not take.
    """
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError(
            f"a layer must be a dict with its class name under 'type'; got {show(data)}"
        )
    fields = {k: _from_json(v) for k, v in data.items() if k != "type"}
    return layer_class(data["type"])(**fields)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return layer_from_dict(value)
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value
