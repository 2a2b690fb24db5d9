"""The network spec: input shape, layers and loss, checked before any array exists."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, NamedTuple

import attrs
import numpy as np

from purenn._checks import as_shape, check_sample_size, show
from purenn.base import (
    ArraySpec,
    Layer,
    Shape,
    Sublayer,
    check_layer_sequence,
    layer_from_dict,
    layer_names,
    layer_to_dict,
)
from purenn.losses import Loss, as_loss, describe, loss_from_dict, loss_to_dict
from purenn.tree import SPEC_KEY, STATE_KEY


def _as_shape(value: Any) -> Shape:
    """attrs converter: :func:`purenn._checks.as_shape` naming the field."""
    return as_shape(value, "Network.input_shape")


def _as_layers(value: Any) -> tuple:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"Network.layers must be a sequence of layer specs; got {show(value)}")
    layers = check_layer_sequence(tuple(value), "Network.layers")
    if not layers:
        raise ValueError("Network.layers is empty; give at least one layer, e.g. [Dense(10)]")
    return layers


class Layout(NamedTuple):
    """What every pass asks of a Network, worked out once when it is made (a
    Network never changes), so the per-step checks do not walk the layers again."""

    names: tuple[str, ...]
    """:meth:`Network.layer_names`."""
    shapes: tuple[Shape, ...]
    """:meth:`Network.shapes`."""
    with_params: tuple[str, ...]
    """Names of the layers that have parameters, in order."""
    random: tuple[str, ...]
    """Names of the layers that draw randomness in a training pass."""
    run_layers: tuple
    """The layers a pass runs: ``layers``, except that with a fused loss the last
    one runs with ``activation="linear"`` (the loss takes its logits)."""
    param_shapes: dict
    """The params tree the spec makes, as shapes (see :meth:`Network.param_shapes`;
    state leaves always as :class:`ArraySpec`). Read-only: never change it."""
    with_state: tuple[str, ...] = ()
    """Names of the layers that have state (BatchNorm, or containers holding one)."""


_INT64 = np.dtype(np.int64)


def _shape_tree(tree: Any, where: str, state: bool) -> Any:
    """A layer's ``param_shapes`` or ``state_shapes`` checked and normalised:
    params leaves as tuples of Python ints, state leaves as :class:`ArraySpec`
    (dtype None: the params' float dtype; else int64)."""
    method = "state_shapes" if state else "param_shapes"
    if type(tree) is not dict or not tree:
        raise TypeError(
            f"{where}.{method} must return a non-empty dict of shapes (nested dicts allowed); "
            f"got {show(tree)}"
        )
    out = {}
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key or key in (SPEC_KEY, STATE_KEY):
            raise TypeError(
                f"{where}.{method} has the key {key!r}; keys are names without '/' other "
                f"than {SPEC_KEY!r} and {STATE_KEY!r}"
            )
        if type(value) is dict:
            out[key] = _shape_tree(value, where, state)
            continue
        dtype = None
        if isinstance(value, ArraySpec):
            value, dtype = value
            dtype = None if dtype is None or state is False else np.dtype(dtype)
            if dtype == np.float32:  # what the slow path measured: the params' dtype
                dtype = None
        ok = isinstance(value, tuple) and all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in value
        )
        if not ok or (dtype is not None and dtype != _INT64):
            raise TypeError(
                f"{where}.{method}()[{key!r}] must be a shape, a tuple of ints >= 0"
                + (" (or ArraySpec(shape, np.int64) for a counter)" if state else "")
                + f"; got {show(value)}"
                + (f" of dtype {dtype}" if dtype is not None else "")
            )
        shape = tuple(int(d) for d in value)
        out[key] = ArraySpec(shape, dtype) if state else shape
    return out


def _param_shapes(layers: tuple, names: list[str], shapes: tuple) -> dict:
    """Every layer's ``param_shapes`` (and ``state_shapes`` under ``"state"``)."""
    tree: dict = {}
    state: dict = {}
    for layer, name, in_shape in zip(layers, names, shapes, strict=False):
        where = f"{name} ({type(layer).__name__})"
        if layer.has_params:
            tree[name] = _shape_tree(layer.param_shapes(in_shape), where, False)
        if layer.has_state:
            state[name] = _shape_tree(layer.state_shapes(in_shape), where, True)
    if state:
        tree[STATE_KEY] = state
    return tree


def _shapes(input_shape: Shape, layers: tuple, names: list[str]) -> tuple[Shape, ...]:
    shapes = [input_shape]
    for layer, name in zip(layers, names, strict=True):
        try:
            out = layer.output_shape(shapes[-1])
        except ValueError as err:
            raise ValueError(f"{name} ({type(layer).__name__}): {err}") from None
        ok = (
            isinstance(out, tuple)
            and out
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in out)
        )
        if not ok:
            raise TypeError(
                f"{name} ({type(layer).__name__}).output_shape({shapes[-1]}) must return a "
                f"tuple of positive ints; got {show(out)}"
            )
        check_sample_size(out, f"{name} ({type(layer).__name__}): the output shape")
        shapes.append(out)
    return tuple(shapes)


