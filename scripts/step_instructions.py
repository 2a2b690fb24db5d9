"""The benchmark step's cost in CPU instructions: counted, not timed (issue 6).

On a shared machine the clock cannot resolve a difference of a few per cent
between two training loops: single processes of the same code vary by 10% or
more. An instruction count can: it is the same in every run. This script runs
each peer's training loop from ``scripts/bench.py`` (the benchmark's MLP
784-128-64-10, batch 128, lr 0.1, on random data of MNIST's shapes) under
valgrind's callgrind, once with ``--few`` steps and once with ``--many``, and
divides the difference by ``many - few``: start-up, data and warm-up cancel,
and what is left is one training step (with ``PYTHONHASHSEED=0``, runs of the
same code agree to within 3,000 instructions per step, 0.03%). The count is
split by library: BLAS (the matrix products), NumPy (element-wise work and
array bookkeeping), the Python interpreter (the code around them) and the C
library (memset, memcpy, malloc)::

    python scripts/step_instructions.py                          # handopt, purenn, gemm, tutorial
    python scripts/step_instructions.py --peers purenn,handopt --json counts.json

``purenn`` against ``handopt`` (purenn's arithmetic with no API around it) is
the price of purenn's API in instructions. BLAS runs single-threaded here
(valgrind runs one thread at a time anyway), on an AVX2 kernel (valgrind does
not emulate AVX-512, and OpenBLAS sees that). The counts say nothing about
threading, caches or memory traffic: instructions are not time. A GEMM
instruction does 8 multiply-adds at once, an interpreter instruction little,
so the API's share of the time is larger than its share of the instructions.
Needs valgrind (Debian: ``apt-get install valgrind``). Each callgrind run
takes 20-60 s; runs go in parallel on all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # the benchmark's workload and its loop peers

PEERS = ("handopt", "purenn", "gemm", "tutorial")
WARMUP = 5  # steps before the counted ones, in both runs
DATA_BATCHES = 64  # the same data in both runs (its generation costs instructions too)
GROUPS = ("BLAS", "NumPy", "Python", "C library", "other")


def library_group(objfile: str) -> str:
    """Which of :data:`GROUPS` a shared object's instructions count towards."""
    name = objfile.lower()
    base = Path(name).name
    if "openblas" in name or "libblas" in base or "mkl" in base:
        return "BLAS"
    if "/numpy/" in name:
        return "NumPy"
    if base.startswith(("libpython", "python")):
        return "Python"
    if base.startswith(("libc.", "libc-", "ld-linux", "libm.", "libm-")):
        return "C library"
    return "other"


def parse_callgrind(path: Path) -> tuple[int, Counter]:
    """Total instructions of a callgrind output file and its self cost per object file.

    The format (valgrind's callgrind manual): ``ob=`` and ``fn=`` lines set the
    current object and function, with names compressed as ``(id) name`` on first
    use and ``(id)`` after; a cost line is a position then the cost; the cost
    line after a ``calls=`` line is the inclusive cost of that call, already
    counted in the callee, so it is skipped. Checked: the self costs add up to
    the file's ``totals:`` line.
    """
    names: dict[str, str] = {}
    obj, skip_next, total = "?", False, None
    by_object: Counter = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line[:1]
            if head.isdigit() or head in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                fields = line.split()
                if len(fields) > 1:
                    by_object[obj] += int(fields[1])
            elif line.startswith(("ob=", "cob=")):
                name = _resolve(names, line.split("=", 1)[1].strip())
                if line.startswith("ob="):
                    obj = name
            elif line.startswith("calls="):
                skip_next = True
            elif line.startswith("totals:"):
                total = int(line.split()[1])
    counted = sum(by_object.values())
    if total is None:
        raise ValueError(f"{path}: no 'totals:' line; is it a complete callgrind output file?")
    if counted != total:
        raise ValueError(f"{path}: self costs add up to {counted:,}, but totals: says {total:,}")
    return total, by_object


def _resolve(names: dict[str, str], text: str) -> str:
    """A compressed object name: ``(id) name`` defines the id, ``(id)`` refers to it."""
    m = re.fullmatch(r"\((\d+)\)(?:\s+(.*))?", text)
    if not m:
        return text
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), text)


def by_group(by_object: Counter) -> dict[str, int]:
    groups = dict.fromkeys(GROUPS, 0)
    for obj, cost in by_object.items():
        groups[library_group(obj)] += cost
    return groups


