"""JEPA's regression loss in representation space."""

from keras import ops


def jepa_loss(predictions, targets, valid=None):
    """Mean absolute error between predicted and target tokens.

    kweimann/ECG-JEPA (`models/JEPA.py`) trains with `mean(|z - h|)` over
    every masked token and feature, `h` the target encoder's final-normed
    tokens (no further normalisation; Kim et al.'s ECG_JEPA instead uses a
    smooth L1 loss on layer-normed targets). Padded slots (`valid` False)
    are left out; the targets get no gradient.

    Args:
        predictions: `(batch, M, D)` predicted tokens.
        targets: `(batch, M, D)` target tokens.
        valid: optional boolean `(batch, M)`: which slots are real targets.

    Returns:
        The scalar float32 loss.

    Example:

    >>> import numpy as np
    >>> p = np.zeros((1, 2, 2), "float32")
    >>> t = np.array([[[1.0, 1.0], [3.0, -3.0]]], "float32")
    >>> float(jepa_loss(p, t)), float(jepa_loss(p, t, np.array([[True, False]])))
    (2.0, 1.0)
    """
    predictions = ops.cast(predictions, "float32")
    targets = ops.stop_gradient(ops.cast(targets, "float32"))
    errors = ops.abs(predictions - targets)
    if valid is None:
        return ops.mean(errors)
    weights = ops.cast(valid, "float32")
    total = ops.sum(errors * ops.expand_dims(weights, -1))
    count = ops.sum(weights) * ops.cast(ops.shape(errors)[-1], "float32")
    return total / ops.maximum(count, 1.0)
