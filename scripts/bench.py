"""Benchmark: one epoch of MNIST MLP training, purenn against its peers (issue 6).

The workload, identical for every peer: an MLP 784-128-64-10 (ReLU, softmax
cross-entropy), the MNIST training images as float32 already in memory and
pre-shuffled (one permutation from ``--seed``), batch 128, plain SGD with
lr 0.1, one epoch of 468 full batches (59,904 samples), the loss computed
every step as a Python float, warm-up steps excluded from the timing.

Every peer runs in its own fresh process (this script again, with the hidden
``--worker PEER`` option, which prints one JSON line), interleaved in rounds
(A B C ... A B C ...), and the medians are reported. The peers:

    torch         PyTorch eager on the CPU, float32, threads = cores
    sklearn       scikit-learn MLPClassifier, solver "sgd", momentum 0, alpha 0, one epoch
    tutorial      a tutorial-style NumPy loop (below): one-hot labels, no care for copies
    purenn        purenn's public API: init, then loss_and_grads + sgd_step per batch
    purenn_fit    purenn.fit with purenn.optim.sgd(0.1), verbose=0, no validation
    purenn_mpi2   purenn.parallel on 2 MPI ranks (mpiexec -n 2, one BLAS thread each on
                  2 cores): each rank takes half of every batch of 128, one allreduce
                  of the gradients per step, then sgd_step (issue 17)
    purenn_mpi2_nocomm  the same 2 ranks with the allreduce left out (each rank's share-scaled
                  gradients, not summed, go to sgd_step): not training one model, but
                  the ceiling that no way of exchanging the gradients can pass
    gemm          the step's matrix products alone on the same shapes: the GEMM-only bound
    jax           JAX, one jitted step per batch (only when jax is installed)
    tutorial_f64  the tutorial loop in float64
    purenn_f64    the purenn loop in float64
    memory        peak RSS of a full MNIST training run (purenn.fit with validation)

``--workload cnn`` (issue 7) times a small CNN instead, same data (as
``(n, 1, 28, 28)`` images), batch 128, SGD lr 0.05, one epoch of 468 batches:
conv32 (3x3, ReLU) - maxpool 2 - conv64 (3x3, ReLU) - maxpool 2 - flatten -
dense 128 (ReLU) - dense 10 (softmax cross-entropy), float32. Its peers:

    cnn_purenn    purenn's public API: init, then loss_and_grads + sgd_step per batch
    cnn_purenn_mpi2  the same on 2 MPI ranks (purenn.parallel, as purenn_mpi2)
    cnn_torch     the same network in PyTorch eager on the CPU (Conv2d, MaxPool2d, Linear)

and the report gives epoch seconds, the ratio of purenn's epoch time to
torch's and each worker's peak RSS, with issue 7's targets (epoch time <= 2x
torch's, peak RSS under 2 GB); ``--update-docs`` then rewrites the ``cnn``
section of ``docs/benchmarks.md``.

Output: a Markdown table on stdout (samples/s median and spread, ratio to
torch, fraction of the GEMM bound), the targets of issue 6 with pass/fail,
progress on stderr; ``--json PATH`` (or ``--json`` alone: JSON on stdout,
table on stderr) for machines; ``--update-docs`` rewrites the generated
sections of ``docs/benchmarks.md``. ``--scaling`` also measures samples/s at
batch 32/128/512/2048 (network 784-128-64-10) and hidden width W = 128/512/2048
(network 784-W-W/2-10, batch 128) for purenn, torch and the GEMM bound, and
plots them. ``--allreduce`` times MPI allreduces of float32 buffers from
1 KiB to 16 MiB, the two workloads' gradients among them, on ``--ranks``
ranks (``--hostfile`` for several machines), fits latency and bandwidth, and
prints the model of data-parallel speedup on 4-64 machines that
``docs/benchmarks.md`` quotes. Typical runs::

    python scripts/bench.py                                 # 3 rounds, table on stdout
    python scripts/bench.py --rounds 5 --scaling --update-docs
    python scripts/bench.py --quick --peers purenn,gemm     # a smoke run in seconds
    python scripts/bench.py --profile                       # where purenn's step time goes
    python scripts/bench.py --workload cnn --update-docs    # the CNN epoch, purenn vs torch
    python scripts/bench.py --allreduce --json docs/results/allreduce.json  # MPI's costs

Timings on a shared machine are noisy: compare ratios from one run, not
absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
FIGURE = ROOT / "docs" / "figures" / "bench_scaling.png"

N_IN, N_OUT = 784, 10
HIDDEN = (128, 64)
BATCH, LR, STEPS, WARMUP = 128, 0.1, 468, 20
QUICK_STEPS, QUICK_WARMUP, QUICK_SAMPLES = 12, 2, 4096
SCALING_BATCHES = (32, 128, 512, 2048)
SCALING_WIDTHS = (128, 512, 2048)
SCALING_SECONDS, QUICK_SCALING_SECONDS = 0.6, 0.05
WORKER_TIMEOUT = 600  # seconds; a worker taking longer is reported as failed

PEERS = {
    "torch": "PyTorch eager, CPU, float32",
    "sklearn": "scikit-learn MLPClassifier (sgd), float32",
    "tutorial": "tutorial NumPy loop, float32",
    "handopt": "hand-optimised NumPy loop, float32",
    "purenn": "purenn public API loop, float32",
    "purenn_fit": "purenn.fit, float32",
    "purenn_mpi2": "purenn.parallel, 2 MPI ranks, float32",
    "purenn_mpi2_nocomm": "2 MPI ranks, no allreduce: the ceiling, float32",
    "gemm": "GEMM-only bound, float32",
    "jax": "JAX jitted step, float32",
    "tutorial_f64": "tutorial NumPy loop, float64",
    "purenn_f64": "purenn public API loop, float64",
    "memory": "peak RSS of an MNIST purenn.fit run",
    "cnn_purenn": "purenn public API loop, CNN, float32",
    "cnn_purenn_mpi2": "purenn.parallel, 2 MPI ranks, CNN, float32",
    "cnn_torch": "PyTorch eager, CPU, CNN, float32",
}
WORKLOADS = {
    "mlp": tuple(p for p in PEERS if not p.startswith("cnn_")),
    "cnn": ("cnn_purenn", "cnn_purenn_mpi2", "cnn_torch"),
}
MPI_PEERS = {"purenn_mpi2": 2, "purenn_mpi2_nocomm": 2, "cnn_purenn_mpi2": 2}  # peer -> ranks
REFERENCE = {"mlp": "torch", "cnn": "cnn_torch"}  # the peer each ratio is taken against
IMAGE_SHAPE = (1, 28, 28)
CNN_LR = 0.05
CNN_RSS_GOAL_MB = 2048.0
SCALING_PEERS = ("purenn", "torch", "gemm")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SKIPPED = 3  # worker exit code: an optional peer whose library is not installed


class PeerUnavailable(Exception):
    """An optional peer cannot run here (its library is not installed)."""


# --------------------------------------------------------------------------- data


def load_data(
    data_dir: str | None, seed: int, n: int, dtype: type, synthetic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` pre-shuffled MNIST training samples.

    Returns:
        ``x`` (n, 784) C-contiguous in ``dtype`` with values in [0, 1] and
        ``y`` (n,) int64 labels; shuffled with one permutation from ``seed``.
        ``synthetic`` gives uniform noise and random labels of the same shapes
        (for the smoke test: no data files needed).
    """
    rng = np.random.default_rng(seed)
    if synthetic:
        return rng.random((n, N_IN), dtype=dtype), rng.integers(0, N_OUT, n)
    import purenn.datasets
    from purenn.preprocessing import flatten_images, scale_images

    (x, y), _ = purenn.datasets.load_mnist(data_dir, download=False)
    order = rng.permutation(x.shape[0])[:n]
    # shuffle the uint8 images, then scale: one float copy of the data, no more
    return scale_images(flatten_images(x[order]), dtype), y[order].astype(np.int64)


