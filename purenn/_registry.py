"""Classes by name: how JSON specs and checkpoints refer to layers, losses and
records, and the one check every ``register_*`` decorator shares."""

from __future__ import annotations

import attrs

from purenn._checks import show


class ClassRegistry:
    """A name -> class table of one kind (``"layer"``, ``"loss"``, ``"record"``).

    Args:
        kind: what the classes are, for messages.
        decorator: the decorator that registers them, for messages
            (``"@purenn.register_layer"``).
    """

    def __init__(self, kind: str, decorator: str) -> None:
        self.kind, self.decorator = kind, decorator
        self._classes: dict[str, type] = {}

    def add(self, cls: type, base: type | None = None, frozen: bool = True) -> type:
        """Register ``cls`` under its class name and return it.

        A class defined again (a module or notebook cell run twice: same module
        and qualified name) replaces its old self.

        Raises:
            TypeError: if ``cls`` is not a subclass of ``base`` or not a (frozen)
                attrs class.
            ValueError: if a different class of the same name is registered.
        """
        if not isinstance(cls, type) or (base is not None and not issubclass(cls, base)):
            wanted = f"a subclass of purenn.{base.__name__}" if base else "a class"
            raise TypeError(f"{self.decorator[1:]} expects {wanted}; got {show(cls)}")
        if not attrs.has(cls) or (frozen and cls.__setattr__ is object.__setattr__):
            raise TypeError(
                f"{self.decorator[1:]} expects a{' frozen' if frozen else 'n'} attrs class; "
                f"decorate {cls.__name__} with @attrs.{'frozen' if frozen else 'define'} "
                f"below {self.decorator}"
            )
        known = self._classes.get(cls.__name__)
        if known is not None and _ident(known) != _ident(cls):
            raise ValueError(
                f"a different {self.kind} class named {cls.__name__!r} is registered already "
                f"({known.__module__}.{known.__qualname__}); specs and checkpoints store "
                f"{self.kind}s by class name, so rename one of them"
            )
        self._classes[cls.__name__] = cls
        return cls

    def get(self, name: object) -> type:
        """The class registered as ``name``.

        Raises:
            ValueError: for a name nobody registered, saying what to import.
        """
        cls = self._classes.get(name) if isinstance(name, str) else None
        if cls is None:
            named = name if isinstance(name, str) else show(name)
            raise ValueError(
                f"unknown {self.kind} type {show(name)}; registered: {', '.join(self._classes)}. "
                f"If {named} is your own {self.kind}, import the module that defines it (with "
                f"{self.decorator}) before loading"
            )
        return cls

    def holds(self, cls: type) -> bool:
        """Whether ``cls`` itself is what its name is registered to."""
        return self._classes.get(cls.__name__) is cls

    def classes(self) -> tuple[type, ...]:
        """Every registered class, in registration order."""
        return tuple(self._classes.values())


def _ident(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__
