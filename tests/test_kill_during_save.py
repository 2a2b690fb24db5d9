"""``save`` killed with SIGKILL at random moments: the last complete checkpoint
always loads, and the next save removes what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import purenn

REPO = Path(__file__).resolve().parents[1]

# Saves version 0, 1, 2, ... of a ~4 MB checkpoint in a loop, printing each
# version once it is on disk.
_WRITER = """
import sys, numpy as np, purenn
spec = purenn.Network(512, [purenn.Dense(1024), purenn.Dense(10, "softmax")])
params = purenn.init(spec, 0)
for version in range(10**6):
    p = purenn.tree_map(lambda a: np.full_like(a, version), params)
    purenn.save(sys.argv[1], p, version=version)
    print(version, flush=True)
"""


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_during_save_never_loses_the_last_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    left_behind = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        first = proc.stdout.readline()  # one version at least is complete
        assert first.strip().isdigit(), first
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        printed = [int(first), *(int(v) for v in proc.stdout.read().split())]
        proc.stdout.close()
        ck = purenn.load(path)  # never a half-written file
        version = ck.extra["version"]
        assert version >= printed[-1]  # the last one printed, or one after it
        leaf = ck.params["dense_0"]["w"]
        assert leaf.min() == leaf.max() == version  # one version's arrays, not a mix
        left_behind += len(_temporaries(tmp_path))
    # the next save (any process) cleans every temporary file the killed ones left
    purenn.save(path, purenn.load(path).params)
    assert _temporaries(tmp_path) == []
    print(f"temporary files left by the kills and then removed: {left_behind}")


def test_orphaned_temporary_files_of_save_are_removed_by_the_next_save(tmp_path):
    params = purenn.init(purenn.Network(2, [purenn.Dense(2, "softmax")]), 0)
    orphan = tmp_path / ".ck-a1b2c3d4.npz"  # as a killed save leaves it
    orphan.write_bytes(b"PK half")
    unrelated = tmp_path / ".other-a1b2c3d4.npz"
    unrelated.write_bytes(b"x")
    purenn.save(tmp_path / "ck.npz", params)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other-a1b2c3d4.npz", "ck.npz"]


def test_save_onto_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    params = purenn.init(purenn.Network(2, [purenn.Dense(2, "softmax")]), 0)
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "real.npz"
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    purenn.save(link, params)  # a dangling link: its target is created
    assert link.is_symlink() and target.is_file()
    purenn.save(link, purenn.tree_map(lambda a: a + 1, params))
    assert link.is_symlink()
    assert purenn.tree_equal(purenn.load(target).params, purenn.tree_map(lambda a: a + 1, params))
