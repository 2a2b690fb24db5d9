"""purenn.sklearn without scikit-learn: it imports, fits, predicts and scores,
with its own get_params/set_params and input checks (in a fresh interpreter
where importing sklearn fails)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_estimators_work_without_scikit_learn(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("scikit-learn is blocked in this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from purenn import sklearn as ps
        from purenn.datasets import make_moons, make_sine
        assert not ps.HAVE_SKLEARN
        x, y = make_moons(200, rng=0, dtype=np.float64)
        clf = ps.MLPClassifier((16,), max_iter=40, random_state=0, learning_rate_init=0.01)
        try:
            clf.predict(x)
        except ps.NotFittedError:
            pass
        else:
            raise AssertionError("predict before fit must raise")
        clf.fit(x, y)
        assert clf.score(x, y) > 0.8 and clf.n_features_in_ == 2
        assert clf.get_params()["hidden_layer_sizes"] == (16,)
        assert clf.set_params(alpha=0.5) is clf and clf.alpha == 0.5
        try:
            clf.set_params(nope=1)
        except ValueError as err:
            assert "Invalid parameter 'nope'" in str(err)
        try:
            clf.predict(np.zeros((3, 5)))
        except ValueError as err:
            assert "X has 5 features" in str(err)
        xs, ys = make_sine(200, rng=0, dtype=np.float64)
        reg = ps.MLPRegressor((16,), "tanh", max_iter=100, learning_rate_init=0.01,
                              random_state=0).fit(xs, ys[:, 0])
        assert reg.score(xs, ys[:, 0]) > 0.5, reg.score(xs, ys[:, 0])
        assert "sklearn" not in sys.modules
        print("ok")
        """
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
