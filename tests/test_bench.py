"""Smoke test of scripts/bench.py: its workers run and speak JSON.

No timing assertions (speed targets live in the benchmark's results in
docs/benchmarks.md); synthetic data, so no data files or torch are needed.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
TIMING_KEYS = {
    "peer",
    "dtype",
    "seconds",
    "steps",
    "mean_loss",
    "samples_per_s",
    "versions",
    "blas",
}


def run_worker(peer, *extra):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--worker", peer, "--quick", "--synthetic", *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "peer", ["purenn", "handopt", "gemm", "purenn_fit", "purenn_f64", "cnn_purenn"]
)
def test_worker_prints_one_json_result(peer):
    result = run_worker(peer)
    assert TIMING_KEYS <= result.keys()
    assert result["peer"] == peer
    assert result["dtype"] == ("float64" if peer.endswith("_f64") else "float32")
    assert result["samples_per_s"] > 0
    assert result["steps"] > 0
    assert result["mean_loss"] == result["mean_loss"]  # not NaN


def test_handopt_loop_does_purenns_arithmetic():
    """The hand-optimised peer is purenn's step without the API: the same math
    (its in-place, hand-fused arithmetic rounds differently in the last bits)."""
    import numpy as np

    bench = load_bench()
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 20), dtype=np.float32), rng.integers(0, 5, 64)
    args = (x, y, (20, 12, 8, 5), 16, np.float32, 3)
    purenn_step, handopt_step = bench.make_purenn(*args), bench.make_handopt(*args)
    for i in range(8):
        assert purenn_step(i % 4) == pytest.approx(handopt_step(i % 4), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "peer,module", [("torch", "torch"), ("sklearn", "sklearn"), ("cnn_torch", "torch")]
)
def test_optional_peers(peer, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")
    assert TIMING_KEYS <= run_worker(peer).keys()


def test_scaling_worker_covers_every_point():
    result = run_worker("gemm", "--scaling-worker")
    sweeps = [(p["sweep"], p["batch"], p["arch"]) for p in result["points"]]
    assert ("batch", 2048, "784-128-64-10") in sweeps
    assert ("width", 128, "784-2048-1024-10") in sweeps
    assert all(p["samples_per_s"] > 0 for p in result["points"])


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_summary_ratios_and_targets():
    bench = load_bench()
    runs = [
        {"peer": "torch", "samples_per_s": v, "dtype": "float32"} for v in (100.0, 200.0, 300.0)
    ] + [{"peer": "purenn", "samples_per_s": v, "dtype": "float32"} for v in (250.0, 260.0)]
    runs.append({"peer": "gemm", "samples_per_s": 500.0, "dtype": "float32"})
    summary = bench.summarize(runs)
    assert summary["torch"]["median"] == 200.0
    assert summary["purenn"]["vs_torch"] == pytest.approx(255.0 / 200.0)
    assert summary["purenn"]["of_bound"] == pytest.approx(255.0 / 500.0)
    by_name = {t["target"]: t for t in bench.targets(summary)}
    assert by_name["purenn samples/s vs torch eager"]["ok"] is False  # 1.275 < 1.3
    assert by_name["purenn fraction of the GEMM-only bound"]["ok"] is False
    assert by_name["purenn float64 vs tutorial float64"]["ok"] is None  # not measured
    assert "| purenn |" in bench.results_table(summary)


def test_paired_ratios_are_taken_within_rounds():
    bench = load_bench()
    # round 2 ran on a slow machine: both peers halve, their ratio holds
    rates = {1: {"torch": 200.0, "purenn": 260.0}, 2: {"torch": 100.0, "purenn": 130.0}}
    rates[3] = {"torch": 180.0}  # purenn failed this round: no pair
    runs = [
        {"peer": peer, "round": rnd, "samples_per_s": v, "dtype": "float32"}
        for rnd, peers in rates.items()
        for peer, v in peers.items()
    ]
    runs.append({"peer": "purenn", "round": 3, "error": "worker exited with 1"})
    rows = {r["ratio"]: r for r in bench.paired_ratios(runs)}
    assert list(rows) == ["purenn / torch"]  # pairs with a missing peer are left out
    row = rows["purenn / torch"]
    assert (row["median"], row["min"], row["max"], row["rounds"]) == (1.3, 1.3, 1.3, 2)
    # the ratio of medians mixes the rounds: 195 / 180
    summary = bench.summarize(runs)
    assert summary["purenn"]["vs_torch"] == pytest.approx(195.0 / 180.0)
    assert "| purenn / torch | 1.30 | 1.30 - 1.30 | 2 |" in bench.paired_table(rows.values())


def test_cnn_summary_targets_and_table():
    bench = load_bench()
    runs = [
        {"peer": "cnn_torch", "samples_per_s": 4000.0, "seconds": 15.0, "peak_rss_mb": 900.0},
        {"peer": "cnn_purenn", "samples_per_s": 2000.0, "seconds": 30.0, "peak_rss_mb": 400.0},
        {"peer": "cnn_purenn", "samples_per_s": 1000.0, "seconds": 60.0, "peak_rss_mb": 500.0},
    ]
    for r in runs:
        r["dtype"] = "float32"
    summary = bench.summarize(runs, "cnn_torch")
    assert summary["cnn_purenn"]["epoch_s"] == 45.0
    assert summary["cnn_purenn"]["peak_rss_mb"] == 500.0
    assert summary["cnn_purenn"]["vs_torch"] == pytest.approx(1500.0 / 4000.0)
    by_name = {t["target"]: t for t in bench.cnn_targets(summary)}
    assert by_name["cnn_purenn epoch time / cnn_torch epoch time"]["value"] == 3.0
    assert by_name["cnn_purenn epoch time / cnn_torch epoch time"]["ok"] is False
    assert by_name["cnn_purenn peak RSS, MiB"]["ok"] is True
    table = bench.cnn_table(summary)
    assert "| cnn_purenn |" in table and "2.67x" in table  # 4000 / 1500


def test_update_docs_needs_markers():
    bench = load_bench()
    text = "intro\n<!-- bench:results:start -->\nold\n<!-- bench:results:end -->\nrest\n"
    assert "new" in bench.replace_section(text, "results", "new")
    assert "old" not in bench.replace_section(text, "results", "new")
    with pytest.raises(ValueError, match="markers"):
        bench.replace_section("no markers", "results", "new")


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        load_bench().main(["--peers", "purenn,nope"])
    with pytest.raises(SystemExit, match="--quick"):
        load_bench().main(["--quick", "--update-docs", "--synthetic"])
    with pytest.raises(SystemExit, match="--workload"):
        load_bench().main(["--peers", "purenn", "--workload", "cnn", "--synthetic"])


def test_ab_purenn_refuses_folders_without_purenn(tmp_path):
    script = SCRIPT.parent / "ab_purenn.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(SCRIPT.parents[1]), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{tmp_path} holds no purenn package" in proc.stderr


# ---------------------------------------------------------------- scripts/profile_step.py

PROFILE_SCRIPT = SCRIPT.parent / "profile_step.py"


def load_script_beside_bench(path):
    """A script of scripts/ that imports bench from its own folder, as a module."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def load_profile_step():
    return load_script_beside_bench(PROFILE_SCRIPT)


