"""purenn.parallel: data-parallel fit over MPI, checked against single-process fit.

The multi-rank runs launch ``tests/_mpi_worker.py`` with ``mpiexec -n 2`` in a
subprocess. Without mpi4py or mpiexec these tests skip, saying how to install
them, except in CI (``CI`` set), where they fail instead: CI installs the
``mpi`` extra and must run them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import purenn as nn
from purenn import parallel

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_mpi_worker.py")
TIMEOUT = 120  # seconds: a hung job fails the test instead of hanging the suite


def _need_mpi() -> str:
    """The mpiexec to use; skip (fail in CI) without mpi4py or mpiexec."""
    why = None
    if importlib.util.find_spec("mpi4py") is None:
        why = "mpi4py is not installed"
    else:
        try:
            return parallel.mpiexec_path()
        except FileNotFoundError as err:
            why = str(err)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the MPI tests, but {why} (.ci/run installs .[mpi])")
    pytest.skip(f"{why}: pip install -e '.[mpi]' to run the MPI tests")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")  # two ranks on a shared machine
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def run_worker(scenario: str, out: Path, ranks: int = 2) -> subprocess.CompletedProcess:
    mpiexec = _need_mpi()
    cmd = [mpiexec, "-n", str(ranks), sys.executable, str(WORKER), scenario, str(out)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), cwd=ROOT
    )


def ok_worker(scenario: str, out: Path, ranks: int = 2) -> dict:
    proc = run_worker(scenario, out, ranks)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def params_of(out: Path, tag: str, rank: int) -> dict:
    with np.load(out / f"params{tag}_{rank}.npz") as f:
        return {k: f[k] for k in f.files}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def assert_close(a: dict, b: dict, atol: float) -> None:
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


# --------------------------------------------------------------------------- no MPI needed


def test_importing_purenn_never_imports_mpi4py():
    code = (
        "import sys, purenn, purenn.parallel, purenn.experiment, purenn.training; "
        "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'; "
        "assert not purenn.parallel.under_mpi()"
    )
    env = {k: v for k, v in _env().items() if k not in parallel.LAUNCHER_VARS}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_under_mpi_reads_the_launchers_variables(monkeypatch):
    for var in parallel.LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not parallel.under_mpi()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not parallel.under_mpi()  # a singleton: nothing to share
    monkeypatch.setenv("PMI_SIZE", "4")
    assert parallel.under_mpi()
    monkeypatch.delenv("PMI_SIZE")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert parallel.under_mpi()


def test_blas_threads_share_the_cores():
    assert parallel.blas_threads(2, cores=2) == 1
    assert parallel.blas_threads(2, cores=8) == 4
    assert parallel.blas_threads(3, cores=8) == 2
    assert parallel.blas_threads(16, cores=8) == 1  # never zero


def test_launch_sets_blas_threads_unless_given(monkeypatch, tmp_path):
    for var in parallel.THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    fake = tmp_path / "mpiexec"
    fake.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n'
        'env | grep _NUM_THREADS | sort > "$(dirname "$0")/env"\nexit 7\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PURENN_MPIEXEC", str(fake))
    assert parallel.launch(2, ["python", "train.py", "--epochs", "1"]) == 7
    assert (tmp_path / "args").read_text().split() == [
        "-n", "2", "python", "train.py", "--epochs", "1",
    ]  # fmt: skip
    want = parallel.blas_threads(2)
    env = (tmp_path / "env").read_text().split()
    assert all(f"{var}={want}" in env for var in parallel.THREAD_VARS)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    parallel.launch(2, ["python"])
    assert "OMP_NUM_THREADS=3" in (tmp_path / "env").read_text().split()
    assert "OPENBLAS_NUM_THREADS" not in (tmp_path / "env").read_text()


def test_fit_alone_is_an_ordinary_process_group():
    group = nn.training.ProcessGroup()
    assert (group.rank, group.size, group.is_root) == (0, 1, True)
    x, y = np.ones((5, 3), np.float32), np.zeros(5, int)
    assert group.part(x, y)[0] is x
    rng = np.random.default_rng(0)
    assert group.epoch_rng(rng) is rng


# --------------------------------------------------------------------------- one rank, in process


@pytest.fixture
def mpi_group():
    _need_mpi()
    return parallel.MPIGroup()


def _small():
    rng = np.random.default_rng(0)
    x = rng.random((150, 10), dtype=np.float32)
    y = rng.integers(0, 3, 150)
    xv, yv = rng.random((40, 10), dtype=np.float32), rng.integers(0, 3, 40)
    spec = nn.Network(10, [nn.Dense(12), nn.Dropout(0.2), nn.Dense(3, "softmax")])
    return nn.init(spec, 0), (x, y), (xv, yv)


def _jitter(xb, rng):
    return xb + rng.normal(0, 0.05, xb.shape).astype(xb.dtype)


def test_one_rank_is_bit_identical_to_fit(mpi_group, tmp_path):
    """Dropout, augmentation, validation, checkpoints and resuming: every bit as fit."""
    assert mpi_group.size == 1  # pytest itself is not under mpiexec
    params, train, val = _small()
    kw = dict(optimizer=nn.optim.adamw(3e-3, weight_decay=1e-2), batch_size=16, val=val,
              augment=_jitter, patience=5, verbose=0)  # fmt: skip
    mine, mine_h = parallel.fit(params, train, epochs=4, rng=3, checkpoint_dir=tmp_path, **kw)
    ref, ref_h = nn.fit(params, train, epochs=4, rng=3, **kw)
    assert nn.tree_equal(mine, ref)
    assert {k: v for k, v in mine_h.items() if k != "seconds"} == {
        k: v for k, v in ref_h.items() if k != "seconds"
    }
    ck = nn.load(tmp_path / "epoch_0002.npz")
    resumed, _ = parallel.fit(ck.params, train, epochs=4, **ck.resume_kwargs(), **kw)
    assert nn.tree_equal(resumed, ref)


def test_the_group_refuses_a_group_argument(mpi_group):
    params, train, _ = _small()
    with pytest.raises(TypeError, match="comm="):
        parallel.fit(params, train, optimizer=nn.optim.sgd(0.1), epochs=1, batch_size=8,
                     rng=0, group=mpi_group)  # fmt: skip


def test_errors_propagate_with_one_rank(mpi_group):
    params, (x, y), _ = _small()
    with pytest.raises(ValueError, match="batch_size"):
        parallel.fit(params, (x, y), optimizer=nn.optim.sgd(0.1), epochs=1, batch_size=500,
                     rng=0, drop_last=True)  # fmt: skip
    with pytest.raises(nn.NonFiniteLossError), np.errstate(all="ignore"):
        parallel.fit(params, (x * 1e30, y), optimizer=nn.optim.sgd(1e30), epochs=2,
                     batch_size=8, rng=0, verbose=0)  # fmt: skip


def test_fit_refuses_a_group_of_another_kind():
    params, train, _ = _small()
    with pytest.raises(TypeError, match="ProcessGroup"):
        nn.fit(params, train, optimizer=nn.optim.sgd(0.1), epochs=1, batch_size=8, rng=0,
               group=object())  # fmt: skip


def test_train_pass_needs_the_share_part_cut(mpi_group):
    params, (x, y), _ = _small()
    with pytest.raises(ValueError, match="call part first"):
        mpi_group.train_pass(params, x[:8], y[:8], rng=0, workspace=None)
    step = mpi_group.train_pass(params, *mpi_group.part(x[:8], y[:8]), rng=0, workspace=None)
    ref = nn.train_pass(params, x[:8], y[:8], rng=0)
    assert step.loss == ref.loss and nn.tree_equal(step.grads, ref.grads)


def test_part_splits_a_batch_into_contiguous_shares(mpi_group):
    x = np.arange(7.0, dtype=np.float32)[:, None]
    xs, ys = mpi_group.part(x, np.arange(7))
    assert xs.shape == (7, 1) and np.shares_memory(xs, x) and ys.tolist() == list(range(7))


# --------------------------------------------------------------------------- bad arguments
# Found by the fuzz sweep (tests/_fuzz.py) once parallel joined its catalog.


def test_blas_threads_refuses_counts_that_are_no_positive_ints():
    """Was: ``'>' not supported between instances of 'NoneType' and 'int'`` for
    local_ranks=None, ``unsupported operand type(s) for //`` for cores="abc", and
    1 thread for cores=-1 or local_ranks=1.5."""
    with pytest.raises(TypeError, match=r"local_ranks must be a positive int; got None"):
        parallel.blas_threads(None)
    with pytest.raises(TypeError, match=r"cores must be a positive int; got 'abc' \(str\)"):
        parallel.blas_threads(2, cores="abc")
    with pytest.raises(ValueError, match=r"cores must be a positive int; got -1"):
        parallel.blas_threads(2, cores=-1)
    with pytest.raises(TypeError, match=r"local_ranks must be a positive int; got 1.5"):
        parallel.blas_threads(1.5, cores=8)
    assert parallel.blas_threads(np.int64(2), cores=np.int64(8)) == 4


@pytest.fixture
def fake_mpiexec(tmp_path, monkeypatch):
    """An mpiexec that records that it ran; the file it writes must stay absent."""
    ran = tmp_path / "ran"
    fake = tmp_path / "mpiexec"
    fake.write_text(f'#!/bin/sh\ntouch "{ran}"\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PURENN_MPIEXEC", str(fake))
    return ran


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # was: mpiexec started with "-n None" (or '>' not supported ... without THREAD_VARS)
        ({"workers": None}, TypeError, r"workers must be a positive int; got None"),
        ({"workers": True}, TypeError, r"workers must be a positive int; got True"),
        ({"workers": 0}, ValueError, r"workers must be a positive int; got 0"),
        # was: mpiexec asked for 10**12 local processes
        ({"workers": 10**12}, ValueError, r"workers must be at most 1,024; got 1,000,000,000,000"),
        # was: mpiexec -n 2 a b c (a str is a sequence of one-letter arguments)
        ({"command": "abc"}, TypeError, r"command must be a non-empty list or tuple of str"),
        ({"command": []}, TypeError, r"command must be a non-empty list or tuple of str"),
        # was: subprocess's "expected str, bytes or os.PathLike object, not int"
        ({"command": ["python", 1]}, TypeError, r"command\[1\] must be a str .*got int 1"),
        # was: "'int' object is not iterable", and a TypeError from <frozen os> for {"a": {}}
        ({"env": 5}, TypeError, r"env must be a mapping of str to str .*got int 5"),
        ({"env": []}, TypeError, r"env must be a mapping of str to str .*got list"),
        ({"env": {"A": 1}}, TypeError, r"env must map str to str; got 'A' \(str\): 1 \(int\)"),
    ],
)
def test_launch_refuses_bad_arguments_before_starting_anything(
    fake_mpiexec, kwargs, error, message
):
    call = {"workers": 2, "command": ["python", "train.py"], **kwargs}
    with pytest.raises(error, match=message):
        parallel.launch(call.pop("workers"), call.pop("command"), **call)
    assert not fake_mpiexec.exists(), "mpiexec was started"
    assert parallel.launch(np.int64(2), ("python", Path("train.py")), env={}) == 0
    assert fake_mpiexec.exists()


def test_the_mpi_helpers_refuse_a_group_or_comm_of_another_kind(mpi_group):
    """Was: AttributeError ("'float' object has no attribute 'Get_rank'") from
    MPIGroup(comm=1.5) and parallel.fit(comm=...); abort_on_error(group=...)
    accepted anything until its block was entered; limit_blas_threads(group=...)
    returned None when the environment set the BLAS threads."""
    from mpi4py import MPI

    with pytest.raises(TypeError, match=r"comm must be an mpi4py intracommunicator.*got float 1.5"):
        parallel.MPIGroup(1.5)
    for null in (MPI.COMM_NULL, MPI.Intracomm()):  # COMM_NULL is a Comm, not an Intracomm
        with pytest.raises(ValueError, match=r"comm is a null communicator \(MPI.COMM_NULL\)"):
            parallel.MPIGroup(null)
    params, train, _ = _small()
    with pytest.raises(TypeError, match=r"comm must be an mpi4py intracommunicator.*got dict"):
        parallel.fit(params, train, comm={}, optimizer=nn.optim.sgd(0.1), epochs=1,
                     batch_size=8, rng=0)  # fmt: skip
    want = r"group must be a purenn.parallel.MPIGroup or None .*got ProcessGroup"
    with pytest.raises(TypeError, match=want):
        parallel.abort_on_error(nn.training.ProcessGroup())  # refused when called, not entered
    for env in ({"OMP_NUM_THREADS": "1"}, {}):
        with pytest.MonkeyPatch.context() as mp:
            for var in parallel.THREAD_VARS:
                mp.delenv(var, raising=False)
            for var, value in env.items():
                mp.setenv(var, value)
            with pytest.raises(
                TypeError, match=r"group must be a purenn.parallel.MPIGroup.*got str"
            ):
                parallel.limit_blas_threads("rank 0")
    assert parallel.MPIGroup(MPI.COMM_SELF).size == 1
    with parallel.abort_on_error(mpi_group) as group:
        assert group is mpi_group


# --------------------------------------------------------------------------- two ranks


def test_two_ranks_step_by_step_agree_with_one_process(tmp_path):
    """No randomness in the step: after every step the params agree with one
    process's to float rounding, and the two ranks' params are checked identical
    after every step (check_replicas) and at the end, bit for bit."""
    result = ok_worker("steps", tmp_path)
    assert result["size"] == 2
    assert result["worst_step_difference"] < 1e-5
    assert_bit_identical(params_of(tmp_path, "", 0), params_of(tmp_path, "", 1))


def test_two_ranks_fit_agrees_with_fit(tmp_path):
    """The whole of fit (shuffles, uneven last batch, validation split across
    ranks): the same history to float rounding, the same params to rounding,
    both ranks bit-identical; rank 0 alone prints its epoch lines."""
    proc = run_worker("fit", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line[:9] for line in proc.stderr.splitlines() if line.startswith("epoch")] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3",
    ]  # fmt: skip
    result = json.loads((tmp_path / "result.json").read_text())
    mine, ref = result["history"], result["single_history"]
    assert mine["epoch"] == ref["epoch"] == [1, 2, 3]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(mine[key], ref[key], rtol=1e-5)
    for key in ("train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(mine[key], ref[key], atol=1 / 51 + 1e-12)
    rank0 = params_of(tmp_path, "", 0)
    assert_bit_identical(rank0, params_of(tmp_path, "", 1))
    assert_close(rank0, params_of(tmp_path, "_single", 0), atol=1e-4)


def test_a_batch_smaller_than_the_group(tmp_path):
    """A last batch of one sample leaves rank 0 with an empty share: it adds zeros."""
    result = ok_worker("tiny", tmp_path)
    np.testing.assert_allclose(
        result["history"]["train_loss"], result["single_history"]["train_loss"], rtol=1e-6
    )
    assert_bit_identical(params_of(tmp_path, "", 0), params_of(tmp_path, "", 1))
    assert_close(params_of(tmp_path, "", 0), params_of(tmp_path, "_single", 0), atol=1e-5)


def test_two_ranks_with_randomness_are_reproducible_and_resume(tmp_path):
    """Dropout and augmentation from per-rank streams: the same seed gives the
    same bits, and a run resumed from rank 0's checkpoint continues exactly."""
    result = ok_worker("random", tmp_path)
    for rank in (0, 1):
        a = params_of(tmp_path, "_a", rank)
        assert_bit_identical(a, params_of(tmp_path, "_b", rank))
        assert_bit_identical(a, params_of(tmp_path, "_c", rank))
    assert_bit_identical(params_of(tmp_path, "_a", 0), params_of(tmp_path, "_a", 1))
    ha, hc = result["history_a"], result["history_c"]
    assert ha["train_loss"] == hc["train_loss"] and ha["val_loss"] == hc["val_loss"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "epoch_0001.npz", "epoch_0002.npz", "last.npz",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "scenario,message",
    [
        ("fail_in_step", "rank 1's augmentation broke on purpose"),
        ("bad_data", "holds NaN or inf"),
        ("exit_on_one", "rank 1 cannot find its data file"),
    ],
)
def test_a_failing_rank_stops_the_whole_job(tmp_path, scenario, message):
    """One rank raises while the other waits in a collective: the job ends
    (no hang: the subprocess timeout would fail the test) with the error shown."""
    proc = run_worker(scenario, tmp_path)
    assert proc.returncode != 0
    assert "rank 1 of 2 failed; aborting the job" in proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "result.json").exists()