def _layout(input_shape: Shape, layers: tuple, loss: Loss) -> Layout:
    names = list(layer_names(layers))
    shapes = _shapes(input_shape, layers, names)
    last, out_shape = layers[-1], shapes[-1]
    if len(out_shape) != 1:
        raise ValueError(
            f"the network must end in a flat output of shape (k,); the last layer "
            f"{names[-1]} gives {out_shape}; end with Flatten() and Dense(k)"
        )
    loss.check_output_layer(last, names[-1], out_shape)
    run_layers = layers
    if loss.fused_activation is not None:
        run_layers = (*layers[:-1], attrs.evolve(last, activation="linear"))
    pairs = tuple(zip(names, layers, strict=True))
    return Layout(
        param_shapes=_param_shapes(layers, names, shapes),
        names=tuple(names),
        shapes=shapes,
        with_params=tuple(n for n, layer in pairs if layer.has_params),
        random=tuple(n for n, layer in pairs if layer.draws_randomness),
        run_layers=run_layers,
        with_state=tuple(n for n, layer in pairs if layer.has_state),
    )


_KIND_WIDTH = 44  # longer kinds are cut, so one odd layer cannot widen the whole table


def _size(tree: Any) -> int:
    """The number of array elements in a tree of shapes (nested dicts allowed)."""
    if tree is None:
        return 0
    if isinstance(tree, dict):
        return sum(_size(v) for v in tree.values())
    return math.prod(tree)


