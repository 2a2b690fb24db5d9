"""Work arrays that a caller owns and lends to training passes.

Why: a convolutional training step makes and drops tens of megabytes of
temporaries (im2col matrices, activations, pooling gradients). When they are
freed, the C allocator hands the memory back to the operating system, and the
next step faults every page in again: on a 2-core machine that was half of the
CNN step's time. A :class:`Workspace` keeps those buffers from one pass to the
next::

    ws = purenn.Workspace()
    for xb, yb in batches:
        params = purenn.sgd_step(params, purenn.grads(params, xb, yb, workspace=ws), 0.05)

``fit`` makes one per run. Without one, every pass allocates fresh arrays
(same results, bit for bit).

Rules that keep it invisible in the results:

* Only layers that declare ``uses_workspace`` see it (``ctx.workspace``, scoped
  to the layer's name); every other layer gets None there.
* A buffer is handed out at most once per pass (a second request under the
  same key gets a fresh array), and nothing a pass returns (loss, gradients,
  output) lives in the workspace: the pass copies any returned array that does.
* One pass at a time: a workspace lent to a pass that is still running (another
  thread, or a pass inside a layer) is refused with a ValueError. Give each
  thread its own.

Memory: a workspace keeps the largest working set of the passes it served (64
MiB for the benchmark CNN at batch 128, nothing for an MLP) until it is dropped
or :meth:`Workspace.release` is called.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FRESH", "Fresh", "Workspace", "empty_like"]


class Fresh:
    """The allocator of a pass without a workspace: every request is a new array."""

    __slots__ = ()

    def empty(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def zeros(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def scoped(self, prefix: str) -> Fresh:
        return self


FRESH = Fresh()


class Workspace:
    """Reusable buffers for one training pass at a time, keyed by strings such as
    ``"conv2d_1.cols"``. Each key holds one flat byte buffer that grows to the
    largest request and serves smaller ones from its front (so the short last
    batch of an epoch needs no new memory)."""

    __slots__ = ("_active", "_buffers", "_taken")

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._taken: set[str] = set()
        self._active = False

    def __repr__(self) -> str:
        return f"Workspace({len(self._buffers)} buffers, {self.nbytes:,} bytes)"

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
        """This workspace with every key prefixed by ``prefix + "."`` (one per layer)."""
        return _Scoped(self, prefix + ".")

    def begin_pass(self) -> None:
        """Lend the workspace to a pass (the network calls this, not layers).

        Raises:
            ValueError: if a pass is using it already.
        """
        if self._active:
            raise ValueError(
                "this Workspace is in use by another pass (another thread, or a pass "
                "started inside a layer); give each thread its own purenn.Workspace()"
            )
        self._active = True

    def end_pass(self) -> None:
        """Take the workspace back: its buffers are free for the next pass."""
        self._taken.clear()
        self._active = False

    def holds(self, a: np.ndarray) -> bool:
        """Whether ``a`` may share memory with one of the buffers."""
        return any(np.may_share_memory(a, buf) for buf in self._buffers.values())

    def release(self) -> None:
        """Free every buffer (they are made again when needed)."""
        if self._active:
            raise ValueError("cannot release a Workspace while a pass is using it")
        self._buffers.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.nbytes for b in self._buffers.values())


class _Scoped:
    __slots__ = ("_prefix", "_workspace")

    def __init__(self, workspace: Workspace, prefix: str) -> None:
        self._workspace, self._prefix = workspace, prefix

    def empty(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._workspace.empty(self._prefix + key, shape, dtype)

    def zeros(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._workspace.zeros(self._prefix + key, shape, dtype)

    def scoped(self, prefix: str) -> _Scoped:
        return _Scoped(self._workspace, self._prefix + prefix + ".")


Allocator = Fresh | Workspace | _Scoped
"""What ``ctx.workspace`` and the convolution functions take."""


def empty_like(
    scratch: Allocator,
    key: str,
    ref: np.ndarray,
    dtype: np.dtype | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """An uninitialised array from ``scratch`` of ``shape`` (default: ``ref``'s)
    with its axes in ``ref``'s memory order (the convolution keeps images
    batch-last in memory; elementwise work on mixed layouts is several times
    slower)."""
    order = np.argsort(ref.strides, kind="stable")[::-1]  # ref's axes, outermost first
    shape = ref.shape if shape is None else shape
    buf = scratch.empty(key, tuple(shape[i] for i in order), dtype or ref.dtype)
    return buf.transpose(np.argsort(order))
