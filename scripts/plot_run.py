"""Redraw every figure of a training run from its saved files, without retraining.

    python scripts/plot_run.py runs/pendigits-20250101-120000
    python scripts/plot_run.py RUN_DIR --out figures/

Reads ``history.json``, ``metrics.json`` and ``misclassified.npz`` from RUN_DIR
(the layout is documented in ``purenn.plots``) and writes ``loss.png``,
``accuracy.png``, ``confusion.png``, ``confusion_normalized.png``,
``misclassified.png`` and ``loss.gif``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, redraw the run's figures, print the paths written; return 0."""
    parser = argparse.ArgumentParser(
        description="Redraw a run's figures from history.json, metrics.json and "
        "misclassified.npz, without retraining."
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder a training script wrote")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for the figures (default: RUN_DIR itself)",
    )
    args = parser.parse_args(argv)

    from purenn.plots import plot_run

    try:
        written = plot_run(args.run_dir, args.out)
    except (FileNotFoundError, ValueError, TypeError) as err:
        parser.exit(2, f"plot_run.py: error: {err}\n")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