def test_timed_step_is_handopts_step():
    """The instrumented step does handopt's arithmetic: the same losses, bit for bit,
    and it marks every operation, products and element-wise work alike."""
    import numpy as np

    profile_step = load_profile_step()
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 20), dtype=np.float32), rng.integers(0, 5, 64)
    args = (x, y, (20, 12, 8, 5), 16, np.float32, 3)
    timed, handopt = profile_step.make_timed_step(*args), load_bench().make_handopt(*args)
    marks = []
    for i in range(8):
        marks.clear()
        assert timed(i % 4, lambda label, kind: marks.append((label, kind))) == handopt(i % 4)
    kinds = [kind for _, kind in marks]
    assert kinds.count("matmul") == 3 + 3 + 2  # forward a @ w, backward dw and dx
    assert len(set(marks)) == len(marks)  # one label per operation


def test_profile_step_prints_a_table(tmp_path):
    out = tmp_path / "ops.json"
    proc = subprocess.run(
        [sys.executable, str(PROFILE_SCRIPT), "--synthetic", "--epochs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| forward 0: a @ w (128, 784)x(784, 128) | matmul |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["steps_per_epoch"] == 468 and result["step_us"] > 0
    assert sum(op["us"] for op in result["ops"]) == pytest.approx(result["step_us"], rel=0.3)


# ----------------------------------------------------------- scripts/step_instructions.py

COUNT_SCRIPT = SCRIPT.parent / "step_instructions.py"

# A callgrind output file in miniature: two objects, compressed names, a call
# whose inclusive cost (the line after calls=) must not be counted again.
CALLGRIND_OUT = """\
# callgrind format
version: 1
events: Ir
summary: 1111

ob=(1) /usr/lib/libpython3.11.so.1.0
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 1
cob=(2) /venv/numpy.libs/libscipy_openblas64_-1.so
cfn=(2) sgemm_kernel_HASWELL
calls=1 0
* 1000
-1 10

ob=(2)
fn=(2)
0 1000

totals: 1111
"""


def load_step_instructions():
    return load_script_beside_bench(COUNT_SCRIPT)


def test_callgrind_files_are_read_by_object(tmp_path):
    counter = load_step_instructions()
    path = tmp_path / "callgrind.out"
    path.write_text(CALLGRIND_OUT)
    total, by_object = counter.parse_callgrind(path)
    assert total == 1111
    assert by_object == {
        "/usr/lib/libpython3.11.so.1.0": 111,
        "/venv/numpy.libs/libscipy_openblas64_-1.so": 1000,
    }
    assert counter.by_group(by_object) == {
        "BLAS": 1000,
        "NumPy": 0,
        "Python": 111,
        "C library": 0,
        "other": 0,
    }
    # a file whose costs do not add up is refused, not silently misread
    path.write_text(CALLGRIND_OUT.replace("totals: 1111", "totals: 2111"))
    with pytest.raises(ValueError, match="add up to 1,111"):
        counter.parse_callgrind(path)


@pytest.mark.parametrize(
    ("objfile", "group"),
    [
        ("/venv/lib/python3.11/site-packages/numpy/_core/_multiarray_umath.so", "NumPy"),
        ("/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_.so", "BLAS"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "C library"),
        ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "C library"),
        ("/root/.pyenv/versions/3.11.7/bin/python3.11", "Python"),
        ("/usr/lib/x86_64-linux-gnu/libz.so.1", "other"),
    ],
)
def test_objects_are_grouped_by_library(objfile, group):
    assert load_step_instructions().library_group(objfile) == group


def test_instruction_table_prices_the_api():
    counter = load_step_instructions()
    groups = dict.fromkeys(counter.GROUPS, 0.0)
    counts = {
        "handopt": {"per_step": 1000.0, "groups": {**groups, "BLAS": 900.0, "Python": 100.0}},
        "purenn": {"per_step": 1100.0, "groups": {**groups, "BLAS": 900.0, "Python": 200.0}},
    }
    text = counter.table(counts)
    assert "| purenn | 1,100 | 1.100x | 900 | 0 | 200 | 0 | 0 |" in text
    assert "+100 instructions per step (+10.00% of handopt's step)" in text
    assert "Python +100" in text and "BLAS" not in text.split("by library:")[1]


def test_instruction_worker_runs_and_bad_arguments_are_refused():
    run = [sys.executable, str(COUNT_SCRIPT)]
    proc = subprocess.run(
        [*run, "--worker", "purenn", "--steps", "2"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*run, "--peers", "torch"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown peer(s) ['torch']" in proc.stderr
    proc = subprocess.run(
        [*run, "--few", "9", "--many", "3"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "need 0 <= --few < --many" in proc.stderr
