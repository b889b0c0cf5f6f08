"""BYOL's normalised regression loss."""

from keras import ops

from keras_ecg.losses.nt_xent import l2_normalize


def byol_regression_loss(predictions, targets):
    """Per-sample `2 - 2 cos(prediction, target)`, the target gradient-stopped.

    Equal to the squared distance of the L2-normalised vectors, so it lies in
    `[0, 4]`.

    Args:
        predictions: `(N, D)` online predictions.
        targets: `(N, D)` target projections (no gradient flows into them).

    Returns:
        A `(N,)` float32 tensor.
    """
    predictions = l2_normalize(predictions)
    targets = ops.stop_gradient(l2_normalize(targets))
    return 2.0 - 2.0 * ops.sum(predictions * targets, axis=-1)


def byol_loss(p_1, p_2, z_1, z_2):
    """Symmetric BYOL loss of two views, averaged over the batch.

    `mean(2 - 2 cos(p_1, sg(z_2))) + mean(2 - 2 cos(p_2, sg(z_1)))`: the two
    directions are *summed*, as in the BYOL paper (Grill et al. 2020, eq. 2
    plus its symmetrised term) and the reference implementation, so the loss
    lies in `[0, 8]`. (The reference optimises `-2 mean cos` per direction,
    which differs only by the constant 4.)

    Args:
        p_1: `(N, D)` online predictions of view 1.
        p_2: `(N, D)` online predictions of view 2.
        z_1: `(N, D)` target projections of view 1.
        z_2: `(N, D)` target projections of view 2.

    Returns:
        The scalar float32 loss.

    Example:

    >>> import numpy as np
    >>> p = np.eye(2, 4, dtype="float32")
    >>> float(byol_loss(p, p, p, p))
    0.0
    """
    return ops.mean(byol_regression_loss(p_1, z_2)) + ops.mean(
        byol_regression_loss(p_2, z_1)
    )
