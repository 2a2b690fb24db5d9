"""purenn: neural networks from first principles in NumPy.

Networks are immutable specs; parameters are nested dicts of arrays; training
is a handful of pure functions::

    spec = purenn.Network(16, [purenn.Dense(64), purenn.Dense(10, "softmax")])
    params = purenn.init(spec, rng=0)
    params = purenn.sgd_step(params, purenn.grads(params, x, y), lr=0.1)
"""

from purenn import callbacks, gradcheck, losses, metrics, optim, schedules
from purenn.activations import register_activation
from purenn.base import ArraySpec, Context, Layer, Sublayer, register_layer
from purenn.checkpoint import Checkpoint, load, register_record, save
from purenn.containers import Parallel, Residual
from purenn.conv import AvgPool2D, Conv2D, Flatten, GlobalAvgPool2D, MaxPool2D, Reshape
from purenn.core import (
    TrainPass,
    check_inputs,
    check_params,
    forward,
    grads,
    init,
    layer_outputs,
    logits,
    loss,
    loss_and_grads,
    predict,
    sgd_step,
    train_pass,
)
from purenn.layers import Dense, Dropout
from purenn.losses import Loss, register_loss
from purenn.network import Network
from purenn.norm import BatchNorm, LayerNorm
from purenn.training import CheckpointWriteError, NonFiniteLossError, TrainingInterrupted, fit
from purenn.tree import (
    SPEC_KEY,
    STATE_KEY,
    tree_allclose,
    tree_check_like,
    tree_equal,
    tree_items,
    tree_leaves,
    tree_map,
    tree_with_state,
    tree_zeros_like,
)
from purenn.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "SPEC_KEY",
    "STATE_KEY",
    "ArraySpec",
    "AvgPool2D",
    "BatchNorm",
    "Checkpoint",
    "CheckpointWriteError",
    "Context",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Layer",
    "LayerNorm",
    "Loss",
    "MaxPool2D",
    "Network",
    "NonFiniteLossError",
    "Parallel",
    "Reshape",
    "Residual",
    "Sublayer",
    "TrainPass",
    "TrainingInterrupted",
    "Workspace",
    "__version__",
    "callbacks",
    "check_inputs",
    "check_params",
    "fit",
    "forward",
    "gradcheck",
    "grads",
    "init",
    "layer_outputs",
    "load",
    "logits",
    "loss",
    "loss_and_grads",
    "losses",
    "metrics",
    "optim",
    "predict",
    "register_activation",
    "register_layer",
    "register_loss",
    "register_record",
    "save",
    "schedules",
    "sgd_step",
    "train_pass",
    "tree_allclose",
    "tree_check_like",
    "tree_equal",
    "tree_items",
    "tree_leaves",
    "tree_map",
    "tree_with_state",
    "tree_zeros_like",
]
