"""The long fuzz run: every public function of purenn with many hostile arguments,
and every file reader with many damaged files; prints the table of
docs/reliability.md and writes it as JSON.

    python scripts/fuzz.py --examples 200 --out docs/results/issue14

Each area runs in its own worker process under a memory limit
(``RLIMIT_AS``, ``--memory-mb``) with a per-case deadline (``--timeout``): a
case that exceeds it counts as a hang, a worker that dies as a crash (the run
goes on with the next case). The cases are those of tests/test_fuzz.py and
tests/test_corrupt_files.py (tests/_fuzz.py, tests/_corrupt.py), made from
integer seeds, so a failure is re-run with its seed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

VERDICTS = ("clean", "ok", "unhelpful", "silent", "crash", "hang")


def _on_alarm(signum, frame):
    import _fuzz

    # not an Exception, so nothing in purenn can swallow it; run_case lets it through
    raise _fuzz.Deadline


def _areas() -> list[str]:
    import _corrupt
    import _fuzz

    return sorted({area for area, _, _ in _fuzz.catalog()}) + [
        f"files: {kind}" for kind in _corrupt.KINDS
    ]


def worker(area: str, examples: int, first: int, timeout: float, memory_mb: int) -> None:
    """Run one area's cases from case number ``first``, one JSON line each."""
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.setdefault("MPLBACKEND", "Agg")
    import _corrupt
    import _fuzz

    if area.startswith("files: "):
        kind = area[len("files: ") :]
        cases = [(kind, seed) for seed in range(examples)]
        run = lambda case: _corrupt.run_case(*case)  # noqa: E731
    else:
        fns = [(a, n, f) for a, n, f in _fuzz.catalog() if a == area]
        cases = [(a, n, f, seed) for seed in range(examples) for a, n, f in fns]
        run = lambda case: _fuzz.run_case(*case)  # noqa: E731
    signal.signal(signal.SIGALRM, _on_alarm)
    scratch = tempfile.mkdtemp(prefix="purenn-fuzz-")
    os.chdir(scratch)
    os.environ["PURENN_DATA"] = os.path.join(scratch, "no-data")
    for i in range(first, len(cases)):
        case = cases[i]
        print(json.dumps({"start": i, "total": len(cases)}), flush=True)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            result = run(case)
        except _fuzz.Deadline:
            result = {"verdict": "hang", "why": f"no answer within {timeout}s"}
            result.update(_describe(case))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result["seconds"] = round(time.perf_counter() - t0, 4)
        print(json.dumps({"case": i, **result}, default=str), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"done": True, "peak_rss_mb": round(rss / 1024, 1)}), flush=True)


def _describe(case) -> dict:
    if len(case) == 2:
        return {"kind": case[0], "seed": case[1]}
    return {"area": case[0], "function": case[1], "seed": case[3]}


def run_area(area: str, args) -> tuple[list[dict], float]:
    """All of an area's cases, restarting the worker after a crash."""
    results: list[dict] = []
    peak = 0.0
    first = 0
    while True:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", area, "--examples", str(args.examples),
             "--first", str(first), "--timeout", str(args.timeout),
             "--memory-mb", str(args.memory_mb)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip
        current, total, done = None, None, False
        for line in proc.stdout:
            msg = json.loads(line)
            if "start" in msg:
                current, total = msg["start"], msg["total"]
            elif "case" in msg:
                results.append(msg)
                current = None
            elif msg.get("done"):
                peak = max(peak, msg["peak_rss_mb"])
                done = True
        proc.wait()
        if done or current is None:
            return results, peak
        results.append(
            {"case": current, "verdict": "crash", "why": f"worker died (exit {proc.returncode})"}
        )
        first = current + 1
        if total is not None and first >= total:
            return results, peak


def table(summary: dict) -> str:
    lines = [
        "| area | cases | clean refusals | unhelpful errors | silent wrong | crashes/hangs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for area, c in summary.items():
        lines.append(
            f"| {area} | {c['cases']} | {c['clean']} | {c['unhelpful']} | {c['silent']} | "
            f"{c['crash'] + c['hang']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="cases per function / file kind")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=3072, help="RLIMIT_AS per worker")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "issue14")
    parser.add_argument("--areas", nargs="*", help="only these areas (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="unused: cases are numbered 0..N-1")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.examples, args.first, args.timeout, args.memory_mb)
        return 0

    t0 = time.perf_counter()
    summary: dict[str, dict] = {}
    failures: list[dict] = []
    peaks: dict[str, float] = {}
    for area in args.areas or _areas():
        results, peaks[area] = run_area(area, args)
        counts = collections.Counter(r["verdict"] for r in results)
        summary[area] = {"cases": len(results), **{v: counts.get(v, 0) for v in VERDICTS}}
        failures += [
            {"area": area, **r} for r in results if r["verdict"] in ("unhelpful", "silent",
                                                                       "crash", "hang")
        ]  # fmt: skip
        print(f"{area}: {summary[area]} (peak RSS {peaks[area]} MB)", file=sys.stderr)
    totals = {k: sum(s[k] for s in summary.values()) for k in ("cases", *VERDICTS)}
    summary["total"] = totals
    print(table(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "python scripts/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "examples": args.examples,
        "timeout_seconds": args.timeout,
        "memory_limit_mb": args.memory_mb,
        "peak_rss_mb": peaks,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": summary,
        "failures": failures,
    }
    (args.out / "fuzz.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return (
        0 if totals["unhelpful"] + totals["silent"] + totals["crash"] + totals["hang"] == 0 else 1
    )


if __name__ == "__main__":
    sys.exit(main())