# --------------------------------------------------------------------------- scripts


def _pendigits_or_skip() -> None:
    from purenn.datasets import DataNotFoundError, load_pendigits

    try:
        load_pendigits(download=False)
    except DataNotFoundError as err:
        if os.environ.get("PURENN_REQUIRE_DATA") == "1":
            pytest.fail(f"data missing and PURENN_REQUIRE_DATA=1: {err}")
        pytest.skip(f"pendigits not available ({type(err).__name__}); set PURENN_DATA")


def test_a_script_trains_with_workers_and_under_mpiexec(tmp_path):
    """``--workers 2`` starts two ranks itself; ``mpiexec -n 2`` runs the same
    script unchanged; with the same BLAS threads (the bits depend on them)
    both give the same metrics (timings aside), and only rank 0 writes."""
    mpiexec = _need_mpi()
    _pendigits_or_skip()
    script = str(ROOT / "scripts" / "train_pendigits.py")
    common = ["--limit", "300", "--epochs", "2", "--no-figures", "--quiet"]
    env = {**_env(), **dict.fromkeys(parallel.THREAD_VARS, "1")}
    runs = []
    for name, prefix, extra in (
        ("workers", [sys.executable, script], ["--workers", "2"]),
        ("mpiexec", [mpiexec, "-n", "2", sys.executable, script], []),
    ):
        out = tmp_path / name
        cmd = [*prefix, *common, *extra, "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert sorted(p.name for p in out.iterdir()) == [
            "history.json", "metrics.json", "misclassified.npz", "model.npz",
        ]  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())
        for key in ("train_seconds", "seconds_per_epoch"):
            metrics.pop(key)
        metrics["config"].pop("out")
        runs.append(metrics)
    assert runs[0]["config"]["workers"] == 2
    assert runs[0] == runs[1]


