"""Work arrays reused from one training step to the next.

Why: a convolutional training step makes and drops tens of megabytes of
temporaries (im2col matrices, activations, pooling and ReLU gradients). When
they are freed, the C allocator hands the memory back to the operating system,
and the next step faults every page in again: on a 2-core machine that was half
of the CNN step's time (10,000 page faults and 34 ms of system time per 67 ms
step). Keeping the buffers between steps removes that cost.

Rules that keep this invisible to callers:

* Only :func:`purenn.core` passes use scratch, and only for training steps
  (``loss_and_grads``, ``grads``, ``fit``): layers called directly, and
  evaluation passes, allocate fresh arrays as before.
* A buffer is handed out at most once per pass (a second request under the
  same key in one pass gets a fresh array), and nothing a pass returns (loss,
  gradients, outputs) lives in scratch: gradients are fresh arrays, and the
  last layer is a Dense layer, which does not use scratch.
* Inside a training pass every ``dy`` handed to a layer's backward is an array
  of the pass (the loss gradient, or the ``dx`` of the layer above), so layers
  may overwrite it (``owns_dy``): the ReLU derivative is then applied in place.
  A pass through Dense and Dropout layers only keeps no buffers (``OWNED``:
  fresh arrays, ``dy`` still overwritten in place).
* Buffers are per thread, so passes in different threads never share one; a
  pass started inside another pass in the same thread gets no scratch.

Memory: the calling thread keeps the largest working set of its training steps
(64 MiB for the benchmark CNN at batch 128; nothing worth mentioning for
an MLP) until :func:`release` is called or the thread ends.
"""

from __future__ import annotations

import threading

import numpy as np


class Fresh:
    """The no-scratch allocator: every request is a new array (layers called
    directly, evaluation passes, nested passes)."""

    __slots__ = ()

    owns_dy = False
    """Whether a layer's backward may overwrite the ``dy`` it is given: only inside
    a training pass, where every ``dy`` is an array of the pass itself."""

    def empty(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def zeros(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def scoped(self, prefix: str) -> Fresh:
        return self


FRESH = Fresh()


class Owned(Fresh):
    """Fresh arrays for a training pass that needs no reusable buffers (a network
    of Dense and Dropout layers only): its every ``dy`` is still the pass's own,
    so layers may overwrite it."""

    __slots__ = ()

    owns_dy = True


OWNED = Owned()


class Scratch:
    """Reusable buffers for one pass at a time, keyed by strings such as
    ``"conv2d_1.cols"``. Each key holds one flat byte buffer that grows to the
    largest request and serves smaller ones from its front (so the short last
    batch of an epoch needs no new memory)."""

    __slots__ = ("_buffers", "_taken", "active")

    owns_dy = True

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._taken: set[str] = set()
        self.active = False

    def empty(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape`` and ``dtype`` for this pass."""
        dtype = np.dtype(dtype)
        if key in self._taken:  # never alias two live arrays of one pass
            return np.empty(shape, dtype)
        self._taken.add(key)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buf = self._buffers.get(key)
        if buf is None or buf.nbytes < nbytes:
            # 64-byte aligned, like NumPy's own large allocations
            raw = np.empty(nbytes + 64, np.uint8)
            start = -raw.ctypes.data % 64
            buf = self._buffers[key] = raw[start : start + nbytes]
        return buf[:nbytes].view(dtype).reshape(shape)

    def zeros(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Like :meth:`empty`, filled with zeros."""
        out = self.empty(key, shape, dtype)
        out.fill(0)
        return out

    def scoped(self, prefix: str) -> _Scoped:
        """This scratch with every key prefixed by ``prefix + "."`` (one per layer)."""
        return _Scoped(self, prefix + ".")

    def end_pass(self) -> None:
        self._taken.clear()
        self.active = False

    @property
    def nbytes(self) -> int:
        """Bytes held by this thread's buffers."""
        return sum(b.nbytes for b in self._buffers.values())


class _Scoped:
    __slots__ = ("_prefix", "_scratch")

    owns_dy = True

    def __init__(self, scratch: Scratch, prefix: str) -> None:
        self._scratch, self._prefix = scratch, prefix

    def empty(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._scratch.empty(self._prefix + key, shape, dtype)

    def zeros(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._scratch.zeros(self._prefix + key, shape, dtype)

    def scoped(self, prefix: str) -> _Scoped:
        return _Scoped(self._scratch, self._prefix + prefix + ".")


Allocator = Fresh | Scratch | _Scoped
"""What layers and the convolution functions take as ``scratch``."""

_local = threading.local()


def _thread_scratch() -> Scratch:
    scratch = getattr(_local, "scratch", None)
    if scratch is None:
        scratch = _local.scratch = Scratch()
    return scratch


class training_pass:  # lower case: used like a function, ``with training_pass() as s``
    """The calling thread's scratch for one training pass (``FRESH`` if a pass is
    already running in this thread); its buffers are free again on exit.

    A class rather than a generator-based context manager: it runs on every
    training step, and this costs a third as much.
    """

    __slots__ = ("_scratch",)

    def __enter__(self) -> Scratch | Fresh:
        scratch = _thread_scratch()
        if scratch.active:
            self._scratch = None
            return FRESH
        scratch.active = True
        self._scratch = scratch
        return scratch

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            self._scratch.end_pass()


def release() -> None:
    """Free the calling thread's scratch buffers (they are made again when needed)."""
    _local.scratch = None


def held_bytes() -> int:
    """Bytes of scratch the calling thread holds."""
    scratch = getattr(_local, "scratch", None)
    return 0 if scratch is None else scratch.nbytes
