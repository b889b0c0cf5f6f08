"""JEPA's multi-block masks of a token sequence, drawn in-graph.

kweimann/ECG-JEPA (`data/masks.py`, `MaskCollator`) masks a sequence of `N`
time patches as follows, with one keep ratio per batch so that every sample
of a batch keeps the same number of tokens:

1. `keep_ratio ~ U(min_keep_ratio, max_keep_ratio)` once per batch;
   `num_keep = ceil(keep_ratio * N)`; `num_mask = N - num_keep`.
2. Per sample, starting from one unmasked interval `[0, N)`, repeat until
   `num_mask` tokens are masked: pick an unmasked interval with probability
   proportional to its length; `remaining = num_mask - masked so far`;
   block size `b ~ U{min_block_size .. remaining}` if
   `remaining >= min_block_size`, else `b = remaining`. If the interval is
   not longer than `b`, mask all of it; else, if `remaining >= min_block_size`,
   mask `b` tokens at a uniform position inside it, otherwise attach the
   `b` tokens to a masked neighbour (the start or the end of the interval,
   whichever borders a masked block, chosen uniformly when both do).
3. The kept tokens are the context (encoded by the context encoder), the
   masked ones the targets (predicted); they are disjoint and cover the
   sequence.

`sample_keep_masks` does exactly this for a whole batch at once with
`keras.ops`: picking an interval with probability proportional to its
length is picking a uniformly random unmasked token and taking the maximal
unmasked run around it. The loop runs at most `num_mask` rounds
(`keras.ops.while_loop`, stopping when every sample is done) on random
numbers drawn before it, so it is valid under JAX `jit`, `tf.function` and
XLA, and reproducible from one seed.

`keep_mask_to_indices` turns the masks into index lists of STATIC length,
padded with flagged invalid entries: the number of kept tokens varies from
batch to batch (and is a tensor inside a compiled step), so the context is
stored in `ceil(max_keep_ratio * N)` slots and the targets in
`N - ceil(min_keep_ratio * N)` slots. Padded slots never take part in
attention or the loss, which makes the computation equal to the reference's
unpadded one.
"""

import math

import keras
from keras import ops


def keep_count_bounds(num_tokens, min_keep_ratio, max_keep_ratio):
    """`(min, max)` of `ceil(keep_ratio * num_tokens)` (the static slot counts)."""
    low = max(1, math.ceil(min_keep_ratio * num_tokens))
    high = min(num_tokens - 1, math.ceil(max_keep_ratio * num_tokens))
    return low, max(low, high)


def sample_keep_count(num_tokens, min_keep_ratio, max_keep_ratio, seed):
    """`ceil(U(min, max) * num_tokens)` as an int32 scalar tensor (one per batch)."""
    ratio = keras.random.uniform(
        (), minval=min_keep_ratio, maxval=max_keep_ratio, seed=seed
    )
    low, high = keep_count_bounds(num_tokens, min_keep_ratio, max_keep_ratio)
    count = ops.cast(ops.ceil(ratio * num_tokens), "int32")
    # float32 rounding must not leave the static slot counts.
    return ops.clip(count, low, high)


