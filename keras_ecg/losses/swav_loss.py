"""SwAV losses: Sinkhorn-Knopp equipartition codes and swapped prediction.

Follows Caron et al. 2020 ("Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", Algorithm 1 / the official `main_swav.py`),
on `keras.ops` tensors, computed in float32.
"""

from keras import ops

from keras_ecg.distribute import gather_across_replicas


def sinkhorn_knopp(scores, epsilon=0.05, num_iterations=3, sample_mask=None):
    """Equipartitioned soft codes from prototype scores (SwAV's Sinkhorn-Knopp).

    As in the SwAV paper: `Q = exp(scores / epsilon).T` (prototypes x samples),
    normalised to sum 1, then `num_iterations` rounds of normalising the rows
    (each prototype gets total mass `1/K`) and the columns (each sample gets
    `1/B`), finally scaled by `B` so that each sample's code sums to 1.
    Computed in the log domain (same values, no overflow for small epsilon).
    The result is wrapped in `stop_gradient`: codes are targets.

    Args:
        scores: `(B, K)` prototype scores (cosine similarities).
        epsilon: entropic regularisation; smaller gives sharper codes.
        num_iterations: Sinkhorn iterations.
        sample_mask: optional `(B,)` 0/1 mask; masked samples are left out of
            the transport problem entirely (their column stays 0 and `B`
            counts only the others). Used for a feature queue whose slots are
            not filled or not yet enabled, with static shapes.

    Returns:
        float32 `(B, K)` codes; rows of valid samples sum to 1.

    Example:

    >>> import numpy as np
    >>> codes = sinkhorn_knopp(np.random.rand(8, 4).astype("float32"))
    >>> np.allclose(np.asarray(codes).sum(1), 1.0, atol=1e-5)
    True
    """
    scores = ops.stop_gradient(ops.cast(scores, "float32"))
    num_prototypes = scores.shape[-1]
    if sample_mask is None:
        valid = ops.ones_like(scores[:, 0]) > 0
    else:
        valid = ops.reshape(sample_mask, (-1,)) > 0
    num_samples = ops.sum(ops.cast(valid, "float32"))
    # The same normalisations as the paper, in the log domain: exp(scores /
    # epsilon) under- or overflows float32 for small epsilon, log(Q) does not.
    # Masked samples get a finite "log 0" so nothing becomes NaN.
    log_zero = -1e9
    valid = ops.transpose(valid[:, None])  # (1, B), broadcast over prototypes
    log_q = ops.where(valid, ops.transpose(scores) / epsilon, log_zero)
    log_q = log_q - ops.logsumexp(log_q)
    log_k = ops.log(float(num_prototypes))
    log_b = ops.log(num_samples)
    for _ in range(num_iterations):
        # Rows: each prototype gets total mass 1 / K.
        log_q = log_q - ops.logsumexp(log_q, axis=1, keepdims=True) - log_k
        # Columns: each sample gets total mass 1 / B.
        log_q = log_q - ops.logsumexp(log_q, axis=0, keepdims=True) - log_b
        log_q = ops.where(valid, log_q, log_zero)
    # Scaled by B: each sample's code sums to 1.
    q = ops.where(valid, ops.exp(log_q + log_b), 0.0)
    return ops.stop_gradient(ops.transpose(q))


def swapped_prediction_loss(codes, scores, temperature=0.1):
    """Cross-entropy between codes and the softmax of the other view's scores.

    Args:
        codes: `(B, K)` target codes (from another view).
        scores: `(B, K)` prototype scores of this view.
        temperature: softmax temperature.

    Returns:
        float32 scalar: `-mean_b sum_k codes * log_softmax(scores / T)`.
    """
    codes = ops.cast(codes, "float32")
    log_probs = ops.log_softmax(ops.cast(scores, "float32") / temperature, axis=-1)
    return -ops.mean(ops.sum(codes * log_probs, axis=-1))


def swav_loss(
    view_scores,
    crops_for_assign=(0, 1),
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iterations=3,
    queue_scores=None,
    queue_mask=None,
):
    """SwAV swapped-prediction loss over all (multi-crop) views.

    For each view `i` in `crops_for_assign`, codes are computed by Sinkhorn on
    that view's scores (optionally preceded by the queue's scores), and every
    OTHER view predicts them; the loss is averaged over the other views and
    then over the assigned views, as in the official implementation.

    Args:
        view_scores: list of `(B, K)` prototype scores, one per view.
        crops_for_assign: indices of the views used to compute codes.
        temperature: softmax temperature of the predictions.
        epsilon: Sinkhorn regularisation.
        sinkhorn_iterations: Sinkhorn iterations.
        queue_scores: optional list (one per entry of `crops_for_assign`) of
            `(L, K)` scores of queued embeddings, prepended in Sinkhorn only.
        queue_mask: optional list of `(L,)` 0/1 masks of the valid queue slots.

    Under a multi-replica TF step (`keras_ecg.distribute.data_parallel`),
    Sinkhorn runs on the scores gathered from all replicas (the equipartition
    is over the global batch, as in SwAV's distributed Sinkhorn) and this
    replica's rows of the codes are kept; `queue_scores` are then expected to
    be identical on all replicas (a queue of gathered embeddings).

    Returns:
        float32 scalar loss.
    """
    num_views = len(view_scores)
    if num_views < 2:
        raise ValueError(f"SwAV needs at least 2 views, got {num_views}.")
    for crop_id in crops_for_assign:
        if not 0 <= crop_id < num_views:
            raise ValueError(
                f"crops_for_assign={tuple(crops_for_assign)} refers to view "
                f"{crop_id} but only {num_views} views were given."
            )
    total = 0.0
    for i, crop_id in enumerate(crops_for_assign):
        local_scores = ops.cast(view_scores[crop_id], "float32")
        scores, offset = gather_across_replicas(local_scores, return_offset=True)
        if queue_scores is not None:
            queued = ops.cast(queue_scores[i], "float32")
            all_scores = ops.concatenate([queued, scores], axis=0)
            mask = ops.concatenate(
                [ops.cast(queue_mask[i], "float32"), ops.ones_like(scores[:, 0])],
                axis=0,
            )
            codes = sinkhorn_knopp(all_scores, epsilon, sinkhorn_iterations, mask)
            codes = codes[queued.shape[0] :]
        else:
            codes = sinkhorn_knopp(scores, epsilon, sinkhorn_iterations)
        if scores is not local_scores:
            codes = codes[offset : offset + ops.shape(local_scores)[0]]
        subloss = 0.0
        for v in range(num_views):
            if v != crop_id:
                subloss += swapped_prediction_loss(codes, view_scores[v], temperature)
        total += subloss / (num_views - 1)
    return total / len(crops_for_assign)