def _copy(tree: Any) -> Any:
    return {k: _copy(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _kind(layer: Layer, listed: bool) -> str:
    """``Dense(units=16, activation='tanh')``: the class and the fields that differ
    from their defaults. With ``listed`` (the summary lists a container's
    sublayers beneath it), the fields that hold those layers are left out."""
    parts = []
    for field in attrs.fields(type(layer)):
        value, default = getattr(layer, field.name), field.default
        if default is not attrs.NOTHING and field.converter is not None:
            default = field.converter(default)  # stride=1 is stored as (1, 1)
        if listed and _holds_layers(value):
            continue
        if default is attrs.NOTHING or value != default:
            parts.append(f"{field.name}={value!r}")
    text = f"{type(layer).__name__}({', '.join(parts)})"
    return text if len(text) <= _KIND_WIDTH else text[: _KIND_WIDTH - 3] + "..."


def _holds_layers(value: Any) -> bool:
    if isinstance(value, Layer):
        return True
    return isinstance(value, tuple) and any(_holds_layers(v) for v in value)


def _summary_rows(
    name: str, layer: Layer, in_shape: Shape, count: int, depth: int
) -> list[tuple[str, ...]]:
    """The summary's row for ``layer`` (indented by ``depth``), then those of the
    layers it is made of (its :meth:`~purenn.Layer.sublayers`, nested ones
    beneath theirs), each named by its path in ``layer``'s params."""
    subs = layer.sublayers(in_shape)
    out_shape = layer.output_shape(in_shape)
    rows = [("  " * depth + name, _kind(layer, bool(subs)), str(out_shape), f"{count:,}")]
    for i, item in enumerate(subs):
        if not isinstance(item, Sublayer):
            raise TypeError(
                f"{type(layer).__name__}.sublayers must return purenn.Sublayer records "
                f"(path, layer, in_shape); item {i} is {show(item)} ({type(item).__name__})"
            )
        child, shape = item.layer, item.in_shape
        count = _size(child.param_shapes(shape))
        rows.extend(_summary_rows("/".join(item.path), child, shape, count, depth + 1))
    return rows


@attrs.frozen
class Network:
    """An immutable description of a network: hashable, comparable, JSON-able.

    Args:
        input_shape: shape of one sample, an int or a tuple (``16`` or ``(16,)``).
        layers: a sequence of layer specs (instances of registered
            :class:`purenn.Layer` subclasses), stored as a tuple.
        loss: a built-in loss by name: ``"cross_entropy"`` (needs a softmax output
            layer; labels are int class indices ``(n,)`` or one-hot ``(n, k)``),
            ``"binary_cross_entropy"`` (a sigmoid output layer; 0/1 targets
            ``(n, k)``), ``"mse"``, ``"mae"`` or ``"huber"`` (regression, targets
            ``(n, k)``); or an instance of a registered :class:`purenn.Loss`
            (``purenn.losses.Huber(delta=0.5)``, or your own). Stored as an instance.

    Raises:
        TypeError, ValueError: at construction, when a field is of the wrong kind,
            a layer does not fit the shape before it, or the loss does not fit the
            last layer.
    """

    input_shape: Shape = attrs.field(converter=_as_shape)
    layers: tuple = attrs.field(converter=_as_layers)
    loss: Loss = attrs.field(default="cross_entropy", converter=as_loss)
    _layout: Layout = attrs.field(init=False, repr=False, eq=False, hash=False)
    """Derived from the other fields at construction (not an argument, not compared)."""

    def __attrs_post_init__(self) -> None:
        layout = _layout(self.input_shape, self.layers, self.loss)
        object.__setattr__(self, "_layout", layout)  # frozen: set once, here

    @property
    def layout(self) -> Layout:
        """The per-pass facts derived from the spec (names, shapes, ...)."""
        return self._layout

    def layer_names(self) -> tuple[str, ...]:
        """Names of the layers in order: param keys (``dense_0``) or, for layers
        without params, the same pattern (``dropout_0``); counted per kind."""
        return self._layout.names

    def shapes(self) -> tuple[Shape, ...]:
        """Per-sample shapes: the input's, then each layer's output."""
        return self._layout.shapes

    @property
    def output_shape(self) -> Shape:
        return self._layout.shapes[-1]

    def param_shapes(self) -> dict:
        """The params tree this spec makes, as shapes, worked out from the layers'
        ``param_shapes`` and ``state_shapes`` without making any array::

            {"dense_0": {"w": (16, 64), "b": (64,)}, "dense_1": {...},
             "state": {"batchnorm_0": {"mean": ArraySpec((64,), None), ...,
                                       "count": ArraySpec((), dtype('int64'))}}}

        Params leaves are shape tuples (every one of the params' float dtype);
        state leaves are :class:`purenn.base.ArraySpec` (dtype None: the params'
        float dtype). ``"state"`` only for a network with stateful layers, and
        no ``"spec"`` entry. :func:`purenn.check_params` checks params against it.

        Returns:
            A new nested dict (changing it changes nothing in the spec).
        """
        return _copy(self._layout.param_shapes)

    def param_counts(self) -> dict[str, int]:
        """The number of parameters of each layer, by layer name (0 for layers
        without params), from the layers' ``param_shapes`` (Python ints: no
        array is made, however big the network)."""
        shapes = self._layout.param_shapes
        return {name: _size(shapes.get(name)) for name in self._layout.names}

    def summary(self) -> str:
        """A text table of the layers: name, kind (class and non-default fields),
        per-sample output shape and parameter count, then the total::

            layer    kind                          output  params
            input                                  (2,)         0
            dense_0  Dense(units=16)               (16,)       48
            dense_1  Dense(units=3, activation=..  (3,)        51
            total                                              99

        A container's layers (its :meth:`~purenn.Layer.sublayers`) follow its
        row, indented and named by their path in its params
        (``  shortcut/conv2d_0``); the total counts each parameter once.

        Returns:
            The table as one string (no trailing newline), for ``print``.
        """
        counts = self.param_counts()
        rows = [("input", "", str(self.input_shape), "0")]
        in_shapes = self._layout.shapes[:-1]  # what each layer is given
        for name, layer, in_shape in zip(self._layout.names, self.layers, in_shapes, strict=True):
            rows.extend(_summary_rows(name, layer, in_shape, counts[name], depth=0))
        rows.append(("total", "", "", f"{sum(counts.values()):,}"))
        header = ("layer", "kind", "output", "params")
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]

        def line(row: tuple[str, ...]) -> str:
            cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3].rjust(widths[3])]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        loss = describe(self.loss)
        title = f"Network: input {self.input_shape}, output {self.output_shape}, loss {loss}"
        return "\n".join([title, line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])

    def to_dict(self) -> dict:
        """Plain JSON-able form; :meth:`from_dict` rebuilds an equal spec."""
        return {
            "input_shape": list(self.input_shape),
            "layers": [layer_to_dict(layer) for layer in self.layers],
            "loss": loss_to_dict(self.loss),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Network:
        """Rebuild a spec from :meth:`to_dict`'s output (validators run again).

        Raises:
            ValueError: for an unknown (unregistered) layer or loss type, or
                malformed data.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a network spec must be a dict; got {type(data).__name__}")
        try:
            layers = []
            for entry in data["layers"]:
                if not isinstance(entry, dict) or "type" not in entry:
                    raise KeyError("type")
                layers.append(layer_from_dict(entry))
            loss = loss_from_dict(data.get("loss", "cross_entropy"))
            return cls(tuple(data["input_shape"]), layers, loss)
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed network spec {data!r}: {err}") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Network:
        return cls.from_dict(json.loads(text))