def sample_keep_masks(batch_size, num_tokens, num_keep, min_block_size, seed):
    """Boolean `(batch, num_tokens)` masks, True = kept (context) token.

    Every row keeps exactly `num_keep` tokens; the masked ones form blocks
    drawn as kweimann/ECG-JEPA's `MaskCollator.sample_mask` (see the module
    docstring).

    Args:
        batch_size: rows (an int, or a scalar tensor inside a traced step).
        num_tokens: tokens per row (a static int).
        num_keep: kept tokens per row, an int or an int scalar tensor,
            `1 <= num_keep < num_tokens`.
        min_block_size: the smallest block of masked tokens drawn at once.
        seed: a `keras.random.SeedGenerator` (or int) for the draws.

    Returns:
        A boolean tensor `(batch_size, num_tokens)`.
    """
    num_tokens = int(num_tokens)
    min_block_size = int(min_block_size)
    num_mask = num_tokens - ops.cast(num_keep, "int32")
    # Every round masks at least one token, so num_tokens - 1 rounds suffice.
    rounds = max(num_tokens - 1, 1)
    # Four uniforms per sample and round: the token picking the interval,
    # the block size, the block position, the side a short block attaches to.
    draws = keras.random.uniform((rounds, 4, batch_size), seed=seed)
    positions = ops.arange(num_tokens, dtype="int32")[None, :]

    def uniform_int(u, low, high):
        """`U{low .. high}` from `u ~ U[0, 1)`, elementwise."""
        span = ops.cast(high - low + 1, "float32")
        value = low + ops.cast(ops.floor(u * span), "int32")
        return ops.minimum(value, high)

    def condition(step, masked):
        remaining = num_mask - ops.sum(ops.cast(masked, "int32"), axis=1)
        return ops.logical_and(step < rounds, ops.any(remaining > 0))

    def body(step, masked):
        u = ops.take(draws, step, axis=0)
        masked_count = ops.sum(ops.cast(masked, "int32"), axis=1)
        remaining = num_mask - masked_count
        unmasked = ops.logical_not(masked)
        # A uniformly random unmasked token: the r-th of them.
        free = num_tokens - masked_count
        rank = uniform_int(u[0], 0, free - 1)
        running = ops.cumsum(ops.cast(unmasked, "int32"), axis=1) - 1
        hit = ops.logical_and(unmasked, running == rank[:, None])
        pick = ops.cast(ops.argmax(ops.cast(hit, "int32"), axis=1), "int32")
        # The maximal unmasked run [start, end) around it.
        before = ops.logical_and(masked, positions < pick[:, None])
        after = ops.logical_and(masked, positions > pick[:, None])
        start = ops.max(ops.where(before, positions + 1, 0), axis=1)
        end = ops.min(ops.where(after, positions, num_tokens), axis=1)
        length = end - start
        large = remaining >= min_block_size
        size = ops.where(large, uniform_int(u[1], min_block_size, remaining), remaining)
        whole = length <= size
        inside = start + uniform_int(u[2], 0, length - size)
        has_left = start > 0
        has_right = end < num_tokens
        left = ops.where(ops.logical_and(has_left, has_right), u[3] < 0.5, has_left)
        attached = ops.where(left, start, end - size)
        low = ops.where(whole, start, ops.where(large, inside, attached))
        high = ops.where(whole, end, low + size)
        block = ops.logical_and(positions >= low[:, None], positions < high[:, None])
        block = ops.logical_and(block, (remaining > 0)[:, None])
        return step + 1, ops.logical_or(masked, block)

    masked = ops.zeros((batch_size, num_tokens), dtype="bool")
    _, masked = ops.while_loop(condition, body, (ops.convert_to_tensor(0), masked))
    return ops.logical_not(masked)


def keep_mask_to_indices(keep, num_slots, select_kept=True):
    """Positions of the kept (or masked) tokens, in order, in fixed slots.

    Args:
        keep: boolean `(batch, num_tokens)`, True = kept.
        num_slots: the static number of slots (at least the largest count).
        select_kept: list the kept tokens (True) or the masked ones (False).

    Returns:
        `(indices, valid)`: int32 `(batch, num_slots)` positions in
        increasing order, then (in the unused slots) positions of the other
        kind, flagged False in the boolean `valid`.
    """
    num_tokens = keep.shape[1]
    chosen = keep if select_kept else ops.logical_not(keep)
    positions = ops.arange(num_tokens, dtype="int32")[None, :]
    # The chosen tokens first, each group in position order.
    order = ops.where(chosen, positions, positions + num_tokens)
    indices = ops.cast(ops.argsort(order, axis=1)[:, :num_slots], "int32")
    count = ops.sum(ops.cast(chosen, "int32"), axis=1)
    valid = ops.arange(num_slots, dtype="int32")[None, :] < count[:, None]
    return indices, valid
