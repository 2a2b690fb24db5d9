"""Regenerate the golden values of a short seeded core training run.

``tests/test_core.py::test_golden_training_run`` replays :func:`golden_run` and
compares it, with tolerances, to ``tests/golden/core.json``. Run this script
only on purpose, after a change that is *meant* to move those numbers (a new
initialiser stream, a different loss reduction), and say why in the commit::

    python scripts/regen_goldens.py            # writes tests/golden/core.json
    python scripts/regen_goldens.py --out /tmp  # somewhere else, to compare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import purenn as pn
from purenn.fileio import atomic_write

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES, N_FEATURES, N_CLASSES = 256, 16, 10  # pendigits-sized: 16 features, 10 digits
BATCH, STEPS, LR = 32, 20, 0.5


def golden_spec() -> pn.Network:
    return pn.Network(
        N_FEATURES,
        [
            pn.Dense(32, "relu"),
            pn.Dropout(0.2),
            pn.Dense(16, "tanh"),
            pn.Dense(N_CLASSES, "softmax"),
        ],
    )


def synthetic_digits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of ten random prototypes in [0, 1]^16: x (256, 16) float64, y (256,) int."""
    prototypes = rng.uniform(0.0, 1.0, size=(N_CLASSES, N_FEATURES))
    y = rng.integers(0, N_CLASSES, size=N_SAMPLES)
    x = np.clip(prototypes[y] + 0.15 * rng.normal(size=(N_SAMPLES, N_FEATURES)), 0.0, 1.0)
    return x, y


def golden_run(seed: int) -> dict:
    """Twenty float64 SGD steps with dropout on synthetic digits; everything one
    Generator seeded with ``seed`` (data, init, then dropout masks in order).

    Returns:
        A JSON-able dict: the config, the loss at every step, the final
        evaluation loss and predictions, and every final parameter.
    """
    rng = np.random.default_rng(seed)
    x, y = synthetic_digits(rng)
    spec = golden_spec()
    params = pn.init(spec, rng, np.float64)
    losses = []
    for step in range(STEPS):
        start = (step * BATCH) % N_SAMPLES
        xb, yb = x[start : start + BATCH], y[start : start + BATCH]
        value, g = pn.loss_and_grads(params, xb, yb, rng=rng)
        losses.append(value)
        params = pn.sgd_step(params, g, LR)
    return {
        "seed": seed,
        "spec": spec.to_dict(),
        "steps": STEPS,
        "lr": LR,
        "batch": BATCH,
        "losses": losses,
        "final_loss": pn.loss(params, x, y),
        "predictions": pn.predict(params, x).tolist(),
        "params": {path: leaf.tolist() for path, leaf in pn.tree_items(params)},
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the golden run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "tests" / "golden", help="directory for core.json"
    )
    args = parser.parse_args(argv)
    result = golden_run(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "core.json"
    text = json.dumps(result, indent=1) + "\n"
    atomic_write(target, lambda tmp: tmp.write_text(text))  # never a half-written golden
    print(f"wrote {target}: losses {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
