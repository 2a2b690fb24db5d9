"""Smoke tests for scripts/baselines.py: seconds each, no accuracy targets.

scikit-learn and PyTorch are optional (the ``bench`` extra); the tests that need
them skip cleanly without them. The missing-peer path and the argument errors
run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from purenn.datasets import DataNotFoundError, load_pendigits

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "baselines.py"


@pytest.fixture(scope="module")
def baselines():
    """scripts/baselines.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("baselines_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def pendigits_available():
    """Skip (or fail, under PURENN_REQUIRE_DATA=1) when pendigits cannot be found offline."""
    try:
        load_pendigits(download=False)
    except DataNotFoundError as err:
        if os.environ.get("PURENN_REQUIRE_DATA") == "1":
            pytest.fail(f"pendigits missing and PURENN_REQUIRE_DATA=1: {err}")
        pytest.skip(f"pendigits not found offline: {err}")


def _run(baselines, out: Path, *extra: str) -> dict:
    code = baselines.main(["--quick", "--datasets", "pendigits", "--out", str(out), *extra])
    assert code == 0
    assert [p.name for p in out.iterdir()] == ["baselines.json"]  # no temporary left over
    return json.loads((out / "baselines.json").read_text())


def test_quick_pendigits_runs_and_repeats(baselines, pendigits_available, tmp_path, capsys):
    pytest.importorskip("sklearn")
    report = _run(baselines, tmp_path / "a")
    table = capsys.readouterr().out

    assert report["complete"] is True
    assert report["quick"] is True
    assert report["command"].startswith("python scripts/baselines.py --quick")
    assert report["machine"]["cpu_count"] >= 1
    keys = [r["key"] for r in report["results"]]
    assert keys == ["sklearn_mlp", "sklearn_knn", "sklearn_rbf_svm"]
    for r in report["results"]:
        assert r["status"] == "ok", r
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["train_seconds"] >= 0.0 and r["tune_seconds"] >= r["train_seconds"]
        # The reported configuration is the point with the best CV score.
        best = max(r["cv"]["scores"], key=lambda s: s["mean"])
        assert best["mean"] == pytest.approx(r["cv"]["best_cv_accuracy"])
        assert all(r["config"][k] == v for k, v in r["cv"]["best_params"].items())
        assert r["title"] in table
    assert "| data set | baseline | test accuracy" in table

    again = _run(baselines, tmp_path / "b")
    for r1, r2 in zip(report["results"], again["results"], strict=True):
        assert r1["test_accuracy"] == r2["test_accuracy"]
        assert r1["cv"]["scores"] == r2["cv"]["scores"]


def test_missing_peer_is_skipped_with_install_command(
    baselines, pendigits_available, tmp_path, capsys, monkeypatch
):
    def missing(name):
        raise baselines.MissingPeer(name)

    monkeypatch.setattr(baselines, "_peer", missing)
    report = _run(baselines, tmp_path)
    table = capsys.readouterr().out

    assert report["complete"] is True
    assert len(report["results"]) == 3
    for r in report["results"]:
        assert r["status"] == "skipped"
        assert r["install"].startswith("pip install")
        assert "scikit-learn is not installed" in r["reason"]
        assert "test_accuracy" not in r
    assert table.count("| skipped |") == 3
    assert baselines.INSTALL["torch"] == "pip install torch==2.13.0"


def test_torch_mlp_is_seeded(baselines):
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((96, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = (x, y, x[:32], y[:32])
    kw = {"threads": 1, "hidden": (8, 4), "dropout": 0.1, "epochs": 2, "batch_size": 16}
    r1 = baselines.torch_mlp(data, 3, **kw)
    r2 = baselines.torch_mlp(data, 3, **kw)
    r3 = baselines.torch_mlp(data, 4, **kw)
    assert r1["train_loss_per_epoch"] == r2["train_loss_per_epoch"]
    assert r1["test_accuracy"] == r2["test_accuracy"]
    assert r1["train_loss_per_epoch"] != r3["train_loss_per_epoch"]
    assert r1["config"]["layers"] == "12-8-4-2"
    assert r1["config"]["epochs"] == 2 and len(r1["train_loss_per_epoch"]) == 2
    json.dumps(r1)


@pytest.mark.parametrize(
    "argv",
    [["--seed", "-1"], ["--threads", "0"]],
)
def test_bad_values_are_refused(baselines, tmp_path, capsys, argv):
    assert baselines.main([*argv, "--out", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "baselines.json").exists()


def test_out_must_be_a_folder(baselines, tmp_path, capsys):
    target = tmp_path / "file.json"
    target.write_text("{}")
    assert baselines.main(["--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_unknown_dataset_is_a_usage_error(baselines, tmp_path):
    with pytest.raises(SystemExit) as exc:
        baselines.main(["--datasets", "cifar10", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_torch_module_is_a_twin_of_the_resnet(baselines):
    """The residual network rebuilt in torch from a purenn spec and params computes the
    same outputs (training and evaluation mode) and running statistics, in float32."""
    torch = pytest.importorskip("torch")
    import purenn as pn
    from purenn.experiment import build_resnet

    spec = build_resnet((1, 12, 12), [4, 6, 8], 0.0, 5)
    params = pn.init(spec, 0)
    model = baselines.torch_module(spec, params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1, 12, 12)).astype(np.float32)
    y = np.arange(6) % 5
    ours = pn.forward(params, x, train=True)
    model.train()
    theirs = torch.softmax(model(torch.from_numpy(x)), dim=1).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    params = pn.sgd_step(params, pn.grads(params, x, y), 0.0)  # the statistics of this batch
    model.eval()
    with torch.no_grad():
        theirs = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(pn.forward(params, x), theirs, rtol=1e-4, atol=1e-5)
    stem = params[pn.STATE_KEY]["batchnorm_0"]
    np.testing.assert_allclose(stem["mean"], model[1].bn.running_mean.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="no PyTorch twin for MaxPool2D"):
        baselines.torch_module(pn.Network((1, 4, 4), [pn.MaxPool2D(2), pn.Flatten(),
                               pn.Dense(2, "softmax")]), {})  # fmt: skip


@pytest.mark.slow
def test_quick_resnet_twin_runs(baselines, tmp_path):
    pytest.importorskip("torch")
    from purenn.datasets import load_fashion_mnist

    try:
        load_fashion_mnist(download=False)
    except DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not found offline: {err}")
    out = tmp_path / "twin"
    argv = ["--quick", "--datasets", "fashion_mnist", "--baselines", "torch_resnet"]
    assert baselines.main([*argv, "--threads", "1", "--out", str(out)]) == 0
    report = json.loads((out / "baselines.json").read_text())
    (entry,) = report["results"]
    assert entry["key"] == "torch_resnet" and entry["status"] == "ok", entry
    assert entry["config"]["recipe"]["model"] == "resnet"
    assert len(entry["history"]["val_loss"]) == baselines.QUICK_EPOCHS
    assert 1 <= entry["best_epoch"] <= baselines.QUICK_EPOCHS
