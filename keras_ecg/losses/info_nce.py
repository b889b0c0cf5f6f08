"""InfoNCE for Contrastive Predictive Coding (CPC), on `keras.ops` tensors.

CPC predicts the encoding `k` steps ahead from the context at each position and
scores that prediction against the true future encoding (the positive) and
`num_negatives` other encodings (the negatives) by a dot product. The loss is
the cross-entropy of picking the positive among the `1 + num_negatives`
candidates (van den Oord et al. 2018; Mehari & Strodthoff 2022).

Indices into the pool of candidate encodings are "flat": encoding `(b, t)` of a
`(batch, T, D)` tensor has index `b * T + t`. Sampling negatives is split from
scoring them so tests (and users) can inject deterministic negatives.
"""

import keras
from keras import ops

NEGATIVES_FROM = ("sequence", "batch")


def _check_negatives_from(negatives_from):
    if negatives_from not in NEGATIVES_FROM:
        raise ValueError(
            f"negatives_from must be one of {NEGATIVES_FROM}, got {negatives_from!r}."
        )


def sample_cpc_negative_indices(
    batch_size,
    sequence_length,
    step,
    num_negatives,
    negatives_from="sequence",
    seed=None,
):
    """Draws flat negative indices for predicting `step` steps ahead.

    For the prediction made at position `t` of sequence `b` the positive is
    encoding `(b, t + step)`. Negatives are drawn uniformly, with replacement,
    from the same sequence (`"sequence"`) or from all encodings of the batch
    (`"batch"`), always EXCLUDING the positive itself: an integer is drawn from
    a range one smaller than the pool and shifted up by one at or above the
    positive's index, which keeps the draw uniform over the other candidates.

    Args:
        batch_size: `B` (an int or a scalar tensor; dynamic is fine).
        sequence_length: `T`, the number of encoded time steps (a Python int).
        step: prediction offset `k >= 1` (a Python int, `k < T`).
        num_negatives: negatives per prediction `N`.
        negatives_from: `"sequence"` or `"batch"`.
        seed: a `keras.random.SeedGenerator` (or int / None), as accepted by
            `keras.random.randint`; a generator keeps the draw in-graph and
            different at every call, also under JAX `jit`.

    Returns:
        int32 tensor `(B, T - step, N)` of flat indices into the `B * T` pool.

    Example:

    >>> idx = sample_cpc_negative_indices(2, 10, 3, 4, seed=0)
    >>> tuple(idx.shape)
    (2, 7, 4)
    """
    _check_negatives_from(negatives_from)
    step = int(step)
    sequence_length = int(sequence_length)
    num_positions = sequence_length - step
    if step < 1 or num_positions < 1:
        raise ValueError(
            f"CPC: cannot predict {step} step(s) ahead in a sequence of "
            f"{sequence_length} encoded steps (need 1 <= step < length)."
        )
    if negatives_from == "sequence" and sequence_length < 2:
        raise ValueError(
            "CPC: negatives from the same sequence need at least 2 encoded steps."
        )
    shape = (batch_size, num_positions, int(num_negatives))
    batch_offsets = ops.reshape(
        ops.arange(batch_size, dtype="int32") * sequence_length, (-1, 1, 1)
    )
    positive_t = ops.reshape(
        ops.arange(step, sequence_length, dtype="int32"), (1, num_positions, 1)
    )
    if negatives_from == "sequence":
        draw = keras.random.randint(
            shape, 0, sequence_length - 1, seed=seed, dtype="int32"
        )
        local = draw + ops.cast(draw >= positive_t, "int32")
        return batch_offsets + local
    pool = batch_size * sequence_length
    draw = keras.random.randint(shape, 0, pool - 1, seed=seed, dtype="int32")
    positive_flat = batch_offsets + positive_t
    return draw + ops.cast(draw >= positive_flat, "int32")


