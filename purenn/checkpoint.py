"""Checkpoints: one ``.npz`` file holding the arrays, with JSON metadata inside it.

::

    purenn.save("run/last.npz", params, opt_state=state, rng=rng, history=history)
    ck = purenn.load("run/last.npz")
    ck.params, ck.extra["opt_state"], ck.extra["rng"], ck.metadata["numpy_version"]

Format (version 1). Every array is a member of the ``.npz``, named by its path,
e.g. ``params/dense_0/w`` or ``extra/opt_state/mu/dense_0/w``. The member
``metadata`` is a 0-d unicode array holding one JSON document::

    {"format": "purenn-checkpoint", "format_version": 1,
     "purenn_version": "0.1.0", "numpy_version": "2.1.0",
     "dtype": "float32", "spec": Network.to_dict(),
     "params": <encoded tree>, "extra": {name: <encoded value>}}

An encoded value is plain JSON (None, bools, numbers, strings, lists, dicts with
string keys) or a dict tagged with ``"$type"``:

* ``{"$type": "array", "key": "params/dense_0/w"}``: an array member;
* ``{"$type": "scalar", "key": ...}``: a NumPy scalar, stored as a 0-d array;
* ``{"$type": "network", "spec": {...}}``: a :class:`Network`;
* ``{"$type": "generator", "state": ...}``: a ``numpy.random.Generator``,
  by its ``bit_generator.state``;
* ``{"$type": "record", "class": "AdamState", "fields": {...}}``: an instance
  of a class registered with :func:`register_record` (purenn's optimizers,
  optimizer states and schedules, or your own), by class name.

Tuples come back as lists. Nothing is unpickled: files are read with
``allow_pickle=False`` and records are rebuilt only from a fixed list of
classes, whose validators run again. Writes are atomic: the file is written
under a temporary name in the same folder, flushed to disk, then renamed over
the target, so a crash mid-save leaves any previous checkpoint intact.
"""

from __future__ import annotations

import json
import numbers
import os
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from purenn._registry import ClassRegistry
from purenn.fileio import atomic_write
from purenn.network import Network
from purenn.tree import SPEC_KEY, STATE_KEY, tree_leaves

FORMAT = "purenn-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "metadata"
_TAG = "$type"

__all__ = ["FORMAT_VERSION", "Checkpoint", "load", "register_record", "save", "storable"]


@attrs.frozen(eq=False)  # holds arrays: compare the parts with purenn.tree_equal
class Checkpoint:
    """What :func:`load` returns.

    Attributes:
        params: the parameter tree, spec included, with the stored dtype.
        extra: the keyword arguments given to :func:`save`, rebuilt (optimizer
            states, Generators, histories, ...).
        metadata: the JSON metadata without the encoded trees: ``format``,
            ``format_version``, ``purenn_version``, ``numpy_version``, ``dtype``, ``spec``.
    """

    params: dict
    extra: dict
    metadata: dict

    def resume_kwargs(self) -> dict:
        """Keyword arguments that make :func:`purenn.fit` continue a saved run.

        Use with a checkpoint that ``fit`` wrote to its ``checkpoint_dir``::

            ck = purenn.load("run/last.npz")
            params, history = purenn.fit(ck.params, train, optimizer=opt, epochs=10,
                                         batch_size=32, **ck.resume_kwargs())

        Returns:
            ``{"opt_state", "rng", "initial_epoch", "history", "best_params"}``.

        Raises:
            ValueError: if the checkpoint was not written by ``fit``.
        """
        needed = ("opt_state", "rng", "epoch", "history")
        missing = [k for k in needed if k not in self.extra]
        if missing:
            raise ValueError(
                f"this checkpoint lacks {missing} and cannot resume training; checkpoints "
                "that fit writes to checkpoint_dir hold them (or save them yourself with "
                "purenn.save(path, params, opt_state=..., rng=..., epoch=..., history=...))"
            )
        return {
            "opt_state": self.extra["opt_state"],
            "rng": self.extra["rng"],
            "initial_epoch": self.extra["epoch"],
            "history": self.extra["history"],
            "best_params": self.extra.get("best_params"),
        }


