"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

The core, `contrastive_cross_entropy`, scores a set of local *queries* against
a possibly larger set of *keys* (e.g. the projections gathered from every
device), given for each query the key index of its positive and of itself.
`nt_xent_loss` builds that layout for two views of a single-device batch and
also accepts globally gathered keys plus this device's offset, so a
multi-device SimCLR only has to all-gather the projections.
"""

import math

from keras import ops

# Added to masked logits: far below any cosine / temperature, yet finite so
# `0 * masked` stays 0 and float32 logsumexp stays exact.
_MASK_VALUE = -1e9


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """Scales `x` to unit L2 norm along `axis`, computed in float32."""
    x = ops.cast(x, "float32")
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, epsilon))


def contrastive_cross_entropy(
    queries,
    keys,
    positive_indices,
    self_indices=None,
    temperature=0.5,
    normalize=True,
):
    """Per-query InfoNCE over cosine similarities, the self-similarity masked.

    Args:
        queries: `(M, D)` anchors.
        keys: `(K, D)` candidates; may hold the queries themselves and keys
            gathered from other devices.
        positive_indices: `(M,)` int, the key index of each query's positive.
        self_indices: `(M,)` int, the key index of each query itself, whose
            logit is masked with a large negative value (not dropped, so the
            key layout and indices stay fixed); `None` when the keys do not
            contain the queries.
        temperature: softmax temperature, > 0.
        normalize: whether to L2-normalise queries and keys first.

    Returns:
        A tuple `(loss, correct)` of `(M,)` float32 tensors: the cross-entropy of
        each query and whether its positive is its highest-scoring key.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    queries = ops.cast(queries, "float32")
    keys = ops.cast(keys, "float32")
    if normalize:
        queries = l2_normalize(queries)
        keys = l2_normalize(keys)
    num_keys = ops.shape(keys)[0]
    logits = ops.matmul(queries, ops.transpose(keys)) / temperature
    if self_indices is not None:
        self_mask = ops.one_hot(self_indices, num_keys, dtype="float32")
        logits = ops.where(self_mask > 0, _MASK_VALUE, logits)
    positive_mask = ops.one_hot(positive_indices, num_keys, dtype="float32")
    positive_logits = ops.sum(logits * positive_mask, axis=-1)
    loss = ops.logsumexp(logits, axis=-1) - positive_logits
    predicted = ops.argmax(logits, axis=-1)
    correct = ops.cast(
        ops.equal(predicted, ops.cast(positive_indices, predicted.dtype)), "float32"
    )
    return loss, correct


def nt_xent_loss(
    z_a,
    z_b,
    temperature=0.5,
    keys_a=None,
    keys_b=None,
    offset=0,
    return_accuracy=False,
):
    """SimCLR's NT-Xent loss of two views, averaged over all 2N anchors.

    Every projection is an anchor whose positive is the other view of the same
    sample; all other 2N - 2 projections of the batch are negatives, and the
    anchor's similarity with itself is masked out. A batch of one sample has
    no negatives and gives a loss of exactly 0.

    For multi-device training pass `keys_a` / `keys_b`, the `(G, D)` projections
    of each view gathered over all devices (in device order, this device's
    batch at rows `offset:offset + N`); the loss then averages over this
    device's 2N anchors with all 2G - 2 negatives.

    Args:
        z_a: `(N, D)` projections of the first view.
        z_b: `(N, D)` projections of the second view, row-aligned with `z_a`.
        temperature: softmax temperature (the paper uses 0.5 for ECG).
        keys_a: optional `(G, D)` gathered projections of the first view.
        keys_b: optional `(G, D)` gathered projections of the second view.
        offset: row of this device's first sample in `keys_a` / `keys_b`.
        return_accuracy: whether to also return the contrastive top-1
            accuracy (fraction of anchors whose positive scores highest).

    Returns:
        The scalar float32 loss, or `(loss, accuracy)`.

    Example:

    >>> import numpy as np
    >>> z = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(nt_xent_loss(z, z, temperature=0.5)) < float(
    ...     nt_xent_loss(z, z[::-1], temperature=0.5))
    True
    """
    if (keys_a is None) != (keys_b is None):
        raise ValueError("nt_xent_loss: pass both keys_a and keys_b, or neither.")
    if keys_a is None:
        keys_a, keys_b = z_a, z_b
    n = ops.shape(z_a)[0]
    g = ops.shape(keys_a)[0]
    local = ops.arange(n, dtype="int32") + offset
    queries = ops.concatenate([z_a, z_b], axis=0)
    keys = ops.concatenate([keys_a, keys_b], axis=0)
    # Keys are [all first views; all second views]: the partner of row i of
    # view a is row g + i, and vice versa.
    self_indices = ops.concatenate([local, local + g], axis=0)
    positive_indices = ops.concatenate([local + g, local], axis=0)
    loss, correct = contrastive_cross_entropy(
        queries,
        keys,
        positive_indices,
        self_indices=self_indices,
        temperature=temperature,
    )
    loss = ops.mean(loss)
    if return_accuracy:
        return loss, ops.mean(correct)
    return loss


def multi_view_nt_xent_loss(
    projections, temperature=0.5, return_accuracy=False, keys=None, offset=0
):
    """NT-Xent averaged over every unordered pair of views.

    With two views this is exactly `nt_xent_loss`; more views (e.g. SimCLR
    with `num_views=3`) average the pairwise losses.

    Args:
        projections: a list of `V >= 2` `(N, D)` projections, one per view.
        temperature: softmax temperature.
        return_accuracy: whether to also return the mean contrastive accuracy.
        keys: optional list of `V` `(G, D)` projections gathered over all
            devices, view by view (see `nt_xent_loss`).
        offset: row of this device's first sample in each entry of `keys`.

    Returns:
        The scalar float32 loss, or `(loss, accuracy)`.
    """
    projections = list(projections)
    if len(projections) < 2:
        raise ValueError(f"NT-Xent needs at least 2 views, got {len(projections)}.")
    if keys is not None and len(keys) != len(projections):
        raise ValueError(
            f"NT-Xent: got {len(keys)} gathered key sets for {len(projections)} views."
        )
    losses, accuracies = [], []
    for i in range(len(projections)):
        for j in range(i + 1, len(projections)):
            loss, accuracy = nt_xent_loss(
                projections[i],
                projections[j],
                temperature,
                keys_a=None if keys is None else keys[i],
                keys_b=None if keys is None else keys[j],
                offset=offset,
                return_accuracy=True,
            )
            losses.append(loss)
            accuracies.append(accuracy)
    num_pairs = math.comb(len(projections), 2)
    loss = ops.sum(ops.stack(losses)) / num_pairs
    if return_accuracy:
        return loss, ops.sum(ops.stack(accuracies)) / num_pairs
    return loss
