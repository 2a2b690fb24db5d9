"""Compare two versions of purenn on the MLP workload of scripts/bench.py, process by process.

    git worktree add /tmp/purenn-a HEAD~1          # or: git archive REV purenn | tar -x -C DIR
    python scripts/ab_purenn.py /tmp/purenn-a . --rounds 10

Each of A and B is a folder holding a ``purenn`` package. Every round runs one
fresh worker process per version (with that folder first on ``PYTHONPATH``)
and one running the ``handopt`` loop, each timing one epoch of the benchmark's
public-API loop after 20 warm-up steps. On a noisy 2-core machine single
processes differ by 10% or more, so the result that counts is the median of
the *paired* ratios B/A (the two processes of one round ran seconds apart),
printed with every round's ratio. Differences under about 2% need 10 rounds or
more to show.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent


def worker(kind: str, data_dir: str | None) -> None:
    """Time one epoch of ``kind`` ("purenn" or "handopt") and print one JSON line."""
    import numpy as np

    sys.path.insert(0, str(SCRIPTS))
    import bench

    import purenn

    x, y = bench.load_data(data_dir, 0, bench.STEPS * bench.BATCH, np.float32, False)
    make = bench.make_handopt if kind == "handopt" else bench.make_purenn
    step = make(x, y, bench.arch_of(None), bench.BATCH, np.float32, 0)
    for i in range(bench.WARMUP):
        step(i)
    t0 = time.perf_counter()
    for i in range(bench.STEPS):
        step(i)
    seconds = time.perf_counter() - t0
    samples_per_s = bench.STEPS * bench.BATCH / seconds
    print(json.dumps({"samples_per_s": samples_per_s, "purenn": purenn.__file__}))


def run(version_dir: Path, kind: str, data_dir: str | None) -> float:
    env = dict(os.environ, PYTHONPATH=str(version_dir))
    cmd = [sys.executable, __file__, "--worker", kind]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({version_dir}, {kind}):\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(result["purenn"]).resolve().is_relative_to(version_dir.resolve()):
        raise SystemExit(
            f"the worker for {version_dir} imported another purenn: {result['purenn']}"
        )
    return result["samples_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, nargs="?", help="folder holding version A's purenn package")
    parser.add_argument("b", type=Path, nargs="?", help="folder holding version B's purenn package")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of A, B, handopt")
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST (else $PURENN_DATA)")
    parser.add_argument("--worker", choices=("purenn", "handopt"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data_dir)
        return 0
    if args.a is None or args.b is None:
        parser.error("give the two folders A and B, each holding a purenn package")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1; got {args.rounds}")
    for folder in (args.a, args.b):
        if not (folder / "purenn" / "__init__.py").is_file():
            parser.error(f"{folder} holds no purenn package (expected {folder}/purenn/__init__.py)")
    runs: dict[str, list[float]] = {"A": [], "B": [], "handopt": []}
    for r in range(1, args.rounds + 1):
        runs["A"].append(run(args.a, "purenn", args.data_dir))
        runs["B"].append(run(args.b, "purenn", args.data_dir))
        runs["handopt"].append(run(args.a, "handopt", args.data_dir))
        print(
            f"round {r}/{args.rounds}: A {runs['A'][-1] / 1e3:.1f}k  B {runs['B'][-1] / 1e3:.1f}k  "
            f"handopt {runs['handopt'][-1] / 1e3:.1f}k samples/s",
            file=sys.stderr,
        )
    for name, values in runs.items():
        print(f"{name:8s} median {statistics.median(values) / 1e3:.1f}k samples/s")
    paired = [b / a for a, b in zip(runs["A"], runs["B"], strict=True)]
    print(
        f"B/A paired ratio: median {statistics.median(paired):.3f} "
        f"(rounds: {', '.join(f'{p:.3f}' for p in paired)})"
    )
    for name in ("A", "B"):
        ratio = statistics.median(v / h for v, h in zip(runs[name], runs["handopt"], strict=True))
        print(f"{name}/handopt paired ratio: median {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
