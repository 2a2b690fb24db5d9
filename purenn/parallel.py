"""Data-parallel training over MPI: every rank trains on its share of each batch.

::

    # train.py; run it with  mpiexec -n 4 python train.py
    from purenn import parallel
    params, history = parallel.fit(params, (x, y), optimizer=opt, epochs=10,
                                   batch_size=128, rng=0, val=(xv, yv))

Every rank (process) holds the same params and the whole data set, and runs
:func:`purenn.fit`'s own loop: the same shuffle, the same global batches, the
same optimizer. Rank ``r`` of ``N`` takes rows ``[r*b//N, (r+1)*b//N)`` of
each global batch of ``b`` samples, computes its gradients with
:func:`purenn.train_pass`, scales them by its share ``b_r / b``, and one MPI
allreduce sums them: the gradient of the whole batch's mean loss, on every
rank. Each rank then applies the identical optimizer update (the derivation
is in ``docs/parallel.md``). So:

- with 1 rank, the result is bit-identical to :func:`purenn.fit`;
- with N ranks and no randomness in the step, the params agree with
  single-process training to float rounding (the sum is taken in another
  order), and every rank's params are identical bit for bit: checked after
  every epoch (a digest of all leaves, compared across ranks);
- for a fixed number of ranks, runs are bit-reproducible; dropout and
  augmentation draw from per-rank streams derived from the run's generator
  once per epoch (``SeedSequence(key, spawn_key=(rank,))``), so nothing depends
  on timing, and a checkpoint of the run's generator resumes exactly;
- validation is split across ranks and its sums reduced; only rank 0 prints
  and writes checkpoints;
- a rank that raises prints its traceback and aborts the whole job
  (``MPI_Abort``): the others never wait forever in a collective. A
  :class:`purenn.NonFiniteLossError` is raised on every rank alike (the
  non-finite flag travels with the gradients), so it propagates normally.

``mpi4py`` (and an MPI library, e.g. the ``mpich`` wheel) is imported only
when a group is made: ``pip install -e ".[mpi]"``. Importing this module, or
``purenn``, never imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purenn._checks import positive_int, show
from purenn.core import TrainPass, train_pass
from purenn.metrics import evaluate
from purenn.training import NonFiniteLossError, ProcessGroup
from purenn.training import fit as _single_fit
from purenn.tree import (
    SPEC_KEY,
    STATE_KEY,
    state_items,
    tree_leaves,
    tree_map,
    tree_zeros_like,
)
from purenn.workspace import Workspace

__all__ = [
    "LAUNCHER_VARS",
    "MAX_WORKERS",
    "THREAD_VARS",
    "MPIGroup",
    "abort_on_error",
    "blas_threads",
    "fit",
    "launch",
    "limit_blas_threads",
    "mpiexec_path",
    "under_mpi",
]

LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
"""Environment variables set by MPI launchers (MPICH/Hydra and Intel MPI, Open MPI,
PMIx, MVAPICH): their presence means the process was started by ``mpiexec``."""
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""The variables that set BLAS threads; read when numpy is first imported."""
MAX_WORKERS = 1024
"""The most local ranks :func:`launch` starts (``--workers``): more than any one
machine has cores, so a larger count is a typing mistake, refused before
``mpiexec`` tries to start that many processes."""

_ABORT_GRACE = 0.5  # seconds between printing a failing rank's error and MPI_Abort
_INSTALL = 'pip install -e ".[mpi]"  (mpi4py and the mpich wheel)'


def under_mpi() -> bool:
    """Whether an MPI launcher started this process with more than one rank.

    Reads the environment only (never imports mpi4py), so a script can ask
    before deciding to use MPI at all.
    """
    for var in LAUNCHER_VARS:
        value = os.environ.get(var)
        if value is not None:
            return var == "PMIX_RANK" or value.strip() != "1"
    return False


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(f"purenn.parallel needs mpi4py and an MPI library: {_INSTALL}") from err
    return MPI


