"""Losses, each value beside its gradient.

Cross-entropy and binary cross-entropy are fused with their output activation
(softmax, sigmoid): they take the *logits* ``z`` of shape ``(n, k)`` and return
the gradient with respect to ``z``, which is both cheaper and numerically
stable. MSE takes the output activation ``a`` and returns ``dL/da``.

Reductions follow PyTorch's defaults: cross-entropy is the mean over samples;
MSE and binary cross-entropy are means over all ``n * k`` elements.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LossInfo(NamedTuple):
    fused_activation: str | None
    """The output activation the loss is fused with (None: not fused)."""
    fn: object


def cross_entropy(z: np.ndarray, y: np.ndarray, need_grad: bool = True):
    """Softmax cross-entropy from logits.

    Args:
        z: logits, shape ``(n, k)``, float.
        y: int class indices of shape ``(n,)``, or target probabilities (one-hot)
            of shape ``(n, k)`` in ``z.dtype``.
        need_grad: also return ``dL/dz``.

    Returns:
        ``(loss, dz)``: the mean loss as a float and ``dz = (p - y) / n`` of
        shape ``(n, k)`` (None when ``need_grad`` is False).
    """
    n, k = z.shape
    # flat index of each row's first entry: the labels' logits are then one
    # gather and one scatter, not 2-D fancy indexing (several times slower on a
    # (128, 10) array)
    row_start = np.arange(0, n * k, k)
    # log-sum-exp with the row max taken out: finite for logits of any size. The
    # max is read at the argmax (a row-wise max over 10 columns costs 6x more).
    shifted = z - z.ravel()[row_start + z.argmax(axis=1)][:, None]
    e = np.exp(shifted)
    s = np.add.reduce(e, axis=1, keepdims=True)  # e.sum without its Python wrapper
    log_s = np.log(s)
    if y.ndim == 1:
        at_label = row_start + y
        # mean of -log p[y] = log s - shifted[y]
        total_log_s = float(np.add.reduce(log_s, axis=None))
        loss = (total_log_s - float(np.add.reduce(shifted.ravel()[at_label]))) / n
    else:
        loss = -float((y * (shifted - log_s)).sum()) / n
    if not need_grad:
        return loss, None
    dz = np.divide(e, s, out=e)  # p
    # dL/dz = (p - y) / n
    if y.ndim == 1:
        dz.ravel()[at_label] -= 1.0
    else:
        dz -= y
    dz *= 1.0 / n
    return loss, dz


def binary_cross_entropy(z: np.ndarray, y: np.ndarray, need_grad: bool = True):
    """Sigmoid binary cross-entropy from logits, mean over all elements.

    Args:
        z: logits, shape ``(n, k)``.
        y: targets in [0, 1], shape ``(n, k)``, ``z.dtype``.
        need_grad: also return ``dL/dz``.

    Returns:
        ``(loss, dz)`` with ``dz = (sigmoid(z) - y) / (n * k)``.
    """
    # -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
    elementwise = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    loss = float(elementwise.mean(dtype=z.dtype))
    if not need_grad:
        return loss, None
    p = 0.5 * (1.0 + np.tanh(0.5 * z))
    # dL/dz = (sigmoid(z) - y) / (n k)
    return loss, (p - y) * (1.0 / z.size)


def mse(a: np.ndarray, y: np.ndarray, need_grad: bool = True):
    """Mean squared error over all elements.

    Args:
        a: network output, shape ``(n, k)``.
        y: targets, shape ``(n, k)``, ``a.dtype``.
        need_grad: also return ``dL/da``.

    Returns:
        ``(loss, da)`` with ``da = 2 (a - y) / (n * k)``.
    """
    diff = a - y
    loss = float((diff * diff).mean(dtype=a.dtype))
    if not need_grad:
        return loss, None
    # dL/da = 2 (a - y) / (n k)
    return loss, diff * (2.0 / a.size)


LOSSES: dict[str, LossInfo] = {
    "cross_entropy": LossInfo("softmax", cross_entropy),
    "binary_cross_entropy": LossInfo("sigmoid", binary_cross_entropy),
    "mse": LossInfo(None, mse),
}
