"""Where one training step's time goes, operation by operation (issue 6).

A sampling profiler sees the matrix products and little else; this script
reads the clock between the NumPy operations of one SGD step instead. It runs
the step of ``scripts/bench.py``'s ``handopt`` peer (purenn's arithmetic, the
same operations in the same order, with no API around them) on the benchmark's
workload (MNIST 784-128-64-10, batch 128, lr 0.1), one warm-up epoch and then
``--epochs`` timed ones, and prints each operation's median time per step,
grouped into matrix products and element-wise work::

    python scripts/profile_step.py                 # 3 timed epochs, a table on stdout
    python scripts/profile_step.py --json ops.json # the medians as JSON too

The clock reads add about 0.1 us per operation. ``tests/test_bench.py`` checks
that this instrumented step gives the same losses as ``handopt``, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # the benchmark's workload and data loader


def make_timed_step(x, y, arch, batch, dtype, seed) -> Callable:
    """``handopt``'s step with ``mark(label, kind)`` after each operation.

    Returns ``step(i, mark) -> loss``; ``mark`` is called with a label and
    ``"matmul"`` or ``"elementwise"`` once the operation has run.
    """
    import purenn as pn

    layers = [pn.Dense(units, "relu") for units in arch[1:-1]] + [pn.Dense(arch[-1], "softmax")]
    init = pn.init(pn.Network(arch[0], layers), rng=seed, dtype=dtype)
    names = [name for name in init if name != pn.SPEC_KEY]
    W = [init[name]["w"] for name in names]
    B = [init[name]["b"] for name in names]
    k, last = arch[-1], len(W) - 1
    base = np.arange(0, batch * k, k)

    def step(i: int, mark: Callable[[str, str], None]) -> float:
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        acts = [xb]
        for j in range(last + 1):
            z = acts[-1] @ W[j]
            mark(f"forward {j}: a @ w {acts[-1].shape}x{W[j].shape}", "matmul")
            z += B[j]
            mark(f"forward {j}: + b", "elementwise")
            if j < last:
                acts.append(np.maximum(z, 0, out=z))
                mark(f"forward {j}: ReLU", "elementwise")
        shifted = z - z.ravel()[base + z.argmax(axis=1)][:, None]
        mark("loss: row max shifted out", "elementwise")
        e = np.exp(shifted)
        s = np.add.reduce(e, axis=1, keepdims=True)
        mark("loss: exp, row sums", "elementwise")
        at_label = base + yb
        lse, at = np.log(s), shifted.ravel()[at_label]
        loss = (float(np.add.reduce(lse, axis=None)) - float(np.add.reduce(at))) / batch
        mark("loss: value", "elementwise")
        delta = np.divide(e, s, out=e)
        delta.ravel()[at_label] -= 1.0
        delta *= 1.0 / batch
        mark("loss: gradient", "elementwise")
        for j in range(last, -1, -1):
            gw = acts[j].T @ delta
            mark(f"backward {j}: dw = a.T @ dz", "matmul")
            gb = np.add.reduce(delta, axis=0)
            mark(f"backward {j}: db = sum of dz", "elementwise")
            if j > 0:
                dx = delta @ W[j].T
                mark(f"backward {j}: dx = dz @ w.T", "matmul")
                delta = np.multiply(dx, acts[j] > 0, out=dx)
                mark(f"backward {j}: ReLU derivative", "elementwise")
            for params, g, leaf in ((W, gw, "w"), (B, gb, "b")):
                new = np.multiply(g, -bench.LR)
                new += params[j]
                params[j] = new
                mark(f"update {j}: {leaf} - lr * d{leaf} {g.shape}", "elementwise")
        return loss

    return step


def profile(x, y, epochs: int) -> dict:
    """Median microseconds per step of every operation, over ``epochs`` timed epochs."""
    steps = x.shape[0] // bench.BATCH
    step = make_timed_step(x, y, bench.arch_of(None), bench.BATCH, np.float32, 0)
    times: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    totals: list[float] = []
    clock = time.perf_counter_ns
    stamps: list[tuple[str, str, int]] = []

    def mark(label: str, kind: str) -> None:
        stamps.append((label, kind, clock()))

    for epoch in range(epochs + 1):  # epoch 0 warms up
        for i in range(steps):
            stamps.clear()
            start = clock()
            step(i, mark)
            if epoch == 0:
                continue
            before = start
            for label, kind, at in stamps:
                times[label].append((at - before) / 1e3)
                kinds[label] = kind
                before = at
            totals.append((before - start) / 1e3)
    ops = [
        {"op": label, "kind": kinds[label], "us": statistics.median(values)}
        for label, values in times.items()
    ]
    step_us = statistics.median(totals)
    return {"epochs": epochs, "steps_per_epoch": steps, "step_us": step_us, "ops": ops}


def table(result: dict) -> str:
    lines = ["| operation | kind | median us per step |", "| --- | --- | ---: |"]
    lines += [f"| {op['op']} | {op['kind']} | {op['us']:.1f} |" for op in result["ops"]]
    for kind in ("matmul", "elementwise"):
        total = sum(op["us"] for op in result["ops"] if op["kind"] == kind)
        lines.append(f"| **all {kind}** | | **{total:.1f}** |")
    lines.append(f"| **step (median of totals)** | | **{result['step_us']:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    parser.add_argument("--data-dir", help="folder holding MNIST (else $PURENN_DATA, the cache)")
    parser.add_argument("--json", metavar="PATH", help="also write the medians as JSON")
    parser.add_argument(
        "--synthetic", action="store_true", help="random data of the same shapes (a smoke run)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1; got {args.epochs}")
    if not args.synthetic:
        bench.check_data(args.data_dir)  # a clear message when MNIST is missing
    n = bench.STEPS * bench.BATCH
    x, y = bench.load_data(args.data_dir, 0, n, np.float32, args.synthetic)
    result = profile(x, y, args.epochs)
    print(table(result))
    if args.json:
        from purenn.fileio import atomic_write

        text = json.dumps(result, indent=1) + "\n"
        atomic_write(args.json, lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
