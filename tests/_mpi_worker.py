"""Run by tests/test_parallel.py under ``mpiexec -n N``: one scenario per call.

    mpiexec -n 2 python tests/_mpi_worker.py SCENARIO OUT_DIR

Every rank computes; rank 0 writes ``OUT_DIR/result.json`` (plain JSON) and,
where a scenario compares params, each rank writes ``OUT_DIR/params_<rank>.npz``
so the test can check them bit for bit itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import purenn as nn
from purenn import parallel

N, D, K = 203, 12, 4  # 203 samples: the last batch of 32 is 11, split unevenly


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((N, D), dtype=np.float32)
    y = rng.integers(0, K, N)
    xv = rng.random((51, D), dtype=np.float32)
    yv = rng.integers(0, K, 51)
    return (x, y), (xv, yv)


def network(dropout=0.0):
    layers = [nn.Dense(16)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Network(D, [*layers, nn.Dense(K, "softmax")])


def jitter(xb, rng):
    return xb + rng.normal(0, 0.01, xb.shape).astype(xb.dtype)


def save_params(out: Path, rank: int, params: dict, tag: str = "") -> None:
    leaves = dict(nn.tree_items(params))
    np.savez(out / f"params{tag}_{rank}.npz", **{k.replace("/", "."): v for k, v in leaves.items()})


def steps_against_single(out: Path, group: parallel.MPIGroup) -> dict:
    """Step by step: the group's summed gradient against one process's, no randomness."""
    (x, y), _ = data()
    params = single = nn.init(network(), 1)
    opt = nn.optim.adam(1e-2)
    state = single_state = opt.init(params)
    ws = nn.Workspace()
    worst = 0.0
    for start in range(0, N, 32):
        xb, yb = x[start : start + 32], y[start : start + 32]
        step = group.train_pass(params, *group.part(xb, yb), rng=None, workspace=ws)
        params, state = opt.update(step.grads, state, params)
        g = nn.grads(single, xb, yb)
        single, single_state = opt.update(g, single_state, single)
        for a, b in zip(nn.tree_leaves(params), nn.tree_leaves(single), strict=True):
            worst = max(worst, float(np.max(np.abs(a - b))))
        group.check_replicas(params)  # raises on every rank if any differs
    save_params(out, group.rank, params)
    return {"worst_step_difference": worst}


def fit_against_single(out: Path, group: parallel.MPIGroup) -> dict:
    train, val = data()
    p0 = nn.init(network(), 1)
    kw = dict(optimizer=nn.optim.adam(1e-2), epochs=3, batch_size=32, val=val, verbose=1)
    params, history = parallel.fit(p0, train, rng=5, **kw)
    single, single_history = nn.fit(p0, train, rng=5, **{**kw, "verbose": 0})
    save_params(out, group.rank, params)
    save_params(out, group.rank, single, "_single")
    return {"history": history, "single_history": single_history}


def tiny_last_batch(out: Path, group: parallel.MPIGroup) -> dict:
    """Batches of 101 on 203 samples: the last batch has 1 sample, so one rank's
    share is empty (it adds zeros) and validation has 3 samples; with dropout
    and augmentation on too, nothing breaks, and without them fit's result is
    met to rounding."""
    train, val = data()
    kw = dict(optimizer=nn.optim.sgd(0.1), epochs=2, batch_size=101, rng=3, verbose=0)
    parallel.fit(nn.init(network(dropout=0.2), 1), train, val=(val[0][:3], val[1][:3]),
                 augment=jitter, **kw)  # fmt: skip
    p0 = nn.init(network(), 1)
    params, history = parallel.fit(p0, train, **kw)
    single, single_history = nn.fit(p0, train, **kw)
    save_params(out, group.rank, params)
    save_params(out, group.rank, single, "_single")
    return {"history": history, "single_history": single_history}


def random_twice(out: Path, group: parallel.MPIGroup) -> dict:
    """Dropout and augmentation: two runs with the same seed, and a checkpointed
    run resumed half way, must give the same bits."""
    train, val = data()
    p0 = nn.init(network(dropout=0.3), 1)
    kw = dict(optimizer=nn.optim.adam(1e-2), batch_size=32, val=val, augment=jitter, verbose=0)
    a, ha = parallel.fit(p0, train, epochs=4, rng=7, **kw)
    b, hb = parallel.fit(p0, train, epochs=4, rng=7, **kw)
    ckpt = out / "ckpt"
    parallel.fit(p0, train, epochs=2, rng=7, checkpoint_dir=ckpt, **kw)
    group.comm.Barrier()  # rank 0 wrote the checkpoint; every rank reads it
    resumed = nn.load(ckpt / "last.npz")
    c, hc = parallel.fit(resumed.params, train, epochs=4, **resumed.resume_kwargs(), **kw)
    for tag, p in (("_a", a), ("_b", b), ("_c", c)):
        save_params(out, group.rank, p, tag)
    return {"history_a": ha, "history_b": hb, "history_c": hc}


def fail_in_step(out: Path, group: parallel.MPIGroup) -> dict:
    """Rank 1 raises in its third augmentation; the others would wait in the allreduce."""
    train, _ = data()
    calls = []

    def augment(xb, rng):
        calls.append(1)
        if group.rank == 1 and len(calls) == 3:
            raise ValueError("rank 1's augmentation broke on purpose")
        return xb

    parallel.fit(nn.init(network(), 1), train, optimizer=nn.optim.sgd(0.1), epochs=2,
                 batch_size=32, rng=0, augment=augment, verbose=0)  # fmt: skip
    return {"finished": True}


def bad_data(out: Path, group: parallel.MPIGroup) -> dict:
    """Rank 1 alone was given data with a NaN: it fails before the first step."""
    (x, y), _ = data()
    if group.rank == 1:
        x = x.copy()
        x[17, 3] = np.nan
    parallel.fit(nn.init(network(), 1), (x, y), optimizer=nn.optim.sgd(0.1), epochs=2,
                 batch_size=32, rng=0, verbose=0)  # fmt: skip
    return {"finished": True}


def exit_on_one(out: Path, group: parallel.MPIGroup) -> dict:
    """A script's main where rank 1 exits with a message (as argparse or a loader
    does) while rank 0 goes on to a collective."""
    from purenn import experiment

    def main():
        if group.rank == 1:
            sys.exit("rank 1 cannot find its data file")
        group.comm.Barrier()

    experiment.script_main(main)
    return {"finished": True}


def batchnorm(out: Path, group: parallel.MPIGroup) -> dict:
    """A BatchNorm net with ReduceLROnPlateau, EarlyStopping and Snapshots: the
    ranks' params and state stay bit-identical, rank 0 alone writes snapshots,
    and a run resumed from its checkpoint continues exactly."""
    from purenn.callbacks import EarlyStopping, ReduceLROnPlateau, Snapshots

    train, val = data()
    layers = [nn.Dense(16), nn.BatchNorm(activation="relu"), nn.Dense(K, "softmax")]
    spec = nn.Network(D, layers)
    p0 = nn.init(spec, 1)
    snaps = out / f"snaps_{group.rank}"

    def callbacks():
        plateau = ReduceLROnPlateau("train_loss", factor=0.5, patience=1, min_delta=1.0)
        return [plateau, EarlyStopping("train_loss", patience=3, min_delta=1.0), Snapshots(snaps)]

    kw = dict(optimizer=nn.optim.adam(1e-2), batch_size=32, val=val, verbose=0, drop_last=True)
    a, ha = parallel.fit(p0, train, epochs=6, rng=4, callbacks=callbacks(), **kw)
    ckpt = out / "ckpt"
    parallel.fit(p0, train, epochs=2, rng=4, callbacks=callbacks(), checkpoint_dir=ckpt, **kw)
    group.comm.Barrier()
    resumed = nn.load(ckpt / "last.npz")
    c, hc = parallel.fit(resumed.params, train, epochs=6, callbacks=callbacks(),
                         **resumed.resume_kwargs(), **kw)  # fmt: skip
    for tag, p in (("_a", a), ("_c", c)):
        save_params(out, group.rank, p, tag)
        state = {k.replace("/", "."): v for k, v in nn.tree.state_items(p)}
        np.savez(out / f"state{tag}_{group.rank}.npz", **state)
    pred = nn.predict(a, val[0])
    np.save(out / f"pred_{group.rank}.npy", pred)
    return {"history_a": ha, "history_c": hc}


SCENARIOS = {
    "steps": steps_against_single,
    "fit": fit_against_single,
    "tiny": tiny_last_batch,
    "random": random_twice,
    "fail_in_step": fail_in_step,
    "bad_data": bad_data,
    "exit_on_one": exit_on_one,
    "batchnorm": batchnorm,
}


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    group = parallel.MPIGroup()
    result = SCENARIOS[scenario](out, group)
    if group.is_root:
        result["size"] = group.size
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