def cpc_info_nce_logits(
    predictions, encodings, step, negative_indices, method="gather", pool=None
):
    """Scores predictions against their positive and negative encodings.

    Args:
        predictions: `(B, P, D)` predictions made at positions `0 .. P - 1`
            for the encodings `step` steps ahead, `P = T - step`.
        encodings: `(B, T, D)` encoder outputs (the candidate pool).
        step: prediction offset `k` (Python int).
        negative_indices: int `(B, P, N)` flat indices into the `B * T` pool.
        method: `"gather"` gathers the `N` negative vectors per prediction
            (memory `B*P*N*D`); `"sequence_matrix"` scores each prediction
            against all `T` encodings of its own sequence and picks the
            negatives from that score matrix (memory `B*P*T`, cheaper when
            `T < N*D`; valid only when all negatives come from the same
            sequence); `"batch_matrix"` scores against all `B*T` encodings.
            All three give the same values.
        pool: optional `(G, T, D)` candidate encodings that `negative_indices`
            index into (e.g. gathered from all devices, `G >= B`); defaults to
            `encodings`. Not used by `"sequence_matrix"`.

    Returns:
        float32 logits `(B, P, 1 + N)`; the positive is at index 0.
    """
    predictions = ops.cast(predictions, "float32")
    encodings = ops.cast(encodings, "float32")
    negative_indices = ops.cast(negative_indices, "int32")
    sequence_length = encodings.shape[1]
    dim = encodings.shape[-1]
    positives = encodings[:, step:, :]
    positive_logits = ops.sum(predictions * positives, axis=-1, keepdims=True)
    pool = encodings if pool is None else ops.cast(pool, "float32")
    if method == "gather":
        pool = ops.reshape(pool, (-1, dim))
        negatives = ops.take(pool, ops.reshape(negative_indices, (-1,)), axis=0)
        # The batch may be dynamic (tf.data); positions/negatives are static.
        _, num_positions, num_negatives = negative_indices.shape
        negatives = ops.reshape(negatives, (-1, num_positions, num_negatives, dim))
        negative_logits = ops.einsum("bpd,bpnd->bpn", predictions, negatives)
    elif method == "sequence_matrix":
        scores = ops.einsum("bpd,btd->bpt", predictions, encodings)
        batch_offsets = ops.reshape(
            ops.arange(ops.shape(encodings)[0], dtype="int32") * sequence_length,
            (-1, 1, 1),
        )
        negative_logits = ops.take_along_axis(
            scores, negative_indices - batch_offsets, axis=2
        )
    elif method == "batch_matrix":
        pool = ops.reshape(pool, (-1, dim))
        scores = ops.einsum("bpd,nd->bpn", predictions, pool)
        negative_logits = ops.take_along_axis(scores, negative_indices, axis=2)
    else:
        raise ValueError(
            "method must be 'gather', 'sequence_matrix' or 'batch_matrix', got "
            f"{method!r}."
        )
    return ops.concatenate([positive_logits, negative_logits], axis=-1)


# What one float that a scoring path writes to memory costs, in multiply-adds
# of its dot products. The gather path materialises `N * D` floats per
# prediction (the negatives), reads them back and scatter-adds their gradient,
# all memory-bound; a score matrix costs `T * D` multiply-adds that a matmul
# does at full speed, and `T` floats. Forward + backward at the paper's shapes
# (T = 1000, D = 512, N = 128, k = 12, batch 4) on 2 CPU cores, one gathered
# float cost 24 (torch) to 100 (TensorFlow, JAX) matrix multiply-adds.
WRITE_COST_IN_MULTIPLY_ADDS = 32


