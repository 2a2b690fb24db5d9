"""purenn: neural networks from first principles in NumPy.

Networks are immutable specs; parameters are nested dicts of arrays; training
is a handful of pure functions::

    spec = purenn.Network(16, [purenn.Dense(64), purenn.Dense(10, "softmax")])
    params = purenn.init(spec, rng=0)
    params = purenn.sgd_step(params, purenn.grads(params, x, y), lr=0.1)
"""

from purenn import metrics, optim, schedules
from purenn.checkpoint import Checkpoint, load, save
from purenn.conv import AvgPool2D, Conv2D, Flatten, MaxPool2D
from purenn.core import forward, grads, init, loss, loss_and_grads, predict, sgd_step
from purenn.layers import Dense, Dropout
from purenn.network import Network
from purenn.training import NonFiniteLossError, fit
from purenn.tree import (
    SPEC_KEY,
    tree_allclose,
    tree_check_like,
    tree_equal,
    tree_items,
    tree_leaves,
    tree_map,
    tree_zeros_like,
)

__version__ = "0.1.0"

__all__ = [
    "SPEC_KEY",
    "AvgPool2D",
    "Checkpoint",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "MaxPool2D",
    "Network",
    "NonFiniteLossError",
    "__version__",
    "fit",
    "forward",
    "grads",
    "init",
    "load",
    "loss",
    "loss_and_grads",
    "metrics",
    "optim",
    "predict",
    "save",
    "schedules",
    "sgd_step",
    "tree_allclose",
    "tree_check_like",
    "tree_equal",
    "tree_items",
    "tree_leaves",
    "tree_map",
    "tree_zeros_like",
]