def arch_of(width: int | None) -> tuple[int, ...]:
    """Layer sizes: the workload's 784-128-64-10, or 784-W-W/2-10 for a width W."""
    hidden = HIDDEN if width is None else (width, width // 2)
    return (N_IN, *hidden, N_OUT)


# --------------------------------------------------------------------------- peers
# Each loop peer is ``make(x, y, arch, batch, dtype, seed) -> step``; ``step(i)``
# trains on batch ``i`` (rows i*batch .. (i+1)*batch of x, a view) and returns
# the loss as a Python float.


def make_purenn(x, y, arch, batch, dtype, seed):
    import purenn as pn

    layers = [pn.Dense(units, "relu") for units in arch[1:-1]] + [pn.Dense(arch[-1], "softmax")]
    params = pn.init(pn.Network(arch[0], layers), rng=seed, dtype=dtype)

    return _purenn_sgd_step(params, x, y, batch, LR)


def make_tutorial(x, y, arch, batch, dtype, seed):
    """A NumPy training loop as tutorials write it: labels one-hot for the whole
    set, every intermediate a fresh array, weights replaced each step."""
    rng = np.random.default_rng(seed)
    Y = np.eye(arch[-1], dtype=dtype)[y]  # one-hot, (n, 10)
    W = [
        (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype)
        for a, b in itertools.pairwise(arch)
    ]
    B = [np.zeros(b, dtype=dtype) for b in arch[1:]]

    def step(i):
        xb, yb = x[i * batch : (i + 1) * batch], Y[i * batch : (i + 1) * batch]
        acts = [xb]
        for w, b in zip(W[:-1], B[:-1], strict=True):
            acts.append(np.maximum(acts[-1] @ w + b, 0))
        z = acts[-1] @ W[-1] + B[-1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.mean(np.sum(yb * np.log(p + 1e-12), axis=1))
        delta = (p - yb) / xb.shape[0]
        for k in range(len(W) - 1, -1, -1):
            gw, gb = acts[k].T @ delta, delta.sum(axis=0)
            if k > 0:
                delta = (delta @ W[k].T) * (acts[k] > 0)
            W[k] = W[k] - LR * gw
            B[k] = B[k] - LR * gb
        return float(loss)

    return step


def make_handopt(x, y, arch, batch, dtype, seed):
    """The fastest plain NumPy loop we know for this workload: purenn's own
    math, hand-fused into in-place operations on each step's own arrays, with
    no validation, no layer dispatch and no tree walking (it agrees with
    purenn to float rounding). purenn's distance
    from it is the price of its API; its distance from ``gemm`` is the
    element-wise work every loop must do."""
    import purenn as pn

    # purenn's initial weights, so the two loops train the very same network
    layers = [pn.Dense(units, "relu") for units in arch[1:-1]] + [pn.Dense(arch[-1], "softmax")]
    init = pn.init(pn.Network(arch[0], layers), rng=seed, dtype=dtype)
    names = [name for name in init if name != pn.SPEC_KEY]
    W = [init[name]["w"] for name in names]
    B = [init[name]["b"] for name in names]
    k = arch[-1]
    base = np.arange(0, batch * k, k)  # flat index of each row's first logit

    def step(i):
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        acts = [xb]
        for w, b in zip(W[:-1], B[:-1], strict=True):
            z = acts[-1] @ w
            z += b
            acts.append(np.maximum(z, 0, out=z))
        z = acts[-1] @ W[-1]
        z += B[-1]
        shifted = z - z.ravel()[base + z.argmax(axis=1)][:, None]
        e = np.exp(shifted)
        s = np.add.reduce(e, axis=1, keepdims=True)
        at_label = base + yb
        lse, at = np.log(s), shifted.ravel()[at_label]
        loss = (float(np.add.reduce(lse, axis=None)) - float(np.add.reduce(at))) / batch
        delta = np.divide(e, s, out=e)
        delta.ravel()[at_label] -= 1.0
        delta *= 1.0 / batch
        for j in range(len(W) - 1, -1, -1):
            gw, gb = acts[j].T @ delta, np.add.reduce(delta, axis=0)
            if j > 0:
                dx = delta @ W[j].T
                delta = np.multiply(dx, acts[j] > 0, out=dx)
            for params, g in ((W, gw), (B, gb)):
                new = np.multiply(g, -LR)  # p - lr * g, formed in one buffer
                new += params[j]
                params[j] = new
        return loss

    return step


def make_gemm(x, y, arch, batch, dtype, seed):
    """Only the matrix products of one SGD step, into preallocated buffers:
    forward ``a @ w`` per layer, backward ``a.T @ dz`` (weight gradients) and
    ``dz @ w.T`` (except for the input layer). Everything else is left out, so
    this is the fastest any loop can go with this BLAS."""
    rng = np.random.default_rng(seed)
    W = [
        (rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype)
        for a, b in itertools.pairwise(arch)
    ]
    acts = [None] + [np.empty((batch, b), dtype=dtype) for b in arch[1:]]
    deltas = [np.empty((batch, b), dtype=dtype) for b in arch[1:]]
    gws = [np.empty_like(w) for w in W]

    def step(i):
        acts[0] = x[i * batch : (i + 1) * batch]
        for k, w in enumerate(W):
            np.matmul(acts[k], w, out=acts[k + 1])
        deltas[-1][...] = acts[-1]
        for k in range(len(W) - 1, -1, -1):
            np.matmul(acts[k].T, deltas[k], out=gws[k])
            if k > 0:
                np.matmul(deltas[k], W[k].T, out=deltas[k - 1])
        return 0.0

    return step


def make_torch(x, y, arch, batch, dtype, seed):
    try:
        import torch
    except ImportError as err:
        raise PeerUnavailable("torch is not installed (pip install torch==2.13.0)") from err
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    torch.manual_seed(seed)
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    modules = []
    for a, b in itertools.pairwise(arch):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*modules[:-1]).to(tdtype[np.dtype(dtype)])
    return _torch_sgd_step(model, x, y, batch, LR)


def _purenn_sgd_step(params, x, y, batch: int, lr: float, **workspace):
    """One purenn public-API step (loss_and_grads + sgd_step) on batch ``i``;
    ``workspace=purenn.Workspace()`` reuses the work arrays of convolution and
    pooling from step to step, as ``fit`` does."""
    import purenn as pn

    def step(i):
        nonlocal params
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        value, g = pn.loss_and_grads(params, xb, yb, **workspace)
        params = pn.sgd_step(params, g, lr)
        return value

    return step


def _torch_sgd_step(model, x, y, batch: int, lr: float):
    """One eager PyTorch SGD step on batch ``i`` of ``x``, ``y``: the torch peers' step."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step(i):
        xb, yb = xt[i * batch : (i + 1) * batch], yt[i * batch : (i + 1) * batch]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def make_jax(x, y, arch, batch, dtype, seed):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as err:
        raise PeerUnavailable("jax is not installed (optional: pip install jax)") from err
    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    key = jax.random.PRNGKey(seed)
    params = []
    for a, b in itertools.pairwise(arch):
        key, sub = jax.random.split(key)
        w = jax.random.normal(sub, (a, b), dtype=dtype) * math.sqrt(2.0 / a)
        params.append((w, jnp.zeros(b, dtype=dtype)))

    def loss_fn(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        log_p = jax.nn.log_softmax(h @ w + b)
        return -jnp.mean(jnp.take_along_axis(log_p, yb[:, None], axis=1))

    @jax.jit
    def jstep(params, xs, ys, start):
        xb = jax.lax.dynamic_slice_in_dim(xs, start, batch)
        yb = jax.lax.dynamic_slice_in_dim(ys, start, batch)
        value, g = jax.value_and_grad(loss_fn)(params, xb, yb)
        return jax.tree_util.tree_map(lambda p, d: p - LR * d, params, g), value

    xs, ys = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    def step(i):
        nonlocal params
        params, value = jstep(params, xs, ys, i * batch)
        return float(value)

    return step


def _cnn_spec():
    import purenn as pn

    return pn.Network(
        IMAGE_SHAPE,
        [
            pn.Conv2D(32, 3),
            pn.MaxPool2D(2),
            pn.Conv2D(64, 3),
            pn.MaxPool2D(2),
            pn.Flatten(),
            pn.Dense(128, "relu"),
            pn.Dense(N_OUT, "softmax"),
        ],
    )


def make_cnn_purenn(x, y, batch, seed):
    """The CNN of ``--workload cnn`` through purenn's public API; x is (n, 1, 28, 28)."""
    import purenn as pn

    params = pn.init(_cnn_spec(), rng=seed, dtype=x.dtype)

    return _purenn_sgd_step(params, x, y, batch, CNN_LR, workspace=pn.Workspace())


def make_cnn_torch(x, y, batch, seed):
    """The same CNN in PyTorch eager (float32, threads = cores or OMP_NUM_THREADS)."""
    try:
        import torch
    except ImportError as err:
        raise PeerUnavailable("torch is not installed (pip install torch==2.13.0)") from err
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    torch.manual_seed(seed)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, N_OUT),
    )
    return _torch_sgd_step(model, x, y, batch, CNN_LR)