def scoring_costs(
    sequence_length, dim, num_negatives, negatives_from="sequence", pool_size=None
):
    """Estimated cost per prediction of each way to score CPC negatives.

    Each path costs its multiply-adds plus `WRITE_COST_IN_MULTIPLY_ADDS` for
    each float it materialises: `"gather"` does `N * D` multiply-adds and
    writes the `N * D` negatives; `"sequence_matrix"` does `T * D` and writes
    `T` scores; `"batch_matrix"` does `G * T * D` and writes `G * T` (`G`
    sequences in the pool, e.g. the batch).

    Args:
        sequence_length: `T`, encoded steps per sequence.
        dim: `D`, the encoding dimension.
        num_negatives: `N`, negatives per prediction.
        negatives_from: `"sequence"` or `"batch"`.
        pool_size: `G`, sequences negatives are drawn from (`"batch"` only);
            `None` (unknown, e.g. a dynamic batch) leaves `"batch_matrix"` out.

    Returns:
        dict from each applicable method to `{"multiply_adds", "floats",
        "cost"}` per prediction.

    Example:

    >>> costs = scoring_costs(1000, 512, 128)
    >>> costs["gather"]["multiply_adds"], costs["sequence_matrix"]["floats"]
    (65536, 1000)
    """
    _check_negatives_from(negatives_from)
    shapes = {"gather": (num_negatives * dim, num_negatives * dim)}
    if negatives_from == "sequence":
        shapes["sequence_matrix"] = (sequence_length * dim, sequence_length)
    elif isinstance(pool_size, int):
        columns = pool_size * sequence_length
        shapes["batch_matrix"] = (columns * dim, columns)
    return {
        method: {
            "multiply_adds": int(macs),
            "floats": int(floats),
            "cost": int(macs + WRITE_COST_IN_MULTIPLY_ADDS * floats),
        }
        for method, (macs, floats) in shapes.items()
    }


def choose_cpc_scoring(
    sequence_length, dim, num_negatives, negatives_from="sequence", pool_size=None
):
    """The cheapest scoring method by `scoring_costs` (ties: a score matrix).

    A score matrix computes `T / N` (or `G * T / N`) times the dot products
    of gathering, but gathering writes `D` times more floats than it scores:
    at the paper's shapes (same-sequence negatives, `T = 1000`, `D = 512`,
    `N = 128`) the `T` x `D` score matrix is 3-10x faster and needs a third of
    the memory; with negatives from a batch of 32 (`G * T = 32000` columns)
    gathering wins.

    Args:
        sequence_length: `T`, encoded steps per sequence.
        dim: `D`, the encoding dimension.
        num_negatives: `N`, negatives per prediction.
        negatives_from: `"sequence"` or `"batch"`.
        pool_size: `G` for `"batch"`, an int, or `None` if unknown.

    Returns:
        `"gather"`, `"sequence_matrix"` or `"batch_matrix"`.

    Example:

    >>> choose_cpc_scoring(1000, 512, 128)
    'sequence_matrix'
    >>> choose_cpc_scoring(1000, 512, 128, "batch", pool_size=32)
    'gather'
    """
    costs = scoring_costs(
        sequence_length, dim, num_negatives, negatives_from, pool_size
    )
    gather = costs.pop("gather")["cost"]
    for method, cost in costs.items():
        if cost["cost"] <= gather:
            return method
    return "gather"


def info_nce_loss(logits):
    """Mean cross-entropy of choosing candidate 0 (the positive).

    Args:
        logits: `(..., 1 + N)` scores, positive first.

    Returns:
        float32 scalar.
    """
    logits = ops.cast(logits, "float32")
    return -ops.mean(ops.log_softmax(logits, axis=-1)[..., 0])


def info_nce_accuracy(logits):
    """Fraction of predictions whose positive scores strictly above all negatives.

    Strict, so a degenerate model giving all candidates the same score counts
    as wrong (an argmax would pick index 0 and count it as right).

    Args:
        logits: `(..., 1 + N)` scores, positive first.

    Returns:
        float32 scalar.
    """
    logits = ops.cast(logits, "float32")
    best_negative = ops.max(logits[..., 1:], axis=-1)
    return ops.mean(ops.cast(logits[..., 0] > best_negative, "float32"))
