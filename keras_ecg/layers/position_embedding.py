"""Fixed sine-cosine position embeddings of token positions."""

import math

from keras import ops


def sincos_position_embedding(positions, dim, dtype="float32"):
    """The 1-D sine-cosine embedding of integer token positions.

    The transformer's (Vaswani et al. 2017) interleaved layout, as
    kweimann/ECG-JEPA's `get_1d_pos_embed`: for position `p` and
    `i = 0 .. dim/2 - 1`, `e[p, 2i] = sin(p * w_i)` and
    `e[p, 2i + 1] = cos(p * w_i)` with `w_i = 10000^(-2i / dim)`. Computed from
    the positions themselves, so any sequence length, or any subset of
    positions (the context or the targets of JEPA), gets the rows a table
    of all positions would hold.

    Args:
        positions: integer tensor of positions, any shape.
        dim: embedding width (even).
        dtype: output dtype.

    Returns:
        A tensor of shape `positions.shape + (dim,)`.

    Example:

    >>> import numpy as np
    >>> e = sincos_position_embedding(np.arange(3), 4)
    >>> [round(float(v), 3) for v in np.asarray(e)[1]]  # sin 1, cos 1, sin .01, cos .01
    [0.841, 0.54, 0.01, 1.0]
    """
    dim = int(dim)
    if dim % 2:
        raise ValueError(f"sincos_position_embedding: dim must be even, got {dim}.")
    frequencies = ops.exp(
        ops.cast(ops.arange(0, dim, 2), "float32") * (-math.log(10000.0) / dim)
    )
    angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * frequencies
    # (..., dim / 2, 2) -> (..., dim): sin and cos interleaved.
    embedding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
    shape = ops.shape(angles)
    embedding = ops.reshape(embedding, tuple(shape[:-1]) + (dim,))
    return ops.cast(embedding, dtype)
