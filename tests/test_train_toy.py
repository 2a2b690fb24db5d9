"""scripts/train_toy.py: every problem trains, the run folder holds what the
docstring promises, figures are real files, and runs repeat."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

import purenn
from purenn import callbacks

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("boundary.png", "boundary.gif", "loss.png", "diagnostics.png")


def _script():
    spec = importlib.util.spec_from_file_location("train_toy", ROOT / "scripts" / "train_toy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dataset", ["spiral", "moons", "circles", "xor", "sine"])
def test_each_problem_writes_its_run_folder(tmp_path, dataset):
    out = tmp_path / dataset
    args = ["--dataset", dataset, "--n", "40", "--epochs", "4", "--snapshot-every", "2"]
    metrics = _script().main([*args, "--out", str(out), "--quiet", "--no-figures"])
    stored = json.loads((out / "metrics.json").read_text())
    assert stored == {k: v for k, v in metrics.items() if k != "run_dir"}
    assert stored["epochs_run"] == 4 and stored["n_train"] == 40
    assert stored["task"] == ("regression" if dataset == "sine" else "classification")
    assert (stored["test_accuracy"] is None) == (dataset == "sine")
    history = json.loads((out / "history.json").read_text())
    assert "dense_0.grad_norm" in history and len(history["dense_0.grad_norm"]) == 4
    ck = purenn.load(out / "model.npz")
    assert stored["parameters"] == sum(a.size for a in purenn.tree_leaves(ck.params))
    assert [e for e, _ in callbacks.load_snapshots(out / "snapshots")] == [0, 2, 4]
    assert not any((out / f).exists() for f in FIGURES)


def test_figures_are_real_files_and_the_same_command_repeats(tmp_path):
    script = _script()
    args = ["--dataset", "moons", "--n", "40", "--epochs", "3", "--quiet"]
    first = script.main([*args, "--out", str(tmp_path / "a")])
    second = script.main([*args, "--out", str(tmp_path / "b"), "--no-figures"])
    for m in (first, second):
        m.pop("run_dir"), m.pop("train_seconds")
        m["config"].pop("out"), m["config"].pop("figures")
    assert first == second
    a = tmp_path / "a"
    for name in (*FIGURES, "accuracy.png"):
        with Image.open(a / name) as im:
            assert im.size[0] > 100
    with Image.open(a / "boundary.gif") as im:
        assert im.n_frames >= 4  # epochs 0..3 plus the held last frame


def test_bad_options_are_usage_errors(capsys):
    script = _script()
    for argv, message in (
        (["--dataset", "swirl"], "invalid choice"),
        (["--n", "2"], "--n must be at least 8"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
    ):
        with pytest.raises(SystemExit) as err:
            script.main(argv)
        assert err.value.code == 2
        assert message in capsys.readouterr().err


def test_the_last_line_names_figures_only_when_they_were_drawn(tmp_path, capsys):
    args = ["--dataset", "moons", "--n", "40", "--epochs", "1", "--no-figures"]
    _script().main([*args, "--out", str(tmp_path / "a")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"Files in {tmp_path / 'a'}") and "figures" not in last
