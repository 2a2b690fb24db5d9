"""The network spec: input shape, layers and loss, checked before any array exists."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import attrs
import numpy as np

from purenn.conv import AvgPool2D, Conv2D, Flatten, MaxPool2D
from purenn.layers import Dense, Dropout, Shape
from purenn.losses import LOSSES

LAYER_TYPES: dict[str, type] = {
    "Dense": Dense,
    "Dropout": Dropout,
    "Conv2D": Conv2D,
    "MaxPool2D": MaxPool2D,
    "AvgPool2D": AvgPool2D,
    "Flatten": Flatten,
}
"""Every layer class a Network accepts, by name (the name is stored in JSON specs)."""


def _as_shape(value: Any) -> Shape:
    """``16`` or ``(16,)`` or ``(1, 28, 28)`` -> a tuple of positive ints."""
    dims = (value,) if isinstance(value, int | np.integer) else value
    if not isinstance(dims, tuple | list) or not dims:
        raise TypeError(f"Network.input_shape must be an int or a tuple of ints; got {value!r}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(f"Network.input_shape must be an int or a tuple of ints; got {value!r}")
        if d < 1:
            raise ValueError(f"Network.input_shape must hold positive sizes; got {value!r}")
    return tuple(int(d) for d in dims)


def _as_layers(value: Any) -> tuple:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"Network.layers must be a sequence of layer specs; got {value!r}")
    layers = tuple(value)
    for i, layer in enumerate(layers):
        if type(layer) not in LAYER_TYPES.values():
            valid = ", ".join(LAYER_TYPES)
            raise TypeError(
                f"Network.layers[{i}] must be a layer spec ({valid}); "
                f"got {layer!r} ({type(layer).__name__})"
            )
    if not layers:
        raise ValueError("Network.layers is empty; give at least one layer, e.g. [Dense(10)]")
    return layers


class Layout(NamedTuple):
    """What every training step asks of a Network, worked out once when it is
    made (a Network never changes), so the per-step checks in
    :mod:`purenn.core` do not walk the layers again."""

    names: tuple[str, ...]
    """:meth:`Network.layer_names`."""
    with_params: tuple[tuple[str, Any], ...]
    """``(name, layer)`` of each layer that has parameters, in order."""
    random: tuple[str, ...]
    """Names of the layers that draw randomness in training (dropout, rate > 0)."""
    dense_only: bool
    """Only Dense and Dropout layers: no layer takes scratch buffers."""


def _layout(layers: tuple) -> Layout:
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        prefix = layer.param_prefix or type(layer).__name__.lower()
        names.append(f"{prefix}_{counts.get(prefix, 0)}")
        counts[prefix] = counts.get(prefix, 0) + 1
    pairs = tuple(zip(names, layers, strict=True))
    return Layout(
        names=tuple(names),
        with_params=tuple((n, layer) for n, layer in pairs if layer.param_prefix is not None),
        random=tuple(n for n, layer in pairs if getattr(layer, "rate", 0.0) > 0.0),
        dense_only=all(type(layer) in (Dense, Dropout) for layer in layers),
    )


@attrs.frozen
class Network:
    """An immutable description of a network: hashable, comparable, JSON-able.

    Args:
        input_shape: shape of one sample, an int or a tuple (``16`` or ``(16,)``).
        layers: a sequence of layer specs, stored as a tuple.
        loss: ``"cross_entropy"`` (needs a softmax output layer; labels are int
            class indices ``(n,)`` or one-hot ``(n, k)``), ``"mse"`` (regression,
            targets ``(n, k)``) or ``"binary_cross_entropy"`` (needs a sigmoid
            output layer; targets 0/1 of shape ``(n, k)``).

    Raises:
        TypeError, ValueError: at construction, when a field is of the wrong kind,
            a layer does not fit the shape before it, or the loss does not fit the
            output layer.
    """

    input_shape: Shape = attrs.field(converter=_as_shape)
    layers: tuple = attrs.field(converter=_as_layers)
    loss: str = attrs.field(default="cross_entropy")
    _layout: Layout = attrs.field(init=False, repr=False, eq=False, hash=False)
    """Derived from ``layers`` at construction (not an argument, not compared)."""

    @loss.validator
    def _check_loss(self, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, str) or value not in LOSSES:
            valid = ", ".join(repr(k) for k in LOSSES)
            raise ValueError(f"Network.loss must be one of {valid}; got {value!r}")

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_layout", _layout(self.layers))  # frozen: set once, here
        self.shapes()  # chains and checks every layer's shape
        last = self.layers[-1]
        if len(self.output_shape) != 1:
            raise ValueError(
                f"the network must end in a flat output of shape (k,); the last layer "
                f"{self.layer_names()[-1]} gives {self.output_shape}; "
                "end with Flatten() and Dense(k)"
            )
        wanted = LOSSES[self.loss].fused_activation
        if not isinstance(last, Dense):
            raise ValueError(
                f"the last layer must be a Dense layer that produces the output; "
                f"got {type(last).__name__} as {self.layer_names()[-1]}"
            )
        if wanted is not None and last.activation != wanted:
            raise ValueError(
                f"loss {self.loss!r} needs a {wanted!r} output layer; the last layer "
                f"{self.layer_names()[-1]} has activation {last.activation!r}. "
                f"Use Dense(k, activation={wanted!r}) last"
            )

    def layer_names(self) -> tuple[str, ...]:
        """Names of the layers in order: param keys (``dense_0``) or, for layers
        without params, the same pattern (``dropout_0``); counted per kind."""
        return self._layout.names

    def shapes(self) -> tuple[Shape, ...]:
        """Per-sample shapes: the input's, then each layer's output."""
        shapes = [self.input_shape]
        for layer, name in zip(self.layers, self.layer_names(), strict=True):
            shapes.append(layer.output_shape(shapes[-1], name))
        return tuple(shapes)

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

    def to_dict(self) -> dict:
        """Plain JSON-able form; :meth:`from_dict` rebuilds an equal spec."""
        return {
            "input_shape": list(self.input_shape),
            "layers": [
                {"type": type(layer).__name__, **attrs.asdict(layer)} for layer in self.layers
            ],
            "loss": self.loss,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Network:
        """Rebuild a spec from :meth:`to_dict`'s output (validators run again).

        Raises:
            ValueError: for an unknown layer type or malformed data.
        """
        try:
            layers = []
            for entry in data["layers"]:
                fields = dict(entry)
                kind = fields.pop("type")
                if kind not in LAYER_TYPES:
                    raise ValueError(
                        f"unknown layer type {kind!r}; known: {', '.join(LAYER_TYPES)}"
                    )
                layers.append(LAYER_TYPES[kind](**fields))
            return cls(tuple(data["input_shape"]), layers, data.get("loss", "cross_entropy"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed network spec {data!r}: {err}") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Network:
        return cls.from_dict(json.loads(text))