def test_workers_under_mpiexec_is_refused(tmp_path):
    mpiexec = _need_mpi()
    script = str(ROOT / "scripts" / "train_pendigits.py")
    cmd = [mpiexec, "-n", "2", sys.executable, script, "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode != 0
    assert "under mpiexec leave it out" in proc.stderr


# --------------------------------------------------------------------------- benchmark


BENCH = ROOT / "scripts" / "bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "peer", ["purenn_mpi2", "purenn_mpi2_nocomm", "cnn_purenn_mpi2", "allreduce"]
)
def test_bench_mpi_workers_print_one_json_result(peer):
    mpiexec = _need_mpi()
    cmd = [mpiexec, "-n", "2", sys.executable, str(BENCH), "--worker", peer, "--quick",
           "--synthetic"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1  # rank 0 alone reports
    result = json.loads(lines[0])
    if peer == "allreduce":
        assert result["ranks"] == 2 and len(result["points"]) >= 8
        assert all(p["median_us"] > 0 for p in result["points"])
    else:
        assert result["ranks"] == 2 and result["samples_per_s"] > 0
        assert len(result["rank_peak_rss_mb"]) == 2
        assert np.isfinite(result["mean_loss"]) and result["allreduce_us"] > 0


def test_bench_ring_model_recovers_its_parameters():
    bench = _bench()
    latency, bandwidth = 5e-6, 4e9
    points = [
        {"bytes": b, "median_us": 1e6 * bench.ring_seconds(2, b, latency, bandwidth)}
        for b in bench.ALLREDUCE_BYTES
    ]
    fit = bench.fit_allreduce(points, 2)
    assert fit["latency_us"] == pytest.approx(5.0, rel=0.05)  # 1 KiB: 0.26 us of it is data
    assert fit["gbyte_per_s"] == pytest.approx(4.0, rel=0.01)
    assert bench.ring_seconds(1, 1e6, latency, bandwidth) == 0.0  # one machine: nothing to send


# --------------------------------------------------------------------------- state and callbacks


def test_one_rank_with_batchnorm_is_bit_identical_to_fit(mpi_group):
    """The state goes through the allreduce scaled by 1.0: every bit as fit."""
    _, train, val = _small()
    spec = nn.Network(10, [nn.Dense(12), nn.BatchNorm(activation="relu"), nn.Dense(3, "softmax")])
    params = nn.init(spec, 0)
    kw = dict(optimizer=nn.optim.adam(1e-2), batch_size=16, val=val, epochs=3, rng=2,
              verbose=0, drop_last=True)  # fmt: skip
    mine, _ = parallel.fit(params, train, **kw)
    ref, _ = nn.fit(params, train, **kw)
    assert nn.tree_equal(mine, ref)  # compares the state too
    assert int(mine["state"]["batchnorm_0"]["count"]) > 0


def test_two_ranks_batchnorm_state_callbacks_and_resume(tmp_path):
    """BatchNorm's running statistics are averaged by share every step, so the
    ranks' params and state stay bit-identical and so do their predictions;
    ReduceLROnPlateau and EarlyStopping decide alike on every rank; Snapshots
    writes on rank 0 alone; a resumed run continues exactly."""
    result = ok_worker("batchnorm", tmp_path)
    for tag in ("_a", "_c"):
        assert_bit_identical(params_of(tmp_path, tag, 0), params_of(tmp_path, tag, 1))
        states = [dict(np.load(tmp_path / f"state{tag}_{r}.npz")) for r in (0, 1)]
        assert_bit_identical(*states)
        assert int(states[0]["batchnorm_0.count"]) > 0
    assert_bit_identical(params_of(tmp_path, "_a", 0), params_of(tmp_path, "_c", 0))
    assert np.array_equal(np.load(tmp_path / "pred_0.npy"), np.load(tmp_path / "pred_1.npy"))
    ha, hc = result["history_a"], result["history_c"]
    assert ha["stopped_early"] and ha["lr_scale"][-1] < 1.0  # both callbacks acted
    assert ha["train_loss"] == hc["train_loss"] and ha["lr_scale"] == hc["lr_scale"]
    assert not (tmp_path / "snaps_1").exists()  # rank 1 wrote nothing
    snaps = sorted(p.name for p in (tmp_path / "snaps_0").iterdir())
    assert snaps == [f"snapshot_{e:04d}.npz" for e in ha["epoch"]]