# --------------------------------------------------------------------------- records


_RECORDS = ClassRegistry("record", "@purenn.register_record")


def register_record(cls: type) -> type:
    """Class decorator: let checkpoints store instances of an ``attrs`` class (an
    optimizer, its state or a schedule of your own), field by field.

    purenn's own optimizers, states and schedules are registered the same way.
    On load the class is rebuilt by name with its validators run again, so the
    module defining it must be imported first.

    Raises:
        TypeError: if ``cls`` is not an attrs class.
        ValueError: if another class of the same name is registered already.
    """
    return _RECORDS.add(cls, frozen=False)


def _records() -> ClassRegistry:
    import purenn.optim  # noqa: F401  (registers the optimizers, states and schedules)

    return _RECORDS


def storable(value: Any) -> bool:
    """Whether :func:`save` can store ``value`` as an extra (no file is written)."""
    try:
        _Encoder().encode(value, "value")
    except (TypeError, ValueError):
        return False
    return True


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


# --------------------------------------------------------------------------- encode


class _Encoder:
    """Turns values into JSON plus a dict of named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.records = _records()

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, numbers.Integral) and not isinstance(value, np.generic):
            return int(value)
        if isinstance(value, float):
            return value
        if isinstance(value, np.ndarray):
            return self._array(value, path, "array")
        if isinstance(value, np.generic):
            return self._array(np.asarray(value), path, "scalar")
        if isinstance(value, Network):
            return {_TAG: "network", "spec": value.to_dict()}
        if isinstance(value, np.random.Generator):
            state = value.bit_generator.state
            return {_TAG: "generator", "state": self.encode(state, path)}
        if isinstance(value, list | tuple):
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for key, v in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"checkpoint dicts need string keys; {path!r} has key {key!r} "
                        f"({type(key).__name__})"
                    )
                if key == _TAG or "/" in key:
                    raise ValueError(
                        f"{path!r} has key {key!r}; checkpoint keys may not contain '/' "
                        f"or be {_TAG!r}: rename it"
                    )
                out[key] = self.encode(v, f"{path}/{key}")
            return out
        if self.records.holds(type(value)):
            fields = {
                f.name: self.encode(getattr(value, f.name), f"{path}/{f.name}")
                for f in attrs.fields(type(value))
            }
            return {_TAG: "record", "class": type(value).__name__, "fields": fields}
        raise TypeError(
            f"cannot store {path!r} of type {type(value).__name__} in a checkpoint; it takes "
            "arrays, numbers, strings, lists, dicts, Networks, Generators and records "
            "(purenn's optimizers, states and schedules, or attrs classes registered with "
            "purenn.checkpoint.register_record)"
        )

    def _array(self, value: np.ndarray, path: str, tag: str) -> dict:
        if value.dtype.hasobject:
            raise TypeError(
                f"{path!r} is an object array, which cannot be stored without pickle; "
                "convert it to a numeric dtype"
            )
        self.arrays[path] = value
        return {_TAG: tag, "key": path}


def save(path: str | os.PathLike, params: dict, **extra: Any) -> Path:
    """Write ``params`` and any ``extra`` values to one ``.npz`` file, atomically.

    Args:
        path: the file to write (``.npz`` recommended; the name is used as given).
            Its folder must exist.
        params: a parameter tree from :func:`purenn.init` (spec included).
        **extra: anything to keep with it: ``opt_state=``, ``rng=`` (a Generator),
            ``history=``, ``epoch=``, trees of arrays, JSON-able values; see the
            module docstring for what can be stored.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        TypeError: for params that are not a purenn params tree, or an extra
            value that cannot be stored without pickle.
        FileNotFoundError: if the folder does not exist.
    """
    from purenn import __version__
    from purenn.core import params_dtype

    dtype = params_dtype(params)
    spec = params[SPEC_KEY]
    encoder = _Encoder()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "purenn_version": __version__,
        "numpy_version": np.__version__,
        "dtype": str(dtype),
        "spec": spec.to_dict(),
        "params": encoder.encode(params, "params"),
        "extra": encoder.encode(extra, "extra"),
    }
    members = dict(encoder.arrays)
    members[METADATA_KEY] = np.array(json.dumps(meta, sort_keys=True))
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save {path}: folder {folder} does not exist; create it")
    atomic_write(path, lambda tmp: _write_to(tmp, members))
    return path


def _write_npz(file: Any, members: dict[str, np.ndarray]) -> None:
    np.savez(file, **members)


def _write_to(tmp: Path, members: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:
        _write_npz(f, members)


# --------------------------------------------------------------------------- decode


class _Decoder:
    def __init__(self, npz: Any, source: str) -> None:
        self.npz = npz
        self.source = source
        self.records = _records()
        self.networks: dict[str, Network] = {}  # one object per distinct spec

    def fail(self, message: str) -> ValueError:
        return ValueError(f"checkpoint {self.source}: {message}")

    def decode(self, node: Any, where: str) -> Any:
        if isinstance(node, list):
            return [self.decode(v, f"{where}/{i}") for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        tag = node.get(_TAG)
        if tag is None:
            return {k: self.decode(v, f"{where}/{k}") for k, v in node.items()}
        if tag in ("array", "scalar"):
            arr = self.array(node.get("key"), where)
            return arr[()] if tag == "scalar" else arr
        if tag == "network":
            return self.network(node.get("spec"), where)
        if tag == "generator":
            return self.generator(self.decode(node.get("state"), where), where)
        if tag == "record":
            return self.record(node, where)
        raise self.fail(f"unknown entry type {tag!r} at {where!r}")

    def array(self, key: Any, where: str) -> np.ndarray:
        if not isinstance(key, str):
            raise self.fail(f"malformed array reference at {where!r}")
        if key not in self.npz.files:
            raise self.fail(
                f"missing array {key!r}; the file is incomplete or was edited. "
                "Use an intact copy of the checkpoint"
            )
        try:
            return self.npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise self.fail(f"array {key!r} is corrupt ({err})") from err

    def network(self, data: Any, where: str) -> Network:
        text = json.dumps(data, sort_keys=True)
        if text not in self.networks:
            try:
                self.networks[text] = Network.from_dict(data)
            except (TypeError, ValueError) as err:
                raise self.fail(f"invalid network spec at {where!r}: {err}") from err
        return self.networks[text]

    def generator(self, state: Any, where: str) -> np.random.Generator:
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise self.fail(f"unknown bit generator {name!r} at {where!r}")
        bit_gen = getattr(np.random, name)()
        try:
            bit_gen.state = state
        except (TypeError, ValueError, KeyError) as err:
            raise self.fail(f"invalid {name} state at {where!r}: {err}") from err
        return np.random.Generator(bit_gen)

    def record(self, node: dict, where: str) -> Any:
        name, fields = node.get("class"), node.get("fields")
        if not isinstance(fields, dict):
            raise self.fail(f"malformed record {name!r} at {where!r}: no fields")
        try:
            cls = self.records.get(name)
        except ValueError as err:
            raise self.fail(f"at {where!r}: {err}") from None
        values = {k: self.decode(v, f"{where}/{k}") for k, v in fields.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise self.fail(f"invalid {name} at {where!r}: {err}") from err


def _reference_shapes(spec: Network) -> dict:
    """The params tree ``init`` makes for ``spec``, as a tree of shapes."""
    from purenn.core import init

    ref = init(spec, np.random.default_rng(0))
    return _shapes(ref)


def _shapes(tree: dict) -> dict:
    return {
        k: (_shapes(v) if isinstance(v, dict) else getattr(v, "shape", None))
        for k, v in tree.items()
        if k != SPEC_KEY
    }


def _check_shapes(tree: dict, ref: dict, where: str, decoder: _Decoder) -> None:
    """Refuse a tree whose keys or leaf shapes differ from what its spec makes.

    The network's state (BatchNorm statistics) is part of ``params``; trees
    like optimizer moments carry none, and need not."""
    own = {k: v for k, v in tree.items() if k != SPEC_KEY}
    if where != "params" and STATE_KEY not in own and STATE_KEY in ref:
        ref = {k: v for k, v in ref.items() if k != STATE_KEY}
    if own.keys() != ref.keys():
        missing, extra = sorted(ref.keys() - own.keys()), sorted(own.keys() - ref.keys())
        raise decoder.fail(
            f"{where!r} does not match its stored network spec: missing {missing}, "
            f"unexpected {extra}"
        )
    for key, shape in ref.items():
        value = own[key]
        if isinstance(shape, dict):
            if not isinstance(value, dict):
                raise decoder.fail(f"{where}/{key} should be a dict of arrays")
            _check_shapes(value, shape, f"{where}/{key}", decoder)
        elif not isinstance(value, np.ndarray) or value.shape != shape:
            got = getattr(value, "shape", type(value).__name__)
            raise decoder.fail(
                f"array {where}/{key} has shape {got} but the stored network spec gives "
                f"{shape}; the arrays do not belong to this network"
            )


def _check_trees(value: Any, where: str, decoder: _Decoder, cache: dict) -> None:
    """Check every decoded tree that carries a spec (params, moments) against it."""
    if isinstance(value, dict):
        spec = value.get(SPEC_KEY)
        if isinstance(spec, Network):
            if id(spec) not in cache:
                cache[id(spec)] = _reference_shapes(spec)
            _check_shapes(value, cache[id(spec)], where, decoder)
            return
        for k, v in value.items():
            _check_trees(v, f"{where}/{k}", decoder, cache)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_trees(v, f"{where}/{i}", decoder, cache)
    elif attrs.has(type(value)):
        for f in attrs.fields(type(value)):
            _check_trees(getattr(value, f.name), f"{where}/{f.name}", decoder, cache)


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Args:
        path: the ``.npz`` file.

    Returns:
        A :class:`Checkpoint` with ``params``, ``extra`` and ``metadata``.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: if the file is corrupt or not a purenn checkpoint, has an
            unknown format version, lacks an array, or holds arrays whose shapes
            or dtype do not match the stored network spec.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"checkpoint {path} is not a readable .npz file (corrupt or truncated?): {err}"
        ) from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"checkpoint {path} holds a single array, not a purenn checkpoint")
    with npz:
        decoder = _Decoder(npz, str(path))
        if METADATA_KEY not in npz.files:
            raise decoder.fail("no 'metadata' entry: not a purenn checkpoint")
        try:
            meta = json.loads(str(npz[METADATA_KEY][()]))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise decoder.fail(f"unreadable metadata ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise decoder.fail(f"metadata does not describe a {FORMAT!r} file")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise decoder.fail(
                f"unknown format version {version!r}; this purenn reads version "
                f"{FORMAT_VERSION}. The file was written by purenn "
                f"{meta.get('purenn_version')!r}: load it with that version"
            )
        for key in ("dtype", "spec", "params", "extra"):
            if key not in meta:
                raise decoder.fail(f"metadata lacks {key!r}")
        spec = decoder.network(meta["spec"], "spec")
        params = decoder.decode(meta["params"], "params")
        if not isinstance(params, dict) or params.get(SPEC_KEY) != spec:
            raise decoder.fail("params do not carry the stored network spec")
        extra = decoder.decode(meta["extra"], "extra")
        cache: dict = {}
        _check_trees(params, "params", decoder, cache)
        _check_trees(extra, "extra", decoder, cache)
        dtypes = {str(leaf.dtype) for leaf in tree_leaves(params)}
        if dtypes and dtypes != {meta["dtype"]}:
            raise decoder.fail(
                f"params have dtypes {sorted(dtypes)} but the metadata says {meta['dtype']}"
            )
    info = {k: v for k, v in meta.items() if k not in ("params", "extra")}
    return Checkpoint(params=params, extra=extra, metadata=info)