def run_worker(peer: str, steps: int, seed: int) -> None:
    """The counted program: build ``peer``'s loop, ``WARMUP`` steps, then ``steps``."""
    x, y = bench.load_data(None, seed, DATA_BATCHES * bench.BATCH, np.float32, True)
    make, dtype = bench.LOOP_PEERS[peer]
    step = make(x, y, bench.arch_of(None), bench.BATCH, dtype, seed)
    for i in range(WARMUP + steps):
        step(i % DATA_BATCHES)


def count(peer: str, steps: int, seed: int, folder: Path) -> tuple[int, Counter]:
    """Run the worker under callgrind; its total and per-object instructions."""
    out = folder / f"callgrind.{peer}.{steps}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        peer,
        "--steps",
        str(steps),
        "--seed",
        str(seed),
    ]
    # one BLAS thread; a fixed hash seed, else start-up work varies from run to run by
    # ~1M instructions and the two runs' start-ups no longer cancel
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONHASHSEED"] = "0"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"callgrind run of {peer} ({steps} steps) failed:\n{tail}")
    return parse_callgrind(out)


def measure(peers: list[str], few: int, many: int, seed: int) -> dict:
    """Per peer: instructions of one step, in all and per library group."""
    jobs = [(peer, steps) for peer in peers for steps in (few, many)]
    workers = os.cpu_count() or 1
    print(
        f"{len(jobs)} callgrind runs of 20-60 s each, {workers} at a time ...",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="purenn-callgrind-") as tmp:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {job: pool.submit(count, *job, seed, Path(tmp)) for job in jobs}
            for (peer, steps), future in futures.items():
                future.add_done_callback(
                    lambda _, p=peer, s=steps: print(
                        f"counted {p} ({s} steps)", file=sys.stderr, flush=True
                    )
                )
            counts = {job: future.result() for job, future in futures.items()}
    result = {}
    for peer in peers:
        (t_few, ob_few), (t_many, ob_many) = counts[(peer, few)], counts[(peer, many)]
        g_few, g_many = by_group(ob_few), by_group(ob_many)
        result[peer] = {
            "per_step": (t_many - t_few) / (many - few),
            "groups": {g: (g_many[g] - g_few[g]) / (many - few) for g in GROUPS},
        }
    return result


def table(counts: dict) -> str:
    ref = counts.get("handopt", {}).get("per_step")
    lines = [
        f"| peer | instructions per step | vs handopt | {' | '.join(GROUPS)} |",
        "| --- | ---: | ---: |" + " ---: |" * len(GROUPS),
    ]
    for peer, c in counts.items():
        vs = f"{c['per_step'] / ref:.3f}x" if ref else "-"
        cells = " | ".join(f"{c['groups'][g]:,.0f}" for g in GROUPS)
        lines.append(f"| {peer} | {c['per_step']:,.0f} | {vs} | {cells} |")
    if "purenn" in counts and "handopt" in counts:
        pn_, ho = counts["purenn"], counts["handopt"]
        extra = pn_["per_step"] - ho["per_step"]
        parts = ", ".join(
            f"{g} {pn_['groups'][g] - ho['groups'][g]:+,.0f}"
            for g in GROUPS
            if abs(pn_["groups"][g] - ho["groups"][g]) >= 1
        )
        lines += [
            "",
            f"purenn's API: {extra:+,.0f} instructions per step "
            f"({100 * extra / ho['per_step']:+.2f}% of handopt's step); by library: {parts}.",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Count the instructions of one training step of the benchmark's "
        "loops under valgrind's callgrind (deterministic, unlike a clock).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated subset of: {', '.join(PEERS)}",
    )
    p.add_argument("--few", type=int, default=5, help="counted steps of the shorter run")
    p.add_argument("--many", type=int, default=45, help="counted steps of the longer run")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the inits")
    p.add_argument("--json", metavar="PATH", help="also write the counts as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.steps, args.seed)
        return 0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown or not peers:
        parser.error(f"unknown peer(s) {unknown or '(none)'}; choose from {', '.join(PEERS)}")
    if not 0 <= args.few < args.many:
        parser.error(f"need 0 <= --few < --many; got --few {args.few} --many {args.many}")
    if shutil.which("valgrind") is None:
        sys.exit("error: valgrind is not installed (Debian: apt-get install valgrind)")
    counts = measure(peers, args.few, args.many, args.seed)
    print(table(counts))
    if args.json:
        from purenn.fileio import atomic_write

        command = " ".join(["python scripts/step_instructions.py", *(argv or sys.argv[1:])])
        doc = {"command": command, "few": args.few, "many": args.many, "seed": args.seed}
        doc["counts"] = counts
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(doc, indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
