"""Train an MLP (or, with ``--model cnn``, a small CNN; with ``--model resnet``, a small
residual CNN with BatchNorm) on MNIST and write a run folder.

    python scripts/train_mnist.py                     # the default MLP recipe
    python scripts/train_mnist.py --augment           # the MLP with augmentation, 50 epochs
    python scripts/train_mnist.py --model cnn
    python scripts/train_mnist.py --model resnet

Pixels are scaled to [0, 1]; see ``purenn.experiment.prepare_images`` for the
layouts and ``--augment``, and ``purenn.experiment`` for the run folder.

On a busy or shared machine, run it with one BLAS thread,
``OPENBLAS_NUM_THREADS=1 python scripts/train_mnist.py``: OpenBLAS's threads
otherwise spin against the other jobs and can make each step many times
slower. On a quiet machine leave it unset; two threads were about 40% faster
on 2 cores (``scripts/bench.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from purenn import experiment
from purenn.datasets import load_mnist

# Chosen on the validation split (10% of the 60,000 training images), never on the test set.
RECIPES = {
    "mlp": {
        "hidden": [512, 256],
        "dropout": 0.2,
        "optimizer": "adamw",
        "lr": 1e-3,
        "schedule": "cosine",
        "weight_decay": 1e-5,
        "epochs": 30,
        "batch_size": 128,
        # Validation loss bottoms out around epoch 10 while validation accuracy keeps
        # rising to epoch ~25 (cosine decay): keep the most accurate epoch.
        "monitor": "val_accuracy",
        # Distorted batches take longer to fit: with --augment, 50 epochs unless --epochs.
        "with_augment": {"epochs": 50},
    },
    "cnn": {
        "hidden": [128],
        "dropout": 0.25,
        "optimizer": "adamw",
        "lr": 1e-3,
        "schedule": "cosine",
        "weight_decay": 1e-5,
        "epochs": 12,
        "batch_size": 128,
        "augment": True,
    },
    # purenn.experiment.build_resnet; its network is written out in docs/results.md
    "resnet": {
        "hidden": [16, 32, 64],  # channels of the three stages
        "dropout": 0.0,
        "optimizer": "momentum",
        "lr": 0.05,
        "schedule": "warmup-cosine",
        "weight_decay": 5e-4,
        "epochs": 15,
        "batch_size": 128,
        "augment": True,  # shifts, small rotations and zooms (no mirroring: digits)
    },
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, evaluate on the test split once; returns the metrics."""
    parser = experiment.build_parser(
        "mnist", "Train a network on MNIST digits and write metrics and figures.", RECIPES
    )
    args = experiment.parse_args(parser, RECIPES, argv)
    (x, y), test = experiment.load_data(parser, load_mnist, args)
    return experiment.run(args, prepare(x, y, test, args))


def prepare(x: Any, y: Any, test: tuple, args: Any) -> experiment.Data:
    """The validation split and the inputs (and augmentation) of ``args.model``, from
    the official training images ``(x, y)`` and ``test`` (uint8, as loaded)."""
    train, val = experiment.split_train_val(x, y, args)
    names = [str(k) for k in range(10)]
    return experiment.prepare_images(train, val, test, args, names)


if __name__ == "__main__":
    experiment.script_main(main)