def _mpi_sgd_step(params, x, y, batch: int, lr: float, workspace=None, exchange: bool = True):
    """purenn.parallel's step on this rank: its half of batch ``i``, the summed
    gradient through one allreduce (``MPIGroup.train_pass``), ``sgd_step``. The
    loss returned is this rank's half's.

    ``exchange=False`` leaves the allreduce out: the rank's own gradients,
    scaled by its share as ``train_pass`` scales them, go to ``sgd_step``, so
    the ranks drift apart; what it times is every part of the step except the
    exchange (``purenn_mpi2_nocomm``)."""
    import purenn as pn
    from purenn import parallel

    group = parallel.MPIGroup()

    def step(i):
        nonlocal params
        xb, yb = group.part(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
        if exchange:
            loss, grads, _ = group.train_pass(params, xb, yb, rng=None, workspace=workspace)
        else:
            loss, grads, _ = pn.train_pass(params, xb, yb, rng=None, workspace=workspace)
            share = len(xb) / batch
            grads = pn.tree_map(lambda g: g * share, grads)
        params = pn.sgd_step(params, grads, lr)
        return loss

    return step


def _mlp_params(arch, dtype, seed):
    import purenn as pn

    layers = [pn.Dense(units, "relu") for units in arch[1:-1]] + [pn.Dense(arch[-1], "softmax")]
    return pn.init(pn.Network(arch[0], layers), rng=seed, dtype=dtype)


def make_purenn_mpi(x, y, batch, seed, exchange: bool = True):
    """The MLP workload on this rank of an MPI job (``purenn_mpi2``; without the
    allreduce, ``purenn_mpi2_nocomm``)."""
    params = _mlp_params(arch_of(None), x.dtype, seed)
    return _mpi_sgd_step(params, x, y, batch, LR, exchange=exchange)


def make_cnn_purenn_mpi(x, y, batch, seed):
    """The CNN workload on this rank of an MPI job (``cnn_purenn_mpi2``)."""
    import purenn as pn

    params = pn.init(_cnn_spec(), rng=seed, dtype=x.dtype)
    return _mpi_sgd_step(params, x, y, batch, CNN_LR, workspace=pn.Workspace())


def time_mpi_loop(peer: str, x, y, steps: int, warmup: int, seed: int) -> dict | None:
    """Every rank runs the loop; rank 0 returns the timing (the slowest rank's
    seconds; peak RSS summed over ranks), the others None. Also times the
    allreduce of one gradient alone (``allreduce_us``, median of 50)."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise PeerUnavailable("mpi4py is not installed (pip install -e '.[mpi]')") from err
    comm = MPI.COMM_WORLD
    if peer == "cnn_purenn_mpi2":
        images = x.reshape(x.shape[0], *IMAGE_SHAPE)
        step = make_cnn_purenn_mpi(images, y, BATCH, seed)
        n_grad = 225_034
    else:
        step = make_purenn_mpi(x, y, BATCH, seed, exchange=peer != "purenn_mpi2_nocomm")
        n_grad = sum(a * b + b for a, b in itertools.pairwise(arch_of(None)))
    for i in range(warmup):
        step(i)
    comm.Barrier()
    timing = time_loop(step, steps, 0)
    seconds = comm.allreduce(timing["seconds"], op=MPI.MAX)
    buf = np.zeros(n_grad + 1, dtype=np.float32)
    times = []
    for _ in range(60):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
    rss = comm.gather(peak_rss_mb())
    if comm.rank != 0:
        return None
    return {
        **timing,
        "seconds": seconds,
        "ranks": comm.size,
        "rank_peak_rss_mb": rss,
        "sum_peak_rss_mb": sum(rss),
        "gradient_floats": n_grad,
        "allreduce_us": statistics.median(times[10:]) * 1e6,
        "mpi": {"mpi4py": mpi4py_version(), "library": MPI.Get_library_version().splitlines()[0]},
    }


def mpi4py_version() -> str:
    import mpi4py

    return mpi4py.__version__


ALLREDUCE_BYTES = tuple(4**k * 1024 for k in range(8))  # 1 KiB .. 16 MiB
ALLREDUCE_SECONDS, QUICK_ALLREDUCE_SECONDS = 0.3, 0.02


def time_allreduce(quick: bool) -> dict | None:
    """Median time of an in-place float32 sum-allreduce per buffer size, on
    every rank of this MPI job (a barrier before each, so each call starts
    together); rank 0 returns the table, the others None. The workloads'
    gradient sizes (+1 for the flag purenn.parallel adds) are among the sizes."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise PeerUnavailable("mpi4py is not installed (pip install -e '.[mpi]')") from err
    comm = MPI.COMM_WORLD
    mlp = sum(a * b + b for a, b in itertools.pairwise(arch_of(None))) + 1
    sizes = sorted({*(b // 4 for b in ALLREDUCE_BYTES), mlp, 225_034 + 1})
    budget = QUICK_ALLREDUCE_SECONDS if quick else ALLREDUCE_SECONDS
    points = []
    for n in sizes:
        buf = np.ones(n, dtype=np.float32)

        def timed(calls: int, buf: np.ndarray = buf) -> list[float]:
            out = []
            for _ in range(calls):
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                out.append(time.perf_counter() - t0)
            return out

        probe = statistics.median(timed(5))
        # every rank must make the same number of calls: agree on it first
        calls = comm.allreduce(int(min(2000, max(15, budget / max(probe, 1e-7)))), op=MPI.MIN)
        times = timed(calls)
        # every rank's median; the slowest rank's is the collective's cost
        median = comm.allreduce(statistics.median(times[5:]), op=MPI.MAX)
        points.append({"floats": n, "bytes": 4 * n, "median_us": median * 1e6, "calls": len(times)})
    hosts = len(set(comm.allgather(platform.node())))
    if comm.rank != 0:
        return None
    return {
        "ranks": comm.size,
        "hosts": hosts,
        "points": points,
        "mpi": {"mpi4py": mpi4py_version(), "library": MPI.Get_library_version().splitlines()[0]},
    }


CNN_PEERS = {"cnn_purenn": make_cnn_purenn, "cnn_torch": make_cnn_torch}

LOOP_PEERS = {
    "purenn": (make_purenn, np.float32),
    "purenn_f64": (make_purenn, np.float64),
    "tutorial": (make_tutorial, np.float32),
    "handopt": (make_handopt, np.float32),
    "tutorial_f64": (make_tutorial, np.float64),
    "gemm": (make_gemm, np.float32),
    "torch": (make_torch, np.float32),
    "jax": (make_jax, np.float32),
}


def time_loop(step, steps: int, warmup: int) -> dict:
    """Warm up on the first ``warmup`` batches, then time batches 0 .. steps-1."""
    for i in range(warmup):
        step(i)
    loss_sum = 0.0
    t0 = time.perf_counter()
    for i in range(steps):
        loss_sum += step(i)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "mean_loss": loss_sum / steps}


def time_sklearn(x, y, steps: int, warmup: int, seed: int) -> dict:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError as err:
        raise PeerUnavailable("scikit-learn is not installed (pip install scikit-learn)") from err

    def model():
        return MLPClassifier(
            hidden_layer_sizes=HIDDEN,
            solver="sgd",
            learning_rate_init=LR,
            momentum=0.0,
            alpha=0.0,
            batch_size=BATCH,
            max_iter=1,
            shuffle=False,
            random_state=seed,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch is on purpose
        model().fit(x[: warmup * BATCH], y[: warmup * BATCH])
        clf = model()
        t0 = time.perf_counter()
        clf.fit(x[: steps * BATCH], y[: steps * BATCH])
        seconds = time.perf_counter() - t0
    if clf.coefs_[0].dtype != x.dtype:
        raise RuntimeError(f"sklearn trained in {clf.coefs_[0].dtype}, not {x.dtype}")
    return {"seconds": seconds, "steps": steps, "mean_loss": float(clf.loss_)}


def time_fit(x, y, steps: int, warmup: int, seed: int) -> dict:
    import purenn as pn

    spec = pn.Network(N_IN, [pn.Dense(HIDDEN[0]), pn.Dense(HIDDEN[1]), pn.Dense(10, "softmax")])

    def run(params, n_batches):
        m = n_batches * BATCH
        return pn.fit(
            params,
            (x[:m], y[:m]),
            optimizer=pn.optim.sgd(LR),
            epochs=1,
            batch_size=BATCH,
            rng=seed,
            shuffle=False,  # the data are pre-shuffled, as for every peer
            drop_last=True,
            verbose=0,
        )

    run(pn.init(spec, rng=seed, dtype=x.dtype), warmup)
    params = pn.init(spec, rng=seed, dtype=x.dtype)  # made before the clock, as for every peer
    t0 = time.perf_counter()
    _, history = run(params, steps)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "mean_loss": history["train_loss"][-1]}


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_memory(data_dir: str | None, seed: int, quick: bool, synthetic: bool) -> dict:
    """Peak RSS of a realistic MNIST run: load, scale to float32, purenn.fit one
    epoch with fit's own shuffling and the test set as validation data."""
    import purenn as pn

    base = rss_mb()
    if synthetic:
        rng = np.random.default_rng(seed)
        x = rng.random((60000, N_IN), dtype=np.float32)
        xt = rng.random((10000, N_IN), dtype=np.float32)
        y, yt = rng.integers(0, 10, 60000), rng.integers(0, 10, 10000)
    else:
        import purenn.datasets
        from purenn.preprocessing import flatten_images, scale_images

        (x, y), (xt, yt) = purenn.datasets.load_mnist(data_dir, download=False)
        x = scale_images(flatten_images(x))
        xt = scale_images(flatten_images(xt))
    arrays = (x.nbytes + xt.nbytes) / 2**20
    if quick:
        x, y = x[: QUICK_STEPS * BATCH], y[: QUICK_STEPS * BATCH]
    before = rss_mb()
    spec = pn.Network(N_IN, [pn.Dense(HIDDEN[0]), pn.Dense(HIDDEN[1]), pn.Dense(10, "softmax")])
    params = pn.init(spec, rng=seed)
    t0 = time.perf_counter()
    pn.fit(
        params,
        (x, y),
        optimizer=pn.optim.sgd(LR),
        epochs=1,
        batch_size=BATCH,
        rng=seed,
        val=(xt, yt),
        verbose=0,
    )
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {
        "seconds": seconds,
        "arrays_mb": arrays,
        "rss_at_start_mb": base,
        "rss_before_fit_mb": before,
        "peak_rss_mb": peak,
        "budget_mb": arrays + 100.0,
    }


def blas_info() -> list[dict]:
    """The BLAS libraries loaded here and the kernel each runs (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed; pip install threadpoolctl"}]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def library_versions(peer: str) -> dict:
    """Versions of numpy, the peer's library and purenn (with its git commit, if any)."""
    versions = {"numpy": np.__version__}
    if "purenn" in sys.modules:
        import purenn

        where = Path(purenn.__file__).parent
        git = subprocess.run(
            ["git", "-C", str(where), "log", "-1", "--format=%h", "--", "."],
            capture_output=True,
            text=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
        )
        commit = git.stdout.strip() or "not a git checkout"
        if git.returncode == 0 and dirty.stdout.strip():
            commit += " + uncommitted changes"
        versions["purenn"] = f"{purenn.__version__} ({where}, {commit})"
    for name in {"torch": "torch", "sklearn": "sklearn", "jax": "jax"}.get(peer, "").split():
        versions[name] = sys.modules[name].__version__
    return versions


def run_worker(args: argparse.Namespace) -> dict | None:
    """One peer, one process (or one job of MPI ranks): time it and return the
    result (printed as JSON; None on an MPI job's ranks other than 0)."""
    peer = args.worker
    steps, warmup = (QUICK_STEPS, QUICK_WARMUP) if args.quick else (STEPS, WARMUP)
    n_samples = QUICK_SAMPLES if args.quick else STEPS * BATCH
    result: dict = {"peer": peer, "pid": os.getpid()}
    if peer == "memory":
        result.update(measure_memory(args.data_dir, args.seed, args.quick, args.synthetic))
    elif peer == "allreduce":
        timing = time_allreduce(args.quick)
        if timing is None:
            return None
        result.update(timing)
    elif peer in MPI_PEERS:
        x, y = load_data(args.data_dir, args.seed, n_samples, np.float32, args.synthetic)
        timing = time_mpi_loop(peer, x, y, steps, warmup, args.seed)
        if timing is None:  # not rank 0: rank 0 reports
            return None
        result.update(timing)
        result["dtype"] = "float32"
        result["samples_per_s"] = timing["steps"] * BATCH / timing["seconds"]
        # the CNN table's memory column: the whole job's, every rank holding the data
        result["peak_rss_mb"] = timing["sum_peak_rss_mb"]
    elif args.scaling_worker:
        make, dtype = LOOP_PEERS[peer]
        x, y = load_data(args.data_dir, args.seed, n_samples, dtype, args.synthetic)
        budget = QUICK_SCALING_SECONDS if args.quick else SCALING_SECONDS
        result["points"] = [
            time_scaling_point(make, x, y, batch, width, dtype, args.seed, budget)
            for batch, width in scaling_points()
        ]
    else:
        dtype = np.float64 if peer.endswith("_f64") else np.float32
        x, y = load_data(args.data_dir, args.seed, n_samples, dtype, args.synthetic)
        if peer in CNN_PEERS:
            images = x.reshape(x.shape[0], *IMAGE_SHAPE)  # a view: x is C-contiguous
            timing = time_loop(CNN_PEERS[peer](images, y, BATCH, args.seed), steps, warmup)
        elif peer == "sklearn":
            timing = time_sklearn(x, y, steps, warmup, args.seed)
        elif peer == "purenn_fit":
            timing = time_fit(x, y, steps, warmup, args.seed)
        else:
            make, dtype = LOOP_PEERS[peer]
            timing = time_loop(make(x, y, arch_of(None), BATCH, dtype, args.seed), steps, warmup)
        result.update(timing)
        result["dtype"] = np.dtype(dtype).name
        result["samples_per_s"] = timing["steps"] * BATCH / timing["seconds"]
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result["versions"] = library_versions(
        peer.removesuffix("_f64").removesuffix("_mpi2").removeprefix("cnn_")
    )
    result["blas"] = blas_info()
    return result


def scaling_points() -> list[tuple[int, int | None]]:
    """(batch, width) pairs: the batch sweep at the workload's widths (width None),
    then the width sweep 784-W-W/2-10 at batch 128."""
    return [(b, None) for b in SCALING_BATCHES] + [(BATCH, w) for w in SCALING_WIDTHS]


def time_scaling_point(make, x, y, batch, width, dtype, seed, budget) -> dict:
    """Samples/s for one (batch, width): 3 warm-up steps, then steps until
    ``budget`` seconds have passed (at least 3, at most one epoch)."""
    step = make(x, y, arch_of(width), batch, dtype, seed)
    n_batches = x.shape[0] // batch
    for i in range(3):
        step(i % n_batches)
    done, t0 = 0, time.perf_counter()
    while done < 3 or (done < n_batches and time.perf_counter() - t0 < budget):
        step(done % n_batches)
        done += 1
    seconds = time.perf_counter() - t0
    return {
        "batch": batch,
        "arch": "-".join(map(str, arch_of(width))),
        "sweep": "batch" if width is None else "width",
        "width": HIDDEN[0] if width is None else width,
        "steps": done,
        "samples_per_s": done * batch / seconds,
    }


# --------------------------------------------------------------------------- driver


def spawn(peer: str, args: argparse.Namespace, scaling: bool) -> dict:
    """Run one worker in a fresh Python process; return its JSON (or the failure)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        peer,
        "--seed",
        str(args.seed),
    ]
    if args.data_dir is not None:
        cmd += ["--data-dir", str(args.data_dir)]
    cmd += ["--quick"] * args.quick + ["--synthetic"] * args.synthetic
    cmd += ["--scaling-worker"] * scaling
    env = dict(os.environ)
    if args.threads:
        for var in THREAD_VARS:
            env[var] = str(args.threads)
    if peer in MPI_PEERS or peer == "allreduce":
        ranks = MPI_PEERS.get(peer, args.ranks)
        try:
            launcher = mpi_command(ranks, args.hostfile)
        except (ImportError, FileNotFoundError) as err:
            return {"peer": peer, "skipped": str(err)}
        cmd = [*launcher, *cmd]
        if not args.threads:  # the ranks share the cores: one share of them each
            from purenn.parallel import blas_threads

            env.update(dict.fromkeys(THREAD_VARS, str(blas_threads(ranks))))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "error": f"timed out after {WORKER_TIMEOUT} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == SKIPPED:
        return {"peer": peer, "skipped": lines[-1] if lines else "unavailable"}
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"peer": peer, "error": f"worker exited with {proc.returncode}:\n{tail}"}
    result = json.loads(lines[-1])
    result["load_before"] = load
    return result


def mpi_command(ranks: int, hostfile: Path | None = None) -> list[str]:
    """``mpiexec -n RANKS [-hostfile FILE]``, or ImportError / FileNotFoundError."""
    import importlib.util

    from purenn.parallel import mpiexec_path

    if importlib.util.find_spec("mpi4py") is None:
        raise ImportError("mpi4py is not installed (pip install -e '.[mpi]')")
    cmd = [mpiexec_path(), "-n", str(ranks)]
    return cmd + (["-hostfile", str(hostfile)] if hostfile else [])


def summarize(runs: list[dict], reference: str = "torch") -> dict:
    """Per peer: median samples/s, spread, ratio to ``reference`` (torch, or
    cnn_torch for the CNN), fraction of the GEMM bound, median epoch seconds and
    the largest peak RSS."""
    by_peer: dict[str, list[dict]] = {}
    for run in runs:
        by_peer.setdefault(run["peer"], []).append(run)
    summary = {}
    for peer, rs in by_peer.items():
        ok = [r for r in rs if "samples_per_s" in r]
        entry: dict = {"description": PEERS[peer], "rounds": len(ok)}
        if peer == "memory":
            mem = [r for r in rs if "peak_rss_mb" in r and "error" not in r]
            if mem:
                worst = max(mem, key=lambda r: r["peak_rss_mb"])
                entry.update({k: worst[k] for k in ("peak_rss_mb", "arrays_mb", "budget_mb")})
                entry["rss_before_fit_mb"] = worst["rss_before_fit_mb"]
        elif ok:
            sps = sorted(r["samples_per_s"] for r in ok)
            entry.update(
                dtype=ok[0]["dtype"],
                median=statistics.median(sps),
                min=sps[0],
                max=sps[-1],
                all=[r["samples_per_s"] for r in ok],
            )
            secs = [r["seconds"] for r in ok if "seconds" in r]
            rss = [r["peak_rss_mb"] for r in ok if "peak_rss_mb" in r]
            entry["epoch_s"] = statistics.median(secs) if secs else None
            entry["peak_rss_mb"] = max(rss) if rss else None
        for key in ("skipped", "error"):
            notes = [r[key] for r in rs if key in r]
            if notes:
                entry[key] = notes[-1]
        summary[peer] = entry
    torch_med = summary.get(reference, {}).get("median")
    bound = summary.get("gemm", {}).get("median")
    for entry in summary.values():
        if "median" in entry:
            entry["vs_torch"] = entry["median"] / torch_med if torch_med else None
            entry["of_bound"] = entry["median"] / bound if bound else None
    return summary


# The ratios behind issue 6's targets, and handopt's (the API-free loop) for scale.
PAIRED = (
    ("purenn", "torch"),
    ("purenn", "gemm"),
    ("purenn", "handopt"),
    ("handopt", "torch"),
    ("purenn_fit", "purenn"),
    ("purenn_f64", "tutorial_f64"),
    ("purenn_mpi2", "purenn"),
    ("purenn_mpi2_nocomm", "purenn"),
)
CNN_PAIRED = (("cnn_purenn_mpi2", "cnn_torch"), ("cnn_purenn", "cnn_torch"))


def paired_ratios(runs: list[dict], pairs=PAIRED) -> list[dict]:
    """Per pair (a, b): a's samples/s over b's *within* each round, then the median
    and range of those per-round ratios.

    The two peers of a round ran seconds apart, so a slow spell of a shared
    machine hits both; the ratio of the two medians (which the targets use)
    mixes rounds. Where the two disagree, the machine was drifting.
    """
    rate: dict[tuple[str, int], float] = {
        (r["peer"], r["round"]): r["samples_per_s"]
        for r in runs
        if "samples_per_s" in r and "round" in r
    }
    out = []
    for a, b in pairs:
        ratios = sorted(
            rate[(a, rnd)] / rate[(b, rnd)] for peer, rnd in rate if peer == a and (b, rnd) in rate
        )
        if ratios:
            out.append(
                {
                    "ratio": f"{a} / {b}",
                    "median": statistics.median(ratios),
                    "min": ratios[0],
                    "max": ratios[-1],
                    "rounds": len(ratios),
                }
            )
    return out


def targets(summary: dict) -> list[dict]:
    """Issue 6's targets, each measured from this run's medians (None: a peer is missing)."""

    def med(peer):
        return summary.get(peer, {}).get("median")

    def ratio(a, b):
        return med(a) / med(b) if med(a) and med(b) else None

    mem = summary.get("memory", {})
    rows = [
        ("purenn samples/s vs torch eager", ratio("purenn", "torch"), ">=", 1.3, "x"),
        ("purenn fraction of the GEMM-only bound", ratio("purenn", "gemm"), ">=", 0.65, ""),
        ("purenn_fit vs the bare purenn loop", ratio("purenn_fit", "purenn"), ">=", 0.95, "x"),
        ("purenn_mpi2 (2 ranks) vs one purenn", ratio("purenn_mpi2", "purenn"), ">=", 1, "x"),
        ("purenn float64 vs tutorial float64", ratio("purenn_f64", "tutorial_f64"), ">=", 0.9, "x"),
        (
            "peak RSS minus (train + test float32 arrays), MiB",
            mem["peak_rss_mb"] - mem["arrays_mb"] if "peak_rss_mb" in mem else None,
            "<=",
            100.0,
            "",
        ),
    ]
    out = []
    for name, value, op, goal, unit in rows:
        ok = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"target": name, "value": value, "op": op, "goal": goal, "unit": unit, "ok": ok})
    return out


def cnn_targets(summary: dict) -> list[dict]:
    """Issue 7's targets for ``--workload cnn`` (None: a peer is missing)."""
    pn_, th = summary.get("cnn_purenn", {}), summary.get("cnn_torch", {})
    slower = pn_["epoch_s"] / th["epoch_s"] if pn_.get("epoch_s") and th.get("epoch_s") else None
    mpi = summary.get("cnn_purenn_mpi2", {})
    mpi_slower = (
        mpi["epoch_s"] / th["epoch_s"] if mpi.get("epoch_s") and th.get("epoch_s") else None
    )
    rows = [
        ("cnn_purenn epoch time / cnn_torch epoch time", slower, "<=", 2.0, "x"),
        ("cnn_purenn_mpi2 (2 ranks) epoch time / cnn_torch's", mpi_slower, "<=", 1.0, "x"),
        ("cnn_purenn peak RSS, MiB", pn_.get("peak_rss_mb"), "<=", CNN_RSS_GOAL_MB, ""),
    ]
    out = []
    for name, value, op, goal, unit in rows:
        ok = None if value is None else value <= goal
        out.append({"target": name, "value": value, "op": op, "goal": goal, "unit": unit, "ok": ok})
    return out


def summarize_scaling(runs: list[dict]) -> list[dict]:
    """Median samples/s per (peer, batch, arch) over the rounds."""
    cells: dict[tuple, list[float]] = {}
    meta: dict[tuple, dict] = {}
    for run in runs:
        for p in run.get("points", []):
            key = (run["peer"], p["sweep"], p["batch"], p["arch"])
            cells.setdefault(key, []).append(p["samples_per_s"])
            meta[key] = p
    return [
        {
            "peer": key[0],
            "sweep": key[1],
            "batch": key[2],
            "arch": key[3],
            "width": meta[key]["width"],
            "median": statistics.median(v),
            "min": min(v),
            "max": max(v),
        }
        for key, v in cells.items()
    ]


# --------------------------------------------------------------------------- reports


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:,.1f}k"


def fmt_ratio(v: float | None, unit: str = "x") -> str:
    if v is None:
        return "-"
    return f"{v:.2f}{unit}" if unit == "x" else f"{100 * v:.0f}%"


def results_table(summary: dict) -> str:
    lines = [
        "| peer | what | samples/s (median) | spread (min - max) | vs torch | of GEMM bound |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for peer, entry in summary.items():
        if peer == "memory":
            continue
        if "median" not in entry:
            why = entry.get("skipped") or entry.get("error", "no result").splitlines()[0]
            lines.append(f"| {peer} | {entry['description']} | {why} | | | |")
            continue
        lines.append(
            f"| {peer} | {entry['description']} | {fmt_rate(entry['median'])} | "
            f"{fmt_rate(entry['min'])} - {fmt_rate(entry['max'])} | "
            f"{fmt_ratio(entry['vs_torch'])} | {fmt_ratio(entry['of_bound'], '%')} |"
        )
    return "\n".join(lines)


def cnn_table(summary: dict) -> str:
    """The CNN workload: epoch seconds, epoch time against torch's, peak RSS."""
    lines = [
        "| peer | what | epoch s (median) | samples/s (median) | spread (min - max) "
        "| epoch time vs torch | peak RSS, MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for peer, entry in summary.items():
        if "median" not in entry:
            why = entry.get("skipped") or entry.get("error", "no result").splitlines()[0]
            lines.append(f"| {peer} | {entry['description']} | {why} | | | | |")
            continue
        vs = fmt_ratio(1 / entry["vs_torch"]) if entry.get("vs_torch") else "-"
        lines.append(
            f"| {peer} | {entry['description']} | {entry['epoch_s']:.1f} | "
            f"{fmt_rate(entry['median'])} | {fmt_rate(entry['min'])} - {fmt_rate(entry['max'])} "
            f"| {vs} | {entry['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def paired_table(rows: list[dict]) -> str:
    lines = [
        "| per-round ratio | median | range (min - max) | rounds |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['ratio']} | {r['median']:.2f} | {r['min']:.2f} - {r['max']:.2f} | "
            f"{r['rounds']} |"
        )
    return "\n".join(lines)


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | measured | goal | result |", "| --- | ---: | ---: | --- |"]
    for r in rows:
        if r["value"] is None:
            value, result = "-", "not measured"
        else:
            value = (
                f"{r['value']:.0f}" if r["unit"] == "" and r["goal"] > 1 else f"{r['value']:.2f}"
            )
            value += r["unit"]
            result = "**pass**" if r["ok"] else "**FAIL**"
        lines.append(f"| {r['target']} | {value} | {r['op']} {r['goal']:g}{r['unit']} | {result} |")
    return "\n".join(lines)


def memory_line(summary: dict) -> str:
    mem = summary.get("memory", {})
    if "peak_rss_mb" not in mem:
        return "Memory: not measured" + (
            f" ({mem['error'].splitlines()[0]})" if "error" in mem else ""
        )
    return (
        f"Memory (`memory` worker: load MNIST, scale to float32, `purenn.fit` one epoch with "
        f"validation on the test set): peak RSS {mem['peak_rss_mb']:.0f} MiB; the float32 train "
        f"and test arrays are {mem['arrays_mb']:.0f} MiB, so the budget is "
        f"{mem['budget_mb']:.0f} MiB; RSS just before `fit` was {mem['rss_before_fit_mb']:.0f} MiB."
    )


def scaling_table(cells: list[dict]) -> str:
    peers = [p for p in SCALING_PEERS if any(c["peer"] == p for c in cells)]
    head = " | ".join(f"{p} samples/s" for p in peers)
    lines = [
        f"| sweep | network | batch | {head} | purenn vs torch | purenn of bound |",
        "| --- | --- | ---: |" + " ---: |" * len(peers) + " ---: | ---: |",
    ]
    for batch, width in scaling_points():
        sweep = "batch" if width is None else "width"
        arch = "-".join(map(str, arch_of(width)))
        row = {
            c["peer"]: c["median"]
            for c in cells
            if (c["sweep"], c["batch"], c["arch"]) == (sweep, batch, arch)
        }
        pn_, th, gm = row.get("purenn"), row.get("torch"), row.get("gemm")
        rates = " | ".join(fmt_rate(row.get(p)) for p in peers)
        vs = fmt_ratio(pn_ / th) if pn_ and th else "-"
        ob = fmt_ratio(pn_ / gm, "%") if pn_ and gm else "-"
        lines.append(f"| {sweep} | {arch} | {batch} | {rates} | {vs} | {ob} |")
    return "\n".join(lines)


def plot_scaling(cells: list[dict], path: Path) -> None:
    """Two panels (batch sweep, width sweep) of median samples/s, log scales."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    styles = {
        "purenn": ("tab:blue", "o", "-", "purenn (public API)"),
        "torch": ("tab:orange", "s", "-", "PyTorch eager"),
        "gemm": ("0.4", "", "--", "GEMM-only bound"),
    }
    panels = (
        ("batch", "batch size (network 784-128-64-10)"),
        ("width", "hidden width W (network 784-W-W/2-10, batch 128)"),
    )
    for ax, (sweep, xlabel) in zip(fig.subplots(1, 2), panels, strict=True):
        ticks: np.ndarray = np.array([])
        for peer, (color, marker, ls, label) in styles.items():
            pts = sorted(
                (c["batch"] if sweep == "batch" else c["width"], c["median"], c["min"], c["max"])
                for c in cells
                if c["peer"] == peer and c["sweep"] == sweep
            )
            if not pts:
                continue
            xs, med, lo, hi = (np.array(v, dtype=float) for v in zip(*pts, strict=True))
            ax.plot(xs, med, color=color, marker=marker, linestyle=ls, label=label)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.15, linewidth=0)
            ticks = xs
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ticks, [str(int(v)) for v in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("samples / s (median; band: min - max)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Training throughput, float32, one process per peer per round")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def machine_facts(runs: list[dict], threads: int | None) -> dict:
    """Cores, platform, library versions and BLAS kernels as the workers saw them."""
    facts = {
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "threads": threads,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for run in runs:
        facts.setdefault("versions", {}).update(run.get("versions", {}))
        if run.get("peer") in ("gemm", "cnn_purenn") and "blas" in run:
            facts["numpy_blas"] = run["blas"]
    return facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def facts_text(facts: dict) -> str:
    v = facts.get("versions", {})
    blas = "; ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')} kernel, "
        f"{b.get('num_threads')} threads)"
        for b in facts.get("numpy_blas", [])
        if "internal_api" in b
    )
    env = facts["openblas_env"] or "none set"
    load = ", ".join(f"{x:.2f}" for x in facts["load_average_at_start"] or [])
    return (
        f"Machine: {facts['cpu_count']} cores ({facts['cpu']}), {facts['platform']}, "
        f"Python {facts['python']}; numpy {v.get('numpy', '?')} with {blas or 'BLAS unknown'}; "
        f"torch {v.get('torch', '-')}; scikit-learn {v.get('sklearn', '-')}; "
        f"jax {v.get('jax', 'not installed')}; purenn {v.get('purenn', '?')}. "
        f"Threads per worker: {facts.get('threads') or 'library default (all cores)'}. "
        f"OPENBLAS_* variables: {env}. "
        f"Load average at start: {load}."
    )


def report(results: dict) -> str:
    """The generated Markdown: command, machine, results, targets, memory."""
    if results.get("workload", {}).get("name") == "cnn":
        return cnn_report(results)
    parts = [
        *_report_head(results),
        results_table(results["summary"]),
        "",
        targets_table(results["targets"]),
        "",
        memory_line(results["summary"]),
    ]
    if results.get("paired"):
        parts += [
            "",
            "The targets are ratios of the medians above. The same ratios taken within "
            "each round (peers seconds apart), then their median and range, show how far "
            "the machine drifted during the run:",
            "",
            paired_table(results["paired"]),
        ]
    return "\n".join(parts)


def cnn_report(results: dict) -> str:
    """The generated Markdown of ``--workload cnn``: command, machine, table, targets."""
    parts = [
        *_report_head(results),
        cnn_table(results["summary"]),
        "",
        targets_table(results["targets"]),
    ]
    if results.get("paired"):
        parts += [
            "",
            "The same ratios of samples/s taken within each round (peers seconds apart):",
            "",
            paired_table(results["paired"]),
        ]
    return "\n".join(parts)


def _report_head(results: dict) -> list[str]:
    """The lines both reports open with: the command, its date, the machine."""
    return [
        f"Command: `{results['command']}` ({results['rounds']} rounds, "
        f"{time.strftime('%Y-%m-%d', time.localtime(results['started']))}).",
        "",
        facts_text(results["machine"]),
        "",
    ]


def scaling_report(results: dict, figure: str) -> str:
    return "\n".join(
        [
            f"Command: `{results['command']}` ({results['rounds']} rounds; each point times "
            f"{SCALING_SECONDS} s of steps after 3 warm-up steps).",
            "",
            scaling_table(results["scaling"]),
            "",
            f"![samples/s against batch size and hidden width]({figure})",
        ]
    )


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(
            f"{DOCS} has no section markers {start} ... {end}; add them where the "
            "generated text should go"
        )
    return text[: i + len(start)] + "\n" + body + "\n" + text[j:]


def _write_text(path: Path, text: str) -> None:
    from purenn.fileio import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text))


def update_docs(results: dict) -> None:
    text = DOCS.read_text()
    if results.get("workload", {}).get("name") == "cnn":
        _write_text(DOCS, replace_section(text, "cnn", cnn_report(results)))
        return
    text = replace_section(text, "results", report(results))
    if results.get("scaling"):
        plot_scaling(results["scaling"], FIGURE)
        rel = FIGURE.relative_to(DOCS.parent).as_posix()
        text = replace_section(text, "scaling", scaling_report(results, rel))
    _write_text(DOCS, text)


# --------------------------------------------------------------------------- profile


def profile_purenn(args: argparse.Namespace) -> None:
    """Profile purenn's public-API epoch in this process (pyinstrument, else cProfile)."""
    x, y = load_data(args.data_dir, args.seed, STEPS * BATCH, np.float32, args.synthetic)
    steps = QUICK_STEPS if args.quick else STEPS
    step = make_purenn(x, y, arch_of(None), BATCH, np.float32, args.seed)
    for i in range(WARMUP):
        step(i)
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(lambda: [step(i) for i in range(steps)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    profiler = Profiler(interval=0.0002)
    with profiler:
        for i in range(steps):
            step(i)
    print(profiler.output_text(unicode=True, color=False, show_all=False))


# --------------------------------------------------------------------------- main


def parse_peers(text: str) -> list[str]:
    if text.strip() == "all":
        return ["all"]  # every peer of --workload, resolved in main
    peers = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown or not peers:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(PEERS)}"
        )
    return peers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=(
            "Time one epoch of MNIST MLP training (784-128-64-10, batch 128, SGD lr 0.1) "
            "for purenn and its peers, each in a fresh process, interleaved over rounds; "
            "--workload cnn times a CNN (conv32-pool-conv64-pool-fc128-10, batch 128, "
            "SGD lr 0.05) in purenn and PyTorch instead."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of all peers (medians over them)")
    p.add_argument(
        "--peers",
        type=parse_peers,
        default="all",
        metavar="A,B,...",
        help="'all' (every peer of --workload) or a comma-separated subset of: "
        f"{', '.join(WORKLOADS['mlp'])} (mlp); {', '.join(WORKLOADS['cnn'])} (cnn)",
    )
    p.add_argument(
        "--workload",
        choices=list(WORKLOADS),
        default="mlp",
        help="mlp: the MLP epoch of issue 6 against all its peers; cnn: the CNN epoch of "
        "issue 7 (cnn_purenn vs cnn_torch: epoch seconds, ratio, peak RSS; --update-docs "
        "writes the cnn section; no --scaling or --profile)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every worker's BLAS and torch (sets OPENBLAS/OMP/MKL_NUM_THREADS); "
        "None: the libraries' own choice, all cores (torch: os.cpu_count())",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data shuffle and the inits")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding MNIST (None: the loaders' search: $PURENN_DATA, the cache)",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write all results as JSON to PATH; '--json' alone writes JSON to stdout "
        "(the table then goes to stderr)",
    )
    p.add_argument("--scaling", action="store_true", help="also sweep batch size and hidden width")
    p.add_argument(
        "--update-docs",
        action="store_true",
        help=f"rewrite the generated sections of {DOCS.relative_to(ROOT)} "
        f"(and {FIGURE.relative_to(ROOT)} with --scaling)",
    )
    p.add_argument(
        "--figure", type=Path, default=None, help="write the scaling plot here (with --scaling)"
    )
    p.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: rebuild the tables and plot (--figure, --update-docs) "
        "from a saved --json file",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_STEPS} timed steps per peer, not benchmark numbers",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile purenn's public-API epoch in this process and print where time goes",
    )
    p.add_argument(
        "--allreduce",
        action="store_true",
        help="time MPI allreduces (1 KiB - 16 MiB) on --ranks ranks and one process's step of "
        "each workload, then print the data-parallel speedup model for 2-64 machines",
    )
    p.add_argument("--ranks", type=int, default=2, help="ranks for --allreduce")
    p.add_argument(
        "--hostfile",
        type=Path,
        default=None,
        help="MPI host file for --allreduce across machines (passed as mpiexec -hostfile)",
    )
    p.add_argument(
        "--net-latency-us",
        type=float,
        default=30.0,
        help="the network's one-way latency per message assumed by the model (10 GbE, TCP)",
    )
    p.add_argument(
        "--net-gbit",
        type=float,
        default=10.0,
        help="the network's bandwidth in Gbit/s assumed by the model",
    )
    p.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=[*PEERS, "allreduce"], help=argparse.SUPPRESS)
    p.add_argument("--scaling-worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.worker:
        try:
            result = run_worker(args)
        except PeerUnavailable as err:
            print(str(err))
            return SKIPPED
        if result is not None:  # the other ranks of an MPI worker leave it to rank 0
            print(json.dumps(result))
        return 0
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1; got {args.rounds}")
    if args.peers == ["all"]:
        args.peers = list(WORKLOADS[args.workload])
    foreign = [p for p in args.peers if p not in WORKLOADS[args.workload]]
    if foreign:
        raise SystemExit(
            f"peer(s) {', '.join(foreign)} do not belong to --workload {args.workload} "
            f"(its peers: {', '.join(WORKLOADS[args.workload])}); pick the other --workload"
        )
    if args.workload == "cnn" and (args.scaling or args.profile):
        raise SystemExit("--scaling and --profile are for the MLP workload: drop them")
    if args.quick and args.update_docs:
        raise SystemExit("--quick gives smoke-test numbers, not results: drop --update-docs")
    if not args.synthetic and not args.replot:
        check_data(args.data_dir)
    if args.profile:
        profile_purenn(args)
        return 0
    if args.allreduce:
        return run_allreduce(args)
    if args.replot:
        results = json.loads(args.replot.read_text())
    else:
        results = run_benchmark(args)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(report(results), file=out)
    if results.get("scaling"):
        print("\n" + scaling_table(results["scaling"]), file=out)
        if args.figure:
            plot_scaling(results["scaling"], args.figure)
            print(f"wrote {args.figure}", file=sys.stderr)
    if args.json:
        text = json.dumps(results, indent=1)
        if to_stdout:
            print(text)
        else:
            _write_text(Path(args.json), text + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
    if args.update_docs:
        update_docs(results)
        print(f"updated {DOCS}", file=sys.stderr)
    failed = [p for p, e in results["summary"].items() if "error" in e]
    if failed:
        print(f"failed peers: {', '.join(failed)} (see the table)", file=sys.stderr)
    return 1 if failed else 0


def check_data(data_dir: str | None) -> None:
    """Find MNIST once here (downloading it if the loaders can), so workers need not."""
    import purenn.datasets

    try:
        purenn.datasets.load_mnist(data_dir)
    except (purenn.datasets.DataNotFoundError, purenn.datasets.CorruptFileError) as err:
        raise SystemExit(f"bench.py needs MNIST: {err}") from None


def run_benchmark(args: argparse.Namespace) -> dict:
    started = time.time()
    runs: list[dict] = []
    scaling_runs: list[dict] = []
    unavailable: set[str] = set()

    def run_one(peer: str, r: int, scaling: bool) -> None:
        if peer in unavailable:
            return
        t0 = time.perf_counter()
        res = spawn(peer, args, scaling=scaling)
        res["round"] = r
        (scaling_runs if scaling else runs).append(res)
        if "skipped" in res:
            unavailable.add(peer)
        if scaling:
            what = f"scaling {peer:6s} {'ok' if 'points' in res else describe(res)}"
        else:
            load = res.get("load_before") or 0
            what = f"{peer:13s} {describe(res)} (load {load:.1f})"
        print(
            f"round {r}/{args.rounds} {what} [{time.perf_counter() - t0:.1f} s]",
            file=sys.stderr,
            flush=True,
        )

    for r in range(1, args.rounds + 1):
        for peer in args.peers:
            run_one(peer, r, scaling=False)
        if args.scaling:
            for peer in SCALING_PEERS:
                run_one(peer, r, scaling=True)
    summary = summarize(runs, REFERENCE[args.workload])
    if args.workload == "cnn":
        workload = {
            "name": "cnn",
            "network": "conv32(3x3)-maxpool2-conv64(3x3)-maxpool2-flatten-128-10",
            "lr": CNN_LR,
        }
    else:
        workload = {"name": "mlp", "network": "-".join(map(str, arch_of(None))), "lr": LR}
    return {
        "command": " ".join(["python scripts/bench.py", *args.argv]),
        "started": started,
        "rounds": args.rounds,
        "quick": args.quick,
        "workload": {
            **workload,
            "batch": BATCH,
            "steps": QUICK_STEPS if args.quick else STEPS,
            "warmup_steps": QUICK_WARMUP if args.quick else WARMUP,
            "data": "synthetic" if args.synthetic else "MNIST train, pre-shuffled",
            "seed": args.seed,
        },
        "machine": machine_facts(runs + scaling_runs, args.threads),
        "summary": summary,
        "targets": cnn_targets(summary) if args.workload == "cnn" else targets(summary),
        "paired": paired_ratios(runs, CNN_PAIRED if args.workload == "cnn" else PAIRED),
        "scaling": summarize_scaling(scaling_runs),
        "runs": runs,
        "scaling_runs": scaling_runs,
    }


# --------------------------------------------------------------------------- allreduce


MODEL_MACHINES = (2, 4, 8, 16, 32, 64)


def run_allreduce(args: argparse.Namespace) -> int:
    """``--allreduce``: time allreduces and both workloads' one-process step, print
    the speedup model (and write ``--json``)."""
    started = time.time()
    ar = spawn("allreduce", args, scaling=False)
    print(f"allreduce on {args.ranks} ranks: {describe_allreduce(ar)}", file=sys.stderr)
    steps = {}
    for peer in ("purenn", "cnn_purenn"):
        res = spawn(peer, args, scaling=False)
        print(f"{peer}: {describe(res)}", file=sys.stderr)
        steps[peer] = res
    results = {
        "command": " ".join(["python scripts/bench.py", *args.argv]),
        "started": started,
        "quick": args.quick,
        "allreduce": ar,
        "steps": steps,
        "network": {"latency_us": args.net_latency_us, "gbit": args.net_gbit},
    }
    if "points" in ar:
        results["fit"] = fit_allreduce(ar["points"], ar["ranks"])
        results["model"] = speedup_model(results)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(allreduce_report(results), file=out)
    if args.json:
        text = json.dumps(results, indent=1)
        if to_stdout:
            print(text)
        else:
            _write_text(Path(args.json), text + "\n")
            print(f"wrote {args.json}", file=sys.stderr)
    return 0 if "points" in ar else 1


def describe_allreduce(res: dict) -> str:
    if "points" in res:
        return ", ".join(f"{p['bytes'] // 1024} KiB {p['median_us']:.0f} us" for p in res["points"])
    return describe(res)


def ring_seconds(p: int, nbytes: float, latency_s: float, bytes_per_s: float) -> float:
    """A ring allreduce over ``p`` ranks: ``2(p-1)`` messages in sequence, each
    rank sending and receiving ``2(p-1)/p`` of the buffer."""
    return 2 * (p - 1) * latency_s + 2 * (p - 1) / p * nbytes / bytes_per_s


def fit_allreduce(points: list[dict], ranks: int) -> dict:
    """Latency and bandwidth of the ring model from the measured times of
    ``ranks`` ranks: the latency from the smallest buffer (all latency), the
    bandwidth fitted (least squares through the latency) to buffers of 64 KiB
    and more."""
    smallest = min(points, key=lambda p: p["bytes"])
    latency = smallest["median_us"] * 1e-6 / (2 * (ranks - 1))
    big = [p for p in points if p["bytes"] >= 64 * 1024]
    nbytes = np.array([p["bytes"] for p in big], dtype=float) * 2 * (ranks - 1) / ranks
    secs = np.array([p["median_us"] for p in big], dtype=float) * 1e-6 - 2 * (ranks - 1) * latency
    per_byte = float(nbytes @ secs / (nbytes @ nbytes))
    return {"latency_us": latency * 1e6, "gbyte_per_s": 1 / per_byte / 1e9}


def speedup_model(results: dict) -> list[dict]:
    """Per workload and machine count: communication per step, the allreduce's
    modelled time over the assumed network, and the speedup of data-parallel
    training over one machine, weak (each machine keeps batch 128) and strong
    (the global batch stays 128, split p ways, compute assumed to shrink as 1/p)."""
    net = results["network"]
    latency, bandwidth = net["latency_us"] * 1e-6, net["gbit"] * 1e9 / 8
    rows = []
    for peer, floats in (("purenn", None), ("cnn_purenn", 225_034)):
        step = results["steps"].get(peer, {})
        if "seconds" not in step:
            continue
        if floats is None:
            floats = sum(a * b + b for a, b in itertools.pairwise(arch_of(None)))
        nbytes = 4 * (floats + 1)
        t_c = step["seconds"] / step["steps"]
        for p in MODEL_MACHINES:
            t_ar = ring_seconds(p, nbytes, latency, bandwidth)
            rows.append(
                {
                    "workload": "MLP" if peer == "purenn" else "CNN",
                    "machines": p,
                    "bytes_sent_per_rank": 2 * (p - 1) / p * nbytes,
                    "compute_ms": t_c * 1e3,
                    "allreduce_ms": t_ar * 1e3,
                    "weak_speedup": p * t_c / (t_c + t_ar),
                    "strong_speedup": t_c / (t_c / p + t_ar),
                }
            )
    return rows


def allreduce_report(results: dict) -> str:
    ar = results["allreduce"]
    lines = [f"Command: `{results['command']}`.", ""]
    if "points" not in ar:
        return "\n".join([*lines, f"allreduce: {describe(ar)}"])
    lines += [
        f"Allreduce, {ar['ranks']} ranks on {ar['hosts']} host(s), {ar['mpi']['library']}, "
        f"mpi4py {ar['mpi']['mpi4py']}: float32 sum, in place, median per call.",
        "",
        "| buffer | floats | median us | GB/s (buffer / time) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for p in ar["points"]:
        size = p["bytes"]
        shown = f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 1024:.1f} KiB"
        lines.append(
            f"| {shown} | {p['floats']:,} | {p['median_us']:.1f} | "
            f"{size / (p['median_us'] * 1e-6) / 1e9:.2f} |"
        )
    fit = results["fit"]
    net = results["network"]
    lines += [
        "",
        f"Ring model fitted to these points: latency {fit['latency_us']:.1f} us per message, "
        f"bandwidth {fit['gbyte_per_s']:.2f} GB/s (this machine's shared memory). The model "
        f"below assumes a network of {net['gbit']:g} Gbit/s and {net['latency_us']:g} us per "
        "message instead, one rank per machine, each machine computing one process's step "
        "as measured here:",
        "",
        "| workload | machines | sent per rank per step | compute ms (batch 128) "
        "| allreduce ms | weak-scaling speedup | strong-scaling speedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["model"]:
        lines.append(
            f"| {r['workload']} | {r['machines']} | {r['bytes_sent_per_rank'] / 2**20:.2f} MiB "
            f"| {r['compute_ms']:.2f} | {r['allreduce_ms']:.2f} | {r['weak_speedup']:.1f}x "
            f"| {r['strong_speedup']:.1f}x |"
        )
    return "\n".join(lines)


def describe(res: dict) -> str:
    if "samples_per_s" in res:
        return f"{res['samples_per_s'] / 1000:8.1f}k samples/s"
    if "peak_rss_mb" in res and "error" not in res:
        return f"peak RSS {res['peak_rss_mb']:.0f} MiB"
    if "skipped" in res:
        return f"skipped: {res['skipped']}"
    return "FAILED: " + res.get("error", "?").replace("\n", "\n    ")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
