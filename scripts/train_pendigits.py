"""Train an MLP on UCI pendigits (8 pen points per digit) and write a run folder.

    python scripts/train_pendigits.py                 # the default recipe
    python scripts/train_pendigits.py --hidden 64 32 --no-augment --epochs 20

Features are standardised with statistics of the training part only. With
``--augment`` (the default) every training batch is distorted as pen strokes:
the batch is taken back to raw 0..100 coordinates, rotated, sheared, jittered
and re-normalised (``purenn.augment.augment_strokes``), then standardised again.
The run folder is described in ``purenn.experiment``.

On a busy or shared machine, run it with one BLAS thread,
``OPENBLAS_NUM_THREADS=1 python scripts/train_pendigits.py``: OpenBLAS's threads
otherwise spin against the other jobs and can make each step many times
slower. On a quiet machine leave it unset; two threads were about 40% faster
on 2 cores (``scripts/bench.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from purenn import experiment
from purenn.augment import augment_strokes
from purenn.datasets import load_pendigits
from purenn.preprocessing import standardize_fit

# Chosen on the validation split (10% of pendigits.tra), never on pendigits.tes.
RECIPES = {
    "mlp": {
        "hidden": [256, 128],
        "dropout": 0.1,
        "optimizer": "adamw",
        "lr": 2e-3,
        "schedule": "cosine",
        "weight_decay": 1e-4,
        "epochs": 40,
        "batch_size": 64,
        "augment": True,
    }
}

# Stroke distortions for --augment: degrees, shear factor, jitter in 0..100 units.
STROKES = {"max_rotation": 10.0, "max_shear": 0.2, "noise": 2.0}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, evaluate on the test split once; returns the metrics."""
    parser = experiment.build_parser(
        "pendigits", "Train an MLP on UCI pendigits and write metrics and figures.", RECIPES
    )
    args = experiment.parse_args(parser, RECIPES, argv)
    (x, y), test = experiment.load_data(parser, load_pendigits, args)
    (x_train, y_train), val = experiment.split_train_val(x, y, args)
    scaler = standardize_fit(x_train)
    augment = None
    if args.augment:
        augment = experiment.in_raw_units(functools.partial(augment_strokes, **STROKES), scaler)
    data = experiment.Data(
        train=(scaler.apply(x_train, args.dtype), y_train),
        val=None if val is None else (scaler.apply(val[0], args.dtype), val[1]),
        test=(scaler.apply(test[0], args.dtype), test[1]),
        test_raw=test[0],
        kind="pendigits",
        class_names=tuple(str(k) for k in range(10)),
        augment=augment,
        preprocessing={"mean": scaler.mean, "std": scaler.std, "augment": STROKES},
    )
    return experiment.run(args, data)


if __name__ == "__main__":
    experiment.script_main(main)
