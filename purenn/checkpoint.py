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
import math
import numbers
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from purenn._checks import as_path, show, too_deep
from purenn._registry import ClassRegistry
from purenn.base import ArraySpec
from purenn.fileio import atomic_write
from purenn.network import Network
from purenn.tree import MAX_TREE_DEPTH, SPEC_KEY, STATE_KEY, tree_leaves

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
        _Encoder().encode(value, "value", 2)  # as deep as an extra: one level below save's
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

    def encode(self, value: Any, path: str, depth: int = 1) -> Any:
        """``value`` as JSON; ``path`` names it in messages (``"extra/history"``) and
        ``depth`` is its level: a dict, list or record at most at level
        :data:`purenn.tree.MAX_TREE_DEPTH` (the top one at level 1)."""
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
            return {_TAG: "generator", "state": self.encode(state, path, depth + 1)}
        if depth > MAX_TREE_DEPTH:  # only containers are left to nest
            raise too_deep(path.split("/", 1)[0], path, MAX_TREE_DEPTH)
        if isinstance(value, list | tuple):
            return [self.encode(v, f"{path}/{i}", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for key, v in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"checkpoint dicts need string keys; {path!r} has key {show(key)} "
                        f"({type(key).__name__})"
                    )
                if key == _TAG or "/" in key:
                    raise ValueError(
                        f"{path!r} has key {key!r}; checkpoint keys may not contain '/' "
                        f"or be {_TAG!r}: rename it"
                    )
                out[key] = self.encode(v, f"{path}/{key}", depth + 1)
            return out
        if self.records.holds(type(value)):
            fields = {
                f.name: self.encode(getattr(value, f.name), f"{path}/{f.name}", depth + 1)
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
        ValueError: for params that do not match their spec
            (:func:`purenn.check_params`), or an extra tree carrying a spec
            (best params, optimizer moments) that does not match its own:
            :func:`load` would refuse the file.
        FileNotFoundError: if the folder does not exist.
    """
    from purenn import __version__
    from purenn.core import check_params

    dtype = check_params(params)
    spec = params[SPEC_KEY]
    _check_trees(extra, "extra", lambda msg: ValueError(f"cannot save {path}: {msg}"), spec, dtype)
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
    path = as_path(path, "path")
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


# --------------------------------------------------------------------------- archive

_NPY_MAGIC = b"\x93NUMPY"

# What a damaged or crafted zip can raise from zipfile and struct while its
# directory is read or a member opened; every one becomes a ValueError naming the file.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


class _Archive:
    """The members of a checkpoint's zip, read only as far as the file justifies.

    ``save`` writes every member uncompressed, so the archive is refused unless
    each member is stored (no compression, no encryption) and their sizes add
    up to no more than the file's own; then each array's ``.npy`` header is
    checked against its member's size before the array is made, and each
    member is read at most once. So no array is ever bigger than the file.
    """

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
        if head == _NPY_MAGIC:
            raise ValueError(f"checkpoint {path} holds a single array, not a purenn checkpoint")
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except _ZIP_ERRORS as err:
            raise ValueError(
                f"checkpoint {path} is not a readable .npz file (corrupt or truncated?): {err}"
            ) from err
        size = path.stat().st_size
        self.members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if info.flag_bits & 0x1:
                self.close()
                raise self.fail(f"member {info.filename!r} is encrypted; purenn never writes that")
            if info.compress_type != zipfile.ZIP_STORED:
                self.close()
                raise self.fail(
                    f"member {info.filename!r} is compressed (method {info.compress_type}); "
                    "purenn writes checkpoints uncompressed: save it again with purenn.save"
                )
            if info.compress_size != info.file_size:
                self.close()
                raise self.fail(
                    f"member {info.filename!r} claims {info.file_size} bytes stored in "
                    f"{info.compress_size}; the file is corrupt"
                )
            total += info.file_size
            if info.filename.endswith(".npy"):
                self.members[info.filename[: -len(".npy")]] = info
        if total > size:
            self.close()
            raise self.fail(
                f"its members claim {total} bytes but the file has {size}; it is corrupt or crafted"
            )
        self.read_keys: set[str] = set()

    def fail(self, message: str) -> ValueError:
        return ValueError(f"checkpoint {self.source}: {message}")

    def close(self) -> None:
        self.zip.close()

    def data_bytes(self, prefix: str) -> int:
        """How many bytes the members under ``prefix`` hold (headers included)."""
        return sum(info.file_size for key, info in self.members.items() if key.startswith(prefix))

    def read(self, key: str) -> np.ndarray:
        """The array stored as member ``key``, checked before it is made."""
        if key not in self.members:
            raise self.fail(
                f"missing array {key!r}; the file is incomplete or was edited. "
                "Use an intact copy of the checkpoint"
            )
        if key in self.read_keys:
            raise self.fail(f"array {key!r} is referenced twice; the file was edited")
        self.read_keys.add(key)
        info = self.members[key]
        try:
            with self.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unknown .npy format version {version}")
                if dtype.hasobject or dtype.itemsize == 0:
                    raise ValueError(f"it holds {dtype}, which purenn never stores")
                if any(d < 0 for d in shape):
                    raise ValueError(f"its header claims the shape {shape}")
                nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
                if f.tell() + nbytes != info.file_size:
                    raise ValueError(
                        f"its header claims shape {shape} of {dtype} ({nbytes} bytes) but the "
                        f"member holds {info.file_size - f.tell()} bytes"
                    )
                data = bytearray(nbytes)
                view, done = memoryview(data), 0
                while done < nbytes:
                    got = f.readinto(view[done:])
                    if not got:
                        raise ValueError("the member ends early")
                    done += got
                f.read(1)  # reach the end: zipfile checks the CRC there
                order = "F" if fortran else "C"
                if nbytes == 0:
                    return np.zeros(shape, dtype, order=order)
                return np.frombuffer(data, dtype).reshape(shape, order=order)
        except (*_ZIP_ERRORS, TypeError) as err:
            raise self.fail(f"array {key!r} is corrupt ({err})") from err


# --------------------------------------------------------------------------- decode


class _Decoder:
    def __init__(self, archive: _Archive) -> None:
        self.archive = archive
        self.source = archive.source
        self.records = _records()
        self.networks: dict[str, Network] = {}  # one object per distinct spec

    def fail(self, message: str) -> ValueError:
        return self.archive.fail(message)

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
        return self.archive.read(key)

    def network(self, data: Any, where: str) -> Network:
        text = json.dumps(data, sort_keys=True)
        if text not in self.networks:
            try:
                self.networks[text] = Network.from_dict(data)
            except (TypeError, ValueError, OverflowError) as err:
                raise self.fail(f"invalid network spec at {where!r}: {err}") from err
        return self.networks[text]

    def generator(self, state: Any, where: str) -> np.random.Generator:
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise self.fail(f"unknown bit generator {name!r} at {where!r}")
        bit_gen = getattr(np.random, name)()
        try:
            bit_gen.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as err:
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
        except (TypeError, ValueError, OverflowError) as err:
            raise self.fail(f"invalid {name} at {where!r}: {err}") from err


# --------------------------------------------------------------------------- trees


_FLOATS = ("float32", "float64")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _spec_bytes(spec: Network, dtype: np.dtype) -> int:
    """The bytes of the arrays of the params tree ``spec`` makes in ``dtype``
    (state included), from its ``param_shapes``: Python ints, no array made."""

    def size(tree: dict) -> int:
        total = 0
        for value in tree.values():
            if isinstance(value, dict):
                total += size(value)
            elif isinstance(value, ArraySpec):
                itemsize = dtype.itemsize if value.dtype is None else value.dtype.itemsize
                total += math.prod(value.shape) * itemsize
            else:
                total += math.prod(value) * dtype.itemsize
        return total

    return size(spec.layout.param_shapes)


def _tree_problem(tree: dict, where: str, dtype: np.dtype | None) -> str | None:
    """How a tree carrying a spec (params, best params, optimizer moments) differs
    from the params its spec makes (keys, shapes, one float dtype: ``dtype``, or
    its first leaf's when None), or None.

    The network's state is part of ``params``; trees like optimizer moments
    carry none, and need not."""
    spec = tree[SPEC_KEY]
    ref = spec.layout.param_shapes
    if where != "params" and STATE_KEY not in tree:
        ref = {k: v for k, v in ref.items() if k != STATE_KEY}
    return _compare(tree, ref, where, [] if dtype is None else [dtype], top=True)


def _compare(tree: Any, ref: dict, where: str, dtype: list, top: bool = False) -> str | None:
    if not isinstance(tree, dict):
        return f"{where} should be a dict of arrays; got {type(tree).__name__}"
    own = set(tree) - {SPEC_KEY} if top else set(tree)
    if own != ref.keys():
        missing, extra = sorted(ref.keys() - own), sorted(own - ref.keys(), key=str)
        return (
            f"{where!r} does not match its stored network spec: missing {missing}, "
            f"unexpected {extra}"
        )
    for key, want in ref.items():
        value, at = tree[key], f"{where}/{key}"
        if isinstance(want, dict):
            problem = _compare(value, want, at, dtype)
            if problem is not None:
                return problem
            continue
        shape, counter = (want, None) if type(want) is tuple else want
        if not isinstance(value, np.ndarray):
            return f"{at} should be an array; got {type(value).__name__}"
        if value.shape != shape:
            return (
                f"array {at} has shape {value.shape} but the stored network spec gives "
                f"{shape}; the arrays do not belong to this network"
            )
        if counter is not None:
            if value.dtype != counter:
                return f"array {at} has dtype {value.dtype}; a counter is {counter}"
        elif value.dtype not in _FLOAT_DTYPES:
            return f"array {at} has dtype {value.dtype}; params are float32 or float64"
        elif not dtype:
            dtype.append(value.dtype)
        elif value.dtype != dtype[0]:
            return f"array {at} has dtype {value.dtype}; the params it goes with are {dtype[0]}"
    return None


def _check_trees(
    value: Any, where: str, fail: Any, spec: Network, dtype: np.dtype, depth: int = 1
) -> None:
    """Check every tree that carries a spec (params, moments) against it;
    ``fail(message)`` makes the exception to raise. Trees of the checkpoint's
    own network ``spec`` must have its params' ``dtype``. ``depth`` is the level
    of ``value``: a dict, list or record at most at level :data:`MAX_TREE_DEPTH`."""
    nests = isinstance(value, dict | list | tuple) or attrs.has(type(value))
    if nests and depth > MAX_TREE_DEPTH:
        raise fail(str(too_deep(where.split("/", 1)[0], where, MAX_TREE_DEPTH)))
    if isinstance(value, dict):
        own = value.get(SPEC_KEY)
        if isinstance(own, Network):
            problem = _tree_problem(value, where, dtype if own == spec else None)
            if problem is not None:
                raise fail(problem)
            return
        for k, v in value.items():
            _check_trees(v, f"{where}/{k}", fail, spec, dtype, depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_trees(v, f"{where}/{i}", fail, spec, dtype, depth + 1)
    elif attrs.has(type(value)):
        for f in attrs.fields(type(value)):
            _check_trees(getattr(value, f.name), f"{where}/{f.name}", fail, spec, dtype, depth + 1)


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    The file is untrusted: its members must be stored as :func:`save` writes
    them, every array's header must agree with its member's size, the stored
    spec's params (their sizes worked out from the spec's shape arithmetic,
    no weight drawn) must fit in the file before any of them is read, and
    every tree carrying a spec is checked against it. Nothing read is ever
    bigger than the file.

    Args:
        path: the ``.npz`` file.

    Returns:
        A :class:`Checkpoint` with ``params``, ``extra`` and ``metadata``.

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: naming the file, for anything else wrong with it: corrupt,
            crafted or not a purenn checkpoint, an unknown format version, a
            missing array, arrays whose shapes or dtype do not match the stored
            network spec, or extras (optimizer states, generators) that do not
            validate.
    """
    path = as_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    archive = _Archive(path)
    try:
        return _load(archive)
    except RecursionError:  # deep JSON, or records nested without end
        raise archive.fail("its metadata is nested too deeply; the file was crafted") from None
    finally:
        archive.close()


def _load(archive: _Archive) -> Checkpoint:
    decoder = _Decoder(archive)
    if METADATA_KEY not in archive.members:
        raise decoder.fail("no 'metadata' entry: not a purenn checkpoint")
    text = archive.read(METADATA_KEY)
    if text.shape != () or text.dtype.kind != "U":
        raise decoder.fail(f"metadata is {text.dtype} of shape {text.shape}, not one JSON string")
    try:
        meta = json.loads(str(text[()]))
    except ValueError as err:
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
    if meta["dtype"] not in _FLOATS:
        raise decoder.fail(
            f"metadata gives the dtype {meta['dtype']!r}; params are float32 or float64"
        )
    dtype = np.dtype(meta["dtype"])
    spec = decoder.network(meta["spec"], "spec")
    need, have = _spec_bytes(spec, dtype), archive.data_bytes("params/")
    if need > have:  # before any params array is read
        raise decoder.fail(
            f"its network spec makes {need:,} bytes of {dtype} params but the file holds "
            f"{have:,} bytes of them; the spec or the arrays were edited"
        )
    params = decoder.decode(meta["params"], "params")
    if not isinstance(params, dict) or params.get(SPEC_KEY) != spec:
        raise decoder.fail("params do not carry the stored network spec")
    extra = decoder.decode(meta["extra"], "extra")
    _check_trees(params, "params", decoder.fail, spec, dtype)
    _check_trees(extra, "extra", decoder.fail, spec, dtype)
    dtypes = {str(leaf.dtype) for leaf in tree_leaves(params)}
    if dtypes and dtypes != {meta["dtype"]}:
        raise decoder.fail(
            f"params have dtypes {sorted(dtypes)} but the metadata says {meta['dtype']}"
        )
    info = {k: v for k, v in meta.items() if k not in ("params", "extra")}
    return Checkpoint(params=params, extra=extra, metadata=info)