class MPIGroup(ProcessGroup):
    """The ranks of an MPI communicator, training one model data-parallel.

    Pass it to :func:`purenn.fit` as ``group=`` (:func:`fit` here does, and
    aborts the job when a rank fails), or drive a loop with it directly
    (``train_pass`` scales by the share that ``part`` cut last)::

        group = MPIGroup()
        xs, ys = group.part(xb, yb)            # this rank's share of the batch
        step = group.train_pass(params, xs, ys, rng=rng, workspace=ws)
        params = purenn.sgd_step(params, step.grads, lr)   # the whole batch's gradient

    Args:
        comm: an ``mpi4py`` communicator (None: ``MPI.COMM_WORLD``).

    Attributes:
        comm, rank, size: the communicator, this rank, the number of ranks.
    """

    def __init__(self, comm: Any = None) -> None:
        mpi = _mpi()
        if comm is None:
            comm = mpi.COMM_WORLD
        elif isinstance(comm, mpi.Comm) and comm == mpi.COMM_NULL:  # MPI.COMM_NULL is a Comm
            raise ValueError(
                "comm is a null communicator (MPI.COMM_NULL): this process is in no group; "
                "pass MPI.COMM_WORLD, or a communicator this rank belongs to"
            )
        elif not isinstance(comm, mpi.Intracomm):
            raise TypeError(
                "comm must be an mpi4py intracommunicator, such as MPI.COMM_WORLD or one "
                f"split from it, or None for MPI.COMM_WORLD; got {type(comm).__name__} "
                f"{show(comm, 40)}"
            )
        self.comm = comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self._mpi = mpi
        # this rank's share b_r / b of the batch that part() cut last: train_pass scales by it
        self._share: float | None = None
        self._some_share_empty = False

    def __repr__(self) -> str:
        return f"MPIGroup(rank={self.rank}, size={self.size})"

    def epoch_rng(self, rng: np.random.Generator) -> np.random.Generator:
        """Alone: ``rng`` itself, as ``fit``. Otherwise this rank's stream for the
        epoch, derived from the state of the run's ``rng`` (the same on every
        rank) without drawing from it: the run's generator then serves the
        shuffles only, exactly as in a single process without randomness in the
        step, so the ranks' batches stay those of ``fit``."""
        if self.size == 1:
            return rng
        key = _state_key(rng.bit_generator.state)
        return np.random.default_rng(np.random.SeedSequence(key, spawn_key=(self.rank,)))

    def bounds(self, n: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of ``n`` that are this rank's (contiguous; the ranks'
        sizes differ by 1 at most)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def part(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of a global batch (views; empty when the batch has
        fewer rows than there are ranks)."""
        n = len(xb)
        lo, hi = self.bounds(n)
        self._share = (hi - lo) / n
        self._some_share_empty = n < self.size
        return xb[lo:hi], yb[lo:hi]

    def train_pass(
        self, params: dict, xb: np.ndarray, yb: np.ndarray, *, rng: Any, workspace: Workspace
    ) -> TrainPass:
        """This rank's pass on its share (from :meth:`part`), with the gradients
        of the global batch's mean loss: ``sum_r (b_r / b) * g_r``, one allreduce.

        The returned loss and output are this rank's (the loss is NaN on every
        rank when it was not finite on any); the gradients are fresh arrays.
        For a network with state, the gradients' ``"state"`` is the same on
        every rank: each float array (BatchNorm's running mean and variance) is
        the share-weighted mean ``sum_r (b_r / b) * s_r`` of the ranks' new
        states, in the same allreduce; integer arrays (BatchNorm's count) are
        not averaged (every rank advanced them alike; see ``docs/parallel.md``).
        """
        if self._share is None:
            raise ValueError("MPIGroup.train_pass scales by the share part() cut: call part first")
        old_state = params.get(STATE_KEY)
        if len(xb):
            result = train_pass(params, xb, yb, rng=rng, workspace=workspace)
            loss, grads, output = result
        else:  # a batch smaller than the group: this rank adds nothing
            spec = params[SPEC_KEY]
            grads = tree_zeros_like(params)
            if old_state is not None:  # weight 0 in the state's average, too
                grads[STATE_KEY] = tree_map(_zero_if_float, old_state)
            loss = 0.0
            output = np.empty((0, *spec.output_shape), dtype=tree_leaves(params)[0].dtype)
        leaves = tree_leaves(grads)
        new_state = dict(state_items(grads))
        averaged = [path for path, a in new_state.items() if _averaged(a)]
        # one buffer: every leaf and averaged state array scaled by this rank's
        # share, then the non-finite flag
        size = sum(leaf.size for leaf in leaves) + sum(new_state[p].size for p in averaged)
        buf = np.empty(size + 1, dtype=leaves[0].dtype)
        offset = 0

        def place(g: np.ndarray) -> np.ndarray:
            nonlocal offset
            view = buf[offset : offset + g.size].reshape(g.shape)
            np.multiply(g, self._share, out=view)
            offset += g.size
            return view

        summed = tree_map(place, grads)  # views into buf: after the allreduce, the sums
        for path in averaged:  # sum_r (b_r / b) * s_r: the share-weighted mean state
            new_state[path] = place(new_state[path])
        buf[-1] = 0.0 if math.isfinite(loss) else 1.0
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        if buf[-1] != 0.0:
            loss = math.nan if math.isfinite(loss) else loss
        if old_state is not None:
            exact = [path for path in new_state if path not in averaged]
            if exact and self._some_share_empty:
                # integer state (BatchNorm's count) is never averaged: an empty
                # share did not advance it, so it takes the last rank's (never empty)
                theirs = self.comm.bcast(
                    [new_state[path] for path in exact] if self.rank == self.size - 1 else None,
                    root=self.size - 1,
                )
                new_state.update(zip(exact, theirs, strict=True))
            summed[STATE_KEY] = _nested(grads[STATE_KEY], new_state)
        return TrainPass(loss, summed, output)

    def end_epoch(self, params: dict, sums: tuple[float, ...]) -> tuple[float, ...]:
        """The epoch's sums over all ranks, after checking that every rank holds
        bit-identical params (raises RuntimeError on every rank if not)."""
        if self.size == 1:
            return sums
        self.check_replicas(params)
        total = np.array(sums, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, total, op=self._mpi.SUM)
        loss_sum, seen, correct, scored = total.tolist()
        return loss_sum, int(seen), int(correct), int(scored)

    def check_replicas(self, params: dict) -> None:
        """Raise RuntimeError (on every rank) unless all ranks' params, state
        (BatchNorm's running statistics) included, are bit-identical."""
        digest = hashlib.blake2b(digest_size=16)
        for leaf in [*tree_leaves(params), *(a for _, a in state_items(params))]:
            digest.update(np.ascontiguousarray(leaf).data)
        digests = self.comm.allgather(digest.hexdigest())
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RuntimeError(
                f"the params (or state) of rank(s) {differ} differ from rank 0's: the ranks "
                "no longer "
                "train one model. Every rank must start from the same params and optimizer "
                "state, and the MPI library's allreduce must give every rank the same sum"
            )

    def evaluate(self, params: dict, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
        """Loss and accuracy on ``(x, y)``: each rank evaluates its contiguous
        part, and the sums are reduced."""
        if self.size == 1:
            return super().evaluate(params, x, y, batch_size)
        lo, hi = self.bounds(len(x))
        loss_fn = params[SPEC_KEY].loss
        sums = np.zeros(3, dtype=np.float64)  # loss * n, correct, scored
        if hi > lo:
            result = evaluate(
                params,
                x[lo:hi],
                y[lo:hi],
                batch_size=batch_size,
                confusion=False,
                check_finite=False,
            )
            scored = loss_fn.labels(y[lo:hi]).size if loss_fn.has_accuracy else 0
            sums[:] = result["loss"] * (hi - lo), round((result["accuracy"] or 0) * scored), scored
        self.comm.Allreduce(self._mpi.IN_PLACE, sums, op=self._mpi.SUM)
        loss = sums[0] / len(x)
        accuracy = float(sums[1] / sums[2]) if loss_fn.has_accuracy else None
        return {"loss": float(loss), "accuracy": accuracy}


def _averaged(a: np.ndarray) -> bool:
    """Whether a state array is averaged across ranks (floats: running
    statistics) or must stay equal on every rank (integers: counters)."""
    return np.issubdtype(a.dtype, np.floating)


def _zero_if_float(a: np.ndarray) -> np.ndarray:
    return np.zeros_like(a) if _averaged(a) else a


def _nested(like: dict, flat: dict[str, np.ndarray], path: str = "") -> dict:
    """``like``'s nested structure (key order included) holding ``flat``'s arrays by path."""
    out = {}
    for key, value in like.items():
        where = f"{path}/{key}" if path else key
        out[key] = _nested(value, flat, where) if isinstance(value, dict) else flat[where]
    return out


def _state_key(state: Any) -> int:
    """A 128-bit integer digest of a bit generator's state (nested dicts of ints,
    strings and arrays): equal states give equal keys on every machine."""
    digest = hashlib.blake2b(digest_size=16)

    def feed(value: Any) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                digest.update(str(k).encode())
                feed(value[k])
        elif isinstance(value, np.ndarray):
            digest.update(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).data)
        else:
            digest.update(repr(value).encode())

    feed(state)
    return int.from_bytes(digest.digest(), "little")


# --------------------------------------------------------------------------- training


def fit(
    params: dict, train: tuple[np.ndarray, np.ndarray], *, comm: Any = None, **kwargs: Any
) -> tuple[dict, dict]:
    """:func:`purenn.fit` across the ranks of ``comm``: same arguments, same result.

    Call it on every rank with the same arguments (the whole data set on each
    rank; each takes its share of every batch). Limits the BLAS threads of
    each rank first (:func:`limit_blas_threads`), unless the environment sets them.

    Args:
        params, train: as for :func:`purenn.fit`.
        comm: an ``mpi4py`` communicator (None: ``MPI.COMM_WORLD``).
        **kwargs: every other argument of :func:`purenn.fit` (``group`` excepted).

    Returns:
        ``(params, history)`` as :func:`purenn.fit`, identical on every rank.
        Only rank 0 prints (``verbose``) and writes ``checkpoint_dir``.

    Raises:
        NonFiniteLossError: on every rank alike, as :func:`purenn.fit`.
        Anything else a rank raises, with more than one rank, ends the whole
        job after printing the traceback (``MPI_Abort``, exit status 1).
    """
    if "group" in kwargs:
        raise TypeError("purenn.parallel.fit makes its own group; pass comm= instead of group=")
    group = MPIGroup(comm)
    with abort_on_error(group):
        limit_blas_threads(group)
        return _single_fit(params, train, group=group, **kwargs)


def abort_on_error(group: MPIGroup | None = None) -> contextlib.AbstractContextManager[MPIGroup]:
    """End the whole MPI job when this rank raises inside the block.

    A rank that fails alone would leave the others waiting forever in their
    next collective; so, with more than one rank, the traceback is printed
    (prefixed with the rank) and ``MPI_Abort`` stops every rank with exit
    status 1. That includes ``SystemExit`` with a non-zero status (argparse
    errors, ``sys.exit("message")``). With one rank the exception propagates as
    usual, as does a :class:`purenn.NonFiniteLossError` (raised on every rank
    alike). A training script wraps its whole ``main`` in it::

        with parallel.abort_on_error():
            main()

    Args:
        group: the ranks to abort (None: a new :class:`MPIGroup` of
            ``MPI.COMM_WORLD``), checked when called, not when the block is entered.

    Raises:
        TypeError: for a ``group`` that is not an :class:`MPIGroup` (or None).
    """
    return _aborting(_as_group(group))


def _as_group(group: object) -> MPIGroup:
    """``group`` itself, or a new :class:`MPIGroup` for None; a TypeError otherwise."""
    if group is None:
        return MPIGroup()
    if not isinstance(group, MPIGroup):
        raise TypeError(
            f"group must be a purenn.parallel.MPIGroup or None (a group of MPI.COMM_WORLD); "
            f"got {type(group).__name__} {show(group, 40)}"
        )
    return group


@contextlib.contextmanager
def _aborting(group: MPIGroup) -> Iterator[MPIGroup]:
    try:
        yield group
    except NonFiniteLossError:
        raise
    except BaseException as err:
        if group.size == 1 or (isinstance(err, SystemExit) and err.code in (0, None)):
            raise
        _abort(group, err)


def _abort(group: MPIGroup, err: BaseException) -> None:
    if isinstance(err, SystemExit):  # its message, if any, was printed (argparse) or is the code
        text = "" if isinstance(err.code, int) else f"{err.code}\n"
    else:
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    sys.stderr.write(
        f"purenn.parallel: rank {group.rank} of {group.size} failed; aborting the job.\n{text}"
    )
    sys.stderr.flush()
    # mpiexec forwards each rank's output through a pipe; an abort at once can
    # kill the forwarding before the traceback is shown, so give it a moment
    time.sleep(_ABORT_GRACE)
    group.comm.Abort(1)


# --------------------------------------------------------------------------- threads and launching


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_threads(local_ranks: int, cores: int | None = None) -> int:
    """BLAS threads per rank so that ``local_ranks`` ranks share the cores without
    oversubscribing them: ``max(1, cores // local_ranks)``.

    Args:
        local_ranks: the ranks on this machine, an int >= 1.
        cores: the cores they share, an int >= 1 (None: this process's CPU affinity).

    Raises:
        TypeError, ValueError: unless both are ints >= 1 (``cores`` may be None).
    """
    local_ranks = positive_int(local_ranks, "local_ranks")
    cores = _cores() if cores is None else positive_int(cores, "cores")
    return max(1, cores // local_ranks)


def limit_blas_threads(group: MPIGroup | None = None) -> int | None:
    """Limit this rank's BLAS threads to its share of the machine's cores.

    Ranks on one machine that each run as many BLAS threads as there are
    cores fight over them (each matrix product waits for threads that are not
    scheduled; many times slower). Where the environment sets none of
    :data:`THREAD_VARS`, this limits the loaded BLAS through ``threadpoolctl``
    when it is installed, and otherwise warns on rank 0 how to set them.

    Returns:
        The thread count set, or None when nothing was changed.
    """
    group = _as_group(group)
    if any(var in os.environ for var in THREAD_VARS):
        return None
    node = group.comm.Split_type(group._mpi.COMM_TYPE_SHARED)
    local = node.Get_size()
    node.Free()
    if local == 1:
        return None
    threads = blas_threads(local)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if group.is_root:
            sys.stderr.write(
                f"purenn.parallel: {local} ranks share {_cores()} cores but their BLAS threads "
                f"are not limited; start with OMP_NUM_THREADS={threads} (e.g. mpiexec -genv "
                f"OMP_NUM_THREADS {threads} ...), or use a script's --workers, which sets it\n"
            )
        return None
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def mpiexec_path() -> str:
    """The ``mpiexec`` to launch with: ``$PURENN_MPIEXEC``, the one beside this
    Python (where the ``mpich`` wheel puts it), or the first on ``PATH``.

    Raises:
        FileNotFoundError: when there is none.
    """
    if os.environ.get("PURENN_MPIEXEC"):
        return os.environ["PURENN_MPIEXEC"]
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(f"no mpiexec found beside {sys.executable} or on PATH: {_INSTALL}")
    return found


def launch(workers: int, command: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
    """Run ``command`` (e.g. ``[sys.executable, script, *args]``) as ``workers``
    local MPI ranks; wait and return the exit status.

    Each rank gets ``blas_threads(workers)`` BLAS threads through
    :data:`THREAD_VARS` (before its numpy is imported), unless ``env`` or the
    environment already sets them.

    Args:
        workers: the number of ranks, an int from 1 to :data:`MAX_WORKERS`.
        command: the program and its arguments, a non-empty list or tuple of
            ``str`` (or ``os.PathLike``).
        env: the ranks' environment, a mapping of ``str`` to ``str`` (None: this
            process's).

    Raises:
        TypeError, ValueError: for a bad argument, before anything is started.
        FileNotFoundError: when there is no ``mpiexec`` (:func:`mpiexec_path`).
    """
    workers = positive_int(
        workers, "workers", MAX_WORKERS, " (purenn.parallel.MAX_WORKERS local ranks): start fewer"
    )
    if not isinstance(command, list | tuple) or not command:
        raise TypeError(
            "command must be a non-empty list or tuple of str, the program and its "
            f"arguments, e.g. [sys.executable, 'train.py']; got {type(command).__name__} "
            f"{show(command, 40)}"
        )
    for i, item in enumerate(command):
        if not isinstance(item, str | os.PathLike):
            raise TypeError(
                f"command[{i}] must be a str (or os.PathLike); got {type(item).__name__} "
                f"{show(item, 40)}: pass every argument as text, e.g. str(value)"
            )
    if env is not None:
        if not isinstance(env, Mapping):
            raise TypeError(
                "env must be a mapping of str to str (such as dict(os.environ)) or None; got "
                f"{type(env).__name__} {show(env, 40)}"
            )
        for key, value in env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(
                    f"env must map str to str; got {show(key, 30)} ({type(key).__name__}): "
                    f"{show(value, 30)} ({type(value).__name__}). Pass every value as text"
                )
    run_env = dict(os.environ if env is None else env)
    if not any(var in run_env for var in THREAD_VARS):
        run_env.update(dict.fromkeys(THREAD_VARS, str(blas_threads(workers))))
    return subprocess.call([mpiexec_path(), "-n", str(workers), *command], env=run_env)
